package mining

import (
	"fmt"
	"math"
	"strings"
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
	// Subscription state (subs.go): filters held now, filters not kept at
	// the bounds, cases that ended at a PUBLISH nobody was subscribed to
	// (not alarmed), deliveries through an alerted subscription.
	Filters      int    `json:"filters"`
	SubsDropped  uint64 `json:"subscriptionsDropped"`
	Undelivered  uint64 `json:"undeliveredCases"`
	Eavesdropped uint64 `json:"eavesdropped"`
	// Connections without client id (identity.go): held now, evicted at
	// the bound, inferred, withdrawn, unidentified (notices), and their
	// flows checked as an inferred client's or not checked per client.
	// CutCases: cases open at, or starting right after, a connection
	// picked up midstream, or open when a live capture stopped: not
	// checked further (they may miss events).
	CutCases          uint64 `json:"cutCases"`
	Connections       int    `json:"connections"`
	ConnsEvicted      uint64 `json:"connectionsEvicted"`
	Inferred          uint64 `json:"inferred"`
	Withdrawn         uint64 `json:"withdrawn"`
	Unidentified      uint64 `json:"unidentified"`
	InferredFlows     uint64 `json:"inferredFlows"`
	UnidentifiedFlows uint64 `json:"unidentifiedFlows"`
}

type suppressKey struct {
	check         Check
	client, topic string
}

// Detector checks flows one at a time against a model. It is not safe for
// concurrent use; its memory is bounded by DetectorOptions.
type Detector struct {
	compiled
	opts   DetectorOptions
	namer  *Namer
	benign flow.Anomaly // opts.BenignAnomalies

	cases      map[string]*openCase // by raw correlation bytes
	recent     lru.List[openCase]   // the open cases, least recently seen first
	free       []*openCase
	rates      map[rateKey]*rateCounter
	suppressed map[suppressKey]time.Time
	subs       map[string]*clientSubs // subscription state by client (subs.go)
	nFilters   int
	seen       map[string]struct{} // clients seen in this run
	subsGen    uint64              // changes with the subscription state
	nobody     map[string]bool     // toNobody by topic, for subsGen nobodyGen
	nobodyGen  uint64
	conns      map[connKey]*connIdent // connections without client id (identity.go)
	connLRU    lru.List[connIdent]    // least recently seen first
	cutWindow  time.Duration          // cases this soon after a pickup are cut (identity.go)
	cutUntil   time.Time
	// coapCutUntil: CoAP cases starting by then are cut (the first CoAP
	// flow plus the cut window; coapcheck.go).
	coapCutUntil time.Time
	stats        DetectorStats
	prof         caseProfile // scratch of closeCase

	// clock is the latest flow start seen (ns); pending holds the cases
	// with events not yet order-checked.
	clock   int64
	swept   int64 // the second (of flow time) of the last sweep of rates and suppression
	pending reorderQueue
}

// NewDetector prepares a detector for model m.
func NewDetector(m *Model, opts DetectorOptions) *Detector {
	opts.defaults()
	d := &Detector{
		compiled: compile(m, &opts), opts: opts, benign: flow.ParseAnomalies(opts.BenignAnomalies),
		cases: map[string]*openCase{}, subs: map[string]*clientSubs{}, seen: map[string]struct{}{}, nobody: map[string]bool{}, conns: map[connKey]*connIdent{}, rates: map[rateKey]*rateCounter{}, suppressed: map[suppressKey]time.Time{},
	}
	d.namer = NewNamerWith(d.names, d.brokers...)
	d.cutWindow = opts.CutWindow
	if d.cutWindow <= 0 {
		// The longest a normal case runs: the slowest learned step with
		// its temporal bound, at least MinTemporalSlack, at most CaseTimeout.
		d.cutWindow = opts.MinTemporalSlack
		for _, tp := range m.Temporal {
			d.cutWindow = max(d.cutWindow, tp.Mean+time.Duration(opts.Zeta*float64(tp.StdDev)))
		}
		d.cutWindow = min(d.cutWindow, opts.CaseTimeout)
	}
	d.stats.Alerts = map[Check]uint64{}
	return d
}

// Stats returns counters of the detector's work.
func (d *Detector) Stats() DetectorStats {
	s := d.stats
	s.OpenCases = len(d.cases)
	s.Filters = d.nFilters
	s.Connections = len(d.conns)
	s.Alerts = make(map[Check]uint64, len(d.stats.Alerts))
	for k, v := range d.stats.Alerts {
		s.Alerts[k] = v
	}
	return s
}

// severeAnomalies make a protocol-anomaly alert high: packets no honest
// client sends.
const severeAnomalies = flow.AnomalyMalformedTraffic | flow.AnomalyDoubleConnect | flow.AnomalyInvalidQoSLevel |
	flow.AnomalyUnassignedMsgType | flow.AnomalyPacketTooLarge | flow.AnomalyMissingConnect

