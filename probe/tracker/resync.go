package tracker

import (
	"slices"

	"github.com/mission-ids/mission/mqttparse"
	"github.com/mission-ids/mission/probe/reassembly"
)

// Resynchronisation: a direction picked up midstream, or after a gap whose
// place in the packet structure is unknown, may resume inside a packet.
// Its bytes are held until a packet boundary is proven, and while any
// direction of a connection is held both are (in capture order), so the
// packets are decoded in the order they were captured once the boundaries
// are known: requests before their answers, each packet with the capture
// time of the chunk that completed it. docs/midstream.md describes the
// proofs; in short, a candidate offset is proven by
//
//   - a chain of chainProof packets that each decode without a
//     malformation or violation, or
//   - a chain starting at a segment start whose packets end exactly at
//     segment ends twice ("segment evidence"), or
//   - the two directions agreeing: a segment holding exactly one request
//     (PINGREQ, PUBLISH QoS 1/2, SUBSCRIBE, …) answered, later in the other
//     direction, by a segment holding exactly its response with the same
//     packet identifier, or
//   - at a FIN, a chain from a segment start that ends exactly at the end
//     of the stream.
//
// Nothing else is guessed: bytes before the proven boundary, and bytes of a
// direction never proven, are counted in Stats.ResyncDropped.
//
// Work is bounded per byte: candidates are tried in order, once each; the
// walk of the current candidate is remembered between chunks, so a chunk
// costs at most chainProof header reads and decodes per rejected candidate
// plus the continuation of one walk. Memory is bounded by MaxResync bytes
// and maxHeldEvents chunks per connection.

// chainProof is the number of chained packets that prove a boundary alone.
const chainProof = 4

// maxHeldEvents bounds the chunks held per connection.
const maxHeldEvents = 4096

// agreeScan bounds the segments examined per direction for a two-direction
// agreement.
const agreeScan = 8

// mark is the end of one held chunk: its offset in the direction's hold
// space and its capture time. The first mark of a direction is the start
// of its first held chunk.
type mark struct {
	end int64
	ts  int64
}

// heldEvent is one held chunk, in capture order.
type heldEvent struct {
	dir reassembly.Direction
	end int64
}

// holdState is a direction's held bytes. Offsets are in a space that
// starts at 0 when the hold begins: buf[0] is at offset base.
type holdState struct {
	buf   []byte
	base  int64
	marks []mark
	fed   int64 // bytes before fed were decoded or dropped
	late  int64 // chunks ending at or before late are replayed "resuming"
	// proof search (syncing directions): the candidate boundary and the
	// walk of its chain so far.
	cand    int64
	walk    int64
	walkN   int
	walkAl  int
	started bool // walk state valid for cand
}

func (h *holdState) pos() int64 { return h.base + int64(len(h.buf)) }

// isMark reports whether off is a chunk boundary.
func (h *holdState) isMark(off int64) bool {
	_, ok := slices.BinarySearchFunc(h.marks, off, func(m mark, o int64) int { return cmp64(m.end, o) })
	return ok
}

