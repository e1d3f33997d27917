// Package coaptrack turns CoAP datagrams (RFC 7252 over UDP) into flow
// records: one flow per exchange (docs/coap.md, "Flows").
//
//   - A request (CON or NON, any method) with its response, matched by
//     endpoint pair and token: piggybacked in the ACK, or separate (the
//     empty ACK, then the response, then the client's ACK when the
//     response is CON). A repeated CON or NON (same sender, receiver and
//     message id) joins its flow and is counted (Retransmissions); a RST
//     ends the flow.
//   - A ping: an empty CON, ended by its RST (or ACK).
//   - An Observe notification (RFC 7641): a response on the token of a
//     registration whose exchange has ended; a flow of its own with the
//     registration's token, method and URI and its Observe sequence,
//     ended by the client's ACK or RST (a NON notification at once).
//   - A Block exchange (RFC 7959) is a request with its response, so
//     every block is a flow carrying its block number.
//
// With Config.CaseOption set, the value of that option in a request is
// its flow's case id (Record.CorrelationData, source
// CorrelationCoAPOption), and every notification of an observation
// carries the registration's (docs/coap.md, "Case key").
//
// A flow ends with flowEndReason "end of flow" when its exchange is
// complete, "idle timeout" after IdleTimeout of capture time without a
// message, "forced end" at FlushAll (shutdown) or when a new request
// reuses the token of an open one, and "lack of resources" when the
// MaxExchanges bound evicts it. An ended exchange is kept for Linger so
// that late copies of its messages (a retransmission crossing the ACK)
// are recognised and counted as duplicates instead of opening flows.
//
// The tracker implements app.DatagramTracker. Time is always capture
// time. Memory is bounded: exchanges (open and lingering, MaxExchanges,
// least recently active evicted first, lingering ones before open ones)
// and observations (MaxObservations). Every datagram that does not join
// a flow is counted in Stats. Not safe for concurrent use.
package coaptrack

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/lru"
	"github.com/mission-ids/mission/probe/app"
)

// Config bounds the tracker. Zero values take the defaults.
type Config struct {
	IdleTimeout     time.Duration // end an exchange without messages for this long; default 30 s
	Linger          time.Duration // keep an ended exchange to absorb late copies; default 45 s (MAX_TRANSMIT_SPAN)
	ObserveTimeout  time.Duration // forget an observation without notifications for this long; default 10 min
	MaxExchanges    int           // open and lingering at once; default 1,000,000
	MaxObservations int           // default 100,000
	// CaseOption, when not 0, is the number of a CoAP option whose value
	// in a request is the exchange's case id: the flow's CorrelationData
	// (CorrelationCoAPOption); a notification takes its registration's.
	// A request without the option (or with an empty value) has none.
	CaseOption coapparse.OptionNumber
	// MaxCaseKey bounds a case key in bytes (default 128): a longer value
	// is no case key (Stats.CaseKeysTooLong), so the keys of MaxExchanges
	// exchanges stay bounded.
	MaxCaseKey int
	// FlowIDs generates flow ids; default: a random 23-bit prefix and a
	// 40-bit counter.
	FlowIDs func() uint64
}

func (c *Config) defaults() {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.Linger <= 0 {
		c.Linger = 45 * time.Second
	}
	if c.ObserveTimeout <= 0 {
		c.ObserveTimeout = 10 * time.Minute
	}
	if c.MaxExchanges <= 0 {
		c.MaxExchanges = 1_000_000
	}
	if c.MaxObservations <= 0 {
		c.MaxObservations = 100_000
	}
	if c.MaxCaseKey <= 0 {
		c.MaxCaseKey = 128
	}
	if c.FlowIDs == nil {
		var b [8]byte
		_, _ = rand.Read(b[:])
		prefix := binary.BigEndian.Uint64(b[:]) & 0x7fffff << 40 // below 2^63: BSON has no uint64
		var n uint64
		c.FlowIDs = func() uint64 { n++; return prefix | n&(1<<40-1) }
	}
}

// Flow kinds (Stats.Flows index).
const (
	KindRequest      = 0
	KindPing         = 1
	KindNotification = 2
	numKinds         = 3
)

// KindName names a flow kind as metrics label it.
func KindName(k int) string {
	switch k {
	case KindRequest:
		return "request"
	case KindPing:
		return "ping"
	case KindNotification:
		return "notification"
	}
	return "unknown"
}

