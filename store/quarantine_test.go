package store

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
)

// TestQuarantineWriterStoresFieldsReadably: rejected records are stored
// with their fields; addresses as text (the driver alone would write a
// netip.Addr as an empty document), unsigned 64-bit values as int64.
func TestQuarantineWriterStoresFieldsReadably(t *testing.T) {
	emb, err := StartEmbedded(t.TempDir(), "127.0.0.1:0", testLogger(t))
	require.NoError(t, err)
	defer emb.Close()
	ctx := context.Background()
	q, err := OpenQuarantine(ctx, emb.URL(), "mission", testLogger(t))
	require.NoError(t, err)
	q.PutInvalid(map[string]any{"exporterAddress": "192.0.2.1:4739", "templateId": uint16(4243), "reason": "no_start_time",
		"collectorReceiveTime": time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC),
		"fields": map[string]any{"sourceIPv4Address": netip.MustParseAddr("10.0.0.1"), "sourceMacAddress": net.HardwareAddr{2, 0, 0, 0, 0, 1},
			"octetDeltaCount": uint64(1 << 40)}})
	require.NoError(t, q.Close(ctx))
	require.EqualValues(t, 1, q.Stored())
	require.Zero(t, q.Dropped())

	var got bson.M
	require.NoError(t, testClient(t, emb.URL()).Database("mission").Collection(QuarantineCollection).FindOne(ctx, bson.D{}).Decode(&got))
	require.Equal(t, "no_start_time", got["reason"])
	f := got["fields"].(bson.M)
	require.Equal(t, "10.0.0.1", f["sourceIPv4Address"])
	require.Equal(t, "02:00:00:00:00:01", f["sourceMacAddress"])
	require.EqualValues(t, int64(1<<40), f["octetDeltaCount"])
}
