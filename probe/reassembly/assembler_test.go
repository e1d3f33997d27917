package reassembly

import (
	"bytes"
	"math/rand"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var (
	cli = netip.MustParseAddrPort("10.0.0.1:40000")
	srv = netip.MustParseAddrPort("10.0.0.2:1883")
	t0  = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
)

// recorder is a Handler that keeps everything it is told.
type recorder struct {
	opened  []*Conn
	streams map[*Conn]*[2]bytes.Buffer
	chunks  [2][]Chunk
	closed  []CloseReason
}

func newRecorder() *recorder { return &recorder{streams: map[*Conn]*[2]bytes.Buffer{}} }

func (r *recorder) Open(c *Conn) {
	r.opened = append(r.opened, c)
	r.streams[c] = &[2]bytes.Buffer{}
}

func (r *recorder) Data(c *Conn, dir Direction, ch Chunk) {
	if ch.Lost > 0 {
		r.streams[c][dir].WriteString(fmtGap(ch.Lost))
	}
	r.streams[c][dir].Write(ch.Data)
	ch.Data = append([]byte(nil), ch.Data...)
	r.chunks[dir] = append(r.chunks[dir], ch)
}

func (r *recorder) Close(c *Conn, reason CloseReason, ts int64) {
	r.closed = append(r.closed, reason)
}

func fmtGap(n int) string { return "<gap " + itoa(n) + ">" }

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

func (r *recorder) stream(dir Direction) string {
	if len(r.opened) == 0 {
		return ""
	}
	return r.streams[r.opened[len(r.opened)-1]][dir].String()
}

const isn = 1000
const isnSrv = 5000

func syn(a *Assembler) {
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: isn, SYN: true}, t0)
	a.Assemble(&Segment{Src: srv, Dst: cli, Seq: isnSrv, Ack: isn + 1, SYN: true, ACK: true}, t0)
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: isn + 1, Ack: isnSrv + 1, ACK: true}, t0)
}

func c2s(a *Assembler, off int, data string) {
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: isn + 1 + uint32(off), Ack: isnSrv + 1, ACK: true, Payload: []byte(data)}, t0)
}

func s2cAck(a *Assembler, ackOff int) {
	a.Assemble(&Segment{Src: srv, Dst: cli, Seq: isnSrv + 1, Ack: isn + 1 + uint32(ackOff), ACK: true}, t0)
}

func TestInOrderOutOfOrderRetransmitOverlap(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps func(a *Assembler)
		want  string
		ooo   uint64
		retx  uint64
	}{
		{"in order", func(a *Assembler) { c2s(a, 0, "hello "); c2s(a, 6, "world") }, "hello world", 0, 0},
		{"reordered", func(a *Assembler) { c2s(a, 6, "world"); c2s(a, 0, "hello ") }, "hello world", 1, 0},
		{"three reversed", func(a *Assembler) { c2s(a, 4, "ef"); c2s(a, 2, "cd"); c2s(a, 0, "ab") }, "abcdef", 2, 0},
		{"retransmission", func(a *Assembler) { c2s(a, 0, "abc"); c2s(a, 0, "abc"); c2s(a, 3, "def") }, "abcdef", 0, 3},
		{"overlap keeps first copy", func(a *Assembler) { c2s(a, 0, "abcd"); c2s(a, 2, "XXef") }, "abcdef", 0, 2},
		{"buffered overlap", func(a *Assembler) { c2s(a, 3, "def"); c2s(a, 2, "cXXg"); c2s(a, 0, "ab") }, "abcdef", 2, 3},
		{"buffered overlap spans two", func(a *Assembler) { c2s(a, 2, "c"); c2s(a, 5, "f"); c2s(a, 1, "XXdeXgh"); c2s(a, 0, "a") }, "aXcdefgh", 3, 2},
		{"duplicate early", func(a *Assembler) { c2s(a, 3, "def"); c2s(a, 3, "def"); c2s(a, 0, "abc") }, "abcdef", 2, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			a := New(Config{}, r)
			syn(a)
			tc.steps(a)
			require.Equal(t, tc.want, r.stream(ClientToServer))
			st := a.Stats()
			require.Equal(t, tc.ooo, st.OutOfOrder)
			require.Equal(t, tc.retx, st.RetransmitBytes)
			require.Zero(t, st.Gaps)
			require.Zero(t, st.BufferedBytes)
			require.False(t, r.chunks[ClientToServer][0].Midstream)
		})
	}
}

