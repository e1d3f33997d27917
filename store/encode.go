package store

import (
	"reflect"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsoncodec"
	"go.mongodb.org/mongo-driver/bson/bsonrw"

	"github.com/mission-ids/mission/flow"
)

// BSON has no unsigned 64-bit integer and the driver refuses uint64 values
// above 2^63−1, which a probe numbering flows at random would hit in half
// its flowIds. The store encodes every uint64 as the int64 with the same
// bits instead: values up to 2^63−1 are unchanged, larger ones read back
// negative (add 2^64 to recover them), and all stay distinct.
var registry = newRegistry()

func newRegistry() *bsoncodec.Registry {
	reg := bson.NewRegistry()
	reg.RegisterKindEncoder(reflect.Uint64, bsoncodec.ValueEncoderFunc(encodeUint64))
	return reg
}

func encodeUint64(_ bsoncodec.EncodeContext, vw bsonrw.ValueWriter, v reflect.Value) error {
	if v.Kind() != reflect.Uint64 {
		return bsoncodec.ValueEncoderError{Name: "encodeUint64", Kinds: []reflect.Kind{reflect.Uint64}, Received: v}
	}
	return vw.WriteInt64(int64(v.Uint()))
}

// encode returns the stored BSON form of a document.
func encode(d *flow.Document) ([]byte, error) {
	return bson.MarshalWithRegistry(registry, d)
}
