package flow

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/ipfix"
)

// coapCase is a CoAP flow of one shape.
type coapCase struct {
	name string
	rec  Record
}

// coapRecords are CoAP flows of every shape the tracker emits
// (docs/coap.md, "Flows"), over IPv4 and IPv6, with and without every
// optional field and with case keys.
func coapRecords() []coapCase {
	start := time.Date(2026, 11, 30, 8, 0, 0, 987654321, time.UTC)
	c4, s4 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.1")
	c6, s6 := netip.MustParseAddr("2001:db8::10"), netip.MustParseAddr("2001:db8::1")
	rec := func(id uint64, src, dst netip.Addr, sport, dport uint16, pkts, octs uint64, d time.Duration, end EndReason, c CoAP) Record {
		return Record{FlowID: id, SrcAddr: src, DstAddr: dst, SrcPort: sport, DstPort: dport, Protocol: 17,
			Start: start.Add(time.Duration(id) * time.Second), End: start.Add(time.Duration(id)*time.Second + d),
			Packets: pkts, Octets: octs, EndReason: end, ApplicationProtocol: AppCoAP, CoAP: &c}
	}
	const (
		con, non, rst = 0, 1, 3
		get, post     = 1, 2
		put, del      = 3, 4
		content       = 2<<5 | 5 // 2.05
		changed       = 2<<5 | 4 // 2.04
		created       = 2<<5 | 1 // 2.01
		deleted       = 2<<5 | 2 // 2.02
		notFound      = 4<<5 | 4 // 4.04
	)
	withCase := func(r Record, key []byte) Record {
		r.CorrelationData, r.CorrelationSource = key, CorrelationCoAPOption
		return r
	}
	return []coapCase{
		{"piggybacked GET, IPv4", rec(1, c4, s4, 40001, 5683, 2, 31, 812*time.Microsecond, EndOfFlow, CoAP{
			Type: con, Code: get, MessageID: 0x1234, Token: []byte{0xca, 0xfe}, Method: get, URIHost: "plant.example",
			URIPath: "/sensors/temp", URIQuery: "unit=C&precision=2", ContentFormat: 50, HasContentFormat: true,
			ResponseCode: content, PayloadLength: 11})},
		{"separate POST, IPv6", rec(2, c6, s6, 40002, 5683, 4, 77, 35*time.Millisecond, EndOfFlow, CoAP{
			Type: con, Code: post, MessageID: 7, Token: []byte{1, 2, 3, 4, 5, 6, 7, 8}, Method: post, URIPath: "/actuators/led",
			ContentFormat: 0, HasContentFormat: true, ResponseCode: created, PayloadLength: 9})},
		{"NON PUT, IPv4", rec(3, c4, s4, 40003, 5683, 2, 40, 2*time.Millisecond, EndOfFlow, CoAP{
			Type: non, Code: put, MessageID: 0xffff, Token: []byte{0x00}, Method: put, URIPath: "/config",
			ResponseCode: changed, PayloadLength: 3})},
		{"ping, IPv6", rec(4, c6, s6, 40004, 5683, 2, 8, 100*time.Microsecond, EndOfFlow, CoAP{Type: con, MessageID: 42})},
		{"Observe registration, IPv4", rec(5, c4, s4, 40005, 5683, 2, 40, time.Millisecond, EndOfFlow, CoAP{
			Type: con, Code: get, MessageID: 100, Token: []byte{0xab}, Method: get, URIPath: "/time",
			ContentFormat: 0, HasContentFormat: true, ResponseCode: content, Observe: 0, HasObserve: true, PayloadLength: 8})},
		{"Observe notification, IPv4", rec(6, s4, c4, 5683, 40005, 2, 24, 300*time.Microsecond, EndOfFlow, CoAP{
			Type: con, Code: content, MessageID: 9000, Token: []byte{0xab}, Method: get, URIPath: "/time",
			ContentFormat: 0, HasContentFormat: true, ResponseCode: content, Observe: 1 << 23, HasObserve: true, PayloadLength: 8})},
		{"NON Observe notification, IPv6", rec(7, s6, c6, 5683, 40007, 1, 20, 0, EndOfFlow, CoAP{
			Type: non, Code: content, MessageID: 9001, Token: []byte{0xab, 0xcd}, Method: get, URIPath: "/time",
			ResponseCode: content, Observe: 12, HasObserve: true, PayloadLength: 8})},
		{"Block2 download, IPv4", rec(8, c4, s4, 40008, 5683, 2, 100, time.Millisecond, EndOfFlow, CoAP{
			Type: con, Code: get, MessageID: 11, Token: []byte{0x11}, Method: get, URIPath: "/big",
			ContentFormat: 0, HasContentFormat: true, ResponseCode: content, Block: 3<<4 | 8 | 2, BlockOption: Block2, PayloadLength: 64})},
		{"Block1 upload, last block, IPv6", rec(9, c6, s6, 40009, 5683, 2, 100, time.Millisecond, EndOfFlow, CoAP{
			Type: con, Code: put, MessageID: 12, Token: []byte{0x12}, Method: put, URIPath: "/big",
			ResponseCode: changed, Block: 63<<4 | 6, BlockOption: Block1, PayloadLength: 1024})},
		{"4.04 with retransmissions, IPv4", rec(10, c4, s4, 40010, 5683, 4, 80, 6*time.Second, EndOfFlow, CoAP{
			Type: con, Code: get, MessageID: 13, Token: []byte{0x13}, Method: get, URIPath: "/nothing/here",
			ResponseCode: notFound, Retransmissions: 2})},
		{"DELETE reset, IPv6", rec(11, c6, s6, 40011, 5683, 2, 20, time.Millisecond, EndOfFlow, CoAP{
			Type: con, Code: del, MessageID: 14, Method: del, URIPath: "/dyn"})},
		// No token, path, content format, Observe, block or response: an
		// unanswered request ended by the idle timeout.
		{"absent optional fields, IPv4", rec(12, c4, s4, 40012, 5683, 1, 4, 0, EndIdleTimeout, CoAP{
			Type: con, Code: get, MessageID: 15, Method: get})},
		{"forced end, every field zero, IPv6", rec(13, c6, s6, 0, 0, 0, 0, 0, EndForced, CoAP{})},
		{"RST type, IPv4", rec(14, c4, s4, 40014, 5683, 1, 4, 0, EndAnomaly, CoAP{Type: rst, MessageID: 16})},
		{"case key, printable, IPv4", withCase(rec(15, c4, s4, 40015, 5683, 2, 40, time.Millisecond, EndOfFlow, CoAP{
			Type: con, Code: get, MessageID: 17, Token: []byte{0x15}, Method: get, URIPath: "/sensors/temp",
			ResponseCode: content, PayloadLength: 4}), []byte("case-0001"))},
		{"case key, binary, notification, IPv6", withCase(rec(16, s6, c6, 5683, 40016, 1, 20, 0, EndOfFlow, CoAP{
			Type: non, Code: content, MessageID: 18, Token: []byte{0x16}, Method: get, URIPath: "/time",
			ResponseCode: content, Observe: 3, HasObserve: true, PayloadLength: 8}), []byte{0x00, 0xff, 0x10})},
		{"case key, lack of resources, IPv4", withCase(rec(17, c4, s4, 40017, 5683, 1, 12, 0, EndLackOfResources, CoAP{
			Type: non, Code: post, MessageID: 19, Method: post, URIPath: "/log"}), []byte(strings.Repeat("k", 300)))},
	}
}

