package reassembly

import (
	"net/netip"
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

// TestLostHoleKeepsSegmentTime: a segment held behind a hole that the
// peer's ACK proves lost is delivered with its own capture time, not the
// ACK's.
func TestLostHoleKeepsSegmentTime(t *testing.T) {
	var got []Chunk
	h := handlerFunc(func(ch Chunk) {
		got = append(got, Chunk{Time: ch.Time, Lost: ch.Lost, Data: append([]byte(nil), ch.Data...)})
	})
	a := New(Config{}, h)
	cli, srv := netip.MustParseAddrPort("10.0.0.2:40000"), netip.MustParseAddrPort("10.0.0.1:1883")
	a.AssembleAt(&Segment{Src: cli, Dst: srv, Seq: 99, SYN: true}, 1)
	a.AssembleAt(&Segment{Src: srv, Dst: cli, Seq: 499, Ack: 100, SYN: true, ACK: true}, 2)
	a.AssembleAt(&Segment{Src: cli, Dst: srv, Seq: 110, Ack: 500, ACK: true, Payload: []byte("later")}, 10) // 100..109 missing
	a.AssembleAt(&Segment{Src: srv, Dst: cli, Seq: 500, Ack: 115, ACK: true}, 20)                           // proves the hole
	require.Len(t, got, 1)
	require.Equal(t, []byte("later"), got[0].Data)
	require.Equal(t, 10, got[0].Lost)
	require.EqualValues(t, 10, got[0].Time, "its own capture time")
}

type handlerFunc func(Chunk)

func (f handlerFunc) Open(*Conn)                         {}
func (f handlerFunc) Data(_ *Conn, _ Direction, c Chunk) { f(c) }
func (f handlerFunc) Close(*Conn, CloseReason, int64)    {}
