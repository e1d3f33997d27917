//go:build !unix

package capture

import "os"

func mapFile(*os.File) ([]byte, func()) { return nil, nil }
