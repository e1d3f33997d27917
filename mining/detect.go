package mining

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/mission-ids/mission/flow"
)

// Check names a detection check; every alert has exactly one.
type Check string

// Checks.
const (
	CheckUnknownActivity    Check = "unknown-activity"    // PUBLISH by a client on a topic never seen together
	CheckUnknownClient      Check = "unknown-client"      // a flow from a client the model does not know
	CheckDirectlyFollows    Check = "directly-follows"    // case start, step or end not in the directly-follows model
	CheckSkeleton           Check = "skeleton"            // log-skeleton constraint violated
	CheckTemporal           Check = "temporal"            // time between two activities of a case far from normal
	CheckRate               Check = "rate"                // PUBLISH / SUBSCRIBE / CONNECT rate above the learned bound
	CheckSubscription       Check = "subscription"        // wildcard or $SYS subscription by a client that never made one
	CheckMissingCorrelation Check = "missing-correlation" // PUBLISH without correlation id on a topic that always has one
)

// Severity ranks alerts.
type Severity string

// Severities.
const (
	SeverityLow    Severity = "low"
	SeverityMedium Severity = "medium"
	SeverityHigh   Severity = "high"
)

// Alert is one detection. Flows are the flow ids involved (at most
// maxAlertFlows, the most recent last).
type Alert struct {
	Check    Check     `json:"check"`
	Severity Severity  `json:"severity"`
	Time     time.Time `json:"time"`
	Client   string    `json:"client,omitempty"`
	Topic    string    `json:"topic,omitempty"`
	Case     string    `json:"case,omitempty"`
	Flows    []uint64  `json:"flows,omitempty"`
	Message  string    `json:"message"`
}

const maxAlertFlows = 16

// DetectorOptions tune a Detector. Zero values select the defaults.
type DetectorOptions struct {
	// MaxOpenCases bounds the cases held open; at the bound the case seen
	// least recently is evicted without its end-of-case checks (default 10000).
	MaxOpenCases int
	// MaxCaseEvents bounds the events remembered per case (default 64);
	// later events are counted, and a case that long already raised a
	// skeleton alert unless the model allows such cases.
	MaxCaseEvents int
	// CaseTimeout closes a case that saw no event for this long (default 30 s).
	CaseTimeout time.Duration
	// RateFactor and RateSlack make the rate bound: a client may start
	// ceil(learned × RateFactor) + RateSlack flows of a type per window
	// (defaults 2 and 5).
	RateFactor float64
	RateSlack  int
	// Zeta and MinTemporalSlack make the temporal bound: a deviation from
	// the mean beyond max(Zeta × standard deviation, MinTemporalSlack)
	// alerts (defaults 6 and 1 s). Pairs seen fewer than MinTemporalCount
	// times in training are not checked (default 3).
	Zeta             float64
	MinTemporalSlack time.Duration
	MinTemporalCount int
	// Repeat suppresses repeats of the same per-client alert (check,
	// client, topic or filter) within this time (default 60 s).
	Repeat time.Duration
	// MaxTracked bounds the per-client rate counters and the suppression
	// table each (default 10000).
	MaxTracked int
	// Reorder is how late a flow may arrive compared with flows that
	// started after it (default 500 ms). A collector hands flows over when
	// they end, not when they start: on a real broker the delivery of a
	// QoS 2 PUBLISH to a subscriber often ends, and arrives, before the
	// publisher's own flow (which waits for PUBCOMP). A case keeps its
	// events in start order; the checks that depend on that order (start
	// activity, directly-follows, always-before, temporal) run for an event
	// once the detector's clock (the latest flow start seen, or Advance) is
	// Reorder past its start, so they are raised about Reorder after the
	// flow. Order-free checks are raised at once.
	Reorder time.Duration
}

func (o *DetectorOptions) defaults() {
	if o.MaxOpenCases <= 0 {
		o.MaxOpenCases = 10000
	}
	if o.MaxCaseEvents <= 0 {
		o.MaxCaseEvents = 64
	}
	if o.CaseTimeout <= 0 {
		o.CaseTimeout = 30 * time.Second
	}
	if o.RateFactor <= 0 {
		o.RateFactor = 2
	}
	if o.RateSlack <= 0 {
		o.RateSlack = 5
	}
	if o.Zeta <= 0 {
		o.Zeta = 6
	}
	if o.MinTemporalSlack <= 0 {
		o.MinTemporalSlack = time.Second
	}
	if o.MinTemporalCount <= 0 {
		o.MinTemporalCount = 3
	}
	if o.Repeat <= 0 {
		o.Repeat = time.Minute
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = 10000
	}
	if o.Reorder <= 0 {
		o.Reorder = 500 * time.Millisecond
	}
}

