package flow

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCorrelationText(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{nil, ""},
		{[]byte("req-42"), "req-42"},
		{[]byte{0xff, 0x00, 0x10}, "ff0010"},
		{[]byte("a\x00b"), "610062"},
		{[]byte("température"), "température"},
		{[]byte("line\nbreak"), "6c696e650a627265616b"},
		{[]byte("a b"), "a b"},
	} {
		require.Equal(t, tc.want, CorrelationText(tc.in), "%x", tc.in)
	}
}

func TestToDocumentKeepsOriginalNamesAndPrecision(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	r := Record{
		FlowID: 7, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 40000, DstPort: 1883, Protocol: 6,
		Start: start, End: start.Add(1500 * time.Microsecond), Packets: 4, Octets: 120,
		EndReason: EndOfFlow, ControlType: Publish, ProtocolVersion: 5, QoS: 2, PacketID: 9,
		ReasonCode: 0, HasReasonCode: true, Topic: "plant/temp", SrcClientID: "sensor", DstClientID: BrokerClientID,
		CorrelationData: []byte{0xff, 0xad}, CorrelationSource: CorrelationData,
	}
	d := r.ToDocument()
	require.Equal(t, "ffad", d.MQTTCorrelationData)
	require.Equal(t, start.UnixNano(), d.FlowStartNs)
	require.EqualValues(t, 1500, d.FlowDurationMicroseconds)
	require.NotNil(t, d.MQTTReasonCode)
	require.Equal(t, "end of flow", d.FlowEndReason)
	require.Equal(t, "10.0.0.1", d.SourceIPv4Address)
	require.Empty(t, d.SourceIPv6Address)

	js, err := json.Marshal(d)
	require.NoError(t, err)
	var back Document
	require.NoError(t, json.Unmarshal(js, &back))
	require.True(t, back.FlowStart.Equal(start), "JSON keeps nanoseconds")

	r.SrcAddr = netip.MustParseAddr("fd00::1")
	r.HasReasonCode = false
	d = r.ToDocument()
	require.Equal(t, "fd00::1", d.SourceIPv6Address)
	require.Empty(t, d.SourceIPv4Address)
	require.Nil(t, d.MQTTReasonCode)
}

// TestPrintableASCIIFastPath checks printable against the rune-by-rune
// definition on every single byte, on mixed strings and on random bytes.
func TestPrintableASCIIFastPath(t *testing.T) {
	var inputs [][]byte
	for c := range 256 {
		inputs = append(inputs, []byte{byte(c)}, []byte{'a', byte(c), 'b'})
	}
	inputs = append(inputs, []byte("req-0001"), []byte("héllo wörld"), []byte("tab\there"),
		[]byte("ok\u200bzero-width"), []byte("ascii then \xff"), []byte("日本語"), []byte{})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(24))
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = byte(rng.IntN(256))
			} else {
				b[i] = byte(' ' + rng.IntN(95))
			}
		}
		inputs = append(inputs, b)
	}
	for _, b := range inputs {
		require.Equal(t, printableUTF8(b), printable(b), "%q", b)
	}
}

// fullRecord sets every field of a Record.
func fullRecord() Record {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	return Record{
		FlowID: 1<<62 + 5, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 40000, DstPort: 1883, Protocol: 6,
		Start: start, End: start.Add(1500 * time.Microsecond), Packets: 4, Octets: 120, EndReason: EndLackOfResources,
		ControlType: Publish, ProtocolVersion: 5, QoS: 2, PacketID: 9, Retain: true, Dup: true,
		ReasonCode: 0x87, HasReasonCode: true, PayloadLength: 1 << 20,
		Topic: "plant/temp", TopicFilters: []string{"plant/+", "$SYS/#"}, ResponseTopic: "plant/reply",
		SrcClientID: "sensor", DstClientID: BrokerClientID, Username: "alice",
		CorrelationData: []byte{0xff, 0xad, 0x00}, CorrelationSource: CorrelationData,
		Exporter: netip.MustParseAddrPort("192.0.2.1:4739"), ObservationDomain: 7,
		Received: start.Add(3 * time.Second),
	}
}

