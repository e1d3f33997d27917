package reassembly

import (
	"net/netip"
	"time"

	"github.com/mission-ids/mission/internal/lru"
)

// Segment is the part of a TCP packet the assembler needs.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq, Ack uint32
	SYN      bool
	ACK      bool
	FIN      bool
	RST      bool
	Payload  []byte // may point into the capture buffer; copied only if buffered
}

// Assembler tracks connections and reassembles their streams.
type Assembler struct {
	cfg      Config
	h        Handler
	conns    map[connKey]*Conn
	lru      lru.List[Conn] // connections, least recently active first
	buffered int
	stats    Stats
	pool     [][]byte  // spare out-of-order buffers
	scratch  []segment // reused by bufferUncovered
	// recent holds connections by a hash of their ports; a segment's
	// connection is looked for there before the table (building the key
	// and hashing it cost more than the rest of a pure ACK's handling).
	recent [recentSize]*Conn
	// closed remembers where the streams of connections that ended by
	// FIN or RST stopped, so a late retransmission of their data opens no
	// new (midstream) connection and yields no duplicate packets.
	closed map[connKey]closedConn
}

// closedConn is the end of a connection that closed: the next sequence
// number of each endpoint's stream.
type closedConn struct {
	src  [2]netip.AddrPort
	next [2]uint32
	at   int64 // Unix ns
}

// recentSize is the number of recent-connection slots (8 KiB of pointers).
const recentSize = 1024

// recentSlot is symmetric: both directions of a connection share a slot.
// Client ports vary, so they are a good enough hash on their own.
func recentSlot(x, y netip.AddrPort) uint {
	p := uint(x.Port() ^ y.Port())
	return (p ^ p>>10) & (recentSize - 1)
}

// closedLinger is how long a closed connection is remembered (capture
// time), like TCP's TIME-WAIT; closedMax bounds the table.
const (
	closedLinger = 2 * time.Minute
	closedMax    = 65536
)

// New returns an assembler that delivers to h.
func New(cfg Config, h Handler) *Assembler {
	cfg.defaults()
	return &Assembler{cfg: cfg, h: h, conns: make(map[connKey]*Conn), closed: make(map[connKey]closedConn)}
}

// Stats returns the counters.
func (a *Assembler) Stats() Stats {
	s := a.stats
	s.Connections = len(a.conns)
	s.BufferedBytes = a.buffered
	return s
}

// Assemble processes one segment captured at ts.
func (a *Assembler) Assemble(s *Segment, ts time.Time) { a.AssembleAt(s, ts.UnixNano()) }

// AssembleAt processes one segment captured at ts (Unix nanoseconds).
func (a *Assembler) AssembleAt(s *Segment, ts int64) {
	a.stats.Segments++
	a.stats.PayloadBytes += uint64(len(s.Payload))
	slot := &a.recent[recentSlot(s.Src, s.Dst)]
	c := *slot
	var key connKey
	if c == nil || c.gone || !(c.Client == s.Src && c.Server == s.Dst || c.Client == s.Dst && c.Server == s.Src) {
		key = makeKey(s.Src, s.Dst)
		c = a.conns[key]
	} else {
		key = c.key
	}
	if c != nil && s.SYN && !s.ACK && c.isReuse(s) {
		a.release(c, CloseReused, ts)
		c = nil
	}
	if c == nil {
		// A stray ACK or FIN of a connection we no longer (or never)
		// track creates no state; a SYN or data does.
		if !s.SYN && len(s.Payload) == 0 {
			return
		}
		if s.RST {
			return
		}
		if a.lateRetransmission(key, s, ts) {
			return
		}
		c = a.open(key, s, ts)
	}
	*slot = c
	c.lastSeen = ts
	a.lru.MoveToBack(&c.lru)

	dir := ClientToServer
	if s.Src != c.Client {
		dir = ServerToClient
	}
	h := &c.half[dir]

	if s.RST {
		a.release(c, CloseRST, ts)
		return
	}

	// The peer's acknowledgement tells what the other direction delivered.
	if s.ACK {
		a.ackFromPeer(c, dir.Reverse(), s.Ack, ts)
		if c.released() {
			return
		}
	}

	seq := s.Seq
	if s.SYN {
		if !h.seen || !h.synSeen {
			h.next = seq + 1
			h.seen, h.synSeen, h.midstream = true, true, false
		}
		seq++ // SYN occupies one sequence number; TFO data follows it
	}
	if !h.seen {
		h.seen = true
		h.next = seq
		h.midstream = true
		a.stats.Midstream++
	}
	if len(s.Payload) > 0 {
		a.data(c, dir, seq, s.Payload, ts)
		if c.released() {
			return
		}
	}
	if s.FIN && !h.finSeen {
		h.finSeen = true
		h.finSeq = seq + uint32(len(s.Payload))
	}
	a.checkFinished(c, dir, ts)
}