// ipfixRoundTrip encodes recs as the probe does (flow templates, Builder)
// and decodes them as the collector does (Session, Decoder); it returns
// the decoded records and the template id of each.
func ipfixRoundTrip(t *testing.T, pen uint32, tr ipfix.Transport, recs []Record) ([]Record, []uint16) {
	t.Helper()
	enc, err := NewEncoder(pen)
	require.NoError(t, err)
	var msgs [][]byte
	b := ipfix.NewBuilder(ipfix.BuilderConfig{ObservationDomainID: 9, Transport: tr},
		func(m []byte) error { msgs = append(msgs, append([]byte(nil), m...)); return nil })
	for _, tm := range enc.Templates() {
		require.NoError(t, b.AddTemplate(tm))
	}
	for i := range recs {
		tm, raw, err := enc.Encode(&recs[i])
		require.NoError(t, err)
		require.NoError(t, b.Add(tm, raw))
	}
	require.NoError(t, b.Flush())
	sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(pen)}, ipfix.SessionKey{Transport: tr})
	dec := NewDecoder(pen)
	var out []Record
	var ids []uint16
	for _, m := range msgs {
		require.NoError(t, sess.Decode(m, func(rec ipfix.Record) error {
			var r Record
			mqtt, err := dec.DecodeRecord(rec, &r, time.Time{})
			require.NoError(t, err)
			require.True(t, mqtt, "a probe's flow")
			out = append(out, r)
			ids = append(ids, rec.Template.ID)
			return nil
		}))
	}
	return out, ids
}