func TestGapProvenByAck(t *testing.T) {
	r := newRecorder()
	a := New(Config{}, r)
	syn(a)
	c2s(a, 0, "abc")
	c2s(a, 6, "ghi") // "def" never captured
	require.Equal(t, "abc", r.stream(ClientToServer))
	s2cAck(a, 9) // the broker got everything: the hole is lost, not late
	require.Equal(t, "abc<gap 3>ghi", r.stream(ClientToServer))
	require.Equal(t, 3, r.chunks[ClientToServer][1].Lost)
	// An ACK beyond what was captured announces the hole at once (an
	// empty chunk, so the handler knows before it reads the peer's
	// answers); data that still comes is delivered.
	s2cAck(a, 15)
	require.Equal(t, "abc<gap 3>ghi<gap 6>", r.stream(ClientToServer))
	c2s(a, 12, "mno")
	// The data chunk says how far it is from the last delivered byte (3:
	// "jkl" is lost, "mno" was only late), whatever was announced before.
	require.Equal(t, "abc<gap 3>ghi<gap 6><gap 3>mno", r.stream(ClientToServer))
	st := a.Stats()
	require.Equal(t, uint64(2), st.Gaps)
	require.Equal(t, uint64(6), st.LostBytes)
}

func TestBufferBoundForcesGap(t *testing.T) {
	r := newRecorder()
	a := New(Config{MaxBufferedDir: 8}, r)
	syn(a)
	c2s(a, 10, "12345")
	c2s(a, 15, "6789") // 9 bytes would exceed 8
	require.Equal(t, "<gap 10>123456789", r.stream(ClientToServer))
	st := a.Stats()
	require.Equal(t, uint64(1), st.BufferOverflows)
	require.Equal(t, uint64(10), st.LostBytes)
	require.Zero(t, st.BufferedBytes)
}

func TestMidstreamPickup(t *testing.T) {
	r := newRecorder()
	a := New(Config{ServerPort: func(p uint16) bool { return p == 1883 }}, r)
	// The first packet seen is the broker's answer: the client is still
	// the non-1883 side.
	a.Assemble(&Segment{Src: srv, Dst: cli, Seq: 777, Ack: 99, ACK: true, Payload: []byte("tail-of-msg")}, t0)
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: 99, Ack: 788, ACK: true, Payload: []byte("req")}, t0)
	require.Len(t, r.opened, 1)
	require.Equal(t, cli, r.opened[0].Client)
	require.Equal(t, "tail-of-msg", r.stream(ServerToClient))
	require.True(t, r.chunks[ServerToClient][0].Midstream)
	require.True(t, r.chunks[ClientToServer][0].Midstream)
	a.Assemble(&Segment{Src: srv, Dst: cli, Seq: 788, Ack: 102, ACK: true, Payload: []byte("+more")}, t0)
	require.False(t, r.chunks[ServerToClient][1].Midstream)
	require.Equal(t, uint64(2), a.Stats().Midstream)
	// Pure ACKs of unknown connections create no state.
	a.Assemble(&Segment{Src: netip.MustParseAddrPort("10.9.9.9:1"), Dst: srv, Seq: 1, Ack: 1, ACK: true}, t0)
	require.Equal(t, 1, a.Stats().Connections)
}