// Stats are cumulative counters, plus current table sizes.
type Stats struct {
	Datagrams           uint64    // datagrams given
	Bytes               uint64    // their payload bytes
	Malformed           uint64    // not CoAP messages (coapparse.ErrMalformed): skipped
	Violations          uint64    // messages that broke a rule (still used)
	Messages            [4]uint64 // decoded, by type (CON, NON, ACK, RST)
	Retransmissions     uint64    // repeated CON/NON messages that joined their flow
	Duplicates          uint64    // copies of messages of an exchange that had ended (lingering)
	Unmatched           uint64    // ACK, RST or response with no exchange or observation to join
	Ignored             uint64    // messages that start nothing: NON Empty, reserved code classes
	Superseded          uint64    // open exchanges ended by a new request with their token
	Evicted             uint64    // open exchanges ended by the MaxExchanges bound
	LingerEvicted       uint64    // ended exchanges forgotten early by the MaxExchanges bound (or one of their message ids, by a full bucket of the linger index)
	ObservationsEvicted uint64    // observations forgotten by the MaxObservations bound
	CaseKeys            uint64    // requests whose case key (Config.CaseOption) was taken
	CaseKeysTooLong     uint64    // requests whose case option was longer than MaxCaseKey: no case key
	Flows               [numKinds]uint64
	FlowsByEnd          [6]uint64 // by flowEndReason
	Open                int       // open exchanges now
	Lingering           int       // ended exchanges kept now
	Observations        int       // observations known now
}

// endpoint is an address and port as plain bytes: the map keys below
// hold no pointer (a netip.Addr does), so they are hashed and compared as
// one block of memory and the tables are not scanned by the GC. Every
// field is 2-byte aligned, so the keys have no padding.
type endpoint struct {
	addr [16]byte // IPv4 as IPv4-mapped IPv6
	port uint16
	v4   uint16 // 1: an IPv4 address
}

func endpointOf(a netip.AddrPort) endpoint {
	ip := a.Addr()
	e := endpoint{addr: ip.As16(), port: a.Port()}
	if ip.Is4() {
		e.v4 = 1
	}
	return e
}

func (e endpoint) addrPort() (netip.Addr, uint16) {
	a := netip.AddrFrom16(e.addr)
	if e.v4 != 0 {
		a = a.Unmap()
	}
	return a, e.port
}

type pair struct{ client, server endpoint }

type tokKey struct {
	pair
	tok [8]byte
	n   uint16
}

// midKey names a CON or NON message: sender, receiver, message id.
type midKey struct {
	from, to endpoint
	mid      uint16
}

// midRef is one of an exchange's message ids in Tracker.mid: its sender
// is the exchange's server or its client (every message of an exchange
// is between those two).
type midRef struct {
	mid        uint16
	fromServer bool
}

type state uint8

const (
	stOpen    state = iota // waiting for a response or an ACK
	stWaitAck              // separate CON response seen, waiting for the client's ACK
)

// exch is one open exchange (an ended one lingers as a lingered entry).
type exch struct {
	node lru.Node[exch]
	*live
	last   int64  // capture time of the latest message
	key    tokKey // pair and token (the client is the request's sender)
	mids   midSet // its messages in Tracker.openMid
	kind   uint8
	st     state
	hasTok bool // in Tracker.tok
}

// live is the part of an open exchange that its flow record is made of.
type live struct {
	first   int64
	packets uint64
	octets  uint64
	hasResp bool
	observe bool   // the request registers an observation (Observe 0)
	caseKey []byte // value of Config.CaseOption in the request (a notification: the registration's)
	c       flow.CoAP
}

// observation is an Observe registration that got a success response.
type observation struct {
	node              lru.Node[observation]
	key               tokKey
	last              int64
	method            uint8
	host, path, query string
	caseKey           []byte
}

