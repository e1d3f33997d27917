package ipfix

import (
	"container/heap"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mission-ids/mission/internal/lru"
)

// Resource is one kind of template state a Budget bounds.
type Resource uint8

// Resources. A session here is the template scope of RFC 7011 §3.1: one
// observation domain of one transport session (exporter address and port
// × transport × observation domain).
const (
	ResSessions     Resource = iota // (transport session, observation domain) scopes
	ResTemplates                    // templates and options templates
	ResFields                       // fields of those templates
	ResPendingBytes                 // bytes of data sets waiting for their template
	numResources
)

func (r Resource) String() string {
	switch r {
	case ResSessions:
		return "sessions"
	case ResTemplates:
		return "templates"
	case ResFields:
		return "fields"
	case ResPendingBytes:
		return "pending_bytes"
	}
	return "unknown"
}

// AllResources returns every Resource, in order.
func AllResources() []Resource {
	return []Resource{ResSessions, ResTemplates, ResFields, ResPendingBytes}
}

// Limits bound the template state of every session sharing a Budget (all
// listeners of a collector). Zero fields take the defaults.
//
// The defaults keep the live heap of the template state near 100 MiB in
// the worst case, so that a collector stays under ~256 MiB RSS with the
// Go garbage collector's default GOGC=100 (heap peak ≈ 2 × live) on any
// input. Measured worst-case costs per unit (amd64, Go 1.26), including
// map slots, allocator size classes and the objects each unit implies:
//
//   - session: 256 B — the scope (≈ 96 B), its slot in the transport
//     session's map, and at most one exporter entry with its heap slots
//     (≈ 160 B). The transport session shells behind the scopes are
//     bounded by the Decoder at Limits.MaxSessions + 1024 per Decoder,
//     ≈ 1 KiB each (struct, counters, map): with the collector's 2 UDP
//     readers 2 × 9216 × 1 KiB ≈ 18 MiB.
//   - template: 256 B — entry (≈ 80 B), Template (64 B), map slot with
//     growth slack (≈ 40 B), rounded up.
//   - field: 80 B — Field (32 B), its span (8 B), the name of an unknown
//     element (≤ 24 B), the collector's decoding plan (1 B), slice size
//     class slack.
//   - pending byte: 1.25 B — the copy of the data set rounded up to its
//     size class (≤ 12.5 %), plus pendingOverhead (128 B) charged per set
//     for its bookkeeping.
//
// Defaults: 8192 sessions × 256 B = 2 MiB (+ 18 MiB of shells),
// 16384 templates × 256 B = 4 MiB, 524288 fields × 80 B = 40 MiB,
// 16 MiB pending × 1.25 = 20 MiB: ≈ 84 MiB live. Add the collector's own
// bounded tables (decoding plans ≤ 16384 fields per listener goroutine,
// ≈ 1.3 MiB each; per-exporter counters ≤ 4096 entries) and a peak heap
// of ≈ 2 × 90 MiB plus runtime and socket buffers stays below 256 MiB.
// Legitimate load is far below: a probe uses 2 templates of 30 fields per
// observation domain, softflowd and nfdump a handful of ≤ 40 fields.
type Limits struct {
	// MaxSessions bounds the (transport session, observation domain)
	// scopes (default 8192).
	MaxSessions int
	// MaxTemplates bounds the templates (default 16384).
	MaxTemplates int
	// MaxTemplateFields bounds the fields of all templates (default
	// 524288); a template wider than it is refused.
	MaxTemplateFields int
	// MaxPendingBytes bounds the data sets buffered while their template
	// is missing, pendingOverhead bytes charged per set (default 16 MiB).
	MaxPendingBytes int
}

// Default limits (see Limits for the arithmetic).
const (
	DefaultMaxSessions       = 8192
	DefaultMaxTemplates      = 16384
	DefaultMaxTemplateFields = 524288
	DefaultMaxPendingBytes   = 16 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxSessions <= 0 {
		l.MaxSessions = DefaultMaxSessions
	}
	if l.MaxTemplates <= 0 {
		l.MaxTemplates = DefaultMaxTemplates
	}
	if l.MaxTemplateFields <= 0 {
		l.MaxTemplateFields = DefaultMaxTemplateFields
	}
	if l.MaxPendingBytes <= 0 {
		l.MaxPendingBytes = DefaultMaxPendingBytes
	}
	return l
}

