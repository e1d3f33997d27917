package collector

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/ipfix"
	"github.com/mission-ids/mission/store"
)

// benchMessages encodes realistic MQTT flow records into UDP-sized IPFIX
// messages: the template message first, then data messages.
func benchMessages(b *testing.B, n int) (tmpl []byte, data [][]byte, perMsg int) {
	enc, err := flow.NewEncoder(ipfix.DefaultMQTTPEN)
	if err != nil {
		b.Fatal(err)
	}
	var msgs [][]byte
	bl := ipfix.NewBuilder(ipfix.BuilderConfig{ObservationDomainID: 1, Transport: ipfix.UDP},
		func(m []byte) error { msgs = append(msgs, append([]byte(nil), m...)); return nil })
	for _, t := range enc.Templates() {
		if err := bl.AddTemplate(t); err != nil {
			b.Fatal(err)
		}
	}
	if err := bl.SendTemplates(); err != nil {
		b.Fatal(err)
	}
	if err := bl.Flush(); err != nil {
		b.Fatal(err)
	}
	tmpl = msgs[0]
	msgs = msgs[1:]
	recs := records(n)
	for i := range recs {
		recs[i].SrcAddr, recs[i].DstAddr = recs[1].SrcAddr, recs[1].DstAddr // IPv4: one template
		t, rec, err := enc.Encode(&recs[i])
		if err != nil {
			b.Fatal(err)
		}
		if err := bl.Add(t, rec); err != nil {
			b.Fatal(err)
		}
	}
	if err := bl.Flush(); err != nil {
		b.Fatal(err)
	}
	return tmpl, msgs, n / len(msgs)
}

// bsonSink does what store.Writer.PutBatch does on the caller's side
// (encode each document to BSON) and counts.
type bsonSink struct {
	n   atomic.Uint64
	buf []byte
}

func (s *bsonSink) PutBatch(docs []flow.Document) error {
	for i := range docs {
		var err error
		if s.buf, err = store.AppendBSON(s.buf[:0], &docs[i]); err != nil {
			return err
		}
	}
	s.n.Add(uint64(len(docs)))
	return nil
}

// blast sends the template, then data messages for d, and returns how many
// records were sent.
func blast(b *testing.B, addr string, tmpl []byte, data [][]byte, perMsg int, d time.Duration) uint64 {
	conn, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(tmpl); err != nil {
		b.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	var sent uint64
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		if _, err := conn.Write(data[i%len(data)]); err == nil {
			sent += uint64(perMsg)
		}
	}
	return sent
}

// BenchmarkCollectorUDP measures records decoded and queued per second
// when IPFIX messages of MQTT flow records arrive over loopback UDP, for
// mission's collector and, on the same stream in the same run, a goflow2
// decoder loop. Each op is one second of streaming.
func BenchmarkCollectorUDP(b *testing.B) {
	tmpl, data, perMsg := benchMessages(b, 12000)
	const window = time.Second
	b.Run("mission", func(b *testing.B) {
		sink := &bsonSink{}
		c := New(Config{Host: "127.0.0.1", Listen: []string{"udp"}, UDPReaders: 1, Logger: zerolog.Nop()}, sink)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		addrs, err := c.Addrs(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var sent uint64
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			sent += blast(b, addrs[0].String(), tmpl, data, perMsg, window)
		}
		time.Sleep(50 * time.Millisecond)
		got := sink.n.Load()
		el := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		b.ReportMetric(float64(got)/el.Seconds(), "records/s")
		b.ReportMetric(100*float64(sent-min(sent, got))/float64(sent), "%lost")
	})
	b.Run("goflow2", func(b *testing.B) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		_ = pc.(*net.UDPConn).SetReadBuffer(16 << 20)
		var got atomic.Uint64
		go func() {
			ts := netflow.CreateTemplateSystem()
			buf := make([]byte, 65536)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				var nfv9 netflow.NFv9Packet
				var pkt netflow.IPFIXPacket
				if err := netflow.DecodeMessageVersion(bytes.NewBuffer(buf[:n]), ts, &nfv9, &pkt); err != nil {
					continue
				}
				for _, fs := range pkt.FlowSets {
					if ds, ok := fs.(netflow.DataFlowSet); ok {
						got.Add(uint64(len(ds.Records)))
					}
				}
			}
		}()
		var sent uint64
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			sent += blast(b, pc.LocalAddr().String(), tmpl, data, perMsg, window)
		}
		time.Sleep(50 * time.Millisecond)
		n := got.Load()
		el := time.Since(start)
		b.StopTimer()
		pc.Close()
		b.ReportMetric(float64(n)/el.Seconds(), "records/s")
		b.ReportMetric(100*float64(sent-min(sent, n))/float64(sent), "%lost")
	})
}

// BenchmarkCollectorTCPJournal measures messages and records decoded and
// queued per second from one TCP exporter (UDP-sized messages of MQTT flow
// records, as fast as loopback takes them), without and with the journal
// (group commit every 50 ms, the default). Each op is one second.
func BenchmarkCollectorTCPJournal(b *testing.B) {
	tmpl, data, perMsg := benchMessages(b, 12000)
	for _, journal := range []bool{false, true} {
		name := map[bool]string{false: "journal=off", true: "journal=on"}[journal]
		b.Run(name, func(b *testing.B) {
			sink := &bsonSink{}
			cfg := Config{Host: "127.0.0.1", Listen: []string{"tcp"}, Logger: zerolog.Nop()}
			if journal {
				j, err := OpenJournal(JournalConfig{Dir: b.TempDir(), Logger: zerolog.Nop()})
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				cfg.Journal = j
			}
			c := New(cfg, sink)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			addrs, err := c.Addrs(ctx)
			if err != nil {
				b.Fatal(err)
			}
			conn, err := net.Dial("tcp", addrs[0].String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Write(tmpl); err != nil {
				b.Fatal(err)
			}
			var sent uint64
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				end := time.Now().Add(time.Second)
				for k := 0; time.Now().Before(end); k++ {
					if _, err := conn.Write(data[k%len(data)]); err != nil {
						b.Fatal(err)
					}
					sent++
				}
			}
			for deadline := time.Now().Add(5 * time.Second); c.Stats().Messages < sent+1 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			conn.Close()
			cancel()
			<-done
			b.ReportMetric(float64(c.Stats().Messages)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(sink.n.Load())/el.Seconds(), "records/s")
			_ = perMsg
		})
	}
}
