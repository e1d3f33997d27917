package ipfix

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRoundTripMQTTFlows(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	tm := mqttTemplate(t, reg, 300)
	flows := make([]mqttFlow, 100)
	for i := range flows {
		flows[i] = sampleFlow(i)
	}
	flows[7].Topic = strings.Repeat("t", 300) // 255 + 2-byte length prefix
	flows[8].Correlation = ""
	msgs := buildMessages(t, BuilderConfig{ObservationDomainID: 7}, tm, flows)
	require.Greater(t, len(msgs), 1, "100 records must not fit one 1472-byte message")

	s := NewSession(Config{Registry: reg}, testKey)
	var got []mqttFlow
	for _, m := range msgs {
		require.LessOrEqual(t, len(m), 1472)
		require.NoError(t, s.Decode(m, func(r Record) error {
			require.Equal(t, uint32(7), r.Header.ObservationDomainID)
			got = append(got, decodeFlow(t, r))
			return nil
		}))
	}
	require.Len(t, got, len(flows))
	for i := range flows {
		require.Equal(t, flows[i], got[i], "flow %d", i)
	}
	c := s.Counters()
	require.Equal(t, uint64(100), c.DataRecords)
	require.Zero(t, c.RecordsLost)
	require.Zero(t, c.DataSetsBuffered)
}

