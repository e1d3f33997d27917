package coaptrack

import "math/bits"

// Lingering exchanges. An exchange that completed is kept for Linger so
// that late copies of its messages are counted as duplicates. In a busy
// capture nearly every exchange of the last 45 s lingers (up to
// MaxExchanges of them), so they are kept apart from the few open ones,
// in a ring of pointer-free entries, oldest first, with an index from
// their message ids to ring positions. Neither holds a pointer, so the
// garbage collector does not scan them, and each costs about one cache
// miss per exchange: an ACK or a response looks up the small table of
// open exchanges first and reaches the index only for a copy of a
// message of an ended exchange; a new request looks its id up in one
// 64-byte bucket; the index is never deleted from (an entry whose
// exchange has left the ring is free for reuse), so forgetting the oldest
// exchanges is a sequential walk of the ring.

// lingered is an exchange that ended: what recognises copies of its
// messages.
type lingered struct {
	seq  uint64 // position in the ring's sequence; 0: an empty slot
	last int64  // capture time of its last message
	key  tokKey
	mids midSet
	kind uint8
	dead bool // released before its time (its message id was reused)
}

// lingerRing holds lingered exchanges in the order they ended. Entry
// with sequence number s is at slots[s&(len(slots)-1)]; sequence numbers
// start at 1 and only grow, so an index value stays valid when the ring
// grows.
type lingerRing struct {
	slots      []lingered
	index      []bucket // len(slots) buckets: eight index slots per ring slot
	shift      uint8    // 64 − log2(len(index))
	head, tail uint64   // sequence numbers: oldest kept (live or dead), next to use
	live       int      // entries not dead
	max        int      // slots at most (a power of two)
	seed       uint64   // of the message ids' fingerprints
	sink       uint32   // keeps grow's loads from being optimised away
}

// bucket is one cache line of the index: the message ids whose
// fingerprint selects it.
type bucket [8]indexSlot

// indexSlot names a message id of a lingering exchange: a 32-bit tag of
// its fingerprint (never 0; 0 is an empty slot) and the low 32 bits of
// its exchange's sequence number (the ring never spans 2^32 of them).
type indexSlot struct{ tag, seq uint32 }

func newLingerRing(maxEntries int, seed uint64) lingerRing {
	m := 1
	for m < maxEntries && m < 1<<30 { // the index keeps 32 bits of sequence numbers
		m <<= 1
	}
	return lingerRing{head: 1, tail: 1, max: m, seed: seed}
}

// kept reports whether the sequence number whose low bits are s is still
// in the ring (live or dead).
func (r *lingerRing) kept(s uint32) bool {
	return uint64(s-uint32(r.head)) < r.tail-r.head
}

// entry returns the live entry whose sequence number has the low bits s,
// nil if it is gone or dead.
func (r *lingerRing) entry(s uint32) *lingered {
	return r.at(r.head + uint64(s-uint32(r.head)))
}

// find returns the live entry that sent k (fingerprint f), nil if none:
// the newest, should an id be in the index twice.
func (r *lingerRing) find(f uint64, k midKey) *lingered {
	if len(r.index) == 0 {
		return nil
	}
	b := r.bucket(f)
	tag := uint32(f>>32) | 1
	var found *lingered
	for i := range b {
		if b[i].tag != tag || !r.kept(b[i].seq) {
			continue
		}
		e := r.entry(b[i].seq)
		if e != nil && e.mids.holds(&e.key.pair, k) && (found == nil || e.seq > found.seq) {
			found = e
		}
	}
	return found
}

// bucket returns f's bucket (chosen by spread, like an open table's slot).
func (r *lingerRing) bucket(f uint64) *bucket {
	return &r.index[spread(f, r.shift)]
}

// enter indexes a message id (fingerprint f) of the entry with sequence
// number s. False when its bucket held eight ids of live exchanges: the
// oldest of them is forgotten (a copy of that message will not be
// recognised).
func (r *lingerRing) enter(f, s uint64) bool {
	b := r.bucket(f)
	slot := indexSlot{tag: uint32(f>>32) | 1, seq: uint32(s)}
	victim, oldest := 0, uint32(0)
	for i := range b {
		if b[i].tag == 0 || !r.kept(b[i].seq) {
			b[i] = slot
			return true
		}
		if age := uint32(r.tail) - b[i].seq; age > oldest {
			victim, oldest = i, age
		}
	}
	// Full of kept ids: one of a dead entry (released early, its id
	// reused) is free too; only then is a live one forgotten.
	for i := range b {
		if r.entry(b[i].seq) == nil {
			b[i] = slot
			return true
		}
	}
	b[victim] = slot
	return false
}

