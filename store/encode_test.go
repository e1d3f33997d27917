package store

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsoncodec"
	"go.mongodb.org/mongo-driver/bson/bsonrw"

	"github.com/mission-ids/mission/flow"
)

// reflectRegistry is the driver's reflection encoder with uint64 written
// as int64: the reference AppendBSON must match byte for byte.
func reflectRegistry() *bsoncodec.Registry {
	reg := bson.NewRegistry()
	reg.RegisterKindEncoder(reflect.Uint64, bsoncodec.ValueEncoderFunc(
		func(_ bsoncodec.EncodeContext, vw bsonrw.ValueWriter, v reflect.Value) error {
			return vw.WriteInt64(int64(v.Uint()))
		}))
	return reg
}

func TestAppendBSONMatchesReflection(t *testing.T) {
	recv := time.Date(2026, 11, 25, 10, 0, 1, 999999999, time.UTC)
	docs := []flow.Document{{}}
	for _, r := range append(encodeSamples(), flow.Record{FlowID: 1 << 63, Start: time.Unix(-5, 7)}) {
		r.Exporter = netip.MustParseAddrPort("192.0.2.1:4739")
		r.Received = recv
		docs = append(docs, r.ToDocument())
	}
	d := docs[1]
	d.ID = "abc"
	d.IPFIXFields = map[string]any{"tcpControlBits": uint64(26), "octetDeltaCount": uint64(1 << 63), "ipVersion": uint8(4)}
	docs = append(docs, d)
	reg := reflectRegistry()
	for i := range docs {
		want, err := bson.MarshalWithRegistry(reg, &docs[i])
		require.NoError(t, err)
		got, err := AppendBSON(nil, &docs[i])
		require.NoError(t, err)
		if len(docs[i].IPFIXFields) > 1 {
			// The driver writes a map in Go's random order; compare values.
			var w, g bson.M
			require.NoError(t, bson.Unmarshal(want, &w))
			require.NoError(t, bson.Unmarshal(got, &g))
			require.Equal(t, w, g, "document %d", i)
			again, err := AppendBSON(nil, &docs[i])
			require.NoError(t, err)
			require.Equal(t, got, again, "document %d: deterministic bytes", i)
			continue
		}
		require.Equal(t, bson.Raw(want).String(), bson.Raw(got).String(), "document %d", i)
		require.Equal(t, want, got, "document %d", i)
	}
}

func BenchmarkAppendBSON(b *testing.B) {
	r := encodeSamples()[0]
	d := r.ToDocument()
	d.ID = "0123456789abcdef0123456789abcdef"
	var buf []byte
	b.Run("AppendBSON", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			buf, _ = AppendBSON(buf[:0], &d)
		}
	})
	b.Run("bson.Marshal", func(b *testing.B) {
		reg := reflectRegistry()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			_, _ = bson.MarshalWithRegistry(reg, &d)
		}
	})
}

// encodeSamples are records exercising every field's encoding: IPv4 and
// IPv6, reason code, retain, topic filters, binary and traceparent
// correlation data.
func encodeSamples() []flow.Record {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	return []flow.Record{
		{
			FlowID: 1, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
			SrcPort: 40000, DstPort: 1883, Protocol: 6, Start: start, End: start.Add(2500 * time.Microsecond),
			Packets: 4, Octets: 99, EndReason: flow.EndOfFlow, ControlType: flow.Publish, ProtocolVersion: 5, QoS: 2, PacketID: 7,
			ReasonCode: 0x10, HasReasonCode: true, Retain: true, PayloadLength: 42, Topic: "plant/temperature",
			ResponseTopic: "plant/reply", SrcClientID: "sensor-1", DstClientID: flow.BrokerClientID, Username: "alice",
			CorrelationData: []byte{0x00, 0xff, 'x'}, CorrelationSource: flow.CorrelationData,
		},
		{
			FlowID: 2, SrcAddr: netip.MustParseAddr("fd00::1"), DstAddr: netip.MustParseAddr("fd00::2"),
			SrcPort: 40001, DstPort: 1883, Protocol: 6, Start: start, End: start,
			Packets: 1, Octets: 20, EndReason: flow.EndIdleTimeout, ControlType: flow.Subscribe, ProtocolVersion: 4,
			TopicFilters: []string{"a/+", "$SYS/#"}, Topic: "a/+", SrcClientID: "c",
		},
		{FlowID: 3, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"), Protocol: 6,
			Start: start, End: start, Packets: 1, Octets: 2, EndReason: flow.EndOfFlow, ControlType: flow.PingReq,
			CorrelationData: []byte("00f067aa0ba902b7"), CorrelationSource: flow.CorrelationTraceparent},
	}
}

