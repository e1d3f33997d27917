package mining

import (
	"container/heap"
	"slices"
	"time"

	"github.com/mission-ids/mission/flow"
)

// Sequencer puts flows in start order before detection, so that the
// detector sees the same sequence whether flows come sorted (mission
// detect over stored flows or a file) or as a collector hands them over
// (when they end: a QoS 2 PUBLISH's delivery often ends before the
// publisher's own flow). It holds each flow until the latest flow start
// seen is Delay past its start (ties in start order broken by flow id),
// then releases it. A flow that comes later than that is released at once
// (counted as late). Memory is bounded by Max flows; at the bound the
// earliest is released early (counted).
//
// The Sequencer's clock is flow time only; Drain releases everything
// (at the end of input, or when a Monitor saw no flow for a while).
type Sequencer struct {
	delay    int64
	max      int
	h        recHeap
	clock    int64 // latest flow start seen (ns)
	released int64 // latest start released (ns)
	seq      uint64
	stats    SequencerStats
}

// SequencerStats counts what a Sequencer did.
type SequencerStats struct {
	Buffered int    `json:"buffered"` // flows held now
	Late     uint64 `json:"late"`     // flows that came after later-starting flows had been released
	Forced   uint64 `json:"forced"`   // flows released early at the Max bound
}

// DefaultSequencerMax is the default bound of flows a Sequencer holds.
const DefaultSequencerMax = 100_000

// NewSequencer holds flows for delay (≤ 0: released at once, in arrival
// order) and at most max of them (≤ 0: DefaultSequencerMax).
func NewSequencer(delay time.Duration, max int) *Sequencer {
	if max <= 0 {
		max = DefaultSequencerMax
	}
	return &Sequencer{delay: int64(delay), max: max}
}

type seqItem struct {
	start int64
	id    uint64
	seq   uint64 // arrival order: the last tie-breaker
	rec   *flow.Record
}

type recHeap []seqItem

func (h recHeap) Len() int { return len(h) }
func (h recHeap) Less(i, j int) bool {
	a, b := &h[i], &h[j]
	if a.start != b.start {
		return a.start < b.start
	}
	if a.id != b.id {
		return a.id < b.id
	}
	return a.seq < b.seq
}
func (h recHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *recHeap) Push(x any)   { *h = append(*h, x.(seqItem)) }
func (h *recHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = seqItem{}
	*h = old[:len(old)-1]
	return it
}

// Push takes a flow (copied: the caller may reuse r) and calls emit for
// every flow now due, in start order.
func (s *Sequencer) Push(r *flow.Record, emit func(*flow.Record)) {
	tn := r.Start.UnixNano()
	if s.delay <= 0 {
		emit(r)
		return
	}
	if tn > s.clock {
		s.clock = tn
	}
	if tn < s.released {
		s.stats.Late++ // a flow starting after it was released already
	}
	c := *r
	c.CorrelationData = slices.Clone(r.CorrelationData)
	c.TopicFilters = slices.Clone(r.TopicFilters)
	if r.CoAP != nil {
		co := *r.CoAP
		co.Token = slices.Clone(co.Token)
		c.CoAP = &co
	}
	s.seq++
	heap.Push(&s.h, seqItem{start: tn, id: r.FlowID, seq: s.seq, rec: &c})
	for len(s.h) > s.max {
		s.stats.Forced++
		s.emit(emit)
	}
	s.release(s.clock-s.delay, emit)
}

func (s *Sequencer) release(horizon int64, emit func(*flow.Record)) {
	for len(s.h) > 0 && s.h[0].start <= horizon {
		s.emit(emit)
	}
}

// Drain releases every flow held, in start order.
func (s *Sequencer) Drain(emit func(*flow.Record)) {
	for len(s.h) > 0 {
		s.emit(emit)
	}
}

// emit releases the earliest flow held.
func (s *Sequencer) emit(emit func(*flow.Record)) {
	it := heap.Pop(&s.h).(seqItem)
	s.released = max(s.released, it.start)
	emit(it.rec)
}

// Stats returns the sequencer's counters.
func (s *Sequencer) Stats() SequencerStats {
	st := s.stats
	st.Buffered = len(s.h)
	return st
}