// Tracker implements app.DatagramTracker.
type Tracker struct {
	cfg     Config
	out     app.FlowHandler
	msg     coapparse.Message
	src     endpoint // the current datagram's
	dst     endpoint
	pre     *planned // the current datagram's plan, if any
	rec     flow.Record
	tok     index[tokKey, *exch]        // open requests
	openMid index[midKey, *exch]        // CON and NON messages of open exchanges
	ring    lingerRing                  // lingering exchanges, oldest first, and their CON and NON messages
	obs     index[tokKey, *observation] // registrations
	seed    uint64                      // of the indexes' fingerprints
	open    lru.List[exch]              // least recently active first
	obsLRU  lru.List[observation]
	free    []*exch
	lives   []*live // free
	names   interner
	slab    []flow.CoAP // emitted flows' CoAP parts, cut from shared chunks
	tokens  []byte      // emitted flows' tokens, cut from shared chunks
	scratch []byte
	stats   Stats
}

// New returns a tracker that hands finished flows to out.
func New(cfg Config, out app.FlowHandler) *Tracker {
	cfg.defaults()
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	t := &Tracker{cfg: cfg, out: out,
		tok:     newIndex(func(x *exch, k tokKey) bool { return x.key == k }),
		openMid: newIndex(func(x *exch, k midKey) bool { return x.mids.holds(&x.key.pair, k) }),
		obs:     newIndex(func(o *observation, k tokKey) bool { return o.key == k }),
		seed:    binary.LittleEndian.Uint64(seed[:]), names: newInterner()}
	t.ring = newLingerRing(cfg.MaxExchanges, t.seed)
	return t
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Open, s.Lingering, s.Observations = t.open.Len(), t.ring.live, t.obs.len()
	return s
}

// AdvanceAt ends exchanges idle since before now − IdleTimeout and
// forgets ended ones older than Linger and observations older than
// ObserveTimeout.
func (t *Tracker) AdvanceAt(now int64) {
	limit := now - int64(t.cfg.IdleTimeout)
	for x := t.open.Front(); x != nil && x.last < limit; x = t.open.Front() {
		t.end(x, flow.EndIdleTimeout)
	}
	limit = now - int64(t.cfg.Linger)
	for e := t.ring.front(); e != nil && (e.dead || e.last < limit); e = t.ring.front() {
		t.ring.pop()
	}
	limit = now - int64(t.cfg.ObserveTimeout)
	for o := t.obsLRU.Front(); o != nil && o.last < limit; o = t.obsLRU.Front() {
		t.forget(o)
	}
}

// FlushAll ends every open exchange (shutdown) and forgets the rest.
func (t *Tracker) FlushAll() {
	for x := t.open.Front(); x != nil; x = t.open.Front() {
		t.end(x, flow.EndForced)
	}
	// The rest lingers or observes: forgotten all at once, not entry by
	// entry (a large capture ends with up to MaxExchanges of them).
	t.ring.reset()
	t.obs.clear()
	t.obsLRU = lru.List[observation]{}
}

// Datagram takes one UDP datagram on a CoAP port.
func (t *Tracker) Datagram(d *app.Datagram) {
	t.track(d, endpointOf(d.Src), endpointOf(d.Dst), nil)
}

// planned is what plan worked out for a datagram ahead of tracking it:
// its message id's fingerprint (the key as message or reply build it)
// and, when hasTok, its token's (as request or response build it).
type planned struct {
	mid, tok uint64
	hasTok   bool
}

// track is Datagram with the endpoints converted and, when pre is not
// nil, the fingerprints computed (by plan, from the same bytes).
func (t *Tracker) track(d *app.Datagram, src, dst endpoint, pre *planned) {
	t.pre, t.src, t.dst = pre, src, dst
	t.datagram(d)
	t.pre = nil
}

func (t *Tracker) datagram(d *app.Datagram) {
	t.stats.Datagrams++
	t.stats.Bytes += uint64(len(d.Payload))
	m := &t.msg
	if err := coapparse.Decode(d.Payload, m); err != nil {
		if !errors.Is(err, coapparse.ErrViolation) {
			t.stats.Malformed++
			return
		}
		t.stats.Violations++
	}
	t.stats.Messages[m.Type&3]++
	n := uint64(len(d.Payload))
	switch m.Type {
	case coapparse.Confirmable, coapparse.NonConfirmable:
		t.message(d, m, n)
	default:
		t.reply(d, m, n)
	}
}

// lookahead holds, for a batch of datagrams about to be tracked, a word
// of every table line their first lookups will read: a tight loop of
// independent loads (load) then brings those lines in together, so that
// their memory accesses overlap instead of following one another (each
// costs about 200 ns once the tables outgrow the caches). Prefetch
// instructions did not help on the machine this was measured on
// (docs/benchmarks.md).
type lookahead struct {
	slots []*uint64 // open tables' slots
	bkts  []*uint32 // linger index buckets
	sink  uint64
}

