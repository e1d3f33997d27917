package probe

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

type closeBuffer struct {
	bytes.Buffer
	closed bool
}

func (b *closeBuffer) Close() error { b.closed = true; return nil }

// TestJSONExporterWritesJSONLines: the exporter buffers until Flush and
// writes what flow.ReadJSONLines reads back.
func TestJSONExporterWritesJSONLines(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	in := []flow.Record{
		{FlowID: 1, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), SrcPort: 40000, DstPort: 1883,
			Protocol: 6, Start: start, End: start.Add(time.Millisecond), EndReason: flow.EndOfFlow, ControlType: flow.Publish,
			Topic: "a<b>&c", SrcClientID: "s", CorrelationData: []byte("req-1"), CorrelationSource: flow.CorrelationData},
		{FlowID: 2, SrcAddr: netip.MustParseAddr("fd00::1"), DstAddr: netip.MustParseAddr("fd00::2"), Protocol: 6,
			Start: start, End: start, EndReason: flow.EndIdleTimeout, ControlType: flow.Subscribe, TopicFilters: []string{"a/#"}},
	}
	var out closeBuffer
	e := NewJSONExporter(&out)
	require.NoError(t, e.Export(in))
	require.Zero(t, out.Len(), "buffered")
	require.NoError(t, e.Flush())
	require.Contains(t, out.String(), `"mqttTopic":"a<b>&c"`)
	var got []flow.Record
	require.NoError(t, flow.ReadJSONLines(bytes.NewReader(out.Bytes()), func(r *flow.Record) error {
		got = append(got, *r)
		return nil
	}))
	require.Equal(t, in, got)
	require.NoError(t, e.Close())
	require.True(t, out.closed)
}