// TestCoAPIPFIXRoundTrip: every CoAP shape through the CoAP templates and
// back, field by field, over UDP and TCP framing and with another PEN.
func TestCoAPIPFIXRoundTrip(t *testing.T) {
	cases := coapRecords()
	recs := make([]Record, len(cases))
	for i, c := range cases {
		recs[i] = c.rec
	}
	for _, pen := range []uint32{ipfix.DefaultMQTTPEN, 55555} {
		for _, tr := range []ipfix.Transport{ipfix.UDP, ipfix.TCP} {
			out, ids := ipfixRoundTrip(t, pen, tr, recs)
			require.Len(t, out, len(cases))
			for i, c := range cases {
				want := c.rec
				want.ObservationDomain = 9
				wantID := TemplateCoAPIPv4
				if want.SrcAddr.Is6() {
					wantID = TemplateCoAPIPv6
				}
				require.Equal(t, wantID, ids[i], c.name)
				require.True(t, want.Start.Equal(out[i].Start), c.name)
				require.True(t, want.End.Equal(out[i].End), c.name)
				out[i].Start, out[i].End = want.Start, want.End
				require.Equal(t, want, out[i], "%s (pen %d, %v)", c.name, pen, tr)
			}
		}
	}
}

// TestCoAPAndMQTTInOneMessage: MQTT and CoAP flows interleaved in one
// export decode each as its own protocol.
func TestCoAPAndMQTTInOneMessage(t *testing.T) {
	var recs []Record
	mqtt := sampleRecords()
	for i, c := range coapRecords() {
		recs = append(recs, c.rec, mqtt[i%len(mqtt)])
	}
	out, ids := ipfixRoundTrip(t, ipfix.DefaultMQTTPEN, ipfix.UDP, recs)
	require.Len(t, out, len(recs))
	for i := range recs {
		if i%2 == 0 {
			require.Equal(t, AppCoAP, out[i].ApplicationProtocol)
			require.Contains(t, []uint16{TemplateCoAPIPv4, TemplateCoAPIPv6}, ids[i])
			require.Equal(t, recs[i].CoAP, out[i].CoAP)
		} else {
			require.Equal(t, AppMQTT, out[i].ApplicationProtocol)
			require.Contains(t, []uint16{TemplateIPv4, TemplateIPv6}, ids[i])
			require.Nil(t, out[i].CoAP)
			require.Equal(t, recs[i].Topic, out[i].Topic)
		}
	}
}

