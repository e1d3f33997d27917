package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"go.mongodb.org/mongo-driver/bson"
)

func TestDocumentID(t *testing.T) {
	a := testDoc(1)
	id := DocumentID(&a)
	require.Len(t, id, 32)
	require.Equal(t, id, DocumentID(&a), "deterministic")

	b := a
	b.ExporterAddress = "192.0.2.10:50000"
	require.Equal(t, id, DocumentID(&b), "the exporter's port does not matter")
	b.ExporterAddress = "[::ffff:192.0.2.10]:4739"
	require.Equal(t, id, DocumentID(&b), "an IPv4-mapped address is the IPv4 address")

	for name, change := range map[string]func(d *flow.Document){
		"exporter": func(d *flow.Document) { d.ExporterAddress = "192.0.2.11:4739" },
		"domain":   func(d *flow.Document) { d.ObservationDomainID = 2 },
		"flowId":   func(d *flow.Document) { d.FlowID = 3 },
	} {
		c := a
		change(&c)
		require.NotEqual(t, id, DocumentID(&c), name)
	}

	z := a
	z.FlowID = 0
	r1, r2 := DocumentID(&z), DocumentID(&z)
	require.Len(t, r1, 32)
	require.NotEqual(t, r1, r2, "without a flowId, each call draws a fresh id")
}

// A flowId above 2^63 must still encode: BSON has no unsigned 64-bit type.
func TestLargeFlowIDEncodes(t *testing.T) {
	d := testDoc(1)
	d.FlowID = 1<<63 + 5
	raw, err := AppendBSON(nil, &d)
	require.NoError(t, err)
	var back struct {
		FlowID  int64  `bson:"flowId"`
		Packets int64  `bson:"packetDeltaCount"`
		Topic   string `bson:"mqttTopic"`
	}
	require.NoError(t, bson.Unmarshal(raw, &back))
	require.Equal(t, uint64(1<<63+5), uint64(back.FlowID), "same bits")
	require.EqualValues(t, 2, back.Packets, "small values unchanged")
	require.Equal(t, d.MQTTTopic, back.Topic)

	d.FlowID = 7
	mine, err := AppendBSON(nil, &d)
	require.NoError(t, err)
	std, err := bson.Marshal(&d)
	require.NoError(t, err)
	require.Equal(t, std, mine, "identical to the driver's encoding below 2^63")
}
