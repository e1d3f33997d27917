package mining

import (
	"fmt"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/lru"
)

// DetectorStats counts what a Detector did.
type DetectorStats struct {
	Flows     uint64           `json:"flows"`
	OpenCases int              `json:"openCases"`
	Closed    uint64           `json:"closedCases"`
	Evicted   uint64           `json:"evictedCases"`
	Alerts    map[Check]uint64 `json:"alerts"`
}

type suppressKey struct {
	check         Check
	client, topic string
}

// Detector checks flows one at a time against a model. It is not safe for
// concurrent use; its memory is bounded by DetectorOptions.
type Detector struct {
	compiled
	opts  DetectorOptions
	namer *Namer

	cases      map[string]*openCase // by raw correlation bytes
	recent     lru.List[openCase]   // the open cases, least recently seen first
	free       []*openCase
	rates      map[rateKey]*rateCounter
	suppressed map[suppressKey]time.Time
	stats      DetectorStats
	prof       caseProfile // scratch of closeCase

	// clock is the latest flow start seen (ns); pending holds the cases
	// with events not yet order-checked.
	clock   int64
	pending reorderQueue
}

// NewDetector prepares a detector for model m.
func NewDetector(m *Model, opts DetectorOptions) *Detector {
	opts.defaults()
	d := &Detector{
		compiled: compile(m, &opts), opts: opts,
		cases: map[string]*openCase{}, rates: map[rateKey]*rateCounter{}, suppressed: map[suppressKey]time.Time{},
	}
	d.namer = NewNamer(d.brokers...)
	d.stats.Alerts = map[Check]uint64{}
	return d
}

// Stats returns counters of the detector's work.
func (d *Detector) Stats() DetectorStats {
	s := d.stats
	s.OpenCases = len(d.cases)
	s.Alerts = make(map[Check]uint64, len(d.stats.Alerts))
	for k, v := range d.stats.Alerts {
		s.Alerts[k] = v
	}
	return s
}

func (d *Detector) emit(out []Alert, a Alert) []Alert {
	d.stats.Alerts[a.Check]++
	return append(out, a)
}

// once reports whether a per-client alert is due (not raised for the same
// key within Repeat) and notes it.
func (d *Detector) once(check Check, client, topic string, t time.Time) bool {
	k := suppressKey{check, client, topic}
	if last, ok := d.suppressed[k]; ok && t.Sub(last) < d.opts.Repeat {
		return false
	}
	if len(d.suppressed) < d.opts.MaxTracked {
		d.suppressed[k] = t
	} else if _, ok := d.suppressed[k]; ok {
		d.suppressed[k] = t
	}
	return true
}

// Observe checks one flow and returns the alerts it raises (nil if none).
// Flows should arrive roughly in time order; the detector's clock is the
// flows' start times. End-of-case checks run in Advance.
func (d *Detector) Observe(r *flow.Record) (out []Alert) {
	d.stats.Flows++
	d.namer.Learn(r)
	client := d.namer.Name(r.SrcClientID, r.SrcAddr, r.SrcPort)
	t := r.Start
	if tn := t.UnixNano(); tn > d.clock {
		d.clock = tn
	}
	defer func() { out = d.settle(out, d.clock-int64(d.opts.Reorder)) }()
	if client != Broker && d.clients[client] == nil && d.once(CheckUnknownClient, client, "", t) {
		out = d.emit(out, Alert{
			Check: CheckUnknownClient, Severity: SeverityMedium, Time: t, Client: client, Topic: r.Topic,
			Flows:   []uint64{r.FlowID},
			Message: fmt.Sprintf("%s from client %q, never seen in training", r.ControlType, client),
		})
	}
	switch r.ControlType {
	case flow.Publish, flow.Connect:
		out = d.rate(out, client, r)
	case flow.Subscribe:
		out = d.rate(out, client, r)
		out = d.subscription(out, client, r)
	}
	if r.ControlType == flow.Publish {
		out = d.publish(out, client, r)
	}
	return out
}

// Advance moves the detector's clock to now: cases without an event for
// CaseTimeout are closed and get their end-of-case checks (end activity,
// always-after, equivalence, minimum occurrences); stale rate counters and
// suppression entries are dropped. Call it periodically (e.g. every second)
// with the time of the latest flow or the wall clock.
func (d *Detector) Advance(now time.Time) []Alert {
	var out []Alert
	out = d.settle(out, max(now.UnixNano(), d.clock)-int64(d.opts.Reorder))
	for c := d.recent.Front(); c != nil && now.Sub(c.last) >= d.opts.CaseTimeout; c = d.recent.Front() {
		out = d.closeCase(out, c)
	}
	w := now.UnixNano() / d.window
	for k, rc := range d.rates {
		if rc.window < w-1 {
			delete(d.rates, k)
		}
	}
	for k, t := range d.suppressed {
		if now.Sub(t) >= d.opts.Repeat {
			delete(d.suppressed, k)
		}
	}
	return out
}

// Flush closes every open case with its end-of-case checks (at the end of
// a capture or a replayed log).
func (d *Detector) Flush() []Alert {
	var out []Alert
	for c := d.recent.Front(); c != nil; c = d.recent.Front() {
		out = d.closeCase(out, c)
	}
	return out
}