// plan adds the lines the datagram src→dst with payload p will read
// first: its message id's slot in the open and the lingering exchanges'
// indexes and, with a token, its token's slot; it keeps the fingerprints
// in pre for track. Only the fixed header is decoded: a malformed
// message costs a few useless loads.
func (t *Tracker) plan(la *lookahead, s, d *endpoint, p []byte, pre *planned) {
	*pre = planned{}
	if len(p) < 4 {
		return
	}
	typ, tkl, code := coapparse.Type(p[0]>>4&3), int(p[0]&15), coapparse.Code(p[1])
	mk := midKey{*s, *d, uint16(p[2])<<8 | uint16(p[3])}
	incoming := typ == coapparse.Acknowledgement || typ == coapparse.Reset
	if incoming {
		mk.from, mk.to = *d, *s
	}
	f := mk.fingerprint(t.seed)
	pre.mid = f
	la.slots = t.openMid.line(la.slots, f)
	if len(t.ring.index) > 0 {
		la.bkts = append(la.bkts, &t.ring.bucket(f)[0].tag)
	}
	if tkl > 8 || len(p) < 4+tkl || code.IsEmpty() {
		return
	}
	tok := p[4 : 4+tkl]
	switch {
	case code.IsRequest() && !incoming:
		k := newTokKey(pair{*s, *d}, tok)
		pre.tok, pre.hasTok = k.fingerprint(t.seed), true
		la.slots = t.tok.line(la.slots, pre.tok)
	case code.IsResponse():
		k := newTokKey(pair{*d, *s}, tok)
		pre.tok, pre.hasTok = k.fingerprint(t.seed), true
		la.slots = t.tok.line(la.slots, pre.tok)
		if !incoming {
			la.slots = t.obs.line(la.slots, pre.tok)
		}
	}
}

// midFingerprint is k's fingerprint: the planned one when the current
// datagram was planned (the same key, from the same bytes).
func (t *Tracker) midFingerprint(k *midKey) uint64 {
	if t.pre != nil {
		return t.pre.mid
	}
	return k.fingerprint(t.seed)
}

// tokFingerprint is k's fingerprint, the planned one if there is one.
func (t *Tracker) tokFingerprint(k *tokKey) uint64 {
	if t.pre != nil && t.pre.hasTok {
		return t.pre.tok
	}
	return k.fingerprint(t.seed)
}

// load reads every planned line, then forgets the plan.
func (la *lookahead) load() {
	var sum uint64
	for _, w := range la.slots {
		sum += *w
	}
	for _, w := range la.bkts {
		sum += uint64(*w)
	}
	la.sink += sum // kept, so the loads are not optimised away
	clear(la.slots)
	clear(la.bkts)
	la.slots, la.bkts = la.slots[:0], la.bkts[:0]
}

// message handles a CON or NON: a request, a ping, a separate response
// or a notification, or a copy of one already seen.
func (t *Tracker) message(d *app.Datagram, m *coapparse.Message, n uint64) {
	mk := midKey{t.src, t.dst, m.MessageID}
	mf := t.midFingerprint(&mk)
	if x := t.openMid.get(mf, mk); x != nil {
		x.c.Retransmissions++
		t.stats.Retransmissions++
		t.touch(x, d.Time, n)
		return
	}
	if e := t.ring.find(mf, mk); e != nil {
		if sameToken(&e.key, m.Token) || e.kind == KindPing && m.Code.IsEmpty() {
			t.stats.Duplicates++
			return
		}
		// A new message reusing the id: the old exchange is over.
		t.ring.kill(e)
	}
	switch {
	case m.Code.IsEmpty():
		if m.Type != coapparse.Confirmable {
			t.stats.Ignored++
			return
		}
		x := t.begin(KindPing, pair{t.src, t.dst}, m, d.Time, n)
		t.addMID(x, mk, mf)
	case m.Code.IsRequest():
		t.request(d, m, mk, mf, n)
	case m.Code.IsResponse():
		t.response(d, m, mk, mf, n)
	default:
		t.stats.Ignored++
	}
}

