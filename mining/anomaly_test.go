package mining

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

// TestProtocolAnomalyAlerts: a flow's non-benign anomalies raise one
// protocol-anomaly alert (high for packets no honest client sends), once
// per client and set within Repeat; benign ones raise none; a one-packet
// anomaly flow is no process event (no other check sees it).
func TestProtocolAnomalyAlerts(t *testing.T) {
	m, err := ReadModelFile("testdata/sample-model.json")
	require.NoError(t, err)
	base := time.Date(2026, 11, 25, 23, 0, 0, 0, time.UTC)
	rec := func(i int, a flow.Anomaly, end flow.EndReason, typ flow.ControlType) flow.Record {
		return flow.Record{FlowID: uint64(i + 1), SrcAddr: netip.MustParseAddr("127.0.0.1"), SrcPort: 50000, DstAddr: netip.MustParseAddr("127.0.0.1"),
			DstPort: 1883, Protocol: 6, Start: base.Add(time.Duration(i) * time.Millisecond), End: base.Add(time.Duration(i) * time.Millisecond),
			ControlType: typ, SrcClientID: "temperatureSensor", DstClientID: flow.BrokerClientID, IdentitySource: flow.IdentityConnect,
			Topic: "not/in/the/model", Anomalies: a, EndReason: end}
	}
	tests := []struct {
		name   string
		opts   DetectorOptions
		flows  []flow.Record
		alerts int
		sev    Severity
	}{
		{"double connect is high, and a one-packet anomaly flow is checked for nothing else",
			DetectorOptions{}, []flow.Record{rec(0, flow.AnomalyDoubleConnect, flow.EndAnomaly, flow.Publish)}, 1, SeverityHigh},
		{"a flag on a normal flow is medium", DetectorOptions{},
			[]flow.Record{rec(0, flow.AnomalyMissingMsgID, flow.EndOfFlow, flow.Connect)}, 1, SeverityMedium},
		{"benign by default", DetectorOptions{}, []flow.Record{rec(0, flow.AnomalyNonMinimalLength, flow.EndOfFlow, flow.Connect)}, 0, ""},
		{"nothing benign", DetectorOptions{BenignAnomalies: []string{}},
			[]flow.Record{rec(0, flow.AnomalyNonMinimalLength, flow.EndOfFlow, flow.Connect)}, 1, SeverityMedium},
		{"repeats suppressed", DetectorOptions{}, []flow.Record{
			rec(0, flow.AnomalyInvalidQoSLevel, flow.EndAnomaly, flow.Publish),
			rec(1, flow.AnomalyInvalidQoSLevel, flow.EndAnomaly, flow.Publish),
			rec(2, flow.AnomalyInvalidQoSLevel, flow.EndAnomaly, flow.Publish)}, 1, SeverityHigh},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDetector(m, tt.opts)
			var got []Alert
			for i := range tt.flows {
				got = append(got, d.Observe(&tt.flows[i])...)
			}
			got = append(got, d.Flush()...)
			require.Len(t, got, tt.alerts, "%+v", got)
			for _, a := range got {
				require.Equal(t, CheckProtocolAnomaly, a.Check)
				require.Equal(t, tt.sev, a.Severity)
				require.Equal(t, "temperatureSensor", a.Client)
				require.NotEmpty(t, a.Anomalies)
			}
		})
	}
}