func TestRoundTripEveryDataType(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	// IANA elements of each abstract type.
	specs := []FieldSpec{
		{ID: 4, Length: 1},       // protocolIdentifier unsigned8
		{ID: 7, Length: 2},       // sourceTransportPort unsigned16
		{ID: 10, Length: 4},      // ingressInterface unsigned32
		{ID: 1, Length: 8},       // octetDeltaCount unsigned64
		{ID: 434, Length: 4},     // mibObjectValueInteger signed32
		{ID: 311, Length: 8},     // samplingProbability float64
		{ID: 320, Length: 4},     // absoluteError float64 sent as float32
		{ID: 276, Length: 1},     // dataRecordsReliability boolean
		{ID: 388, Length: 1},     // dot1qDEI boolean (false)
		{ID: 56, Length: 6},      // sourceMacAddress
		{ID: 95, Length: VarLen}, // applicationId octetArray
		{ID: 82, Length: VarLen}, // interfaceName string
		{ID: 150, Length: 4},     // flowStartSeconds
		{ID: 152, Length: 8},     // flowStartMilliseconds
		{ID: 154, Length: 8},     // flowStartMicroseconds
		{ID: 156, Length: 8},     // flowStartNanoseconds
		{ID: 8, Length: 4},       // sourceIPv4Address
		{ID: 27, Length: 16},     // sourceIPv6Address
		{PEN: DefaultMQTTPEN, ID: MQTTTopicFilters, Length: VarLen}, // basicList
		{ID: 292, Length: VarLen},                                   // subTemplateList: opaque
		{PEN: 4242, ID: 42, Length: 3},                              // unknown enterprise element
		{ID: 333, Length: VarLen},                                   // unknown... actually hashDigestOutput? no: 333 is boolean; see below
	}
	specs[len(specs)-1] = FieldSpec{ID: 32000, Length: 2} // unknown IANA id
	tm, err := NewTemplate(reg, 400, specs...)
	require.NoError(t, err)

	ts := time.Date(2026, 5, 6, 7, 8, 9, 987654321, time.UTC)
	mac := [6]byte{0x02, 0x42, 0xac, 0x11, 0x00, 0x02}
	stl := []byte{0xFF, 0x01, 0x2C, 0xAA, 0xBB} // semantic, template 300, payload
	enc := NewRecordEncoder(tm)
	enc.PutUint(17)
	enc.PutUint(65535)
	enc.PutUint(4000000000)
	enc.PutUint(1 << 60)
	enc.PutInt(-123456)
	enc.PutFloat(3.141592653589793)
	enc.PutFloat(-2.5)
	enc.PutBool(true)
	enc.PutBool(false)
	enc.PutMAC(mac)
	enc.PutBytes([]byte{0, 1, 2, 255})
	enc.PutString("eth0 ünïcode")
	enc.PutTime(ts)
	enc.PutTime(ts)
	enc.PutTime(ts)
	enc.PutTime(ts)
	enc.PutIP(netip.MustParseAddr("192.0.2.55"))
	enc.PutIP(netip.MustParseAddr("2001:db8::1"))
	enc.PutStringList(SemanticAllOf, DefaultMQTTPEN, MQTTTopicFilter, []string{"a/+/c", "#", strings.Repeat("x", 260)})
	enc.PutRaw(stl)
	enc.PutRaw([]byte{1, 2, 3})
	enc.PutUint(9)
	rec, err := enc.Bytes()
	require.NoError(t, err)

	var msgs [][]byte
	b := NewBuilder(BuilderConfig{Transport: TCP}, func(m []byte) error { msgs = append(msgs, append([]byte(nil), m...)); return nil })
	require.NoError(t, b.Add(tm, rec))
	require.NoError(t, b.Flush())

	s := NewSession(Config{Registry: reg}, testKey)
	n := 0
	require.NoError(t, s.Decode(msgs[0], func(r Record) error {
		n++
		v := func(i int) Value { return r.Value(i) }
		require.Equal(t, uint64(17), v(0).Uint())
		require.Equal(t, uint64(65535), v(1).Uint())
		require.Equal(t, uint64(4000000000), v(2).Uint())
		require.Equal(t, uint64(1<<60), v(3).Uint())
		require.Equal(t, int64(-123456), v(4).Int())
		require.Equal(t, 3.141592653589793, v(5).Float())
		require.Equal(t, -2.5, v(6).Float())
		require.True(t, v(7).Bool())
		require.False(t, v(8).Bool())
		require.Equal(t, false, v(8).Any())
		require.Equal(t, net.HardwareAddr(mac[:]), v(9).MAC())
		require.Equal(t, []byte{0, 1, 2, 255}, v(10).Bytes())
		require.Equal(t, "eth0 ünïcode", v(11).String())
		require.Equal(t, ts.Truncate(time.Second), v(12).Time())
		require.Equal(t, ts.Truncate(time.Millisecond), v(13).Time())
		require.Equal(t, ts.Truncate(time.Microsecond), v(14).Time().Truncate(time.Microsecond))
		require.InDelta(t, 0, v(14).Time().Sub(ts.Truncate(time.Microsecond)), float64(time.Microsecond))
		require.Equal(t, ts, v(15).Time())
		require.Equal(t, netip.MustParseAddr("192.0.2.55"), v(16).IP())
		require.Equal(t, netip.MustParseAddr("2001:db8::1"), v(17).IP())
		l, err := v(18).BasicList()
		require.NoError(t, err)
		require.Equal(t, SemanticAllOf, l.Semantic)
		require.Equal(t, FieldSpec{PEN: DefaultMQTTPEN, ID: MQTTTopicFilter, Length: VarLen}, l.Element)
		require.Equal(t, []string{"a/+/c", "#", strings.Repeat("x", 260)}, l.Strings())
		require.Equal(t, []any{"a/+/c", "#", strings.Repeat("x", 260)}, v(18).Any())
		require.Equal(t, stl, v(19).Bytes())
		require.Equal(t, "subTemplateList", v(19).Field.Element.Name)
		require.Equal(t, "e4242_f42", v(20).Field.Element.Name)
		require.Equal(t, []byte{1, 2, 3}, v(20).Any())
		require.Equal(t, "f32000", v(21).Field.Element.Name)
		m := r.Map()
		require.Equal(t, uint64(17), m["protocolIdentifier"])
		require.Equal(t, "eth0 ünïcode", m["interfaceName"])
		require.Equal(t, ts, m["flowStartNanoseconds"])
		require.Equal(t, netip.MustParseAddr("2001:db8::1"), m["sourceIPv6Address"])
		return nil
	}))
	require.Equal(t, 1, n)
}