// DetectorStats counts what a Detector did.
type DetectorStats struct {
	Flows     uint64           `json:"flows"`
	OpenCases int              `json:"openCases"`
	Closed    uint64           `json:"closedCases"`
	Evicted   uint64           `json:"evictedCases"`
	Alerts    map[Check]uint64 `json:"alerts"`
}

type actKey struct{ client, topic string }

type rateKey struct {
	client string
	typ    flow.ControlType
}

type rateCounter struct {
	window  int64
	n       int
	alerted bool
	flows   [8]uint64 // ring of the last flows
}

type suppressKey struct {
	check         Check
	client, topic string
}

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

type openCase struct {
	key         string // raw correlation bytes
	first, last time.Time
	n           int
	acts        []int32 // activity ids, -1 unknown
	times       []int64
	flows       []uint64
	reported    uint16
	// tainted: the case has an activity the model lacks; that was alerted
	// (unknown-activity) and the case's other checks would only repeat it.
	tainted bool
	// checked: the events acts[:checked] (in start order) had their
	// order-dependent checks; pidx is the case's index in Detector.pending
	// while some have not (-1 otherwise).
	checked    int
	pidx       int
	prev, next *openCase // LRU list, least recently seen first
}

// Detector checks flows one at a time against a model. It is not safe for
// concurrent use; its memory is bounded by DetectorOptions.
type Detector struct {
	m    *Model
	opts DetectorOptions
	// window is the model's rate window (10 s if the model has none).
	window int64

	namer      *Namer
	actID      map[actKey]int32
	acts       []ActivityInfo
	start, end []bool
	df         map[uint64]bool
	occMin     []int
	occMax     []int
	never      map[uint64]bool
	before     [][]int32
	after      [][]int32
	equiv      [][]int32
	temporal   map[uint64]Temporal
	clients    map[string]*ClientProfile
	unknownMax ClientProfile // highest learned rates: the bound for unknown clients
	correlated map[string]bool
	caseMax    int

	cases      map[string]*openCase
	head, tail *openCase
	free       []*openCase
	rates      map[rateKey]*rateCounter
	suppressed map[suppressKey]time.Time
	stats      DetectorStats

	// clock is the latest flow start seen (ns); pending are the cases
	// with events not yet order-checked, pendingMin the earliest start of
	// such an event (an upper bound on it, lowered as events arrive).
	clock      int64
	pending    []*openCase
	pendingMin int64
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// NewDetector prepares a detector for model m.
func NewDetector(m *Model, opts DetectorOptions) *Detector {
	opts.defaults()
	d := &Detector{
		m: m, opts: opts, window: int64(m.RateWindow), namer: NewNamer(),
		actID: map[actKey]int32{}, df: map[uint64]bool{}, never: map[uint64]bool{},
		temporal: map[uint64]Temporal{}, clients: map[string]*ClientProfile{}, correlated: map[string]bool{},
		cases: map[string]*openCase{}, rates: map[rateKey]*rateCounter{}, suppressed: map[suppressKey]time.Time{},
		caseMax: m.Skeleton.CaseLength.Max,
	}
	d.stats.Alerts = map[Check]uint64{}
	if d.window <= 0 {
		d.window = int64(10 * time.Second)
	}
	for _, b := range m.Brokers {
		if ap, err := netip.ParseAddrPort(b); err == nil {
			d.namer.brokers[ap] = struct{}{}
		}
	}
	byName := map[string]int32{}
	d.acts = m.Activities
	n := len(m.Activities)
	d.start, d.end = make([]bool, n), make([]bool, n)
	d.occMin, d.occMax = make([]int, n), make([]int, n)
	d.before, d.after, d.equiv = make([][]int32, n), make([][]int32, n), make([][]int32, n)
	for i, a := range m.Activities {
		byName[a.Activity] = int32(i)
		d.actID[actKey{a.Client, a.Topic}] = int32(i)
		d.occMax[i] = math.MaxInt
	}
	id := func(name string) (int32, bool) { i, ok := byName[name]; return i, ok }
	for _, s := range m.Start {
		if i, ok := id(s.Activity); ok {
			d.start[i] = true
		}
	}
	for _, s := range m.End {
		if i, ok := id(s.Activity); ok {
			d.end[i] = true
		}
	}
	for _, e := range m.DirectlyFollows {
		a, ok1 := id(e.From)
		b, ok2 := id(e.To)
		if ok1 && ok2 {
			d.df[pairKey(a, b)] = true
		}
	}
	for _, o := range m.Skeleton.Occurrences {
		if i, ok := id(o.Activity); ok {
			d.occMin[i], d.occMax[i] = o.Min, o.Max
		}
	}
	rel := func(ps []Pair, dst [][]int32) {
		for _, p := range ps {
			a, ok1 := id(p.A)
			b, ok2 := id(p.B)
			if ok1 && ok2 {
				dst[a] = append(dst[a], b)
			}
		}
	}
	rel(m.Skeleton.AlwaysBefore, d.before)
	rel(m.Skeleton.AlwaysAfter, d.after)
	rel(m.Skeleton.Equivalence, d.equiv)
	for _, p := range m.Skeleton.NeverTogether {
		a, ok1 := id(p.A)
		b, ok2 := id(p.B)
		if ok1 && ok2 {
			d.never[pairKey(a, b)] = true
			d.never[pairKey(b, a)] = true
		}
	}
	for _, t := range m.Temporal {
		a, ok1 := id(t.From)
		b, ok2 := id(t.To)
		if ok1 && ok2 && t.Count >= opts.MinTemporalCount {
			d.temporal[pairKey(a, b)] = t
		}
	}
	for i := range m.Clients {
		c := &m.Clients[i]
		d.clients[c.Client] = c
		for _, t := range rateTypes {
			d.unknownMax.setRate(t, c.rate(t))
		}
	}
	for _, t := range m.CorrelatedTopics {
		d.correlated[t] = true
	}
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

func (d *Detector) bound(client string, typ flow.ControlType) int {
	var learned int
	switch {
	case client == TotalClient:
		learned = d.m.Total.rate(typ)
	case d.clients[client] != nil:
		learned = d.clients[client].rate(typ)
	default:
		learned = d.unknownMax.rate(typ)
	}
	return int(math.Ceil(float64(learned)*d.opts.RateFactor)) + d.opts.RateSlack
}

func (d *Detector) rate(out []Alert, client string, r *flow.Record) []Alert {
	w := r.Start.UnixNano() / d.window
	for _, c := range [2]string{client, TotalClient} {
		k := rateKey{c, r.ControlType}
		rc := d.rates[k]
		if rc == nil {
			if len(d.rates) >= d.opts.MaxTracked {
				continue
			}
			rc = &rateCounter{window: w}
			d.rates[k] = rc
		}
		if rc.window != w {
			*rc = rateCounter{window: w}
		}
		rc.flows[rc.n%len(rc.flows)] = r.FlowID
		rc.n++
		if b := d.bound(c, r.ControlType); rc.n > b && !rc.alerted {
			rc.alerted = true
			who := fmt.Sprintf("client %q", c)
			if c == TotalClient {
				who = "all clients together"
			}
			out = d.emit(out, Alert{
				Check: CheckRate, Severity: SeverityHigh, Time: r.Start, Client: c,
				Flows: rc.recent(),
				Message: fmt.Sprintf("%s flood: %s started more than %d %s flows in %s (bound from training)",
					r.ControlType, who, b, r.ControlType, time.Duration(d.window)),
			})
		}
	}
	return out
}

func (rc *rateCounter) recent() []uint64 {
	n := min(rc.n, len(rc.flows))
	out := make([]uint64, 0, n)
	for i := rc.n - n; i < rc.n; i++ {
		out = append(out, rc.flows[i%len(rc.flows)])
	}
	return out
}

func (d *Detector) subscription(out []Alert, client string, r *flow.Record) []Alert {
	p := d.clients[client]
	for _, f := range r.TopicFilters {
		sys, wild := isSys(f), isWildcard(f)
		if (sys && (p == nil || !p.Sys)) || (wild && (p == nil || !p.Wildcard)) {
			if !d.once(CheckSubscription, client, f, r.Start) {
				continue
			}
			sev, what := SeverityMedium, "wildcard"
			if sys {
				sev, what = SeverityHigh, "$SYS"
			}
			out = d.emit(out, Alert{
				Check: CheckSubscription, Severity: sev, Time: r.Start, Client: client, Topic: f,
				Flows:   []uint64{r.FlowID},
				Message: fmt.Sprintf("%s subscription %q by %q, which never made one in training (reconnaissance?)", what, f, client),
			})
		}
	}
	return out
}

func (d *Detector) publish(out []Alert, client string, r *flow.Record) []Alert {
	t := r.Start
	act, known := d.actID[actKey{client, r.Topic}]
	if !known {
		act = -1
		if d.once(CheckUnknownActivity, client, r.Topic, t) {
			out = d.emit(out, Alert{
				Check: CheckUnknownActivity, Severity: SeverityHigh, Time: t, Client: client, Topic: r.Topic,
				Case: flow.CorrelationText(r.CorrelationData), Flows: []uint64{r.FlowID},
				Message: fmt.Sprintf("%q published to %q, never seen in training", client, r.Topic),
			})
		}
	}
	if len(r.CorrelationData) == 0 {
		if d.correlated[r.Topic] && d.once(CheckMissingCorrelation, client, r.Topic, t) {
			out = d.emit(out, Alert{
				Check: CheckMissingCorrelation, Severity: SeverityMedium, Time: t, Client: client, Topic: r.Topic,
				Flows:   []uint64{r.FlowID},
				Message: fmt.Sprintf("PUBLISH by %q to %q without correlation id; every PUBLISH there had one in training", client, r.Topic),
			})
		}
		return out
	}

	c := d.cases[string(r.CorrelationData)]
	if c == nil {
		c = d.newCase(string(r.CorrelationData), t)
	} else {
		d.touch(c)
	}
	c.n++
	tn := t.UnixNano()
	if t.After(c.last) {
		c.last = t
	}
	pos := -1
	if len(c.acts) < d.opts.MaxCaseEvents {
		// In start order: a flow that arrives late goes to its place.
		pos = len(c.acts)
		for pos > 0 && c.times[pos-1] > tn {
			pos--
		}
		c.acts = slices.Insert(c.acts, pos, act)
		c.times = slices.Insert(c.times, pos, tn)
		c.flows = slices.Insert(c.flows, pos, r.FlowID)
		if pos < c.checked {
			c.checked++ // later than Reorder: checked below, in place
		}
	}
	alert := func(bit uint16, check Check, sev Severity, msg string) {
		c.reported |= bit
		out = d.emit(out, Alert{
			Check: check, Severity: sev, Time: t, Client: client, Topic: r.Topic,
			Case: flow.CorrelationText(r.CorrelationData), Flows: lastFlows(c.flows, r.FlowID), Message: msg,
		})
	}
	if c.n > d.caseMax && c.reported&bitLength == 0 {
		alert(bitLength, CheckSkeleton, SeverityHigh, fmt.Sprintf(
			"case has %d events, at most %d in training (correlation id reused?)", c.n, d.caseMax))
	}
	if act < 0 {
		c.tainted = true
	}
	if c.tainted || c.n > len(c.acts) {
		return out // unknown activity (alerted above) or a case past the memory bound
	}
	name := d.acts[act].Activity
	// Order-free skeleton checks: occurrences, never-together.
	if c.reported&bitOccMax == 0 {
		n := 0
		for _, a := range c.acts {
			if a == act {
				n++
			}
		}
		if n > d.occMax[act] {
			alert(bitOccMax, CheckSkeleton, SeverityHigh, fmt.Sprintf("%q occurs %d times in the case, at most %d in training (correlation id reused?)", name, n, d.occMax[act]))
		}
	}
	if c.reported&bitNever == 0 {
		for j, a := range c.acts {
			if j != pos && a >= 0 && d.never[pairKey(a, act)] {
				alert(bitNever, CheckSkeleton, SeverityMedium, fmt.Sprintf("%q and %q in one case; never together in training", d.acts[a].Activity, name))
				break
			}
		}
	}
	// The order-dependent checks wait until no earlier flow can still come.
	if pos < c.checked {
		return d.orderChecks(out, c, pos)
	}
	if c.pidx < 0 {
		c.pidx = len(d.pending)
		d.pending = append(d.pending, c)
	}
	if len(d.pending) == 1 || tn < d.pendingMin {
		d.pendingMin = tn
	}
	return out
}

// settle runs the order-dependent checks of every pending event that
// started at or before horizon (ns).
func (d *Detector) settle(out []Alert, horizon int64) []Alert {
	if len(d.pending) == 0 || horizon < d.pendingMin {
		return out
	}
	next := int64(math.MaxInt64)
	for i := 0; i < len(d.pending); {
		c := d.pending[i]
		out = d.settleCase(out, c, horizon)
		if c.pidx < 0 {
			continue // removed: d.pending[i] is another case now
		}
		next = min(next, c.times[c.checked])
		i++
	}
	d.pendingMin = next
	return out
}

// settleCase checks the case's events up to horizon, in start order.
func (d *Detector) settleCase(out []Alert, c *openCase, horizon int64) []Alert {
	for c.checked < len(c.acts) && c.times[c.checked] <= horizon {
		if !c.tainted && c.n <= len(c.acts) {
			out = d.orderChecks(out, c, c.checked)
		}
		c.checked++
	}
	if c.checked == len(c.acts) {
		d.unpend(c)
	}
	return out
}

func (d *Detector) unpend(c *openCase) {
	if c.pidx < 0 {
		return
	}
	last := len(d.pending) - 1
	d.pending[c.pidx] = d.pending[last]
	d.pending[c.pidx].pidx = c.pidx
	d.pending[last] = nil
	d.pending = d.pending[:last]
	c.pidx = -1
}

// orderChecks runs the checks of the case's i-th event (start order) that
// depend on the events before it: start activity, directly-follows,
// always-before, temporal profile.
func (d *Detector) orderChecks(out []Alert, c *openCase, i int) []Alert {
	act := c.acts[i]
	if act < 0 {
		return out
	}
	a := d.acts[act]
	name := a.Activity
	alert := func(bit uint16, check Check, sev Severity, msg string) {
		c.reported |= bit
		out = d.emit(out, Alert{
			Check: check, Severity: sev, Time: time.Unix(0, c.times[i]).UTC(), Client: a.Client, Topic: a.Topic,
			Case: flow.CorrelationText([]byte(c.key)), Flows: lastFlows(c.flows[:i+1], c.flows[i]), Message: msg,
		})
	}
	// Directly-follows.
	if i == 0 {
		if !d.start[act] && c.reported&bitStart == 0 {
			alert(bitStart, CheckDirectlyFollows, SeverityMedium, fmt.Sprintf("case starts with %q, which never started a case", name))
		}
	} else if p := c.acts[i-1]; p >= 0 && !d.df[pairKey(p, act)] && c.reported&bitDF == 0 {
		alert(bitDF, CheckDirectlyFollows, SeverityMedium, fmt.Sprintf("%q directly after %q, never seen in training", name, d.acts[p].Activity))
	}
	// Skeleton: always-before.
	if c.reported&bitBefore == 0 {
		for _, b := range d.before[act] {
			if !containsAct(c.acts[:i], b) {
				alert(bitBefore, CheckSkeleton, SeverityMedium, fmt.Sprintf("%q without %q before it; always preceded in training", name, d.acts[b].Activity))
				break
			}
		}
	}
	// Temporal profile, for cases of normal length.
	if c.reported&bitTemporal == 0 && c.n <= d.caseMax {
		for j := 0; j < i; j++ {
			p := c.acts[j]
			if p < 0 {
				continue
			}
			tp, ok := d.temporal[pairKey(p, act)]
			if !ok {
				continue
			}
			dt := time.Duration(c.times[i] - c.times[j])
			dev := dt - tp.Mean
			if dev < 0 {
				dev = -dev
			}
			limit := max(time.Duration(d.opts.Zeta*float64(tp.StdDev)), d.opts.MinTemporalSlack)
			if dev > limit {
				alert(bitTemporal, CheckTemporal, SeverityLow, fmt.Sprintf("%s from %q to %q; normally %s ± %s",
					formatDuration(dt), d.acts[p].Activity, name, formatDuration(tp.Mean), formatDuration(tp.StdDev)))
				break
			}
		}
	}
	return out
}

func containsAct(acts []int32, a int32) bool {
	for _, x := range acts {
		if x == a {
			return true
		}
	}
	return false
}

func lastFlows(flows []uint64, cur uint64) []uint64 {
	if n := len(flows); n == 0 || flows[n-1] != cur {
		flows = append(flows[:n:n], cur)
	}
	if len(flows) > maxAlertFlows {
		flows = flows[len(flows)-maxAlertFlows:]
	}
	return append([]uint64(nil), flows...)
}

func (d *Detector) newCase(key string, t time.Time) *openCase {
	if len(d.cases) >= d.opts.MaxOpenCases && d.head != nil {
		old := d.head
		d.remove(old)
		d.stats.Evicted++
	}
	var c *openCase
	if n := len(d.free); n > 0 {
		c = d.free[n-1]
		d.free = d.free[:n-1]
		*c = openCase{acts: c.acts[:0], times: c.times[:0], flows: c.flows[:0]}
	} else {
		c = &openCase{}
	}
	c.key, c.first, c.last, c.pidx = key, t, t, -1
	d.cases[key] = c
	d.pushBack(c)
	return c
}

func (d *Detector) pushBack(c *openCase) {
	c.prev, c.next = d.tail, nil
	if d.tail != nil {
		d.tail.next = c
	} else {
		d.head = c
	}
	d.tail = c
}

func (d *Detector) unlink(c *openCase) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		d.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		d.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

func (d *Detector) touch(c *openCase) {
	if d.tail != c {
		d.unlink(c)
		d.pushBack(c)
	}
}

func (d *Detector) remove(c *openCase) {
	d.unpend(c)
	d.unlink(c)
	delete(d.cases, c.key)
	if len(d.free) < 256 {
		d.free = append(d.free, c)
	}
}

// Advance moves the detector's clock to now: cases without an event for
// CaseTimeout are closed and get their end-of-case checks (end activity,
// always-after, equivalence, minimum occurrences); stale rate counters and
// suppression entries are dropped. Call it periodically (e.g. every second)
// with the time of the latest flow or the wall clock.
func (d *Detector) Advance(now time.Time) []Alert {
	var out []Alert
	out = d.settle(out, max(now.UnixNano(), d.clock)-int64(d.opts.Reorder))
	for c := d.head; c != nil && now.Sub(c.last) >= d.opts.CaseTimeout; c = d.head {
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
	for d.head != nil {
		out = d.closeCase(out, d.head)
	}
	return out
}

func (d *Detector) closeCase(out []Alert, c *openCase) []Alert {
	d.stats.Closed++
	defer d.remove(c)
	out = d.settleCase(out, c, math.MaxInt64)
	if c.tainted || c.n > len(c.acts) || c.n > d.caseMax || len(c.acts) == 0 {
		return out // reported on arrival
	}
	caseID := flow.CorrelationText([]byte(c.key))
	alert := func(bit uint16, check Check, sev Severity, act int32, msg string) {
		c.reported |= bit
		a := d.acts[act]
		out = d.emit(out, Alert{
			Check: check, Severity: sev, Time: c.last, Client: a.Client, Topic: a.Topic,
			Case: caseID, Flows: lastFlows(c.flows, c.flows[len(c.flows)-1]), Message: msg,
		})
	}
	lastAct := c.acts[len(c.acts)-1]
	if lastAct >= 0 && !d.end[lastAct] && c.reported&bitEnd == 0 {
		alert(bitEnd, CheckDirectlyFollows, SeverityMedium, lastAct, fmt.Sprintf("case ends with %q, which never ended a case", d.acts[lastAct].Activity))
	}
	count := func(a int32) int {
		n := 0
		for _, x := range c.acts {
			if x == a {
				n++
			}
		}
		return n
	}
	lastPos := func(a int32) int {
		for i := len(c.acts) - 1; i >= 0; i-- {
			if c.acts[i] == a {
				return i
			}
		}
		return -1
	}
	for i, a := range c.acts {
		if a < 0 || containsAct(c.acts[:i], a) {
			continue // each activity once
		}
		name := d.acts[a].Activity
		n := count(a)
		if n < d.occMin[a] && c.reported&bitOccMin == 0 {
			alert(bitOccMin, CheckSkeleton, SeverityLow, a, fmt.Sprintf("%q occurs %d times in the case, at least %d in training", name, n, d.occMin[a]))
		}
		if c.reported&bitAfter == 0 {
			la := lastPos(a)
			for _, b := range d.after[a] {
				if lastPos(b) <= la {
					alert(bitAfter, CheckSkeleton, SeverityMedium, a, fmt.Sprintf("%q not followed by %q; always followed in training (chain broken off?)", name, d.acts[b].Activity))
					break
				}
			}
		}
		if c.reported&bitEquiv == 0 {
			for _, b := range d.equiv[a] {
				if m := count(b); m != n {
					alert(bitEquiv, CheckSkeleton, SeverityMedium, a, fmt.Sprintf("%q occurs %d times and %q %d; always equally often in training", name, n, d.acts[b].Activity, m))
					break
				}
			}
		}
	}
	return out
}