// TestDocumentRecordRoundTrip: Record → Document → Record gives the record
// back, for every field and both address families.
func TestDocumentRecordRoundTrip(t *testing.T) {
	full := fullRecord()
	with := func(f func(r *Record)) Record {
		r := fullRecord()
		f(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		rec  Record
	}{
		{"zero", Record{}},
		{"every field, IPv4", full},
		{"IPv6", with(func(r *Record) {
			r.SrcAddr, r.DstAddr = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("2001:db8::2")
			r.Exporter = netip.MustParseAddrPort("[2001:db8::9]:4739")
		})},
		{"printable correlation data", with(func(r *Record) { r.CorrelationData = []byte("req-42") })},
		{"traceparent", with(func(r *Record) {
			r.CorrelationData, r.CorrelationSource = []byte("00f067aa0ba902b7"), CorrelationTraceparent
		})},
		{"no correlation, no reason code", with(func(r *Record) {
			r.CorrelationData, r.CorrelationSource = nil, CorrelationNone
			r.ReasonCode, r.HasReasonCode = 0, false
		})},
		{"reason code 0", with(func(r *Record) { r.ReasonCode = 0 })},
		{"subscribe", with(func(r *Record) {
			r.ControlType, r.Topic, r.TopicFilters = Subscribe, "a/+", []string{"a/+", "b/#", "c"}
		})},
		{"every end reason", with(func(r *Record) { r.EndReason = EndIdleTimeout })},
		{"no exporter, not received", with(func(r *Record) { r.Exporter, r.Received, r.ObservationDomain = netip.AddrPort{}, time.Time{}, 0 })},
		{"before 1970", with(func(r *Record) { r.Start, r.End = time.Unix(-5, 7).UTC(), time.Unix(-4, 0).UTC() })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.rec.ToDocument()
			got, err := d.Record()
			require.NoError(t, err)
			require.Equal(t, tc.rec, got)
		})
	}
	for r := range EndAnomaly + 1 {
		rec := with(func(x *Record) { x.EndReason = r })
		d := rec.ToDocument()
		got, err := d.Record()
		require.NoError(t, err)
		require.Equal(t, r, got.EndReason, "%s", r)
	}
}

// TestDocumentRecordStoredForms: documents other writers produce.
func TestDocumentRecordStoredForms(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123000000, time.UTC)
	for _, tc := range []struct {
		name string
		doc  Document
		want Record
	}{{
		// The original prototype: millisecond dates, no nanosecond twin,
		// correlation data as text only.
		name: "original prototype",
		doc: Document{SourceIPv4Address: "10.0.0.1", DestinationIPv4Address: "10.0.0.2", SourceTransportPort: 40000,
			DestinationTransportPort: 1883, Protocol: 6, FlowStart: start, FlowEnd: start.Add(time.Millisecond),
			MQTTTopic: "t", MQTTControlType: 3, MQTTSrcClientID: "c", MQTTCorrelationData: "req-1"},
		want: Record{SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), SrcPort: 40000,
			DstPort: 1883, Protocol: 6, Start: start, End: start.Add(time.Millisecond), Topic: "t",
			ControlType: Publish, SrcClientID: "c", CorrelationData: []byte("req-1")},
	}, {
		// A third-party exporter's flow as the collector stores it: no
		// MQTT names, every field it sent in ipfixFields (ignored).
		name: "third-party flow with ipfixFields",
		doc: Document{SourceIPv4Address: "10.1.0.1", DestinationIPv4Address: "10.1.0.2", SourceTransportPort: 5353,
			DestinationTransportPort: 53, Protocol: 17, FlowStart: start, FlowEnd: start.Add(time.Second),
			FlowStartNs: start.UnixNano(), FlowEndNs: start.Add(time.Second).UnixNano(), FlowDurationMicroseconds: 1e6,
			PacketDeltaCount: 2, OctetDeltaCount: 120, FlowEndReason: "unknown",
			IPFIXFields:     map[string]any{"protocolIdentifier": uint64(17), "tcpControlBits": uint64(0), "ipVersion": uint64(4)},
			ExporterAddress: "127.0.0.1:39000", ObservationDomainID: 1},
		want: Record{SrcAddr: netip.MustParseAddr("10.1.0.1"), DstAddr: netip.MustParseAddr("10.1.0.2"), SrcPort: 5353,
			DstPort: 53, Protocol: 17, Start: start, End: start.Add(time.Second), Packets: 2, Octets: 120,
			Exporter: netip.MustParseAddrPort("127.0.0.1:39000"), ObservationDomain: 1},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.doc.Record()
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestDocumentRecordErrors(t *testing.T) {
	for _, d := range []Document{
		{SourceIPv4Address: "nope"},
		{DestinationIPv6Address: "fd00::zz"},
		{ExporterAddress: "192.0.2.1"},
	} {
		_, err := d.Record()
		require.Error(t, err, "%+v", d)
		require.ErrorContains(t, err, "flow: ")
	}
}