func TestRoundTripOptionsTemplate(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	opt, err := NewOptionsTemplate(reg, 500, 1,
		FieldSpec{ID: 144, Length: 4}, // scope: exportingProcessId
		FieldSpec{ID: 41, Length: 8},  // exportedMessageTotalCount
		FieldSpec{ID: 42, Length: 8},  // exportedFlowRecordTotalCount
		FieldSpec{ID: 160, Length: 8}, // systemInitTimeMilliseconds
	)
	require.NoError(t, err)
	data := mqttTemplate(t, reg, 256)
	var msgs [][]byte
	b := NewBuilder(BuilderConfig{Transport: TCP, ObservationDomainID: 1}, func(m []byte) error {
		msgs = append(msgs, append([]byte(nil), m...))
		return nil
	})
	enc := NewRecordEncoder(opt)
	init := time.UnixMilli(1700000000123).UTC()
	enc.PutUint(99)
	enc.PutUint(5)
	enc.PutUint(1234)
	enc.PutTime(init)
	rec, err := enc.Bytes()
	require.NoError(t, err)
	require.NoError(t, b.Add(opt, rec))
	f := sampleFlow(1)
	fenc := NewRecordEncoder(data)
	encodeFlow(fenc, data, &f)
	rec, err = fenc.Bytes()
	require.NoError(t, err)
	require.NoError(t, b.Add(data, rec))
	require.NoError(t, b.Add(opt, mustBytes(t, enc)))
	require.NoError(t, b.Flush())
	require.Len(t, msgs, 1)

	s := NewSession(Config{Registry: reg}, testKey)
	var kinds []bool
	require.NoError(t, s.Decode(msgs[0], func(r Record) error {
		kinds = append(kinds, r.Template.IsOptions())
		if r.Template.IsOptions() {
			require.Equal(t, uint16(1), r.Template.ScopeFieldCount)
			require.Equal(t, uint64(99), r.Value(0).Uint())
			require.Equal(t, init, r.Value(3).Time())
		} else {
			require.Equal(t, f, decodeFlow(t, r))
		}
		return nil
	}))
	require.Equal(t, []bool{true, false, true}, kinds)
	require.Equal(t, uint64(2), s.Counters().TemplatesAdded)
}

func mustBytes(t *testing.T, e *RecordEncoder) []byte {
	b, err := e.Bytes()
	require.NoError(t, err)
	return b
}

func TestReducedSizeEncoding(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	tm, err := NewTemplate(reg, 256,
		FieldSpec{ID: 1, Length: 4},   // octetDeltaCount unsigned64 in 4 bytes
		FieldSpec{ID: 2, Length: 2},   // packetDeltaCount in 2
		FieldSpec{ID: 6, Length: 1},   // tcpControlBits unsigned16 in 1 (softflowd does this)
		FieldSpec{ID: 434, Length: 1}, // signed32 in 1
		FieldSpec{ID: 1, Length: 3},   // 3 bytes
	)
	require.NoError(t, err)
	enc := NewRecordEncoder(tm)
	enc.PutUint(4000000000)
	enc.PutUint(513)
	enc.PutUint(0x12)
	enc.PutInt(-2)
	enc.PutUint(0x010203)
	rec := mustBytes(t, enc)
	require.Equal(t, []byte{0xEE, 0x6B, 0x28, 0x00, 0x02, 0x01, 0x12, 0xFE, 1, 2, 3}, rec)

	enc.Reset(tm)
	enc.PutUint(1 << 40) // does not fit in 4 bytes
	_, err = enc.Bytes()
	require.ErrorIs(t, err, ErrFieldMismatch)
}

func TestEncoderErrors(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	tm, err := NewTemplate(reg, 256, FieldSpec{ID: 8, Length: 4}, FieldSpec{PEN: 9999, ID: 4, Length: 5})
	require.NoError(t, err)
	enc := NewRecordEncoder(tm)
	enc.PutIP(netip.MustParseAddr("2001:db8::1"))
	_, err = enc.Bytes()
	require.ErrorIs(t, err, ErrFieldMismatch)

	enc.Reset(tm)
	enc.PutIP(netip.MustParseAddr("10.1.2.3"))
	_, err = enc.Bytes()
	require.ErrorIs(t, err, ErrFieldMismatch, "missing field")

	enc.Reset(tm)
	enc.PutIP(netip.MustParseAddr("10.1.2.3"))
	enc.PutString("ab")
	rec := mustBytes(t, enc)
	require.Equal(t, []byte{10, 1, 2, 3, 'a', 'b', 0, 0, 0}, rec, "fixed strings are NUL padded")
	enc.PutString("more")
	_, err = enc.Bytes()
	require.ErrorIs(t, err, ErrFieldMismatch, "too many values")
}

