package tracker

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/reassembly"
)

// chunkRun feeds one client→broker stream and one broker→client stream,
// cut into chunks at the given sizes, through an assembler into a tracker,
// and returns the flows and counters.
func chunkRun(framerOnly bool, c2sStream, s2cStream []byte, cuts []byte) ([]flow.Record, Stats) {
	var flows []flow.Record
	var n uint64
	tr := New(Config{MaxPacketSize: 300, MaxResync: 512, FlowIDs: func() uint64 { n++; return n }},
		FlowFunc(func(r *flow.Record) { flows = append(flows, *r) }))
	tr.framerOnly = framerOnly
	asm := reassembly.New(reassembly.Config{ServerPort: func(p uint16) bool { return p == 1883 }}, tr)
	cli, srv := netip.MustParseAddrPort("192.0.2.10:50000"), netip.MustParseAddrPort("192.0.2.1:1883")
	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	asm.Assemble(&reassembly.Segment{Src: cli, Dst: srv, Seq: 99, SYN: true}, ts)
	asm.Assemble(&reassembly.Segment{Src: srv, Dst: cli, Seq: 899, Ack: 100, SYN: true, ACK: true}, ts)
	seq := [2]uint32{100, 900}
	streams := [2][]byte{c2sStream, s2cStream}
	for i := 0; len(streams[0])+len(streams[1]) > 0; i++ {
		dir := i % 2
		if len(streams[dir]) == 0 {
			dir ^= 1
		}
		size := 1 // byte by byte without cuts; 255 takes the rest of the stream
		if len(cuts) > 0 {
			size = int(cuts[i%len(cuts)]) + 1
			if size == 256 {
				size = len(streams[dir])
			}
		}
		size = min(size, len(streams[dir]))
		src, dst := cli, srv
		if dir == 1 {
			src, dst = srv, cli
		}
		ts = ts.Add(time.Millisecond)
		asm.Assemble(&reassembly.Segment{Src: src, Dst: dst, Seq: seq[dir], Payload: streams[dir][:size]}, ts)
		seq[dir] += uint32(size)
		streams[dir] = streams[dir][size:]
	}
	asm.FlushAll(ts)
	return flows, tr.Stats()
}

// FuzzWholePackets checks that decoding whole packets in place yields
// exactly what the framer yields, on any bytes cut into any chunks:
// valid sessions, oversized packets, broken headers, resynchronisation.
func FuzzWholePackets(f *testing.F) {
	var cs, sc []byte
	cs = append(cs, connect(5, "fuzz", "u")...)
	sc = append(sc, connack(5, 0)...)
	cs = append(cs, publish(5, 1, false, false, 1, "a/b", "x", propCorrelation("c-1"))...)
	sc = append(sc, ack(0x40, 1, 5, 0)...)
	cs = append(cs, publish(5, 2, false, false, 2, "a/c", string(make([]byte, 400)))...) // over MaxPacketSize
	cs = append(cs, publish(5, 0, false, false, 0, "a/d", "y", propAlias(2))...)
	cs = append(cs, 0x30, 0xff, 0xff, 0xff, 0xff) // broken remaining length
	cs = append(cs, publish(5, 0, false, false, 0, "a/e", "z")...)
	cs = append(cs, publish(5, 0, false, false, 0, "a/f", "w")...)
	sc = append(sc, publish(5, 1, false, false, 7, "d/x", "v")...)
	cs = append(cs, ack(0x40, 7, 5, 0)...)
	cs = append(cs, subscribe(5, 3, "a/#")...)
	sc = append(sc, suback(5, 3, 0)...)
	cs = append(cs, pkt(0xc0)...)
	sc = append(sc, pkt(0xd0)...)
	f.Add(cs, sc, []byte{255})
	f.Add(cs, sc, []byte{200})
	f.Add(cs, sc, []byte{3, 17, 1, 60})
	f.Add(cs, sc, []byte{})
	f.Add(cs[:40], sc, []byte{5})
	f.Fuzz(func(t *testing.T, c2sStream, s2cStream, cuts []byte) {
		if len(c2sStream)+len(s2cStream) > 4096 {
			return
		}
		want, wantStats := chunkRun(true, c2sStream, s2cStream, cuts)
		got, gotStats := chunkRun(false, c2sStream, s2cStream, cuts)
		require.Equal(t, wantStats, gotStats)
		require.Equal(t, len(want), len(got))
		// Anomaly flows included, output is bounded by the input: every
		// flow has a packet of at least two bytes.
		require.LessOrEqual(t, len(got), (len(c2sStream)+len(s2cStream))/2)
		for i := range want {
			require.Equal(t, want[i], got[i], "flow %d", i)
		}
	})
}