// at returns the entry with sequence number s, nil when it is gone.
func (r *lingerRing) at(s uint64) *lingered {
	if s < r.head || s >= r.tail {
		return nil
	}
	e := &r.slots[s&uint64(len(r.slots)-1)]
	if e.seq != s || e.dead {
		return nil
	}
	return e
}

// full reports whether push needs a slot the ring may not grow to.
func (r *lingerRing) full() bool {
	return r.tail-r.head == uint64(len(r.slots)) && len(r.slots) >= r.max
}

// push appends an entry and returns its slot, to be filled by the
// caller; the ring must not be full.
func (r *lingerRing) push() *lingered {
	if r.tail-r.head == uint64(len(r.slots)) {
		r.grow()
	}
	s := r.tail
	r.tail++
	r.live++
	e := &r.slots[s&uint64(len(r.slots)-1)]
	*e = lingered{seq: s}
	return e
}

// grow doubles the ring and its index; the index is rebuilt from the
// live entries.
func (r *lingerRing) grow() {
	n := max(2*len(r.slots), 1024)
	if n > r.max {
		n = r.max
	}
	slots := make([]lingered, n)
	for s := r.head; s < r.tail; s++ {
		slots[s&uint64(n-1)] = r.slots[s&uint64(len(r.slots)-1)]
	}
	r.slots = slots
	r.index = make([]bucket, n)
	r.shift = uint8(64 - bits.TrailingZeros(uint(n)))
	// Rebuilt in batches: the buckets of a batch are loaded in one loop
	// first, so that those memory accesses overlap (every entry's bucket
	// is a random one of a table far larger than the caches).
	type ref struct{ f, s uint64 }
	var batch [64]ref
	k := 0
	flush := func() {
		var sum uint32
		for _, b := range batch[:k] {
			sum += r.bucket(b.f)[0].tag
		}
		r.sink += sum
		for _, b := range batch[:k] {
			r.enter(b.f, b.s)
		}
		k = 0
	}
	for s := r.head; s < r.tail; s++ {
		e := &slots[s&uint64(n-1)]
		if e.dead {
			continue
		}
		for i := range e.mids.n {
			key := e.mids.key(i, &e.key.pair)
			batch[k] = ref{key.fingerprint(r.seed), s}
			if k++; k == len(batch) {
				flush()
			}
		}
	}
	flush()
}

// front returns the oldest entry (live or dead), nil if empty.
func (r *lingerRing) front() *lingered {
	if r.head == r.tail {
		return nil
	}
	return &r.slots[r.head&uint64(len(r.slots)-1)]
}

// kill forgets e before its time (its slot is skipped until it is the
// oldest).
func (r *lingerRing) kill(e *lingered) {
	e.dead = true
	r.live--
}

// popLive drops the oldest live entry and the dead ones before it; there
// must be one.
func (r *lingerRing) popLive() {
	for r.front().dead {
		r.pop()
	}
	r.pop()
}

// pop drops the oldest entry.
func (r *lingerRing) pop() {
	e := &r.slots[r.head&uint64(len(r.slots)-1)]
	if !e.dead {
		r.live--
	}
	*e = lingered{}
	r.head++
}

// reset forgets every entry and frees the slots.
func (r *lingerRing) reset() {
	*r = lingerRing{head: r.tail, tail: r.tail, max: r.max, seed: r.seed, sink: r.sink}
}

// midSet is the message ids of one exchange: at most two (the request's,
// or a ping's, and a separate response's or a notification's), each sent
// by the exchange's client or its server.
type midSet struct {
	refs [2]midRef
	n    uint8
}

// key is the key of the i-th id of an exchange between p's endpoints.
func (s *midSet) key(i uint8, p *pair) midKey {
	r := s.refs[i]
	if r.fromServer {
		return midKey{p.server, p.client, r.mid}
	}
	return midKey{p.client, p.server, r.mid}
}

func (s *midSet) holds(p *pair, k midKey) bool {
	for i := range s.n {
		if s.key(i, p) == k {
			return true
		}
	}
	return false
}

// add records k, a message of the exchange between p's endpoints; false
// when the set is full.
func (s *midSet) add(p *pair, k midKey) bool {
	if int(s.n) == len(s.refs) {
		return false
	}
	s.refs[s.n] = midRef{mid: k.mid, fromServer: k.from != p.client || k.to != p.server}
	s.n++
	return true
}