func TestRegistry(t *testing.T) {
	reg := NewRegistry(DefaultMQTTPEN)
	for id, name := range map[uint16]string{1: "octetDeltaCount", 2: "packetDeltaCount", 4: "protocolIdentifier",
		5: "ipClassOfService", 6: "tcpControlBits", 7: "sourceTransportPort", 8: "sourceIPv4Address",
		9: "sourceIPv4PrefixLength", 10: "ingressInterface", 11: "destinationTransportPort", 12: "destinationIPv4Address",
		13: "destinationIPv4PrefixLength", 14: "egressInterface", 15: "ipNextHopIPv4Address", 16: "bgpSourceAsNumber",
		17: "bgpDestinationAsNumber", 21: "flowEndSysUpTime", 22: "flowStartSysUpTime", 27: "sourceIPv6Address",
		28: "destinationIPv6Address", 29: "sourceIPv6PrefixLength", 30: "destinationIPv6PrefixLength",
		32: "icmpTypeCodeIPv4", 56: "sourceMacAddress", 57: "postDestinationMacAddress", 58: "vlanId", 59: "postVlanId",
		60: "ipVersion", 61: "flowDirection", 62: "ipNextHopIPv6Address", 80: "destinationMacAddress",
		81: "postSourceMacAddress", 89: "forwardingStatus", 130: "exporterIPv4Address", 131: "exporterIPv6Address",
		136: "flowEndReason", 139: "icmpTypeCodeIPv6", 144: "exportingProcessId", 149: "observationDomainId",
		150: "flowStartSeconds", 151: "flowEndSeconds", 152: "flowStartMilliseconds", 153: "flowEndMilliseconds",
		154: "flowStartMicroseconds", 155: "flowEndMicroseconds", 156: "flowStartNanoseconds", 157: "flowEndNanoseconds",
		160: "systemInitTimeMilliseconds", 161: "flowDurationMilliseconds", 162: "flowDurationMicroseconds"} {
		e, ok := reg.Lookup(0, id)
		require.True(t, ok, "id %d", id)
		require.Equal(t, name, e.Name)
		require.Equal(t, id, e.ID)
	}
	for id, name := range map[uint16]string{1: "mqttQoS", 2: "mqttControlType", 3: "mqttPacketId", 4: "mqttTopic",
		5: "mqttSrcClientId", 6: "mqttDstClientId", 7: "mqttCorrelationData", 8: "mqttProtocolVersion",
		9: "mqttReasonCode", 10: "mqttRetain", 11: "mqttDup", 12: "mqttPayloadLength", 13: "mqttTopicFilters",
		14: "mqttCorrelationDataRaw", 15: "mqttCorrelationSource", 16: "mqttUsername", 17: "mqttResponseTopic"} {
		e, ok := reg.Lookup(9999, id)
		require.True(t, ok)
		require.Equal(t, name, e.Name)
		require.Equal(t, uint32(9999), e.PEN)
		_, ok = reg.Lookup(1234, id)
		require.False(t, ok, "MQTT elements live only under the configured PEN")
	}
	custom := NewRegistry(55555)
	e, ok := custom.Lookup(55555, MQTTTopic)
	require.True(t, ok)
	require.Equal(t, "mqttTopic", e.Name)
	require.Equal(t, "e9999_f4", custom.Resolve(9999, 4).Name)
	require.Equal(t, "f32333", custom.Resolve(0, 32333).Name)
	e, ok = (*Registry)(nil).ByName("mqttTopicFilters")
	require.True(t, ok)
	require.Equal(t, TypeBasicList, e.Type)
	require.Equal(t, DefaultMQTTPEN, e.PEN)
	e, ok = reg.ByName("flowEndReason")
	require.True(t, ok)
	require.Equal(t, uint16(136), e.ID)
	require.Greater(t, len(reg.Elements()), 400)

	require.Equal(t, "req-1", string(AppendCorrelationText(nil, []byte("req-1"))))
	require.Equal(t, "00ff10", string(AppendCorrelationText(nil, []byte{0, 0xff, 0x10})))
}