func (c *Conn) released() bool { return c.gone }

// lateRetransmission reports whether s only repeats data of a connection
// that already closed (and counts it as retransmitted).
func (a *Assembler) lateRetransmission(key connKey, s *Segment, ts int64) bool {
	cc, ok := a.closed[key]
	if !ok || s.SYN {
		return false
	}
	if ts-cc.at > int64(closedLinger) {
		delete(a.closed, key)
		return false
	}
	for i := range cc.src {
		if cc.src[i] == s.Src && seqDiff(s.Seq+uint32(len(s.Payload)), cc.next[i]) <= 0 {
			a.stats.RetransmitBytes += uint64(len(s.Payload))
			return true
		}
	}
	return false
}

// rememberClosed notes where c's streams ended.
func (a *Assembler) rememberClosed(c *Conn, ts int64) {
	if len(a.closed) >= closedMax {
		for k, v := range a.closed { // drop expired entries, else any one
			if ts-v.at > int64(closedLinger) || len(a.closed) >= closedMax {
				delete(a.closed, k)
			}
			if len(a.closed) < closedMax*3/4 {
				break
			}
		}
	}
	a.closed[c.key] = closedConn{src: [2]netip.AddrPort{c.Client, c.Server}, next: [2]uint32{c.half[0].next, c.half[1].next}, at: ts}
}

// isReuse reports whether a SYN on a tracked 4-tuple starts a new
// connection rather than retransmitting the old SYN.
func (c *Conn) isReuse(s *Segment) bool {
	h := &c.half[ClientToServer]
	if s.Src != c.Client {
		return true
	}
	return !h.synSeen || s.Seq != h.next-1
}

func (a *Assembler) open(key connKey, s *Segment, ts int64) *Conn {
	if len(a.conns) >= a.cfg.MaxConnections {
		if oldest := a.lru.Front(); oldest != nil {
			a.release(oldest, CloseEvicted, ts)
		}
	}
	c := &Conn{key: key, lastSeen: ts}
	switch {
	case s.SYN && !s.ACK:
		c.Client, c.Server = s.Src, s.Dst
	case s.SYN && s.ACK:
		c.Client, c.Server = s.Dst, s.Src
	case a.cfg.ServerPort != nil && a.cfg.ServerPort(s.Dst.Port()):
		c.Client, c.Server = s.Src, s.Dst
	case a.cfg.ServerPort != nil && a.cfg.ServerPort(s.Src.Port()):
		c.Client, c.Server = s.Dst, s.Src
	default:
		c.Client, c.Server = s.Src, s.Dst
	}
	a.conns[key] = c
	a.lru.PushBack(&c.lru, c)
	a.stats.ConnectionsOpened++
	a.h.Open(c)
	return c
}