// TestCoAPDocumentRoundTrip: Record → Document → Record for every CoAP
// shape, with collector fields set and not.
func TestCoAPDocumentRoundTrip(t *testing.T) {
	for _, c := range coapRecords() {
		for _, collected := range []bool{false, true} {
			r := c.rec
			if collected {
				r.Exporter, r.ObservationDomain = netip.MustParseAddrPort("[2001:db8::9]:4739"), 3
				r.Received = r.End.Add(3 * time.Millisecond)
			}
			d := r.ToDocument()
			require.True(t, d.IsCoAP(), c.name)
			got, err := d.Record()
			require.NoError(t, err, c.name)
			require.Equal(t, r, got, c.name)
		}
	}
}

// TestCoAPDocumentFields: the stored names and values of CoAP documents,
// written out by hand.
func TestCoAPDocumentFields(t *testing.T) {
	cases := coapRecords()
	byName := map[string]Record{}
	for _, c := range cases {
		byName[c.name] = c.rec
	}
	for _, tc := range []struct {
		name string
		want map[string]any // JSON line fields (a subset)
		none []string       // fields the line must not have
	}{
		{"piggybacked GET, IPv4", map[string]any{
			"applicationProtocol": "coap", "protocol": 17.0, "sourceIPv4Address": "192.0.2.10", "destinationTransportPort": 5683.0,
			"coapType": "CON", "coapCode": "0.01", "coapMethod": "GET", "coapMessageId": 4660.0, "coapToken": "cafe",
			"coapUriHost": "plant.example", "coapUriPath": "/sensors/temp", "coapUriQuery": "unit=C&precision=2",
			"coapContentFormat": 50.0, "coapResponseCode": "2.05", "coapRetransmissions": 0.0, "coapPayloadLength": 11.0,
			"flowEndReason": "end of flow"},
			[]string{"coapObserve", "coapBlock", "coapBlockOption", "mqttCorrelationData", "mqttTopic", "mqttControlType", "sourceIPv6Address"}},
		{"ping, IPv6", map[string]any{"coapType": "CON", "coapCode": "0.00", "coapMessageId": 42.0, "sourceIPv6Address": "2001:db8::10"},
			[]string{"coapMethod", "coapToken", "coapUriPath", "coapResponseCode", "coapContentFormat", "sourceIPv4Address"}},
		{"Observe registration, IPv4", map[string]any{"coapObserve": 0.0, "coapContentFormat": 0.0}, nil},
		{"Observe notification, IPv4", map[string]any{"coapCode": "2.05", "coapMethod": "GET", "coapObserve": 8388608.0,
			"sourceTransportPort": 5683.0, "sourceIPv4Address": "192.0.2.1"}, nil},
		{"Block2 download, IPv4", map[string]any{"coapBlock": "3/1/64", "coapBlockOption": "block2"}, nil},
		{"Block1 upload, last block, IPv6", map[string]any{"coapBlock": "63/0/1024", "coapBlockOption": "block1"}, nil},
		{"4.04 with retransmissions, IPv4", map[string]any{"coapResponseCode": "4.04", "coapRetransmissions": 2.0}, nil},
		{"absent optional fields, IPv4", map[string]any{"flowEndReason": "idle timeout"},
			[]string{"coapToken", "coapUriPath", "coapContentFormat", "coapObserve", "coapBlock", "coapResponseCode"}},
		{"case key, printable, IPv4", map[string]any{"mqttCorrelationData": "case-0001", "mqttCorrelationSource": "coapOption",
			"mqttCorrelationDataRaw": "Y2FzZS0wMDAx"}, []string{"mqttTopic", "mqttControlTypeName"}},
		{"case key, binary, notification, IPv6", map[string]any{"mqttCorrelationData": "00ff10", "mqttCorrelationSource": "coapOption",
			"mqttCorrelationDataRaw": "AP8Q"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := byName[tc.name]
			require.True(t, ok)
			var b bytes.Buffer
			require.NoError(t, NewJSONLinesWriter(&b).Write(&r))
			var m map[string]any
			require.NoError(t, json.Unmarshal(b.Bytes(), &m))
			for k, v := range tc.want {
				require.Equal(t, v, m[k], k)
			}
			for _, k := range tc.none {
				require.NotContains(t, m, k)
			}
			for k := range m {
				if strings.HasPrefix(k, "mqtt") {
					require.Contains(t, []string{"mqttCorrelationData", "mqttCorrelationDataRaw", "mqttCorrelationSource"}, k)
				}
			}
		})
	}
}

