package store

import (
	"github.com/mission-ids/mission/flow"
)

// encode returns the stored BSON form of a document. flow.Document builds
// it without reflection; BSON has no unsigned 64-bit integer, so uint64
// values are written as the int64 with the same bits: values up to 2^63−1
// are unchanged (the probe's flow ids stay below), larger ones read back
// negative (add 2^64 to recover them), and all stay distinct.
func encode(d *flow.Document) ([]byte, error) {
	return d.AppendBSON(nil)
}