// data handles payload of direction dir starting at seq.
func (a *Assembler) data(c *Conn, dir Direction, seq uint32, p []byte, ts int64) {
	h := &c.half[dir]
	if h.finished {
		a.stats.RetransmitBytes += uint64(len(p))
		return
	}
	diff := seqDiff(seq, h.next)
	if diff < 0 {
		if -diff >= len(p) {
			a.stats.RetransmitBytes += uint64(len(p))
			return
		}
		a.stats.RetransmitBytes += uint64(-diff)
		p = p[-diff:]
		diff = 0
	}
	if diff == 0 {
		a.deliver(c, dir, p, ts)
		a.drain(c, dir, ts)
		return
	}
	// Early data. If the peer already acknowledged bytes at or beyond this
	// segment's start, the hole was received by the peer but never
	// captured: it is lost for us, not late.
	if h.acked && seqDiff(h.ackedTo, seq) >= 0 {
		a.skipTo(c, dir, seq, ts)
		a.deliver(c, dir, p, ts)
		a.drain(c, dir, ts)
		return
	}
	a.stats.OutOfOrder++
	if h.oooBytes+len(p) > a.cfg.MaxBufferedDir || a.buffered+len(p) > a.cfg.MaxBufferedAll {
		// No room: give up on the hole, deliver what is buffered, then
		// this segment if it still fits in sequence.
		a.stats.BufferOverflows++
		a.skipTo(c, dir, a.firstBuffered(h, seq), ts)
		a.drainLost(c, dir)
		a.data(c, dir, seq, p, ts)
		return
	}
	a.bufferUncovered(h, seq, p, ts)
}

// bufferUncovered buffers the parts of p that no buffered segment covers
// yet, so the first captured copy of every byte wins.
func (a *Assembler) bufferUncovered(h *half, seq uint32, p []byte, ts int64) {
	pieces := a.scratch[:0]
	for _, b := range h.ooo {
		if len(p) == 0 {
			break
		}
		bs, be := b.seq, b.seq+uint32(len(b.data))
		if seqDiff(be, seq) <= 0 {
			continue
		}
		if seqDiff(bs, seq+uint32(len(p))) >= 0 {
			break
		}
		if head := seqDiff(bs, seq); head > 0 {
			pieces = append(pieces, segment{seq: seq, data: p[:head]})
			p, seq = p[head:], bs
		}
		covered := min(seqDiff(be, seq), len(p))
		a.stats.RetransmitBytes += uint64(covered)
		p, seq = p[covered:], seq+uint32(covered)
	}
	if len(p) > 0 {
		pieces = append(pieces, segment{seq: seq, data: p})
	}
	for _, pc := range pieces {
		a.buffer(h, pc.seq, pc.data, ts)
	}
	clear(pieces)
	a.scratch = pieces[:0]
}

// buffer keeps a copy of an early segment, ordered by sequence number.
func (a *Assembler) buffer(h *half, seq uint32, p []byte, ts int64) {
	var b []byte
	if n := len(a.pool); n > 0 && cap(a.pool[n-1]) >= len(p) {
		b = a.pool[n-1][:len(p)]
		a.pool = a.pool[:n-1]
	} else {
		b = make([]byte, len(p))
	}
	copy(b, p)
	i := len(h.ooo)
	for i > 0 && seqDiff(h.ooo[i-1].seq, seq) > 0 {
		i--
	}
	h.ooo = append(h.ooo, segment{})
	copy(h.ooo[i+1:], h.ooo[i:])
	h.ooo[i] = segment{seq: seq, data: b, ts: ts}
	h.oooBytes += len(p)
	a.buffered += len(p)
}

func (a *Assembler) firstBuffered(h *half, fallback uint32) uint32 {
	if len(h.ooo) > 0 && seqDiff(h.ooo[0].seq, fallback) < 0 {
		return h.ooo[0].seq
	}
	return fallback
}

// drain delivers buffered segments that have become contiguous, stamped
// with ts: the capture time of the segment that filled the hole.
func (a *Assembler) drain(c *Conn, dir Direction, ts int64) { a.drainStamped(c, dir, ts, false) }

