package flow

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"
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
	raw, err := bson.Marshal(d)
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
