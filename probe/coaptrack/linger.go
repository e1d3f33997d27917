package coaptrack

// Lingering exchanges. An exchange that completed is kept for Linger so
// that late copies of its messages are counted as duplicates. In a busy
// capture nearly every exchange of the last 45 s lingers (up to
// MaxExchanges of them), so they are kept apart from the few open ones:
// in a ring of pointer-free entries, oldest first, and an index from
// their message ids (fingerprints) to ring positions. Neither holds a
// pointer, so the garbage collector does not scan them; an ACK or a
// response looks up the small table of open exchanges first and reaches
// this large one only for a copy of a message of an ended exchange.

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
	head, tail uint64 // sequence numbers: oldest kept (live or dead), next to use
	live       int    // entries not dead
	max        int    // slots at most (a power of two)
}

func newLingerRing(maxEntries int) lingerRing {
	m := 1
	for m < maxEntries {
		m <<= 1
	}
	return lingerRing{head: 1, tail: 1, max: m}
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
}

// front returns the oldest entry (live or dead), nil if empty.
func (r *lingerRing) front() *lingered {
	if r.head == r.tail {
		return nil
	}
	return &r.slots[r.head&uint64(len(r.slots)-1)]
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
	*r = lingerRing{head: r.tail, tail: r.tail, max: r.max}
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
