package flow

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAnomalyNames(t *testing.T) {
	for _, tc := range []struct {
		a     Anomaly
		names []string
	}{
		{0, nil},
		{AnomalyMissingConnect, []string{"missing_connect"}},
		{AnomalyMissingPublish | AnomalyInvalidUTF8, []string{"missing_publish", "invalid_utf8"}},
		{AnomalyTrailingBytes | 1<<63, []string{"trailing_bytes", "anomaly_63"}},
		{1 << 40, []string{"anomaly_40"}},
	} {
		require.Equal(t, tc.names, tc.a.Names(), "%#x", uint64(tc.a))
		require.Equal(t, tc.a, ParseAnomalies(tc.names))
	}
	a := AnomalyDoubleConnect | AnomalyMalformedTraffic
	require.True(t, a.Has(AnomalyDoubleConnect))
	require.True(t, a.Has(a))
	require.False(t, a.Has(AnomalyDoubleConnect|AnomalyMissingPingreq))
	require.Equal(t, "double_connect,malformed_traffic", a.String())
	require.Zero(t, ParseAnomalies([]string{"nonsense", "anomaly_", "anomaly_x1", "anomaly_64", "anomaly_999"}))

	seen := map[string]bool{}
	for i, b := range AllAnomalies() {
		require.Equal(t, Anomaly(1)<<i, b)
		n := b.Names()
		require.Len(t, n, 1)
		require.NotContains(t, n[0], "anomaly_", "bit %d has a name", i)
		require.False(t, seen[n[0]], "name %s once", n[0])
		seen[n[0]] = true
	}
	// The names Suricata uses for its MQTT anomaly events.
	for _, n := range []string{"missing_connect", "missing_publish", "missing_subscribe", "missing_unsubscribe",
		"double_connect", "unintroduced_message", "invalid_qos_level", "missing_msg_id", "unassigned_msg_type",
		"too_many_transactions", "malformed_traffic"} {
		require.True(t, seen[n], n)
	}
}

// TestAnomalyDocument: mqttAnomalies is the list of names, absent from a
// clean flow's document, and reads back.
func TestAnomalyDocument(t *testing.T) {
	r := Record{ControlType: PubAck, PacketID: 9, EndReason: EndAnomaly, Anomalies: AnomalyMissingPublish}
	d := r.ToDocument()
	require.Equal(t, []string{"missing_publish"}, d.MQTTAnomalies)
	require.Equal(t, "anomaly", d.FlowEndReason)
	b, err := json.Marshal(d)
	require.NoError(t, err)
	require.Contains(t, string(b), `"mqttAnomalies":["missing_publish"]`)
	got, err := d.Record()
	require.NoError(t, err)
	require.Equal(t, AnomalyMissingPublish, got.Anomalies)
	require.Equal(t, EndAnomaly, got.EndReason)

	clean := (&Record{ControlType: Publish}).ToDocument()
	b, err = json.Marshal(clean)
	require.NoError(t, err)
	require.NotContains(t, string(b), "mqttAnomalies")
}

func BenchmarkToDocumentClean(b *testing.B) {
	r := sampleRecords()[0]
	b.ReportAllocs()
	for b.Loop() {
		_ = r.ToDocument()
	}
}