// TestStoredDocumentKeepsOriginalNamesAndPrecision: the stored form keeps
// the original prototype's field names, a date plus a nanosecond twin, and
// a reason code of 0.
func TestStoredDocumentKeepsOriginalNamesAndPrecision(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	r := flow.Record{
		FlowID: 7, SrcAddr: netip.MustParseAddr("10.0.0.1"), DstAddr: netip.MustParseAddr("10.0.0.2"),
		SrcPort: 40000, DstPort: 1883, Protocol: 6,
		Start: start, End: start.Add(1500 * time.Microsecond), Packets: 4, Octets: 120,
		EndReason: flow.EndOfFlow, ControlType: flow.Publish, ProtocolVersion: 5, QoS: 2, PacketID: 9,
		ReasonCode: 0, HasReasonCode: true, Topic: "plant/temp", SrcClientID: "sensor", DstClientID: flow.BrokerClientID,
		CorrelationData: []byte{0xff, 0xad}, CorrelationSource: flow.CorrelationData,
	}
	d := r.ToDocument()
	raw, err := AppendBSON(nil, &d)
	require.NoError(t, err)
	var m bson.M
	require.NoError(t, bson.Unmarshal(raw, &m))
	for _, k := range []string{"sourceIPv4Address", "sourceTransportPort", "destinationIPv4Address", "destinationTransportPort",
		"protocol", "flowStartNanoseconds", "flowEndNanoseconds", "flowDurationMicroseconds", "mqttTopic", "mqttPacketId",
		"mqttQoS", "mqttControlType", "mqttSrcClientId", "mqttDstClientId", "mqttCorrelationData"} {
		require.Contains(t, m, k)
	}
	require.NotContains(t, m, "sourceIPv6Address")
	require.Equal(t, "ffad", m["mqttCorrelationData"])
	require.Equal(t, start.UnixNano(), m["flowStartNs"])
	require.EqualValues(t, 1500, m["flowDurationMicroseconds"])
	require.EqualValues(t, 0, m["mqttReasonCode"])
	require.Equal(t, "end of flow", m["flowEndReason"])

	// What is stored reads back as the record (dates at millisecond
	// precision, times from the nanosecond twins).
	var back flow.Document
	require.NoError(t, bson.Unmarshal(raw, &back))
	got, err := back.Record()
	require.NoError(t, err)
	require.Equal(t, r, got)
}

// TestAppendBSONAnomalies: mqttAnomalies, an array of names, encodes as
// the driver's reflection does, and is absent from a clean flow.
func TestAppendBSONAnomalies(t *testing.T) {
	reg := reflectRegistry()
	for _, a := range []flow.Anomaly{0, flow.AnomalyMissingPublish, flow.AnomalyDoubleConnect | flow.AnomalyInvalidUTF8 | 1<<63} {
		r := encodeSamples()[0]
		r.Anomalies = a
		d := r.ToDocument()
		want, err := bson.MarshalWithRegistry(reg, &d)
		require.NoError(t, err)
		got, err := AppendBSON(nil, &d)
		require.NoError(t, err)
		require.Equal(t, bson.Raw(want).String(), bson.Raw(got).String())
		require.Equal(t, want, got)
		_, err = bson.Raw(got).LookupErr("mqttAnomalies")
		require.Equal(t, a == 0, err != nil, "present iff anomalies")
		var back flow.Document
		require.NoError(t, bson.Unmarshal(got, &back))
		rec, err := back.Record()
		require.NoError(t, err)
		require.Equal(t, a, rec.Anomalies)
	}
}