// anomaly raises protocol-anomaly for a flow's non-benign anomalies, once
// per client and set of anomalies within Repeat.
func (d *Detector) anomaly(out []Alert, client string, r *flow.Record, a flow.Anomaly) []Alert {
	names := strings.Join(a.Names(), ",")
	if !d.once(CheckProtocolAnomaly, client, names, r.Start) {
		return out
	}
	sev := SeverityMedium
	if a&severeAnomalies != 0 {
		sev = SeverityHigh
	}
	return d.emit(out, Alert{Check: CheckProtocolAnomaly, Severity: sev, Time: r.Start, Client: client, Topic: r.Topic,
		Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)), Anomalies: a.Names(),
		Message: fmt.Sprintf("protocol anomaly from %s (%s): %s", client, r.ControlType, names)})
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
// Flows should arrive roughly in time order (a Sequencer puts them in
// order); the detector's clock is the flows' start times: a case idle for
// CaseTimeout by that clock is closed with its end-of-case checks here.
func (d *Detector) Observe(r *flow.Record) (out []Alert) {
	d.stats.Flows++
	d.namer.Learn(r)
	t := r.Start
	if tn := t.UnixNano(); tn > d.clock {
		d.clock = tn
	}
	defer func() {
		h := d.clock - int64(d.opts.Reorder)
		out = d.settle(out, h)
		out = d.expire(out, h)
	}()
	if r.ApplicationProtocol == flow.AppCoAP {
		if r.CoAP == nil {
			return out // a CoAP flow without its CoAP part: nothing to check it by
		}
		return d.coap(out, r)
	}
	if unnamed(r) {
		var blind bool
		if out, r, blind = d.identify(out, r); blind {
			return d.unidentified(out, r)
		}
	} else {
		d.named(r)
	}
	client := d.namer.Name(r.SrcClientID, r.SrcAddr, r.SrcPort)
	if client != Broker {
		d.saw(client)
	} else if r.DstClientID != "" && r.DstClientID != flow.BrokerClientID {
		d.saw(r.DstClientID)
	}
	if client != Broker && d.clients[client] == nil && d.once(CheckUnknownClient, client, "", t) {
		out = d.emit(out, Alert{
			Check: CheckUnknownClient, Severity: SeverityMedium, Time: t, Client: client, Topic: r.Topic,
			Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
			Message: fmt.Sprintf("%s from client %q, never seen in training", r.ControlType, client),
		})
	}
	if a := r.Anomalies &^ d.benign; a != 0 {
		out = d.anomaly(out, client, r, a)
	}
	if r.EndReason == flow.EndAnomaly {
		return out // a one-packet anomaly flow is no transaction of the process
	}
	switch r.ControlType {
	case flow.Connect:
		out = d.rate(out, client, r)
		if client != Broker {
			d.session(client) // a new session: no subscriptions yet
		}
	case flow.Publish:
		out = d.rate(out, client, r)
		skip := false
		if client == Broker {
			out, skip = d.delivery(out, r)
		}
		if !skip {
			out = d.publish(out, client, r, false)
		}
	case flow.Subscribe:
		out = d.rate(out, client, r)
		var alerted map[string]bool
		out = d.subscription(out, client, r, &alerted)
		if client != Broker {
			d.subscribe(client, r.TopicFilters, func(f string) bool { return alerted[f] })
		}
	case flow.Unsubscribe:
		if client != Broker {
			d.unsubscribe(client, r.TopicFilters, max(r.End.UnixNano(), r.Start.UnixNano()))
		}
	case flow.Disconnect:
		if client != Broker {
			d.session(client)
		}
	}
	return out
}

// unidentified checks a flow of a connection whose client is not known
// (identity.go): no per-client check; it counts towards the rate of all
// clients together, and a PUBLISH with a correlation id makes its case
// unchecked. A delivery to such a client is the broker's process event
// and is checked as usual.
func (d *Detector) unidentified(out []Alert, r *flow.Record) []Alert {
	client := d.namer.Name(r.SrcClientID, r.SrcAddr, r.SrcPort)
	switch r.ControlType {
	case flow.Publish:
		if client == Broker {
			out = d.rate(out, Broker, r)
			return d.publish(out, Broker, r, false)
		}
		out = d.rateTotal(out, r)
		if len(r.CorrelationData) > 0 {
			out = d.publish(out, client, r, true)
		}
	case flow.Connect, flow.Subscribe:
		out = d.rateTotal(out, r)
	}
	return out
}

// Clock returns the detector's clock: the latest flow start seen (zero
// before the first flow).
func (d *Detector) Clock() time.Time {
	if d.clock == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.clock).UTC()
}

// Advance moves the detector's clock to now without a flow: cases
// without an event for CaseTimeout are closed and get their end-of-case
// checks (end activity, always-after, equivalence, minimum occurrences);
// stale rate counters and suppression entries are dropped. Observe does
// the same by flow time (the latest flow start minus Reorder), so a
// caller that keeps feeding flows need not call Advance; a Monitor calls
// it only when no flow came for a long while (MonitorOptions.IdleAdvance).
func (d *Detector) Advance(now time.Time) []Alert {
	var out []Alert
	out = d.settle(out, max(now.UnixNano(), d.clock)-int64(d.opts.Reorder))
	return d.expire(out, now.UnixNano())
}

// Settle runs the order-dependent checks of every event still waiting
// for them (Reorder), as if no earlier flow could still come: a Monitor
// calls it when no flow came for a while.
func (d *Detector) Settle() []Alert { return d.settle(nil, math.MaxInt64) }

// expire closes the cases idle for CaseTimeout at time h (ns) and, once
// per second of h, drops stale rate counters and suppression entries.
func (d *Detector) expire(out []Alert, h int64) []Alert {
	now := time.Unix(0, h)
	for c := d.recent.Front(); c != nil && now.Sub(c.last) >= d.opts.CaseTimeout; c = d.recent.Front() {
		out = d.closeCase(out, c)
	}
	if sec := h / int64(time.Second); sec != d.swept {
		d.swept = sec
		w := h / d.window
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
		d.pruneSubs(h)
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
