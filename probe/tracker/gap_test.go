package tracker

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/reassembly"
)

// TestGapEndsOpenTransactions is the regression test for a QoS 2 flow
// whose PUBREC was never captured: it used to end "end of flow" with 3 of
// its 4 packets, a complete-looking flow that is wrong. Found by replaying
// a real mosquitto capture with segments dropped (probe/rewrite_test.go).
// Now the gap ends the open transaction as it is, with flowEndReason
// "forced end", and the packets after the gap count as unmatched.
func TestGapEndsOpenTransactions(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.send(c2s, connect(5, "g", ""))
	h.send(s2c, connack(5, 0))
	h.send(c2s, publish(5, 2, false, false, 7, "q2", "x"))
	rec := ack(0x50, 7, 5, 0)
	h.seq[s2c] += uint32(len(rec))  // PUBREC never captured
	h.send(c2s, ack(0x62, 7, 5, 0)) // PUBREL
	// The client acknowledges the PUBREC: the hole is proven.
	h.asm.Assemble(&reassembly.Segment{Src: h.cli, Dst: h.srv, Seq: h.seq[c2s], Ack: h.seq[s2c], ACK: true}, h.now)
	h.send(s2c, ack(0x70, 7, 5, 0)) // PUBCOMP
	require.Len(t, h.flows, 2)
	f := h.flows[1]
	require.Equal(t, flow.Publish, f.ControlType)
	require.Equal(t, flow.EndForced, f.EndReason, "a flow that lost a packet must not end as complete")
	require.EqualValues(t, 2, f.Packets) // PUBLISH, PUBREL
	st := h.tr.Stats()
	require.EqualValues(t, 1, st.GapEnded)
}

// TestGapInsidePacketOfKnownLength loses a segment in the middle of a
// large PUBLISH whose fixed header was seen: the tracker skips exactly to
// the next packet, so a single packet after the hole is decoded at once
// (no heuristic resynchronisation needed), and the cut PUBLISH yields no
// flow.
func TestGapInsidePacketOfKnownLength(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.send(c2s, connect(5, "g", ""))
	h.send(s2c, connack(5, 0))
	big := publish(5, 0, false, false, 0, "big", string(make([]byte, 5000)))
	h.send(c2s, big[:1000])
	h.seq[c2s] += 2000 // bytes 1000..2999 of the PUBLISH never captured
	h.send(c2s, big[3000:], pkt(0xc0))
	// The broker acknowledges everything, proving the hole.
	h.asm.Assemble(&reassembly.Segment{Src: h.srv, Dst: h.cli, Seq: h.seq[s2c], Ack: h.seq[c2s], ACK: true}, h.now)
	h.send(s2c, pkt(0xd0))
	var types []flow.ControlType
	for _, f := range h.flows {
		types = append(types, f.ControlType)
	}
	require.Equal(t, []flow.ControlType{flow.Connect, flow.PingReq}, types, "CONNECT, then the PINGREQ right after the hole")
	st := h.tr.Stats()
	require.Equal(t, uint64(1), st.GapSkips)
	require.Zero(t, st.Resyncs, "no heuristic search was needed")
	require.Zero(t, st.Malformed)
	require.Equal(t, uint64(len(big)-2000), st.ResyncDropped, "the captured bytes of the cut PUBLISH")
}