func (t *Tracker) request(d *app.Datagram, m *coapparse.Message, mk midKey, mf, n uint64) {
	key := newTokKey(pair{t.src, t.dst}, m.Token)
	kf := t.tokFingerprint(&key)
	if old := t.tok.get(kf, key); old != nil {
		t.stats.Superseded++
		t.end(old, flow.EndForced)
	}
	obs, hasObs := m.Observe()
	if hasObs && obs == 1 {
		if o := t.obs.get(kf, key); o != nil {
			t.forget(o) // deregistration
		}
	}
	x := t.begin(KindRequest, key.pair, m, d.Time, n)
	x.key = key
	x.hasTok = true
	t.tok.put(kf, key, x)
	t.addMID(x, mk, mf)
	if t.cfg.CaseOption != 0 {
		switch v, ok := m.Get(t.cfg.CaseOption); {
		case !ok || len(v) == 0:
		case len(v) > t.cfg.MaxCaseKey:
			t.stats.CaseKeysTooLong++
		default:
			t.stats.CaseKeys++
			x.caseKey = t.token(v)
		}
	}
	c := &x.c
	c.Method = uint8(m.Code)
	c.URIHost = t.names.get(m.Get(coapparse.URIHost))
	t.scratch = m.AppendURIPath(t.scratch[:0])
	c.URIPath = t.names.of(t.scratch)
	t.scratch = m.AppendURIQuery(t.scratch[:0])
	c.URIQuery = t.names.of(t.scratch)
	if hasObs {
		c.Observe, c.HasObserve = obs, true
		x.observe = obs == 0
	}
	if b, ok := m.Block1(); ok {
		c.Block, c.BlockOption = b.Uint(), flow.Block1
	} else if b, ok := m.Block2(); ok {
		c.Block, c.BlockOption = b.Uint(), flow.Block2 // the response's, if any, replaces it
	}
}

func (t *Tracker) response(d *app.Datagram, m *coapparse.Message, mk midKey, mf, n uint64) {
	key := newTokKey(pair{t.dst, t.src}, m.Token)
	kf := t.tokFingerprint(&key)
	if x := t.tok.get(kf, key); x != nil && !x.hasResp {
		// A separate response.
		t.touch(x, d.Time, n)
		t.answer(x, m)
		if m.Type == coapparse.Confirmable {
			x.st = stWaitAck
			t.addMID(x, mk, mf)
			return
		}
		t.addMID(x, mk, mf) // a repeated NON response is a duplicate
		t.end(x, flow.EndOfFlow)
		return
	}
	o := t.obs.get(kf, key)
	if o == nil {
		t.stats.Unmatched++
		return
	}
	// A notification: the server initiates it.
	o.last = d.Time
	t.obsLRU.MoveToBack(&o.node)
	x := t.begin(KindNotification, pair{t.src, t.dst}, m, d.Time, n)
	x.key = key
	c := &x.c
	c.Method, c.URIHost, c.URIPath, c.URIQuery = o.method, o.host, o.path, o.query
	x.caseKey = o.caseKey
	c.PayloadLength, c.HasContentFormat, c.ContentFormat = 0, false, 0 // answer sets them
	t.answer(x, m)
	t.addMID(x, mk, mf)
	if m.Type == coapparse.NonConfirmable {
		t.end(x, flow.EndOfFlow)
	}
}

// answer fills the response part of x from m.
func (t *Tracker) answer(x *exch, m *coapparse.Message) {
	x.hasResp = true
	c := &x.c
	c.ResponseCode = uint8(m.Code)
	c.PayloadLength += uint32(len(m.Payload))
	if !c.HasContentFormat {
		if v, ok := m.Uint(coapparse.ContentFormat); ok {
			c.ContentFormat, c.HasContentFormat = uint16(v), true
		}
	}
	if c.BlockOption != flow.Block1 {
		if b, ok := m.Block2(); ok {
			c.Block, c.BlockOption = b.Uint(), flow.Block2
		} else if c.BlockOption == flow.BlockNone {
			if b, ok := m.Block1(); ok {
				c.Block, c.BlockOption = b.Uint(), flow.Block1
			}
		}
	}
	obs, hasObs := m.Observe()
	if x.kind == KindNotification {
		c.Observe, c.HasObserve = obs, hasObs
		return
	}
	if x.observe && hasObs && m.Code.Class() == 2 {
		t.register(x)
	}
}