// Usage is an amount of each resource.
type Usage struct {
	Sessions, Templates, Fields, PendingBytes int
}

func usageOf(a [numResources]int) Usage {
	return Usage{a[ResSessions], a[ResTemplates], a[ResFields], a[ResPendingBytes]}
}

// Get returns the amount of r.
func (u Usage) Get(r Resource) int {
	return [numResources]int{u.Sessions, u.Templates, u.Fields, u.PendingBytes}[r]
}

// Evictions counts the state evicted because a bound was hit, by the
// resource whose bound it was: sessions (scopes, with their templates and
// pending data), templates (for the templates or the fields bound) and
// pending data sets.
type Evictions struct {
	Sessions, Templates, Fields, PendingBytes uint64
}

// Get returns the evictions for r.
func (e Evictions) Get(r Resource) uint64 {
	return [numResources]uint64{e.Sessions, e.Templates, e.Fields, e.PendingBytes}[r]
}

func evictionsOf(a [numResources]uint64) Evictions {
	return Evictions{a[ResSessions], a[ResTemplates], a[ResFields], a[ResPendingBytes]}
}

// ExporterUsage is the state one exporter address holds and what was
// evicted from it.
type ExporterUsage struct {
	Exporter  netip.Addr
	Usage     Usage
	Evictions Evictions
}

// maxEvictionExporters bounds the exporters whose evictions are counted
// one by one; beyond, they are counted under the unspecified address.
const maxEvictionExporters = 4096

// Budget bounds the template state of all sessions that share it (put it
// in Config.Budget). When a bound is hit it evicts the least recently
// used state of the exporter address holding the most of that resource,
// so a flooding exporter evicts its own state before a quiet one's.
//
// A Budget is safe for concurrent use: sessions of different goroutines
// (UDP readers, TCP connections) may share it. Its lock also guards the
// template tables of those sessions, which it may evict from.
type Budget struct {
	mu        sync.Mutex
	lim       [numResources]int
	total     [numResources]int
	exporters map[netip.Addr]*exporterState
	heaps     [numResources]exporterHeap
	evicted   map[netip.Addr]*[numResources]uint64
	evTotal   [numResources]uint64
	evCount   atomic.Uint64 // sum of evTotal, readable without the lock
}

// NewBudget returns a budget with the given limits.
func NewBudget(l Limits) *Budget {
	l = l.withDefaults()
	b := &Budget{
		lim:       [numResources]int{l.MaxSessions, l.MaxTemplates, l.MaxTemplateFields, l.MaxPendingBytes},
		exporters: make(map[netip.Addr]*exporterState),
		evicted:   make(map[netip.Addr]*[numResources]uint64),
	}
	for r := range b.heaps {
		b.heaps[r].r = Resource(r)
	}
	return b
}

// Limits returns the budget's limits.
func (b *Budget) Limits() Limits {
	return Limits{b.lim[ResSessions], b.lim[ResTemplates], b.lim[ResFields], b.lim[ResPendingBytes]}
}

// Usage returns the state held by all sessions.
func (b *Budget) Usage() Usage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return usageOf(b.total)
}

// Evictions returns the evictions over all exporters.
func (b *Budget) Evictions() Evictions {
	b.mu.Lock()
	defer b.mu.Unlock()
	return evictionsOf(b.evTotal)
}

// EvictionCount returns the number of evictions so far, of any resource,
// without taking the lock (cheap enough to poll per message).
func (b *Budget) EvictionCount() uint64 { return b.evCount.Load() }

