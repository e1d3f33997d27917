package ipfix

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fakeClock is an injectable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

// mqttFlow is the test form of an MQTT flow record.
type mqttFlow struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Start, End       time.Time
	Packets, Octets  uint64
	EndReason        uint8
	ControlType, QoS uint16
	PacketID         uint16
	Topic            string
	SrcClient        string
	DstClient        string
	Correlation      string
}

// mqttSpecs is the MQTT flow template used by tests and benchmarks: 18
// fields, 4 of them variable-length strings.
func mqttSpecs(reg *Registry) []FieldSpec {
	pen := reg.MQTTPEN()
	return []FieldSpec{
		{ID: 8, Length: 4},   // sourceIPv4Address
		{ID: 12, Length: 4},  // destinationIPv4Address
		{ID: 7, Length: 2},   // sourceTransportPort
		{ID: 11, Length: 2},  // destinationTransportPort
		{ID: 4, Length: 1},   // protocolIdentifier
		{ID: 156, Length: 8}, // flowStartNanoseconds
		{ID: 157, Length: 8}, // flowEndNanoseconds
		{ID: 162, Length: 4}, // flowDurationMicroseconds
		{ID: 2, Length: 8},   // packetDeltaCount
		{ID: 1, Length: 8},   // octetDeltaCount
		{ID: 136, Length: 1}, // flowEndReason
		{PEN: pen, ID: MQTTControlType, Length: 2},
		{PEN: pen, ID: MQTTQoS, Length: 2},
		{PEN: pen, ID: MQTTPacketID, Length: 2},
		{PEN: pen, ID: MQTTTopic, Length: VarLen},
		{PEN: pen, ID: MQTTSrcClientID, Length: VarLen},
		{PEN: pen, ID: MQTTDstClientID, Length: VarLen},
		{PEN: pen, ID: MQTTCorrelationData, Length: VarLen},
	}
}

func mqttTemplate(t testing.TB, reg *Registry, id uint16) *Template {
	t.Helper()
	tm, err := NewTemplate(reg, id, mqttSpecs(reg)...)
	require.NoError(t, err)
	return tm
}

func sampleFlow(i int) mqttFlow {
	start := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC).Add(time.Duration(i) * time.Millisecond)
	return mqttFlow{
		Src: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), Dst: netip.MustParseAddr("10.0.1.1"),
		SrcPort: uint16(40000 + i), DstPort: 1883,
		Start: start, End: start.Add(1500 * time.Microsecond),
		Packets: 2, Octets: uint64(120 + i), EndReason: 3,
		ControlType: 3, QoS: 1, PacketID: uint16(i),
		Topic:       "factory/line1/sensor/temperature",
		SrcClient:   "sensor-0042",
		DstClient:   "",
		Correlation: "req-7f3a9c",
	}
}

func encodeFlow(e *RecordEncoder, t *Template, f *mqttFlow) {
	e.Reset(t)
	e.PutIP(f.Src)
	e.PutIP(f.Dst)
	e.PutUint(uint64(f.SrcPort))
	e.PutUint(uint64(f.DstPort))
	e.PutUint(6)
	e.PutTime(f.Start)
	e.PutTime(f.End)
	e.PutUint(uint64(f.End.Sub(f.Start).Microseconds()))
	e.PutUint(f.Packets)
	e.PutUint(f.Octets)
	e.PutUint(uint64(f.EndReason))
	e.PutUint(uint64(f.ControlType))
	e.PutUint(uint64(f.QoS))
	e.PutUint(uint64(f.PacketID))
	e.PutString(f.Topic)
	e.PutString(f.SrcClient)
	e.PutString(f.DstClient)
	e.PutString(f.Correlation)
}

func decodeFlow(t testing.TB, r Record) mqttFlow {
	t.Helper()
	pen := r.reg.MQTTPEN()
	get := func(p uint32, id uint16) Value {
		v, ok := r.Get(p, id)
		require.True(t, ok, "field %d/%d", p, id)
		return v
	}
	return mqttFlow{
		Src: get(0, 8).IP(), Dst: get(0, 12).IP(),
		SrcPort: uint16(get(0, 7).Uint()), DstPort: uint16(get(0, 11).Uint()),
		Start: get(0, 156).Time(), End: get(0, 157).Time(),
		Packets: get(0, 2).Uint(), Octets: get(0, 1).Uint(), EndReason: uint8(get(0, 136).Uint()),
		ControlType: uint16(get(pen, MQTTControlType).Uint()), QoS: uint16(get(pen, MQTTQoS).Uint()),
		PacketID:    uint16(get(pen, MQTTPacketID).Uint()),
		Topic:       get(pen, MQTTTopic).String(),
		SrcClient:   get(pen, MQTTSrcClientID).String(),
		DstClient:   get(pen, MQTTDstClientID).String(),
		Correlation: get(pen, MQTTCorrelationData).String(),
	}
}

// buildMessages encodes flows into messages with a Builder.
func buildMessages(t testing.TB, cfg BuilderConfig, tm *Template, flows []mqttFlow) [][]byte {
	t.Helper()
	var msgs [][]byte
	b := NewBuilder(cfg, func(m []byte) error {
		msgs = append(msgs, append([]byte(nil), m...))
		return nil
	})
	enc := NewRecordEncoder(tm)
	for i := range flows {
		encodeFlow(enc, tm, &flows[i])
		rec, err := enc.Bytes()
		require.NoError(t, err)
		require.NoError(t, b.Add(tm, rec))
	}
	require.NoError(t, b.Flush())
	return msgs
}

// decodeAll decodes msgs in a fresh UDP session and returns the records
// materialised.
func decodeAll(t testing.TB, s *Session, msgs [][]byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range msgs {
		require.NoError(t, s.Decode(m, func(r Record) error {
			out = append(out, r.Map())
			return nil
		}))
	}
	return out
}

var testKey = SessionKey{Exporter: netip.MustParseAddrPort("192.0.2.1:4739"), Transport: UDP}

// numPending counts the session's buffered data sets.
func (s *Session) numPending() int {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	n := 0
	for _, sc := range s.scopes {
		n += sc.pending.Len()
	}
	return n
}