// TestCoAPJSONLinesRoundTrip: CoAP flows, mixed with MQTT ones, written
// as JSON lines and read back.
func TestCoAPJSONLinesRoundTrip(t *testing.T) {
	var in []Record
	for i, c := range coapRecords() {
		r := c.rec
		r.Exporter, r.ObservationDomain, r.Received = netip.MustParseAddrPort("192.0.2.99:4739"), 1, r.End.Add(time.Millisecond)
		in = append(in, r, sampleRecords()[i%len(sampleRecords())])
	}
	data := jsonLines(t, in)
	got, err := readAll(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, in, got)
	// What was read writes the same lines again.
	require.Equal(t, string(data), string(jsonLines(t, got)))
}

// FuzzDecodeFlows feeds arbitrary IPFIX messages through a session into
// the flow Decoder, seeded with the probe's MQTT and CoAP exports: no
// panic, and every record accepted is a valid flow that converts to a
// document and back.
func FuzzDecodeFlows(f *testing.F) {
	for _, s := range flowSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(ipfix.DefaultMQTTPEN), MaxTemplates: 16,
			MaxFieldsPerTemplate: 64, MaxBufferedBytes: 4096}, ipfix.SessionKey{Transport: ipfix.UDP})
		defer sess.Close()
		dec := NewDecoder(ipfix.DefaultMQTTPEN)
		for range 2 { // the second pass knows the templates of the first
			_ = sess.Decode(data, func(rec ipfix.Record) error {
				var r Record
				if _, err := dec.DecodeRecord(rec, &r, time.Time{}); err != nil {
					return nil
				}
				if Validate(&r, true) != ValidRecord {
					t.Fatalf("accepted an invalid record: %+v", r)
				}
				d := r.ToDocument()
				if _, err := d.Record(); err != nil {
					t.Fatalf("decoded record does not convert back: %v", err)
				}
				return nil
			})
		}
	})
}

// flowSeeds are IPFIX messages of the probe's export: MQTT and CoAP flows
// of both address families, templates included, in UDP-sized messages,
// and one message of every CoAP flow.
func flowSeeds(tb testing.TB) [][]byte {
	recs := sampleRecords()
	var coap []Record
	for _, c := range coapRecords() {
		coap = append(coap, c.rec)
	}
	return append(exportMessages(tb, ipfix.UDP, append(recs, coap...)), exportMessages(tb, ipfix.TCP, coap)...)
}