func TestCloseReasons(t *testing.T) {
	t.Run("fin both sides", func(t *testing.T) {
		r := newRecorder()
		a := New(Config{}, r)
		syn(a)
		c2s(a, 0, "abc")
		a.Assemble(&Segment{Src: cli, Dst: srv, Seq: isn + 4, Ack: isnSrv + 1, ACK: true, FIN: true}, t0)
		require.Empty(t, r.closed)
		a.Assemble(&Segment{Src: srv, Dst: cli, Seq: isnSrv + 1, Ack: isn + 5, ACK: true, FIN: true}, t0)
		require.Equal(t, []CloseReason{CloseFIN}, r.closed)
		require.Zero(t, a.Stats().Connections)
	})
	t.Run("fin waits for missing data", func(t *testing.T) {
		r := newRecorder()
		a := New(Config{}, r)
		syn(a)
		c2s(a, 3, "def")
		a.Assemble(&Segment{Src: cli, Dst: srv, Seq: isn + 7, Ack: isnSrv + 1, ACK: true, FIN: true}, t0)
		a.Assemble(&Segment{Src: srv, Dst: cli, Seq: isnSrv + 1, Ack: isn + 1, ACK: true, FIN: true}, t0)
		require.Empty(t, r.closed, "client data before its FIN is still missing")
		c2s(a, 0, "abc")
		require.Equal(t, "abcdef", r.stream(ClientToServer))
		require.Equal(t, []CloseReason{CloseFIN}, r.closed)
	})
	t.Run("rst flushes buffered data as gap", func(t *testing.T) {
		r := newRecorder()
		a := New(Config{}, r)
		syn(a)
		c2s(a, 2, "cd")
		a.Assemble(&Segment{Src: srv, Dst: cli, Seq: isnSrv + 1, RST: true}, t0)
		require.Equal(t, []CloseReason{CloseRST}, r.closed)
		require.Equal(t, "<gap 2>cd", r.stream(ClientToServer))
	})
	t.Run("idle by packet time", func(t *testing.T) {
		r := newRecorder()
		a := New(Config{IdleTimeout: time.Minute}, r)
		syn(a)
		a.Advance(t0.Add(59 * time.Second))
		require.Empty(t, r.closed)
		a.Advance(t0.Add(61 * time.Second))
		require.Equal(t, []CloseReason{CloseIdle}, r.closed)
	})
	t.Run("eviction of least recently active", func(t *testing.T) {
		r := newRecorder()
		a := New(Config{MaxConnections: 2}, r)
		mk := func(port uint16, ts time.Time) {
			a.Assemble(&Segment{Src: netip.AddrPortFrom(cli.Addr(), port), Dst: srv, Seq: 1, SYN: true}, ts)
		}
		mk(1, t0)
		mk(2, t0.Add(time.Second))
		mk(1, t0.Add(2*time.Second)) // retransmitted SYN: touches conn 1
		mk(3, t0.Add(3*time.Second)) // evicts conn 2
		require.Equal(t, []CloseReason{CloseEvicted}, r.closed)
		require.Equal(t, uint16(2), r.opened[1].Client.Port())
		require.Equal(t, 2, a.Stats().Connections)
		require.Equal(t, uint64(1), a.Stats().Evicted)
	})
	t.Run("port reuse with new SYN", func(t *testing.T) {
		r := newRecorder()
		a := New(Config{}, r)
		syn(a)
		a.Assemble(&Segment{Src: cli, Dst: srv, Seq: 90000, SYN: true}, t0)
		require.Equal(t, []CloseReason{CloseReused}, r.closed)
		require.Len(t, r.opened, 2)
	})
	t.Run("shutdown", func(t *testing.T) {
		r := newRecorder()
		a := New(Config{}, r)
		syn(a)
		a.FlushAll(t0)
		require.Equal(t, []CloseReason{CloseShutdown}, r.closed)
	})
}

func TestSequenceWraparound(t *testing.T) {
	r := newRecorder()
	a := New(Config{}, r)
	start := uint32(0xffff_fff0)
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: start, SYN: true}, t0)
	data := bytes.Repeat([]byte("0123456789"), 5)
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: start + 1 + 20, Payload: data[20:]}, t0)
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: start + 1, Payload: data[:20]}, t0)
	require.Equal(t, string(data), r.stream(ClientToServer))
}

// TestRandomSegmentation cuts a stream into random segments, shuffles them
// within a window, duplicates some and checks the exact stream comes out;
// then drops some and checks every delivered byte is at its true offset
// and every missing byte is reported lost.
func TestRandomSegmentation(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for iter := 0; iter < 200; iter++ {
		stream := make([]byte, 2000+rng.Intn(20000))
		rng.Read(stream)
		type seg struct{ off, n int }
		var segs []seg
		for off := 0; off < len(stream); {
			n := 1 + rng.Intn(1500)
			if off+n > len(stream) {
				n = len(stream) - off
			}
			segs = append(segs, seg{off, n})
			off += n
		}
		// Shuffle within a window of 4 and duplicate 10%.
		for i := range segs {
			j := i + rng.Intn(4)
			if j < len(segs) {
				segs[i], segs[j] = segs[j], segs[i]
			}
		}
		var sent []seg
		dropped := map[int]bool{}
		drop := iter%2 == 1
		for _, s := range segs {
			if drop && rng.Intn(10) == 0 {
				dropped[s.off] = true
				continue
			}
			sent = append(sent, s)
			if rng.Intn(10) == 0 {
				sent = append(sent, s)
			}
		}
		r := newRecorder()
		a := New(Config{}, r)
		base := rng.Uint32()
		a.Assemble(&Segment{Src: cli, Dst: srv, Seq: base, SYN: true}, t0)
		for _, s := range sent {
			a.Assemble(&Segment{Src: cli, Dst: srv, Seq: base + 1 + uint32(s.off), Payload: stream[s.off : s.off+s.n]}, t0)
		}
		a.FlushAll(t0)
		// Rebuild the stream from the chunks, offsets from Lost.
		off := 0
		lost := 0
		for _, ch := range r.chunks[ClientToServer] {
			off += ch.Lost
			lost += ch.Lost
			require.Equal(t, stream[off:off+len(ch.Data)], ch.Data, "iter %d offset %d", iter, off)
			off += len(ch.Data)
		}
		if !drop {
			require.Equal(t, len(stream), off, "iter %d", iter)
			require.Zero(t, lost)
		} else {
			var droppedBytes int
			for _, s := range segs {
				if dropped[s.off] {
					droppedBytes += s.n
				}
			}
			// Bytes after the last delivered chunk that were dropped are
			// never announced (no later data); everything else adds up.
			require.LessOrEqual(t, lost, droppedBytes)
			require.Equal(t, a.Stats().DeliveredBytes+uint64(lost), uint64(off))
		}
		require.Zero(t, a.Stats().BufferedBytes)
	}
}