// drainLost delivers buffered segments after a hole was declared lost:
// each keeps its own capture time, when its bytes were complete.
func (a *Assembler) drainLost(c *Conn, dir Direction) { a.drainStamped(c, dir, 0, true) }

func (a *Assembler) drainStamped(c *Conn, dir Direction, ts int64, own bool) {
	h := &c.half[dir]
	for len(h.ooo) > 0 && !c.released() {
		s := h.ooo[0]
		diff := seqDiff(s.seq, h.next)
		if diff > 0 {
			return
		}
		a.popFront(h)
		at := ts
		if own || s.ts > at {
			at = s.ts
		}
		if -diff < len(s.data) {
			a.stats.RetransmitBytes += uint64(-diff)
			a.deliver(c, dir, s.data[-diff:], at)
		} else {
			a.stats.RetransmitBytes += uint64(len(s.data))
		}
		a.recycle(s.data)
	}
}

func (a *Assembler) popFront(h *half) {
	s := h.ooo[0]
	h.oooBytes -= len(s.data)
	a.buffered -= len(s.data)
	copy(h.ooo, h.ooo[1:])
	h.ooo[len(h.ooo)-1] = segment{}
	h.ooo = h.ooo[:len(h.ooo)-1]
}

func (a *Assembler) recycle(b []byte) {
	if cap(b) >= 512 && cap(b) <= 64<<10 && len(a.pool) < 1024 {
		a.pool = append(a.pool, b[:0])
	}
}

// skipTo declares the bytes from next up to seq lost.
func (a *Assembler) skipTo(c *Conn, dir Direction, seq uint32, ts int64) {
	h := &c.half[dir]
	lost := seqDiff(seq, h.next)
	if lost <= 0 {
		return
	}
	counted := lost
	if h.announcedOK {
		// Part of the hole was announced already (ackFromPeer): count
		// only the rest in the statistics.
		counted = seqDiff(seq, h.announced)
		if counted >= 0 {
			h.announcedOK = false
		}
	}
	h.next = seq
	if counted > 0 {
		a.stats.Gaps++
		a.stats.LostBytes += uint64(counted)
	}
	// The next delivery reports the whole distance from the last
	// delivered byte, announced or not: the handler's framing needs it.
	h.pendingLost(lost)
}

// pendingLost records lost bytes to report with the next chunk.
func (h *half) pendingLost(n int) { h.lost += n }

func (a *Assembler) deliver(c *Conn, dir Direction, p []byte, ts int64) {
	h := &c.half[dir]
	ch := Chunk{Data: p, Time: ts, Lost: h.lost, Midstream: h.midstream}
	h.lost = 0
	h.midstream = false
	if h.announcedOK {
		// Bytes announced lost came after all: they were late.
		if late := min(len(p), seqDiff(h.announced, h.next)); late > 0 {
			a.stats.LostBytes -= uint64(late)
		}
	}
	h.next += uint32(len(p))
	if h.announcedOK && seqDiff(h.next, h.announced) >= 0 {
		h.announcedOK = false
	}
	a.stats.DeliveredBytes += uint64(len(p))
	a.h.Data(c, dir, ch)
}

