package tracker

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/reassembly"
)

// fuzzExchange builds a valid MQTT 3.1.1 conversation from b: each byte
// picks one exchange (QoS 0/1/2 PUBLISH either way, SUBSCRIBE, PINGREQ),
// with printable payloads. It returns the packets in wire order with
// their direction.
func fuzzExchange(b []byte) (dirs []reassembly.Direction, pkts [][]byte) {
	add := func(d reassembly.Direction, p []byte) { dirs, pkts = append(dirs, d), append(pkts, p) }
	pid := uint16(1)
	for i, c := range b {
		if len(pkts) > 400 {
			break
		}
		payload := fmt.Sprintf(`{"seq": %d, "v": "%s"}`, i, string(rune('a'+c%26)))
		from := reassembly.Direction(c >> 7 & 1)
		switch c % 6 {
		case 0:
			add(from, publish(4, 0, false, false, 0, "plant/q0", payload))
		case 1:
			add(from, publish(4, 1, false, false, pid, "plant/q1", payload))
			add(from^1, ack(0x40, pid, 4, 0))
		case 2:
			add(from, publish(4, 2, false, false, pid, "plant/q2", payload))
			add(from^1, ack(0x50, pid, 4, 0))
			add(from, ack(0x62, pid, 4, 0))
			add(from^1, ack(0x70, pid, 4, 0))
		case 3:
			add(c2s, subscribe(4, pid, "plant/#"))
			add(s2c, suback(4, pid, 1))
		case 4:
			add(c2s, pkt(0xc0))
			add(s2c, pkt(0xd0))
		case 5:
			add(from, publish(4, 0, false, true, 0, "plant/big", string(make([]byte, 0))+fmt.Sprintf("%0*d", 100+int(c)*8, i)))
		}
		pid++
	}
	return dirs, pkts
}

// runCut plays the conversation from packet start (0: with the handshake
// and CONNECT) cut into segments: cuts[i] says how packet i is sent
// (0: alone; 1: glued to the next one of its direction; 2: split in two
// segments); skip drops the first skip bytes of the first packet played.
func runCut(t *testing.T, dirs []reassembly.Direction, pkts [][]byte, start int, cuts []byte, skip int) []flow.Record {
	h := newHarness(t, Config{})
	if start == 0 {
		h.handshake()
		h.send(c2s, connect(4, "fz", ""))
		h.send(s2c, connack(4, 0))
	} else {
		h.seq = [2]uint32{7000, 9000}
	}
	var pend [2][]byte
	flush := func(d reassembly.Direction) {
		if len(pend[d]) > 0 {
			h.send(d, pend[d])
			pend[d] = nil
		}
	}
	for i := start; i < len(pkts); i++ {
		d := dirs[i]
		p := pkts[i]
		if i == start && skip > 0 && skip < len(p) {
			p = p[skip:]
		}
		flush(d ^ 1) // the other direction's bytes go first, in order
		mode := byte(0)
		if len(cuts) > 0 {
			mode = cuts[i%len(cuts)] % 3
		}
		switch mode {
		case 0:
			pend[d] = append(pend[d], p...)
			flush(d)
		case 1:
			pend[d] = append(pend[d], p...)
		case 2:
			pend[d] = append(pend[d], p[:len(p)/2]...)
			flush(d)
			pend[d] = append(pend[d], p[len(p)/2:]...)
			flush(d)
		}
	}
	flush(0)
	flush(1)
	h.asm.FlushAll(h.now.Add(time.Second))
	h.tr.FlushAll()
	return h.flows
}

// FuzzMidstream: any pickup point, any first-packet cut and any
// segmentation of a valid conversation never yields a flow the whole
// conversation does not have (up to what a midstream pickup cannot know:
// protocol level and client id, and a transaction cut at its start is an
// honest prefix), and never panics.
func FuzzMidstream(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 0x81, 0x82}, uint16(3), []byte{0, 1, 2}, uint8(5))
	f.Add([]byte{2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, uint16(1), []byte{0}, uint8(7))
	f.Add([]byte{4, 1, 4, 1, 5, 5, 0, 0}, uint16(0), []byte{1, 1, 2}, uint8(0))
	f.Fuzz(func(t *testing.T, conv []byte, start uint16, cuts []byte, skip uint8) {
		dirs, pkts := fuzzExchange(conv)
		if len(pkts) == 0 {
			return
		}
		whole := runCut(t, dirs, pkts, 0, nil, 0)
		for i := range whole {
			require.Zero(t, whole[i].Anomalies, "a valid conversation has no anomaly: %+v", whole[i])
		}
		s := int(start) % len(pkts)
		if s == 0 {
			return // not a midstream pickup
		}
		got := runCut(t, dirs, pkts, s, cuts, int(skip))
		key := func(r *flow.Record) string {
			c := *r
			c.FlowID, c.Start, c.End = 0, time.Time{}, time.Time{}
			c.SrcClientID, c.DstClientID, c.ProtocolVersion, c.IdentitySource = "", "", 0, 0
			c.Packets, c.Octets, c.EndReason, c.HasReasonCode, c.ReasonCode = 0, 0, 0, false, 0
			return fmt.Sprintf("%+v", c)
		}
		have := map[string]int{}
		for i := range whole {
			have[key(&whole[i])]++
		}
		for i := range got {
			g := &got[i]
			require.Positive(t, have[key(g)], "flow not in the whole conversation: %+v", *g)
			have[key(g)]--
		}
	})
}

// TestMidstreamSegmentations picks a conversation up at several points
// under several segmentations: flows are found, never more than the whole.
func TestMidstreamSegmentations(t *testing.T) {
	conv := []byte{0, 1, 2, 3, 4, 5, 0x81, 0x82, 2, 1, 0, 4, 3, 2, 1}
	dirs, pkts := fuzzExchange(conv)
	whole := runCut(t, dirs, pkts, 0, nil, 0)
	for _, cuts := range [][]byte{{0}, {1}, {2}, {0, 1, 2}} {
		for _, start := range []int{1, 5, 9} {
			got := runCut(t, dirs, pkts, start, cuts, 3)
			require.NotEmpty(t, got, "cuts %v start %d", cuts, start)
			require.LessOrEqual(t, len(got), len(whole))
		}
	}
}
