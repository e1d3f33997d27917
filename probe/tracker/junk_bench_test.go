package tracker

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/reassembly"
)

// junkConns is the number of connections of the junk benchmark.
const junkConns = 500

// junkStream returns n bytes that look like MQTT to a resynchronisation:
// plausible first bytes and short remaining lengths, bodies that do not
// decode.
func junkStream(r *rand.Rand, n int) []byte {
	firsts := []byte{0x30, 0x32, 0x34, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xa2, 0xb0, 0xc0, 0xd0, 0xe0, 0x20, 0x10}
	b := make([]byte, 0, n)
	for len(b) < n {
		b = append(b, firsts[r.IntN(len(firsts))], byte(r.IntN(40)))
		for range r.IntN(6) {
			b = append(b, byte(r.IntN(256)))
		}
	}
	return b[:n]
}

// normalStream returns n bytes of valid MQTT 3.1.1 QoS 0 PUBLISH packets.
func normalStream(n int) []byte {
	var b []byte
	for len(b) < n {
		b = append(b, publish(4, 0, false, false, 0, "plant/sensors/temperature", `{"t": 21.5}`)...)
	}
	return b
}

// feedConns plays each connection's stream (midstream, no handshake) in
// 200-byte segments, round robin over the connections, and returns the
// bytes fed.
func feedConns(asm *reassembly.Assembler, streams [][]byte, now time.Time) int {
	const seg = 200
	n := 0
	srv := netip.MustParseAddrPort("192.0.2.1:1883")
	for off := 0; ; off += seg {
		fed := false
		for i, s := range streams {
			if off >= len(s) {
				continue
			}
			p := s[off:min(off+seg, len(s))]
			cli := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(20000+i))
			asm.Assemble(&reassembly.Segment{Src: cli, Dst: srv, Seq: 1000 + uint32(off), Payload: p, ACK: true, Ack: 1}, now)
			n += len(p)
			fed = true
		}
		if !fed {
			return n
		}
	}
}

func benchStreams(b *testing.B, streams [][]byte) {
	b.ReportAllocs()
	bytes := 0
	for b.Loop() {
		tr := New(Config{}, FlowFunc(func(*flow.Record) {}))
		asm := reassembly.New(reassembly.Config{ServerPort: func(p uint16) bool { return p == 1883 }}, tr)
		bytes += feedConns(asm, streams, time.Unix(1_800_000_000, 0))
		asm.FlushAll(time.Unix(1_800_000_100, 0))
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(bytes), "ns/B")
}

// BenchmarkResyncJunk compares MQTT-looking junk on 500 connections picked
// up midstream (every byte a resynchronisation candidate) with normal
// traffic on as many connections: the ratio of the two ns/B figures is the
// cost of junk relative to normal traffic (docs/benchmarks.md).
func BenchmarkResyncJunk(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	junk := make([][]byte, junkConns)
	normal := make([][]byte, junkConns)
	for i := range junk {
		junk[i] = junkStream(r, 16<<10)
		normal[i] = normalStream(16 << 10)
	}
	b.Run("normal", func(b *testing.B) { benchStreams(b, normal) })
	b.Run("junk", func(b *testing.B) { benchStreams(b, junk) })
}
