package mining

import (
	"time"

	"github.com/mission-ids/mission/internal/lru"
)

// Bits of the per-case checks already reported.
const (
	bitStart uint16 = 1 << iota
	bitDF
	bitEnd
	bitLength
	bitOccMax
	bitOccMin
	bitNever
	bitBefore
	bitAfter
	bitEquiv
	bitTemporal
)

// openCase is a case (a correlation id) the detector has seen and not yet
// closed: its events in start order and what was reported.
type openCase struct {
	key         string // raw correlation bytes
	first, last time.Time
	n           int
	acts        []int32 // activity ids, -1 unknown
	times       []int64
	flows       []uint64
	refs        []FlowRef
	reported    uint16
	// tainted: the case has an activity the model lacks; that was alerted
	// (unknown-activity) and the case's other checks would only repeat it.
	tainted bool
	// undelivered: a PUBLISH of the case matched no subscription seen (it
	// went to nobody), so the case correctly ends early (subs.go).
	undelivered bool
	// checked: the events acts[:checked] (in start order) had their
	// order-dependent checks; pidx is the case's index in Detector.pending
	// while some have not (-1 otherwise).
	checked int
	pidx    int
	node    lru.Node[openCase] // in Detector.recent
}

// newCase opens a case; at MaxOpenCases the case seen least recently is
// evicted first, without its end-of-case checks.
func (d *Detector) newCase(key string, t time.Time) *openCase {
	if len(d.cases) >= d.opts.MaxOpenCases {
		if old := d.recent.Front(); old != nil {
			d.remove(old)
			d.stats.Evicted++
		}
	}
	var c *openCase
	if n := len(d.free); n > 0 {
		c = d.free[n-1]
		d.free = d.free[:n-1]
		*c = openCase{acts: c.acts[:0], times: c.times[:0], flows: c.flows[:0], refs: c.refs[:0]}
	} else {
		c = &openCase{}
	}
	c.key, c.first, c.last, c.pidx = key, t, t, -1
	if !t.After(d.cutUntil) {
		d.cut(c) // starts right after a pickup: may miss its first events (identity.go)
	}
	d.cases[key] = c
	d.recent.PushBack(&c.node, c)
	return c
}

// touch marks c as the case seen most recently.
func (d *Detector) touch(c *openCase) { d.recent.MoveToBack(&c.node) }

// remove forgets c (closed or evicted) and keeps it for reuse.
func (d *Detector) remove(c *openCase) {
	d.pending.remove(c)
	d.recent.Remove(&c.node)
	delete(d.cases, c.key)
	if len(d.free) < 256 {
		d.free = append(d.free, c)
	}
}