// exportMessages encodes recs as the probe does, templates first.
func exportMessages(tb testing.TB, tr ipfix.Transport, recs []Record) [][]byte {
	enc, err := NewEncoder(ipfix.DefaultMQTTPEN)
	require.NoError(tb, err)
	var msgs [][]byte
	b := ipfix.NewBuilder(ipfix.BuilderConfig{ObservationDomainID: 1, Transport: tr},
		func(m []byte) error { msgs = append(msgs, append([]byte(nil), m...)); return nil })
	for _, tm := range enc.Templates() {
		require.NoError(tb, b.AddTemplate(tm))
	}
	for i := range recs {
		tm, raw, err := enc.Encode(&recs[i])
		require.NoError(tb, err)
		require.NoError(tb, b.Add(tm, raw))
	}
	require.NoError(tb, b.Flush())
	return msgs
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite ../ipfix/testdata/fuzz/FuzzDecode/coap-export")

// TestIPFIXFuzzCorpusHasCoAP: the ipfix package's FuzzDecode corpus holds
// the probe's CoAP templates and records of both address families
// (../ipfix/testdata/fuzz/FuzzDecode/coap-export; rewrite it with
// go test ./flow -run TestIPFIXFuzzCorpusHasCoAP -update-corpus).
func TestIPFIXFuzzCorpusHasCoAP(t *testing.T) {
	path := filepath.Join("..", "ipfix", "testdata", "fuzz", "FuzzDecode", "coap-export")
	if *updateCorpus {
		var coap []Record
		for _, c := range coapRecords() {
			coap = append(coap, c.rec)
		}
		msgs := exportMessages(t, ipfix.TCP, coap)
		require.Len(t, msgs, 1)
		require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", msgs[0])), 0o644))
	}
	text, err := os.ReadFile(path)
	require.NoError(t, err, "the seed is missing: rerun with -update-corpus")
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, "go test fuzz v1", lines[0])
	lit, ok := strings.CutPrefix(lines[1], "[]byte(")
	require.True(t, ok)
	lit, ok = strings.CutSuffix(lit, ")")
	require.True(t, ok)
	unq, err := strconv.Unquote(lit)
	require.NoError(t, err)
	seed := []byte(unq)

	sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(ipfix.DefaultMQTTPEN)}, ipfix.SessionKey{Transport: ipfix.TCP})
	dec := NewDecoder(ipfix.DefaultMQTTPEN)
	var templates []uint16
	require.NoError(t, sess.Decode(seed, func(rec ipfix.Record) error {
		var r Record
		_, err := dec.DecodeRecord(rec, &r, time.Time{})
		require.NoError(t, err)
		require.Equal(t, AppCoAP, r.ApplicationProtocol)
		if !slices.Contains(templates, rec.Template.ID) {
			templates = append(templates, rec.Template.ID)
		}
		return nil
	}))
	slices.Sort(templates)
	require.Equal(t, []uint16{TemplateCoAPIPv4, TemplateCoAPIPv6}, templates, "CoAP records of both templates in the seed")
}

func TestEncodeCoAPAllocatesNothing(t *testing.T) {
	enc, err := NewEncoder(ipfix.DefaultMQTTPEN)
	require.NoError(t, err)
	for _, c := range coapRecords() {
		r := c.rec
		_, _, _ = enc.Encode(&r)
		allocs := testing.AllocsPerRun(50, func() {
			if _, _, err := enc.Encode(&r); err != nil {
				t.Fatal(err)
			}
		})
		require.Zero(t, allocs, c.name)
	}
}

// BenchmarkEncodeCoAP: a piggybacked GET with a case key.
func BenchmarkEncodeCoAP(b *testing.B) {
	enc, _ := NewEncoder(ipfix.DefaultMQTTPEN)
	r := coapRecords()[14].rec
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := enc.Encode(&r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeCoAP decodes a UDP message of CoAP data records of every
// shape (templates known), as the collector does.
func BenchmarkDecodeCoAP(b *testing.B) {
	var recs []Record
	for range 10 {
		for _, c := range coapRecords() {
			recs = append(recs, c.rec)
		}
	}
	msgs := exportMessages(b, ipfix.UDP, recs)
	require.Greater(b, len(msgs), 1)
	sess := ipfix.NewSession(ipfix.Config{Registry: ipfix.NewRegistry(ipfix.DefaultMQTTPEN)}, ipfix.SessionKey{Transport: ipfix.UDP})
	dec := NewDecoder(ipfix.DefaultMQTTPEN)
	var r Record
	n := 0
	decode := func(rec ipfix.Record) error {
		n++
		_, err := dec.DecodeRecord(rec, &r, time.Time{})
		return err
	}
	require.NoError(b, sess.Decode(msgs[0], decode)) // the templates
	n = 0
	b.ReportAllocs()
	for b.Loop() {
		if err := sess.Decode(msgs[1], decode); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/record")
}
