package store

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/mission-ids/mission/flow"
)

// coapSamples are CoAP flows of the shapes the probe emits: piggybacked
// and separate responses, NON, ping, Observe notification, Block2, no
// optional field, case keys (printable and binary); IPv4 and IPv6; each
// as the collector hands it on (exporter, domain, millisecond receive
// time: a BSON date).
func coapSamples() []flow.Record {
	start := time.Date(2026, 11, 30, 8, 0, 0, 987654321, time.UTC)
	c4, s4 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.1")
	c6, s6 := netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::1")
	n := 0
	rec := func(src, dst netip.Addr, sport, dport uint16, end flow.EndReason, c flow.CoAP, key []byte) flow.Record {
		n++
		r := flow.Record{FlowID: uint64(500 + n), SrcAddr: src, DstAddr: dst, SrcPort: sport, DstPort: dport, Protocol: 17,
			Start: start.Add(time.Duration(n) * 1371 * time.Microsecond), Packets: 2, Octets: uint64(20 + n), EndReason: end,
			ApplicationProtocol: flow.AppCoAP, CoAP: &c,
			Exporter: netip.MustParseAddrPort("192.0.2.10:4739"), ObservationDomain: 1}
		r.End = r.Start.Add(812 * time.Microsecond)
		r.Received = r.End.Add(3 * time.Millisecond).Truncate(time.Millisecond)
		if key != nil {
			r.CorrelationData, r.CorrelationSource = key, flow.CorrelationCoAPOption
		}
		return r
	}
	const get, post, put = 1, 2, 3
	content, changed, notFound := uint8(2<<5|5), uint8(2<<5|4), uint8(4<<5|4)
	return []flow.Record{
		rec(c4, s4, 40001, 5683, flow.EndOfFlow, flow.CoAP{Type: 0, Code: get, MessageID: 1, Token: []byte{0xca, 0xfe}, Method: get,
			URIHost: "plant.example", URIPath: "/sensors/temp", URIQuery: "unit=C", ContentFormat: 0, HasContentFormat: true,
			ResponseCode: content, PayloadLength: 5}, nil),
		rec(c6, s6, 40002, 5683, flow.EndOfFlow, flow.CoAP{Type: 0, Code: post, MessageID: 2, Token: []byte{1, 2, 3, 4}, Method: post,
			URIPath: "/actuators/led", ResponseCode: changed, Retransmissions: 1, PayloadLength: 3}, []byte("case-0001")),
		rec(c4, s4, 40003, 5683, flow.EndOfFlow, flow.CoAP{Type: 1, Code: put, MessageID: 3, Token: []byte{3}, Method: put,
			URIPath: "/config", ResponseCode: changed}, []byte{0x00, 0xff}),
		rec(c6, s6, 40004, 5683, flow.EndOfFlow, flow.CoAP{Type: 0, MessageID: 4}, nil),
		rec(s4, c4, 5683, 40005, flow.EndOfFlow, flow.CoAP{Type: 1, Code: content, MessageID: 5, Token: []byte{0xab}, Method: get,
			URIPath: "/time", ResponseCode: content, Observe: 7, HasObserve: true, PayloadLength: 8}, []byte("case-0001")),
		rec(c4, s4, 40006, 5683, flow.EndOfFlow, flow.CoAP{Type: 0, Code: get, MessageID: 6, Token: []byte{6}, Method: get,
			URIPath: "/big", ResponseCode: content, Block: 3<<4 | 8 | 2, BlockOption: flow.Block2, PayloadLength: 64}, nil),
		rec(c6, s6, 40007, 5683, flow.EndIdleTimeout, flow.CoAP{Type: 0, Code: get, MessageID: 7, Method: get}, nil),
		rec(c4, s4, 40008, 5683, flow.EndOfFlow, flow.CoAP{Type: 0, Code: get, MessageID: 8, Token: []byte{8}, Method: get,
			URIPath: "/nothing/here", ResponseCode: notFound}, nil),
	}
}

// TestAppendBSONCoAP: a CoAP document is written as the driver's
// reflection writes its CoAPView (no mqtt* field but the case key's
// correlation fields), and reads back as the record.
func TestAppendBSONCoAP(t *testing.T) {
	reg := reflectRegistry()
	for i, r := range coapSamples() {
		d := r.ToDocument()
		view := d.CoAPView()
		want, err := bson.MarshalWithRegistry(reg, &view)
		require.NoError(t, err)
		got, err := AppendBSON(nil, &d)
		require.NoError(t, err)
		require.Equal(t, bson.Raw(want).String(), bson.Raw(got).String(), "flow %d", i)
		require.Equal(t, want, got, "flow %d", i)

		elems, err := bson.Raw(got).Elements()
		require.NoError(t, err)
		for _, e := range elems {
			if k := e.Key(); strings.HasPrefix(k, "mqtt") {
				require.NotNil(t, r.CorrelationData, "flow %d: %s without a case key", i, k)
				require.Contains(t, []string{"mqttCorrelationData", "mqttCorrelationDataRaw", "mqttCorrelationSource"}, k)
			}
		}
		require.Equal(t, "coap", bson.Raw(got).Lookup("applicationProtocol").StringValue())

		var back flow.Document
		require.NoError(t, bson.Unmarshal(got, &back))
		rec, err := back.Record()
		require.NoError(t, err)
		require.Equal(t, r, rec, "flow %d", i)
	}
}