// timeAt returns the capture time of the chunk ending at off.
func (h *holdState) timeAt(off int64) int64 {
	i, _ := slices.BinarySearchFunc(h.marks, off, func(m mark, o int64) int { return cmp64(m.end, o) })
	if i >= len(h.marks) {
		i = len(h.marks) - 1
	}
	if i < 0 {
		return 0
	}
	return h.marks[i].ts
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// startSync makes a direction look for a provable packet boundary: the
// stream may resume inside a packet. The connection's bytes are held from
// now on.
func (t *Tracker) startSync(s *session, dir reassembly.Direction) {
	d := &s.dirs[dir]
	t.unseen(s, t.lastTs)
	if d.framer.Buffered() > 0 {
		t.stats.ResyncDropped += uint64(d.framer.Buffered())
	}
	d.framer.Reset(0)
	d.skip = 0
	if !s.held {
		s.held = true
		for i := range s.dirs {
			h := &s.dirs[i].hold
			h.buf, h.base, h.marks, h.fed, h.late = h.buf[:0], 0, h.marks[:0], 0, 0
		}
		s.order = s.order[:0]
	}
	h := &d.hold
	if d.syncing {
		// Start over after a new hole: what was held is worthless.
		t.stats.ResyncDropped += uint64(h.pos() - h.fed)
		h.base, h.fed = h.pos(), h.pos()
		h.buf, h.marks = h.buf[:0], h.marks[:0]
	} else {
		// Bytes held but not yet decoded (the framing broke while
		// replaying) are searched from here.
		t.trim(h, h.fed)
	}
	d.syncing = true
	h.cand, h.started = h.fed, false
}

// hold keeps a chunk of a held connection and tries to prove boundaries.
func (t *Tracker) hold(s *session, dir reassembly.Direction, data []byte, ts int64) {
	h := &s.dirs[dir].hold
	if n := len(h.marks); n == 0 || h.marks[n-1].end != h.pos() {
		h.marks = append(h.marks, mark{end: h.pos(), ts: ts}) // a segment start
	}
	h.buf = append(h.buf, data...)
	h.marks = append(h.marks, mark{end: h.pos(), ts: ts})
	s.order = append(s.order, heldEvent{dir: dir, end: h.pos()})
	t.prove(s, false)
	if s.held && (t.heldBytes(s) > t.cfg.MaxResync || len(s.order) > maxHeldEvents) {
		t.overflow(s)
	}
}

func (t *Tracker) heldBytes(s *session) int {
	n := 0
	for i := range s.dirs {
		n += len(s.dirs[i].hold.buf)
	}
	return n
}

// prove advances the proof search of every syncing direction and replays
// the held chunks once no direction is syncing any more. fin: the
// connection ended with a FIN, so the end of the held bytes is a boundary.
func (t *Tracker) prove(s *session, fin bool) {
	for {
		for dir := range s.dirs {
			d := &s.dirs[dir]
			if d.syncing && t.search(s, d, fin) {
				t.proven(s, reassembly.Direction(dir), d.hold.cand)
			}
		}
		if s.dirs[0].syncing || s.dirs[1].syncing {
			t.agree(s)
		}
		if s.dirs[0].syncing || s.dirs[1].syncing {
			return
		}
		if !t.replay(s) {
			return
		}
		// A direction broke again while replaying: search anew.
	}
}

// proven ends the search of a direction at boundary off.
func (t *Tracker) proven(s *session, dir reassembly.Direction, off int64) {
	d := &s.dirs[dir]
	h := &d.hold
	t.stats.Resyncs++
	t.stats.ResyncDropped += uint64(off - h.fed)
	d.syncing = false
	h.fed = off
	h.started = false
}

// search walks candidates of d from its current one and reports whether
// the current candidate is proven.
func (t *Tracker) search(s *session, d *dirState, fin bool) bool {
	h := &d.hold
	for h.cand < h.pos() {
		switch t.walk(s, h, fin) {
		case walkProven:
			return true
		case walkUndecided:
			return false
		}
		h.cand++
		h.started = false
		if h.cand-h.base > 4096 && h.cand-h.base > int64(len(h.buf))/2 {
			t.trim(h, h.cand)
		}
	}
	return false
}

type walkResult uint8

const (
	walkRejected walkResult = iota
	walkUndecided
	walkProven
)

// walk continues the chain of packets from h.cand.
func (t *Tracker) walk(s *session, h *holdState, fin bool) walkResult {
	if !h.started {
		h.walk, h.walkN, h.walkAl, h.started = h.cand, 0, 0, true
	}
	anchored := h.isMark(h.cand)
	maxLen := t.cfg.MaxResync / 2
	for h.walkN < chainProof {
		if anchored && h.walkAl >= 2 {
			return walkProven
		}
		rest := h.buf[h.walk-h.base:]
		if len(rest) == 0 {
			if fin && anchored && h.walkAl >= 1 {
				return walkProven // the chain tiles the stream up to its FIN
			}
			return walkUndecided
		}
		hd, err := mqttparse.ParseFixedHeader(rest)
		if err == mqttparse.ErrIncomplete {
			if !mqttparse.PlausibleFirstByte(rest[0]) || fin {
				return walkRejected
			}
			return walkUndecided
		}
		if err != nil || !mqttparse.Plausible(hd, t.cfg.MaxPacketSize) || hd.Len() > maxLen {
			return walkRejected
		}
		if hd.Len() > len(rest) {
			if fin {
				return walkRejected
			}
			return walkUndecided
		}
		if !t.validPacket(s, rest[:hd.Len()]) {
			return walkRejected
		}
		h.walk += int64(hd.Len())
		h.walkN++
		if h.isMark(h.walk) {
			h.walkAl++
		}
	}
	return walkProven
}

// validPacket reports whether raw decodes without malformation or
// violation under the session's protocol level (or a guessed one).
func (t *Tracker) validPacket(s *session, raw []byte) bool {
	v := mqttparse.VersionUnknown
	if s.known {
		v = s.version
	}
	_, err := mqttparse.Decode(raw, v, &t.pkt)
	return err == nil
}

// agree looks for a request of one direction answered by the other: each
// in a segment of its own, the answer captured after the request. It
// proves the boundary of a syncing direction at its segment (and of the
// other direction's at its own, if that one is syncing too).
func (t *Tracker) agree(s *session) {
	var lone [2][]lone
	for dir := range s.dirs {
		d := &s.dirs[dir]
		from := d.hold.fed
		if d.syncing {
			from = d.hold.cand
		}
		lone[dir] = t.loneSegments(s, &d.hold, from, t.lone[dir][:0])
		t.lone[dir] = lone[dir]
	}
	for dir := range s.dirs {
		if !s.dirs[dir].syncing {
			continue
		}
		for _, a := range lone[dir] {
			for _, b := range lone[dir^1] {
				if !answers(a, b) && !answers(b, a) {
					continue
				}
				t.proven(s, reassembly.Direction(dir), a.off)
				if s.dirs[dir^1].syncing {
					t.proven(s, reassembly.Direction(dir^1), b.off)
				}
				return
			}
		}
	}
}

// tiledPackets bounds the packets remembered of a tiled segment.
const tiledPackets = 4

// lone is a held segment tiled exactly by valid packets (the first
// tiledPackets of them remembered).
type lone struct {
	off int64
	ts  int64
	n   int
	typ [tiledPackets]mqttparse.Type
	qos [tiledPackets]byte
	pid [tiledPackets]uint16
}

// answers reports whether a packet of segment b answers a request of
// segment a (b captured after a).
func answers(a, b lone) bool {
	if b.ts < a.ts {
		return false
	}
	for i := range a.n {
		resp, ok := mqttparse.ResponseTo(a.typ[i], a.qos[i])
		if !ok {
			continue
		}
		for j := range b.n {
			if b.typ[j] == resp && (!a.typ[i].HasPacketID(a.qos[i]) || a.pid[i] == b.pid[j]) {
				return true
			}
		}
	}
	return false
}

// loneSegments returns the tiled segments among the agreeScan segments
// at or after from.
func (t *Tracker) loneSegments(s *session, h *holdState, from int64, out []lone) []lone {
	i, _ := slices.BinarySearchFunc(h.marks, from, func(m mark, o int64) int { return cmp64(m.end, o) })
	for n := 0; i+1 < len(h.marks) && n < agreeScan; i, n = i+1, n+1 {
		if l, ok := t.tiled(s, h, i); ok {
			out = append(out, l)
		}
	}
	return out
}

// tiled decodes the segment between marks i and i+1 of h if valid packets
// tile it exactly.
func (t *Tracker) tiled(s *session, h *holdState, i int) (lone, bool) {
	from, to := h.marks[i].end-h.base, h.marks[i+1].end-h.base
	l := lone{off: h.marks[i].end, ts: h.marks[i+1].ts}
	if from < 0 || to > int64(len(h.buf)) || from >= to {
		return l, false
	}
	seg := h.buf[from:to]
	for len(seg) > 0 {
		hd, err := mqttparse.ParseFixedHeader(seg)
		if err != nil || hd.Len() > len(seg) || !mqttparse.Plausible(hd, t.cfg.MaxPacketSize) || !t.validPacket(s, seg[:hd.Len()]) {
			return l, false
		}
		if l.n < tiledPackets {
			l.typ[l.n], l.qos[l.n], l.pid[l.n] = hd.Type, hd.QoS, t.pkt.PacketID
			l.n++
		}
		seg = seg[hd.Len():]
	}
	return l, true
}

// replay decodes the held chunks of the directions that are not syncing,
// in capture order, each with its capture time; chunks of a syncing
// direction stay held. When nothing is left held the connection is live
// again. It reports whether a direction started syncing while replaying
// (its framing broke), so the search must run again.
func (t *Tracker) replay(s *session) bool {
	keep := s.order[:0]
	again := false
	for i := 0; i < len(s.order); i++ {
		ev := s.order[i]
		d := &s.dirs[ev.dir]
		if d.syncing {
			keep = append(keep, ev)
			continue
		}
		h := &d.hold
		if ev.end <= h.fed {
			continue
		}
		chunk := h.buf[h.fed-h.base : ev.end-h.base]
		ts := h.timeAt(ev.end)
		h.fed = ev.end
		s.resuming = ev.end <= h.late
		t.feed(s, ev.dir, chunk, ts)
		s.resuming = false
		if d.syncing {
			// Framing broke: the rest of this direction's held bytes are
			// searched from here (startSync moved the hold space on).
			again = true
		}
	}
	s.order = keep
	if len(keep) == 0 && !s.dirs[0].syncing && !s.dirs[1].syncing {
		t.endHold(s)
	}
	return again
}

// flushHeld replays what can be replayed now (directions not syncing),
// before a hole or at the end of the connection. Chunks of a syncing
// direction that precede the flushed ones are marked late.
func (t *Tracker) flushHeld(s *session) {
	for i := range s.dirs {
		if s.dirs[i].syncing {
			s.dirs[i].hold.late = s.dirs[i].hold.pos()
		}
	}
	if t.replay(s) {
		t.prove(s, false)
	}
}

// dropHeld counts and forgets the bytes of directions never proven.
func (t *Tracker) dropHeld(s *session) {
	for i := range s.dirs {
		d := &s.dirs[i]
		if d.syncing {
			t.stats.ResyncDropped += uint64(d.hold.pos() - d.hold.fed)
			d.syncing = false
		}
	}
	s.order = s.order[:0]
	t.endHold(s)
}

// overflow keeps a held connection within its bounds: what is proven is
// decoded now (out of order with what is still searched), and a syncing
// direction gives up its oldest candidates.
func (t *Tracker) overflow(s *session) {
	t.stats.HoldOverflows++
	t.flushHeld(s)
	if !s.held {
		return
	}
	for i := range s.dirs {
		d := &s.dirs[i]
		if !d.syncing {
			continue
		}
		h := &d.hold
		if keep := int64(t.cfg.MaxResync / 2); h.pos()-h.cand > keep {
			h.cand = h.pos() - keep
			h.started = false
		}
		t.trim(h, h.cand)
		t.prove(s, false)
		if !s.held {
			return
		}
	}
	if len(s.order) > maxHeldEvents/2 {
		// Only a syncing direction's chunks are left: their order no
		// longer matters beyond their own times, kept in the marks.
		s.order = append(s.order[:0], s.order[len(s.order)-maxHeldEvents/2:]...)
	}
}

// trim drops held bytes before off (rejected candidates), counted.
func (t *Tracker) trim(h *holdState, off int64) {
	n := off - h.base
	if n <= 0 {
		return
	}
	t.stats.ResyncDropped += uint64(off - max(h.fed, h.base))
	h.fed = max(h.fed, off)
	h.buf = append(h.buf[:0], h.buf[n:]...)
	h.base = off
	i, _ := slices.BinarySearchFunc(h.marks, off, func(m mark, o int64) int { return cmp64(m.end, o) })
	if i > 0 {
		h.marks = append(h.marks[:0], h.marks[i:]...)
	}
}

// endHold makes the connection live again and releases large buffers.
func (t *Tracker) endHold(s *session) {
	s.held = false
	s.order = s.order[:0]
	if cap(s.order) > 256 {
		s.order = nil
	}
	for i := range s.dirs {
		h := &s.dirs[i].hold
		h.buf, h.marks = h.buf[:0], h.marks[:0]
		if cap(h.buf) > 4096 {
			h.buf = nil
		}
		if cap(h.marks) > 256 {
			h.marks = nil
		}
		h.base, h.fed, h.late, h.cand, h.started = 0, 0, 0, 0, false
	}
}