// register keeps the observation x's response started.
func (t *Tracker) register(x *exch) {
	kf := x.key.fingerprint(t.seed)
	o := t.obs.get(kf, x.key)
	if o == nil {
		if t.obs.len() >= t.cfg.MaxObservations {
			t.stats.ObservationsEvicted++
			t.forget(t.obsLRU.Front())
		}
		o = &observation{key: x.key}
		t.obs.put(kf, x.key, o)
		t.obsLRU.PushBack(&o.node, o)
	} else {
		t.obsLRU.MoveToBack(&o.node)
	}
	c := &x.c
	o.last, o.method, o.host, o.path, o.query, o.caseKey = x.last, c.Method, c.URIHost, c.URIPath, c.URIQuery, x.caseKey
}

func (t *Tracker) forget(o *observation) {
	if o == nil {
		return
	}
	t.obsLRU.Remove(&o.node)
	t.obs.del(o.key.fingerprint(t.seed), o.key, o)
}

// reply handles an ACK or RST: it answers the CON (or NON) with its
// message id sent the other way.
func (t *Tracker) reply(d *app.Datagram, m *coapparse.Message, n uint64) {
	k := midKey{t.dst, t.src, m.MessageID}
	kf := t.midFingerprint(&k)
	x := t.openMid.get(kf, k)
	if x == nil {
		if t.ring.find(kf, k) != nil {
			t.stats.Duplicates++
		} else {
			t.stats.Unmatched++
		}
		return
	}
	t.touch(x, d.Time, n)
	if m.Type == coapparse.Reset {
		if x.kind == KindNotification {
			if o := t.obs.get(x.key.fingerprint(t.seed), x.key); o != nil {
				t.forget(o) // the client cancels the observation
			}
		}
		t.end(x, flow.EndOfFlow)
		return
	}
	// ACK.
	switch {
	case x.st == stWaitAck:
		// Only the client's ACK of the separate response ends it; the
		// server's ACK of a retransmitted request is one more message.
		if k.from == x.key.server {
			t.end(x, flow.EndOfFlow)
		}
	case x.kind != KindRequest:
		t.end(x, flow.EndOfFlow)
	case m.Code.IsResponse():
		t.answer(x, m) // piggybacked
		t.end(x, flow.EndOfFlow)
	default:
		// Empty ACK: the response comes separately.
	}
}

// begin opens an exchange initiated by m from p.client to p.server.
func (t *Tracker) begin(kind uint8, p pair, m *coapparse.Message, ts int64, n uint64) *exch {
	if t.open.Len()+t.ring.live >= t.cfg.MaxExchanges {
		if t.ring.live > 0 {
			t.stats.LingerEvicted++
			t.ring.popLive()
		} else if x := t.open.Front(); x != nil {
			t.stats.Evicted++
			t.end(x, flow.EndLackOfResources)
		}
	}
	var x *exch
	if k := len(t.free); k > 0 {
		x = t.free[k-1]
		t.free = t.free[:k-1]
	} else {
		x = new(exch)
	}
	*x = exch{kind: kind, last: ts}
	if k := len(t.lives); k > 0 {
		x.live = t.lives[k-1]
		t.lives = t.lives[:k-1]
	} else {
		x.live = new(live)
	}
	*x.live = live{first: ts, packets: 1, octets: n}
	x.key = newTokKey(p, m.Token)
	x.c = flow.CoAP{Type: uint8(m.Type), Code: uint8(m.Code), MessageID: m.MessageID, PayloadLength: uint32(len(m.Payload))}
	if v, ok := m.Uint(coapparse.ContentFormat); ok {
		x.c.ContentFormat, x.c.HasContentFormat = uint16(v), true
	}
	t.open.PushBack(&x.node, x)
	return x
}

// addMID enters k (fingerprint f) as one of x's message ids. k is not
// in t.openMid nor lingering: every caller looked it up first
// (message) and released what it found.
func (t *Tracker) addMID(x *exch, k midKey, f uint64) {
	if x.mids.add(&x.key.pair, k) {
		t.openMid.put(f, k, x)
	}
}

func (t *Tracker) touch(x *exch, ts int64, n uint64) {
	x.packets++
	x.octets += n
	if ts > x.last {
		x.last = ts
	}
	t.open.MoveToBack(&x.node)
}

