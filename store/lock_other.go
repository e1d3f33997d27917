//go:build !unix

package store

// dirLock does nothing where flock is unavailable: two processes over the
// same data directory are not detected there.
type dirLock struct{}

func lockDir(string, string) (*dirLock, error) { return &dirLock{}, nil }

func (*dirLock) unlock() error { return nil }