// Exporters returns, per exporter address, the state held and the
// evictions counted (exporters holding nothing appear if they had
// evictions). The order is unspecified.
func (b *Budget) Exporters() []ExporterUsage {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ExporterUsage, 0, len(b.exporters)+len(b.evicted))
	seen := make(map[netip.Addr]int, len(b.exporters))
	for a, ex := range b.exporters {
		seen[a] = len(out)
		out = append(out, ExporterUsage{Exporter: a, Usage: usageOf(ex.use)})
	}
	for a, ev := range b.evicted {
		if i, ok := seen[a]; ok {
			out[i].Evictions = evictionsOf(*ev)
			continue
		}
		out = append(out, ExporterUsage{Exporter: a, Evictions: evictionsOf(*ev)})
	}
	return out
}

// exporterState is what one exporter address holds, in LRU order.
type exporterState struct {
	addr      netip.Addr
	use       [numResources]int
	idx       [numResources]int // position in each heap
	scopes    lru.List[scope]
	templates lru.List[tmplEntry]
	pending   lru.List[pendingSet] // arrival order
}

// scope is the template state of one observation domain of a session.
type scope struct {
	node      lru.Node[scope]
	sess      *Session
	ex        *exporterState
	domain    uint32
	dead      bool                  // evicted or released
	templates map[uint16]*tmplEntry // nil until the first template
	pending   lru.List[pendingSet]
	seq       seqState
}

type tmplEntry struct {
	node    lru.Node[tmplEntry]
	sc      *scope
	t       *Template
	expires time.Time // zero: never (non-UDP)
}

type seqState struct {
	next  uint32
	valid bool
}

type pendingSet struct {
	exNode  lru.Node[pendingSet] // in the exporter's arrival order
	scNode  lru.Node[pendingSet] // in the scope's
	sc      *scope
	header  MessageHeader
	setID   uint16
	data    []byte // an exact copy, never a view into a message
	arrived time.Time
}

func (p *pendingSet) cost() int { return len(p.data) + pendingOverhead }

// exporterHeap orders exporters by their use of one resource, most first.
type exporterHeap struct {
	r Resource
	s []*exporterState
}

func (h *exporterHeap) Len() int           { return len(h.s) }
func (h *exporterHeap) Less(i, j int) bool { return h.s[i].use[h.r] > h.s[j].use[h.r] }
func (h *exporterHeap) Swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.s[i].idx[h.r], h.s[j].idx[h.r] = i, j
}
func (h *exporterHeap) Push(x any) {
	ex := x.(*exporterState)
	ex.idx[h.r] = len(h.s)
	h.s = append(h.s, ex)
}
func (h *exporterHeap) Pop() any {
	ex := h.s[len(h.s)-1]
	h.s[len(h.s)-1] = nil
	h.s = h.s[:len(h.s)-1]
	return ex
}

// exporterLocked returns the state of addr, creating it.
func (b *Budget) exporterLocked(addr netip.Addr) *exporterState {
	if ex := b.exporters[addr]; ex != nil {
		return ex
	}
	ex := &exporterState{addr: addr}
	b.exporters[addr] = ex
	for r := range b.heaps {
		heap.Push(&b.heaps[r], ex)
	}
	return ex
}

// charge adds n (negative: releases) of r to ex and forgets ex once it
// holds nothing.
func (b *Budget) charge(ex *exporterState, r Resource, n int) {
	if n == 0 {
		return
	}
	ex.use[r] += n
	b.total[r] += n
	heap.Fix(&b.heaps[r], ex.idx[r])
	if n < 0 && ex.use == ([numResources]int{}) {
		for r := range b.heaps {
			heap.Remove(&b.heaps[r], ex.idx[r])
		}
		delete(b.exporters, ex.addr)
	}
}

// reserve makes room for n more of r, evicting the least recently used
// state of the exporter holding the most of r until it fits. It reports
// false if it cannot (n alone exceeds the bound).
func (b *Budget) reserve(r Resource, n int) bool {
	if n > b.lim[r] {
		return false
	}
	for b.total[r]+n > b.lim[r] {
		h := &b.heaps[r]
		if h.Len() == 0 || h.s[0].use[r] == 0 {
			return false
		}
		b.evictOne(h.s[0], r)
	}
	return true
}

