//go:build !linux

package privdrop

// Report says what Drop could not do.
type Report struct{ BoundingKept bool }

// Drop is not supported here.
func Drop(Target) (Report, error) { return Report{}, ErrUnsupported }
