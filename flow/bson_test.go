package flow

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsoncodec"
	"go.mongodb.org/mongo-driver/bson/bsonrw"
)

// reflectRegistry is the driver's reflection encoder with uint64 written
// as int64: the reference AppendBSON must match byte for byte.
func reflectRegistry() *bsoncodec.Registry {
	reg := bson.NewRegistry()
	reg.RegisterKindEncoder(reflect.Uint64, bsoncodec.ValueEncoderFunc(
		func(_ bsoncodec.EncodeContext, vw bsonrw.ValueWriter, v reflect.Value) error {
			return vw.WriteInt64(int64(v.Uint()))
		}))
	return reg
}

func TestAppendBSONMatchesReflection(t *testing.T) {
	recv := time.Date(2026, 11, 25, 10, 0, 1, 999999999, time.UTC)
	docs := []Document{{}}
	for _, r := range append(sampleRecords(), Record{FlowID: 1 << 63, Start: time.Unix(-5, 7)}) {
		r.Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
		r.Received = recv
		docs = append(docs, r.ToDocument())
	}
	d := docs[1]
	d.ID = "abc"
	d.IPFIXFields = map[string]any{"tcpControlBits": uint64(26), "octetDeltaCount": uint64(1 << 63), "ipVersion": uint8(4)}
	docs = append(docs, d)
	reg := reflectRegistry()
	for i := range docs {
		want, err := bson.MarshalWithRegistry(reg, &docs[i])
		require.NoError(t, err)
		got, err := docs[i].AppendBSON(nil)
		require.NoError(t, err)
		if len(docs[i].IPFIXFields) > 1 {
			// The driver writes a map in Go's random order; compare values.
			var w, g bson.M
			require.NoError(t, bson.Unmarshal(want, &w))
			require.NoError(t, bson.Unmarshal(got, &g))
			require.Equal(t, w, g, "document %d", i)
			again, err := docs[i].AppendBSON(nil)
			require.NoError(t, err)
			require.Equal(t, got, again, "document %d: deterministic bytes", i)
			continue
		}
		require.Equal(t, bson.Raw(want).String(), bson.Raw(got).String(), "document %d", i)
		require.Equal(t, want, got, "document %d", i)
	}
}

func BenchmarkAppendBSON(b *testing.B) {
	r := sampleRecords()[0]
	d := r.ToDocument()
	d.ID = "0123456789abcdef0123456789abcdef"
	var buf []byte
	b.Run("AppendBSON", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf, _ = d.AppendBSON(buf[:0])
		}
	})
	b.Run("bson.Marshal", func(b *testing.B) {
		reg := reflectRegistry()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = bson.MarshalWithRegistry(reg, &d)
		}
	})
}