// end emits x's flow and forgets x; an exchange that completed lingers.
func (t *Tracker) end(x *exch, reason flow.EndReason) {
	t.emit(x, reason)
	t.lives = append(t.lives, x.live)
	x.live = nil
	t.open.Remove(&x.node)
	if x.hasTok {
		t.tok.del(x.key.fingerprint(t.seed), x.key, x)
	}
	var e *lingered
	if reason == flow.EndOfFlow {
		e = t.linger(x)
	}
	for i := range x.mids.n {
		k := x.mids.key(i, &x.key.pair)
		f := k.fingerprint(t.seed)
		t.openMid.del(f, k, x)
		if e != nil && !t.ring.enter(f, e.seq) {
			t.stats.LingerEvicted++
		}
	}
	*x = exch{}
	t.free = append(t.free, x)
}

// linger keeps what recognises copies of x's messages.
func (t *Tracker) linger(x *exch) *lingered {
	for t.ring.full() {
		if !t.ring.front().dead {
			t.stats.LingerEvicted++
		}
		t.ring.pop()
	}
	e := t.ring.push()
	e.last, e.key, e.mids, e.kind = x.last, x.key, x.mids, x.kind
	return e
}

func (t *Tracker) emit(x *exch, reason flow.EndReason) {
	r := &t.rec
	*r = flow.Record{
		FlowID: t.cfg.FlowIDs(), Protocol: 17, ApplicationProtocol: flow.AppCoAP,
		Start: captureTime(x.first), End: captureTime(x.last), Packets: x.packets, Octets: x.octets, EndReason: reason,
	}
	src, dst := x.key.client, x.key.server
	if x.kind == KindNotification {
		src, dst = dst, src
	}
	r.SrcAddr, r.SrcPort = src.addrPort()
	r.DstAddr, r.DstPort = dst.addrPort()
	if len(t.slab) == 0 {
		t.slab = make([]flow.CoAP, 256)
	}
	c := &t.slab[0]
	t.slab = t.slab[1:]
	*c = x.c
	c.Token = t.token(x.key.tok[:x.key.n])
	r.CoAP = c
	if len(x.caseKey) > 0 {
		r.CorrelationData, r.CorrelationSource = x.caseKey, flow.CorrelationCoAPOption
	}
	t.stats.Flows[x.kind]++
	if int(reason) < len(t.stats.FlowsByEnd) {
		t.stats.FlowsByEnd[reason]++
	}
	t.out.Flow(r)
}

// token returns a copy of b (a token or a case key) cut from a shared chunk (only appended to:
// a copy stays valid as long as a record holds it).
func (t *Tracker) token(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if cap(t.tokens)-len(t.tokens) < len(b) {
		t.tokens = make([]byte, 0, 4096)
	}
	start := len(t.tokens)
	t.tokens = append(t.tokens, b...)
	return t.tokens[start:len(t.tokens):len(t.tokens)]
}

func newTokKey(p pair, tok []byte) tokKey {
	k := tokKey{pair: p, n: uint16(min(len(tok), 8))}
	copy(k.tok[:], tok)
	return k
}

func sameToken(k *tokKey, tok []byte) bool {
	return int(k.n) == len(tok) && string(k.tok[:k.n]) == string(tok)
}

// captureTime turns capture time in Unix ns back into a time.Time; 0 (a
// packet without timestamp) is the zero time.
func captureTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// interner shares the strings of repeated URIs: a direct-mapped cache of
// internSlots strings chosen by a seeded hash of the bytes, a string
// replacing whatever its slot held. Bounded, and a lookup reads one slot
// of a small array (no table grows, nothing is cleared all at once).
type interner struct {
	seed  maphash.Seed
	slots *[internSlots]string
}

const internSlots = 1 << 12

func newInterner() interner {
	return interner{seed: maphash.MakeSeed(), slots: new([internSlots]string)}
}

func (in *interner) of(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	slot := &in.slots[maphash.Bytes(in.seed, b)&(internSlots-1)]
	if *slot == string(b) {
		return *slot
	}
	*slot = string(b)
	return *slot
}

func (in *interner) get(b []byte, ok bool) string {
	if !ok {
		return ""
	}
	return in.of(b)
}
