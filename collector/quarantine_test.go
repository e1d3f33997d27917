package collector

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/ipfix"
)

type memQuarantine struct {
	mu   sync.Mutex
	docs []map[string]any
}

func (m *memQuarantine) PutInvalid(doc map[string]any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.docs = append(m.docs, doc)
}

// TestQuarantineKeepsInvalidRecords: a record that is not a valid flow
// (MQTT control type 0) is never stored as a flow; with a quarantine it
// is handed there with its exporter, template, reason and fields.
func TestQuarantineKeepsInvalidRecords(t *testing.T) {
	reg := ipfix.NewRegistry(ipfix.DefaultMQTTPEN)
	tm, err := ipfix.NewTemplate(reg, 4243,
		ipfix.FieldSpec{ID: 8, Length: 4}, ipfix.FieldSpec{ID: 12, Length: 4}, ipfix.FieldSpec{ID: 150, Length: 4},
		ipfix.FieldSpec{PEN: ipfix.DefaultMQTTPEN, ID: ipfix.MQTTControlType, Length: 1})
	require.NoError(t, err)
	b := ipfix.MessageHeader{Version: ipfix.Version, ObservationDomainID: 7}.Append(nil)
	b = ipfix.AppendTemplateSet(b, tm)
	b = binary.BigEndian.AppendUint16(b, 4243)
	b = binary.BigEndian.AppendUint16(b, 4+13)
	b = append(b, 10, 0, 0, 1, 10, 0, 0, 2)
	b = binary.BigEndian.AppendUint32(b, uint32(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()))
	b = append(b, 0) // control type 0
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))

	for _, keep := range []bool{false, true} {
		sink, q := &memSink{}, &memQuarantine{}
		cfg := Config{Logger: zerolog.Nop()}
		if keep {
			cfg.Quarantine = q
		}
		c := New(cfg, sink)
		require.NoError(t, c.ReadIPFIX(context.Background(), bytes.NewReader(b)))
		require.Empty(t, sink.snapshot(), "never stored as a flow")
		require.EqualValues(t, 1, c.Exporters()[netip.Addr{}].InvalidRecords)
		if !keep {
			require.Empty(t, q.docs)
			continue
		}
		require.Len(t, q.docs, 1)
		d := q.docs[0]
		require.Equal(t, "bad_control_type", d["reason"])
		require.EqualValues(t, 4243, d["templateId"])
		require.EqualValues(t, 7, d["observationDomainId"])
		fields := d["fields"].(map[string]any)
		require.Equal(t, netip.MustParseAddr("10.0.0.1"), fields["sourceIPv4Address"])
		require.EqualValues(t, 0, fields["mqttControlType"])
	}
}