func BenchmarkInOrder(b *testing.B) {
	h := nopHandler{}
	a := New(Config{}, h)
	a.Assemble(&Segment{Src: cli, Dst: srv, Seq: 0, SYN: true}, t0)
	p := make([]byte, 100)
	seg := Segment{Src: cli, Dst: srv, ACK: true, Payload: p}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		seg.Seq = 1 + uint32(i)*100
		a.Assemble(&seg, t0)
	}
}

type nopHandler struct{}

func (nopHandler) Open(*Conn)                      {}
func (nopHandler) Data(*Conn, Direction, Chunk)    {}
func (nopHandler) Close(*Conn, CloseReason, int64) {}

// FuzzAssemble feeds arbitrary segment sequences: no panic, buffers
// bounded, and every delivered chunk is contiguous with the previous one.
func FuzzAssemble(f *testing.F) {
	f.Add([]byte{0, 2, 0, 0, 5, 0, 0, 0, 16, 0, 10, 5, 0, 0, 16, 0, 0, 5})
	f.Add([]byte{1, 0x12, 0, 0, 0, 0, 0, 4, 0, 0, 0, 1, 0x10, 0, 0, 0, 9, 0, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := &contiguity{t: t}
		a := New(Config{MaxBufferedDir: 512, MaxBufferedAll: 1024, MaxConnections: 4}, r)
		payload := bytes.Repeat([]byte("x"), 300)
		ts := t0
		for len(ops) >= 6 {
			op := ops[:6]
			ops = ops[6:]
			src, dst := cli, srv
			if op[0]&1 == 1 {
				src, dst = srv, cli
			}
			src = netip.AddrPortFrom(src.Addr(), src.Port()+uint16(op[0]>>6))
			fl := op[1]
			s := Segment{Src: src, Dst: dst, Seq: uint32(op[2])<<8 | uint32(op[3]), Ack: uint32(op[4]) << 4,
				FIN: fl&1 != 0, SYN: fl&2 != 0, RST: fl&4 != 0 && fl&8 != 0, ACK: fl&16 != 0,
				Payload: payload[:int(op[5])%len(payload)]}
			ts = ts.Add(time.Duration(fl>>5) * time.Minute)
			a.Assemble(&s, ts)
			a.Advance(ts)
			if st := a.Stats(); st.BufferedBytes > 1024 || st.Connections > 4 {
				t.Fatalf("bounds exceeded: %+v", st)
			}
		}
		a.FlushAll(ts)
		if a.Stats().BufferedBytes != 0 || a.Stats().Connections != 0 {
			t.Fatal("state left after FlushAll")
		}
	})
}

type contiguity struct {
	t    *testing.T
	next map[*Conn]*[2]int
}

func (c *contiguity) Open(conn *Conn) {
	if c.next == nil {
		c.next = map[*Conn]*[2]int{}
	}
	c.next[conn] = &[2]int{}
}
func (c *contiguity) Data(conn *Conn, d Direction, ch Chunk) {
	if len(ch.Data) == 0 && ch.Lost == 0 {
		c.t.Fatal("empty chunk that announces no gap")
	}
	c.next[conn][d] += ch.Lost + len(ch.Data)
}
func (c *contiguity) Close(conn *Conn, _ CloseReason, _ int64) {
	if _, ok := c.next[conn]; !ok {
		c.t.Fatal("close of unknown connection")
	}
	delete(c.next, conn)
}