// ackFromPeer notes that the peer acknowledged dir's bytes up to ack. Bytes
// acknowledged but never captured are lost; buffered data behind that hole
// can then be delivered.
func (a *Assembler) ackFromPeer(c *Conn, dir Direction, ack uint32, ts int64) {
	h := &c.half[dir]
	if !h.seen {
		return
	}
	if !h.acked || seqDiff(ack, h.ackedTo) > 0 {
		h.ackedTo, h.acked = ack, true
	}
	switch {
	case len(h.ooo) > 0 && seqDiff(h.ooo[0].seq, ack) <= 0:
		a.skipTo(c, dir, h.ooo[0].seq, ts)
		a.drainLost(c, dir)
	case len(h.ooo) == 0 && h.finSeen && !h.finished && seqDiff(ack, h.finSeq) > 0:
		// The FIN was acknowledged: whatever is missing before it is lost.
		a.skipTo(c, dir, h.finSeq, ts)
		h.next = h.finSeq
	case len(h.ooo) == 0 && !h.finished && seqDiff(ack, h.next) > 0 && (!h.finSeen || seqDiff(ack, h.finSeq) <= 0) &&
		(!h.announcedOK || seqDiff(ack, h.announced) > 0):
		// The peer acknowledged bytes the capture has not seen: they are
		// lost (or, on a capture that reorders directions, late). Say so
		// now with an empty chunk, not with this direction's next data:
		// the handler must know before it reads the peer's packets that
		// answer what was lost. Late bytes are still delivered if they
		// come; the gap is counted once.
		from := h.next
		if h.announcedOK && seqDiff(h.announced, from) > 0 {
			from = h.announced
		}
		n := seqDiff(ack, from)
		a.stats.Gaps++
		a.stats.LostBytes += uint64(n)
		h.announced, h.announcedOK = ack, true
		a.h.Data(c, dir, Chunk{Time: ts, Lost: n})
		return
	default:
		return
	}
	a.checkFinished(c, dir, ts)
}

// checkFinished marks a direction finished once everything up to its FIN
// was delivered, and releases the connection when both are.
func (a *Assembler) checkFinished(c *Conn, dir Direction, ts int64) {
	if c.released() {
		return
	}
	h := &c.half[dir]
	if h.finSeen && !h.finished && seqDiff(h.next, h.finSeq) >= 0 {
		h.finished = true
	}
	if c.half[0].finished && c.half[1].finished {
		a.release(c, CloseFIN, ts)
	}
}

// Advance expires connections idle since before now − IdleTimeout. Call it
// with the capture time (packet timestamps, or the wall clock when idle).
func (a *Assembler) Advance(now time.Time) { a.AdvanceAt(now.UnixNano()) }

// AdvanceAt is Advance with the time in Unix nanoseconds.
func (a *Assembler) AdvanceAt(now int64) {
	limit := now - int64(a.cfg.IdleTimeout)
	for c := a.lru.Front(); c != nil && c.lastSeen < limit; c = a.lru.Front() {
		a.release(c, CloseIdle, now)
	}
}

// FlushAll releases every connection (end of capture or shutdown).
func (a *Assembler) FlushAll(now time.Time) { a.FlushAllAt(now.UnixNano()) }

// FlushAllAt is FlushAll with the time in Unix nanoseconds.
func (a *Assembler) FlushAllAt(now int64) {
	for c := a.lru.Front(); c != nil; c = a.lru.Front() {
		a.release(c, CloseShutdown, now)
	}
}

// release delivers what is buffered (announcing the holes), tells the
// handler, and forgets the connection.
func (a *Assembler) release(c *Conn, reason CloseReason, ts int64) {
	for dir := ClientToServer; dir <= ServerToClient; dir++ {
		h := &c.half[dir]
		for len(h.ooo) > 0 {
			a.skipTo(c, dir, h.ooo[0].seq, ts)
			a.drainLost(c, dir)
		}
	}
	switch reason {
	case CloseFIN:
		a.stats.ClosedFIN++
	case CloseRST:
		a.stats.ClosedRST++
	case CloseIdle:
		a.stats.ClosedIdle++
	case CloseEvicted:
		a.stats.Evicted++
	case CloseReused:
		a.stats.ClosedReused++
	case CloseShutdown:
		a.stats.ClosedShutdown++
	}
	if reason == CloseFIN || reason == CloseRST {
		a.rememberClosed(c, ts)
	}
	delete(a.conns, c.key)
	if slot := &a.recent[recentSlot(c.Client, c.Server)]; *slot == c {
		*slot = nil
	}
	a.lru.Remove(&c.lru)
	a.h.Close(c, reason, ts)
	c.gone = true
}
