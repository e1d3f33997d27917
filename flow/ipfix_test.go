package flow

import (
	"net/netip"
	"testing"
	"time"

	"github.com/mission-ids/mission/internal/fixtures"
	"github.com/mission-ids/mission/ipfix"
	"github.com/stretchr/testify/require"
)

func sampleRecords() []Record {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	return []Record{
		{
			FlowID: 1, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			SrcPort: 40000, DstPort: 1883, Protocol: 6, Start: start, End: start.Add(2500 * time.Microsecond),
			Packets: 4, Octets: 99, EndReason: EndOfFlow, ControlType: Publish, ProtocolVersion: 5, QoS: 2, PacketID: 7,
			ReasonCode: 0x10, HasReasonCode: true, Retain: true, PayloadLength: 42, Topic: "plant/temperature",
			ResponseTopic: "plant/reply", SrcClientID: "sensor-1", DstClientID: BrokerClientID, Username: "alice", IdentitySource: IdentityConnect,
			CorrelationData: []byte{0x00, 0xff, 'x'}, CorrelationSource: CorrelationData,
		},
		{
			FlowID: 2, SrcAddr: netip.MustParseAddr("fd00::1"), DstAddr: netip.MustParseAddr("fd00::2"),
			SrcPort: 40001, DstPort: 1883, Protocol: 6, Start: start, End: start,
			Packets: 1, Octets: 20, EndReason: EndIdleTimeout, ControlType: Subscribe, ProtocolVersion: 4,
			TopicFilters: []string{"a/+", "$SYS/#"}, Topic: "a/+", SrcClientID: "c", IdentitySource: IdentityRestored,
		},
		{FlowID: 3, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), Protocol: 6,
			Start: start, End: start, Packets: 1, Octets: 2, EndReason: EndOfFlow, ControlType: PingReq,
			CorrelationData: []byte("00f067aa0ba902b7"), CorrelationSource: CorrelationTraceparent, IdentitySource: IdentityNone},
		// A flow whose packets broke MUSTs, and an anomaly flow of the
		// reserved packet type 0 with a bit a newer probe may send.
		{FlowID: 4, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), Protocol: 6,
			Start: start, End: start, Packets: 1, Octets: 9, EndReason: EndOfFlow, ControlType: Publish, QoS: 1, Topic: "a/#",
			SrcClientID: "s", IdentitySource: IdentityConnect, Anomalies: AnomalyMissingMsgID | AnomalyInvalidTopic | AnomalyUnintroducedMessage},
		{FlowID: 5, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), Protocol: 6,
			Start: start, End: start, Packets: 1, Octets: 2, EndReason: EndAnomaly, ControlType: 0,
			SrcClientID: "s", IdentitySource: IdentityConnect, Anomalies: AnomalyUnassignedMsgType | 1<<63},
	}
}

// TestIPFIXRoundTrip encodes records through the Builder and decodes the
// messages through a Session, as between probe and collector.
func TestIPFIXRoundTrip(t *testing.T) {
	for _, pen := range []uint32{ipfix.DefaultMQTTPEN, 55555} {
		enc, err := NewEncoder(pen)
		require.NoError(t, err)
		var msgs [][]byte
		b := ipfix.NewBuilder(ipfix.BuilderConfig{ObservationDomainID: 9, Transport: ipfix.UDP},
			func(m []byte) error { msgs = append(msgs, append([]byte(nil), m...)); return nil })
		for _, tm := range enc.Templates() {
			require.NoError(t, b.AddTemplate(tm))
		}
		in := sampleRecords()
		for i := range in {
			tm, rec, err := enc.Encode(&in[i])
			require.NoError(t, err)
			require.NoError(t, b.Add(tm, rec))
		}
		require.NoError(t, b.Flush())

		sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(pen)}, ipfix.SessionKey{})
		dec := NewDecoder(pen)
		var out []Record
		for _, m := range msgs {
			require.NoError(t, sess.Decode(m, func(rec ipfix.Record) error {
				var r Record
				require.True(t, dec.Decode(rec, &r))
				out = append(out, r)
				return nil
			}))
		}
		require.Len(t, out, len(in))
		for i := range in {
			want := in[i]
			want.ObservationDomain = 9
			if want.ApplicationProtocol == AppUnknown {
				want.ApplicationProtocol = AppMQTT // an MQTT template
			}
			require.True(t, want.Start.Equal(out[i].Start))
			require.True(t, want.End.Equal(out[i].End))
			out[i].Start, out[i].End = want.Start, want.End
			require.Equal(t, want, out[i], "record %d, pen %d", i, pen)
		}
	}
}

func TestEncodeAllocatesNothing(t *testing.T) {
	enc, err := NewEncoder(ipfix.DefaultMQTTPEN)
	require.NoError(t, err)
	recs := sampleRecords()
	_, _, _ = enc.Encode(&recs[0])
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := enc.Encode(&recs[0]); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs)
}

func TestDecodeOriginalPrototypeRecord(t *testing.T) {
	msg := fixtures.OriginalMISSIONMessage()
	// The collector may be configured with another PEN: 9999 still decodes.
	for _, pen := range []uint32{ipfix.DefaultMQTTPEN, 55555} {
		sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(pen)}, ipfix.SessionKey{})
		dec := NewDecoder(pen)
		var got []Record
		require.NoError(t, sess.Decode(msg, func(rec ipfix.Record) error {
			var r Record
			require.True(t, dec.Decode(rec, &r))
			got = append(got, r)
			return nil
		}))
		require.Len(t, got, 1)
		r := got[0]
		require.Equal(t, netip.MustParseAddr("192.168.1.20"), r.SrcAddr)
		require.Equal(t, uint16(51000), r.SrcPort)
		require.Equal(t, netip.MustParseAddr("192.168.1.2"), r.DstAddr)
		require.Equal(t, uint16(1883), r.DstPort)
		require.Equal(t, uint8(6), r.Protocol)
		require.Equal(t, time.Date(2025, 11, 25, 10, 0, 0, 500_000_000, time.UTC), r.Start.UTC())
		require.Equal(t, 500*time.Millisecond, r.Duration())
		require.Equal(t, uint8(2), r.QoS)
		require.Equal(t, Publish, r.ControlType)
		require.Equal(t, uint16(17), r.PacketID)
		require.Equal(t, "home/livingroom/temperature", r.Topic)
		require.Equal(t, "temperatureSensor", r.SrcClientID)
		require.Equal(t, BrokerClientID, r.DstClientID)
		require.Equal(t, "6f1c2a", string(r.CorrelationData))
		require.Equal(t, CorrelationData, r.CorrelationSource)
		require.False(t, r.HasReasonCode)
		d := r.ToDocument()
		require.Equal(t, "6f1c2a", d.MQTTCorrelationData)
	}
}

func BenchmarkEncode(b *testing.B) {
	enc, _ := NewEncoder(ipfix.DefaultMQTTPEN)
	recs := sampleRecords()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, _, err := enc.Encode(&recs[0]); err != nil {
			b.Fatal(err)
		}
	}
}
