package ipfix

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// benchMessages encodes n MQTT flow records into UDP-sized messages (the
// first carries the template).
func benchMessages(b testing.TB, n int) ([][]byte, int) {
	tm := mqttTemplate(b, nil, 256)
	flows := make([]mqttFlow, n)
	for i := range flows {
		flows[i] = sampleFlow(i)
	}
	return buildMessages(b, BuilderConfig{Transport: UDP}, tm, flows), n
}

// BenchmarkEncode encodes one MQTT flow record (18 fields, 4 variable-length
// strings) and packs it into a message.
func BenchmarkEncode(b *testing.B) {
	tm := mqttTemplate(b, nil, 256)
	bl := NewBuilder(BuilderConfig{Transport: UDP}, func([]byte) error { return nil })
	enc := NewRecordEncoder(tm)
	f := sampleFlow(1)
	b.ReportAllocs()
	for b.Loop() {
		encodeFlow(enc, tm, &f)
		rec, err := enc.Bytes()
		if err != nil {
			b.Fatal(err)
		}
		if err := bl.Add(tm, rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDecode decodes the same messages with this package and with
// goflow2's IPFIX decoder. One op decodes every message once.
func BenchmarkDecode(b *testing.B) {
	msgs, records := benchMessages(b, 1200)
	b.Run("mission", func(b *testing.B) {
		s := NewSession(Config{}, testKey)
		sink := 0
		fn := func(r Record) error {
			for i := range r.NumFields() {
				sink += len(r.Value(i).Raw)
			}
			return nil
		}
		b.SetBytes(int64(totalLen(msgs)))
		b.ReportAllocs()
		for b.Loop() {
			for _, m := range msgs {
				if err := s.Decode(m, fn); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*records)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
		_ = sink
	})
	b.Run("goflow2", func(b *testing.B) {
		ts := netflow.CreateTemplateSystem()
		sink := 0
		b.SetBytes(int64(totalLen(msgs)))
		b.ReportAllocs()
		for b.Loop() {
			for _, m := range msgs {
				var nfv9 netflow.NFv9Packet
				var pkt netflow.IPFIXPacket
				if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), ts, &nfv9, &pkt); err != nil {
					b.Fatal(err)
				}
				for _, fs := range pkt.FlowSets {
					if ds, ok := fs.(netflow.DataFlowSet); ok {
						for _, rec := range ds.Records {
							for _, v := range rec.Values {
								sink += len(v.Value.([]byte))
							}
						}
					}
				}
			}
		}
		b.ReportMetric(float64(b.N*records)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*records), "ns/record")
		_ = sink
	})
}

// BenchmarkDecodeUnderEviction measures the bookkeeping when every new
// template evicts one (a flood against a full budget): one op is one
// message with a 50-field template and a data set for it.
func BenchmarkDecodeUnderEviction(b *testing.B) {
	d := NewDecoder(Config{Budget: NewBudget(Limits{MaxSessions: 64, MaxTemplates: 256, MaxTemplateFields: 256 * 50})})
	msgs := make([][]byte, 4096)
	for i := range msgs {
		id := uint16(256 + i)
		msgs[i] = msg(uint32(i%16), 0, tmplN(id, 50), dataN(id, 50))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		k := SessionKey{Exporter: netip.AddrPortFrom(flooderIP, uint16(i%128)), Transport: UDP}
		if err := d.Decode(k, msgs[i%len(msgs)], nop); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(d.Budget().EvictionCount())/float64(b.N), "evictions/op")
}

// TestGoflow2DecodesOurMessages checks that the benchmark compares equal
// work: goflow2 sees every record and field of our messages.
func TestGoflow2DecodesOurMessages(t *testing.T) {
	msgs, records := benchMessages(t, 100)
	ts := netflow.CreateTemplateSystem()
	got := 0
	for _, m := range msgs {
		var nfv9 netflow.NFv9Packet
		var pkt netflow.IPFIXPacket
		if err := netflow.DecodeMessageVersion(bytes.NewBuffer(m), ts, &nfv9, &pkt); err != nil {
			t.Fatal(err)
		}
		for _, fs := range pkt.FlowSets {
			if ds, ok := fs.(netflow.DataFlowSet); ok {
				for _, rec := range ds.Records {
					if len(rec.Values) != 18 {
						t.Fatalf("goflow2 decoded %d fields", len(rec.Values))
					}
					got++
				}
			}
		}
	}
	if got != records {
		t.Fatalf("goflow2 decoded %d of %d records", got, records)
	}
}

func totalLen(msgs [][]byte) int {
	n := 0
	for _, m := range msgs {
		n += len(m)
	}
	return n
}