// TestStoreCoAPAndMQTT: CoAP and MQTT flows in one collection of the
// embedded database (FerretDB over the MongoDB wire protocol), selected
// apart by applicationProtocol, read back field by field, found by their
// case key and by path, with the indexes the per-protocol views use.
func TestStoreCoAPAndMQTT(t *testing.T) {
	dataDir := t.TempDir()
	coap := coapSamples()
	mqtt := testDocs(0, 5)
	var docs []flow.Document
	for _, r := range coap {
		docs = append(docs, r.ToDocument())
	}
	docs = append(docs, mqtt...)
	storeDocs(t, dataDir, docs)
	ctx := context.Background()
	r, err := OpenReader(ctx, ReaderConfig{DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	defer r.Close()

	for _, tc := range []struct {
		q    Query
		want int
	}{
		{Query{}, len(docs)},
		{Query{Protocol: "coap"}, len(coap)},
		{Query{Protocol: "mqtt"}, len(mqtt)},
		{Query{Protocol: "coap", Filter: bson.D{{Key: "coapUriPath", Value: "/time"}}}, 1},
		{Query{Protocol: "mqtt", Filter: bson.D{{Key: "coapUriPath", Value: "/time"}}}, 0},
		{Query{Filter: bson.D{{Key: "mqttCorrelationData", Value: "case-0001"}}}, 2},
		{Query{Protocol: "coap", Filter: bson.D{{Key: "mqttCorrelationSource", Value: "coapOption"}}}, 3},
		{Query{Protocol: "coap", Filter: bson.D{{Key: "mqttControlType", Value: bson.D{{Key: "$exists", Value: true}}}}}, 0},
	} {
		n, err := r.Count(ctx, tc.q)
		require.NoError(t, err)
		require.EqualValues(t, tc.want, n, "%+v", tc.q)
	}

	var got []flow.Record
	require.NoError(t, r.Records(ctx, Query{Protocol: "coap"}, func(rec *flow.Record) error {
		got = append(got, *rec)
		return nil
	}))
	require.Equal(t, coap, got, "stored CoAP flows read back, in time order")

	var mqttGot []flow.Record
	require.NoError(t, r.Records(ctx, Query{Protocol: "mqtt"}, func(rec *flow.Record) error {
		mqttGot = append(mqttGot, *rec)
		return nil
	}))
	require.Len(t, mqttGot, len(mqtt))
	for _, rec := range mqttGot {
		require.Equal(t, flow.AppUnknown, rec.ApplicationProtocol, "testDoc predates the field")
		require.Nil(t, rec.CoAP)
	}

	byPath, err := r.CountBy(ctx, Query{Protocol: "coap"}, "coapUriPath")
	require.NoError(t, err)
	paths := map[any]int64{}
	for _, fc := range byPath {
		paths[fc.Value] = fc.Count
	}
	require.Equal(t, map[any]int64{"/sensors/temp": 1, "/actuators/led": 1, "/config": 1, nil: 2, "/time": 1, "/big": 1, "/nothing/here": 1}, paths)

	// The indexes: one per indexed field, and applicationProtocol with
	// coapUriPath.
	client := testClient(t, r.URL())
	cur, err := client.Database("mission").Collection("mqtt").Indexes().List(ctx)
	require.NoError(t, err)
	var specs []struct {
		Key bson.D `bson:"key"`
	}
	require.NoError(t, cur.All(ctx, &specs))
	var keys []string
	for _, s := range specs {
		var parts []string
		for _, e := range s.Key {
			parts = append(parts, e.Key)
		}
		keys = append(keys, strings.Join(parts, "+"))
	}
	require.Contains(t, keys, "applicationProtocol+coapUriPath")
	require.Contains(t, keys, "mqttCorrelationData")
	require.True(t, slices.Contains(keys, "flowStartNanoseconds"))
	require.NoError(t, client.Disconnect(ctx))
}

// BenchmarkAppendBSONCoAP: a CoAP document with a case key.
func BenchmarkAppendBSONCoAP(b *testing.B) {
	r := coapSamples()[1]
	d := r.ToDocument()
	d.ID = "0123456789abcdef0123456789abcdef"
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendBSON(buf[:0], &d)
	}
}