// evictOne evicts ex's least recently used unit of r.
func (b *Budget) evictOne(ex *exporterState, r Resource) {
	ev := b.evicted[ex.addr]
	if ev == nil {
		a := ex.addr
		if len(b.evicted) >= maxEvictionExporters {
			a = netip.IPv6Unspecified()
			ev = b.evicted[a]
		}
		if ev == nil {
			ev = new([numResources]uint64)
			b.evicted[a] = ev
		}
	}
	ev[r]++
	b.evTotal[r]++
	b.evCount.Add(1)
	switch r {
	case ResSessions:
		b.releaseScope(ex.scopes.Front())
	case ResTemplates, ResFields:
		b.removeTemplate(ex.templates.Front())
	case ResPendingBytes:
		b.removePending(ex.pending.Front())
	}
}

// newScope charges and links a scope of s for domain.
func (b *Budget) newScope(s *Session, domain uint32) *scope {
	b.reserve(ResSessions, 1) // always succeeds: MaxSessions ≥ 1
	ex := b.exporterLocked(s.key.Exporter.Addr())
	sc := &scope{sess: s, ex: ex, domain: domain}
	ex.scopes.PushBack(&sc.node, sc)
	if s.scopes == nil {
		s.scopes = make(map[uint32]*scope)
	}
	s.scopes[domain] = sc
	b.charge(ex, ResSessions, 1)
	return sc
}

// releaseScope frees a scope with its templates and pending data.
func (b *Budget) releaseScope(sc *scope) {
	for _, e := range sc.templates {
		b.removeTemplate(e)
	}
	for p := sc.pending.Front(); p != nil; p = sc.pending.Front() {
		b.removePending(p)
	}
	sc.ex.scopes.Remove(&sc.node)
	sc.dead = true
	s := sc.sess
	delete(s.scopes, sc.domain)
	if s.cur == sc {
		s.cur = nil
	}
	b.charge(sc.ex, ResSessions, -1)
}

// addTemplate stores t in sc, replacing an entry of the same id. It
// reports false if the bounds leave no room.
func (b *Budget) addTemplate(sc *scope, t *Template, expires time.Time) bool {
	if old := sc.templates[t.ID]; old != nil {
		b.removeTemplate(old)
	}
	if !b.reserve(ResTemplates, 1) || !b.reserve(ResFields, len(t.Fields)) || sc.dead {
		return false
	}
	e := &tmplEntry{sc: sc, t: t, expires: expires}
	if sc.templates == nil {
		sc.templates = make(map[uint16]*tmplEntry)
	}
	sc.templates[t.ID] = e
	sc.ex.templates.PushBack(&e.node, e)
	sc.sess.numTemplates++
	b.charge(sc.ex, ResTemplates, 1)
	b.charge(sc.ex, ResFields, len(e.t.Fields))
	return true
}

func (b *Budget) removeTemplate(e *tmplEntry) {
	sc := e.sc
	delete(sc.templates, e.t.ID)
	if len(sc.templates) == 0 {
		sc.templates = nil // let the map's buckets go
	}
	sc.ex.templates.Remove(&e.node)
	sc.sess.numTemplates--
	ex := sc.ex
	b.charge(ex, ResFields, -len(e.t.Fields))
	b.charge(ex, ResTemplates, -1)
}

// addPending buffers p in sc. It reports false if the bound leaves no
// room.
func (b *Budget) addPending(sc *scope, p *pendingSet) bool {
	if !b.reserve(ResPendingBytes, p.cost()) {
		return false
	}
	p.sc = sc
	sc.pending.PushBack(&p.scNode, p)
	sc.ex.pending.PushBack(&p.exNode, p)
	sc.sess.pendingBytes += p.cost()
	b.charge(sc.ex, ResPendingBytes, p.cost())
	return true
}

func (b *Budget) removePending(p *pendingSet) {
	sc := p.sc
	sc.pending.Remove(&p.scNode)
	sc.ex.pending.Remove(&p.exNode)
	sc.sess.pendingBytes -= p.cost()
	b.charge(sc.ex, ResPendingBytes, -p.cost())
}
