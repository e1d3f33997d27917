package reassembly

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLateRetransmissionAfterClose is the regression test for a data
// segment retransmitted after its connection closed: it used to open a new
// midstream connection whose bytes the tracker turned into a duplicate
// flow (a second DISCONNECT). Found by replaying a real capture with
// duplicated segments (probe/rewrite_test.go).
func TestLateRetransmissionAfterClose(t *testing.T) {
	r := newRecorder()
	a := New(Config{}, r)
	syn(a)
	c2s(a, 0, "abc")
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: isn + 4, Ack: isnSrv + 1, ACK: true, FIN: true}, t0)
	a.Assemble(&Segment{Src: srv, Dst: cli, Seq: isnSrv + 1, Ack: isn + 5, ACK: true, FIN: true}, t0)
	require.Equal(t, []CloseReason{CloseFIN}, r.closed)
	c2s(a, 0, "abc") // late copy
	require.Len(t, r.opened, 1, "a late retransmission opened a connection")
	require.EqualValues(t, 3, a.Stats().RetransmitBytes)
	// New data on the same 4-tuple (no SYN seen) is still picked up.
	c2s(a, 10, "new")
	require.Len(t, r.opened, 2)
}
