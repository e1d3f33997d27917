package mining

import (
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mission-ids/mission/flow"
)

// The checks of one flow as it arrives (rate, subscription, the order-free
// checks of a PUBLISH) and of one event of a case once its order is
// settled (orderChecks).

// rateKey is a rate counter's key: a client (or TotalClient), a kind and,
// for a CoAP activity's own counter, the activity (-1: the client's).
type rateKey struct {
	client string
	kind   rateKind
	act    int32
}

// rateCounter counts a client's flows of one type in the current window
// (n) and the one before (prev; slidingCount).
type rateCounter struct {
	window  int64
	n, prev int
	alerted bool
	flows   [8]uint64 // ring of the last flows
}

// bound is how many flows of kind client may start per window.
func (d *Detector) bound(client string, kind rateKind) int {
	var learned int
	switch {
	case client == TotalClient:
		learned = d.m.Total.rate(kind)
	case d.clients[client] != nil:
		learned = d.clients[client].rate(kind)
	default:
		learned = d.unknownMax.rate(kind)
	}
	return d.scaled(learned)
}

func (d *Detector) scaled(learned int) int {
	return int(math.Ceil(float64(learned)*d.opts.RateFactor)) + d.opts.RateSlack
}

// rate counts the flow for its client and for all clients together and
// alerts once per window a bound is passed.
func (d *Detector) rate(out []Alert, client string, r *flow.Record) []Alert {
	return d.rateOf(out, [2]string{client, TotalClient}, mqttRate(r.ControlType), r)
}

// rateTotal counts the flow of an unidentified client for all clients
// together only.
func (d *Detector) rateTotal(out []Alert, r *flow.Record) []Alert {
	return d.rateOf(out, [2]string{TotalClient}, mqttRate(r.ControlType), r)
}

// counter returns the counter of k in window w, reset for a new window
// (nil at the MaxTracked bound).
func (d *Detector) counter(k rateKey, w int64) *rateCounter {
	rc := d.rates[k]
	if rc == nil {
		if len(d.rates) >= d.opts.MaxTracked {
			return nil
		}
		rc = &rateCounter{window: w}
		d.rates[k] = rc
	}
	if rc.window != w {
		prev := 0
		if rc.window == w-1 {
			prev = rc.n
		}
		*rc = rateCounter{window: w, prev: prev}
	}
	return rc
}

func (d *Detector) rateOf(out []Alert, who [2]string, kind rateKind, r *flow.Record) []Alert {
	if kind == rateNone {
		return out
	}
	w := r.Start.UnixNano() / d.window
	for _, c := range who {
		if c == "" {
			continue
		}
		rc := d.counter(rateKey{c, kind, -1}, w)
		if rc == nil {
			continue
		}
		rc.flows[rc.n%len(rc.flows)] = r.FlowID
		rc.n++
		if b := d.bound(c, kind); slidingCount(rc.n, rc.prev, r.Start.UnixNano(), d.window) > b && !rc.alerted {
			rc.alerted = true
			who := fmt.Sprintf("client %q", c)
			if c == TotalClient {
				who = "all clients together"
			}
			if kind == rateCoAPErrors {
				out = d.emit(out, Alert{
					Check: CheckErrorBurst, Severity: SeverityMedium, Time: r.Start, Client: c,
					Flows: rc.recent(), Flow: ref(refOf(r)),
					Message: fmt.Sprintf("burst of CoAP error responses: requests of %s got more than %d 4.xx/5.xx answers in %s (bound from training; resource scanning?)",
						who, b, time.Duration(d.window)),
				})
				continue
			}
			out = d.emit(out, Alert{
				Check: CheckRate, Severity: SeverityHigh, Time: r.Start, Client: c,
				Flows: rc.recent(), Flow: ref(refOf(r)),
				Message: fmt.Sprintf("%s flood: %s started more than %d %s flows in %s (bound from training)",
					kind, who, b, kind, time.Duration(d.window)),
			})
		}
	}
	return out
}

// activityRate counts a flow of a known CoAP activity in the activity's
// own counter and alerts once per window its learned bound is passed.
func (d *Detector) activityRate(out []Alert, client string, act int32, kind rateKind, r *flow.Record) []Alert {
	a := &d.acts[act]
	rc := d.counter(rateKey{client, kind, act}, r.Start.UnixNano()/d.window)
	if rc == nil {
		return out
	}
	rc.flows[rc.n%len(rc.flows)] = r.FlowID
	rc.n++
	if b := d.scaled(a.Rate); slidingCount(rc.n, rc.prev, r.Start.UnixNano(), d.window) > b && !rc.alerted {
		rc.alerted = true
		out = d.emit(out, Alert{
			Check: CheckRate, Severity: SeverityHigh, Time: r.Start, Client: client, Topic: a.Topic,
			Flows: rc.recent(), Flow: ref(refOf(r)),
			Message: fmt.Sprintf("%s flood: %q started more than %d %q flows in %s (bound from training)",
				kind, client, b, a.Topic, time.Duration(d.window)),
		})
	}
	return out
}

// recent returns the counted flows still in the ring, oldest first.
func (rc *rateCounter) recent() []uint64 {
	n := min(rc.n, len(rc.flows))
	out := make([]uint64, 0, n)
	for i := rc.n - n; i < rc.n; i++ {
		out = append(out, rc.flows[i%len(rc.flows)])
	}
	return out
}

// subscription alerts on $SYS and wildcard filters of a client that never
// subscribed so in training.
// The filters alerted (whether or not the alert was suppressed as a
// repeat) are noted in *alerted, keyed without $share prefix.
func (d *Detector) subscription(out []Alert, client string, r *flow.Record, alerted *map[string]bool) []Alert {
	p := d.clients[client]
	for _, f := range r.TopicFilters {
		sys, wild := isSys(f), isWildcard(f)
		if (sys && (p == nil || !p.Sys)) || (wild && (p == nil || !p.Wildcard)) {
			if *alerted == nil {
				*alerted = map[string]bool{}
			}
			(*alerted)[shareless(f)] = true
			if !d.once(CheckSubscription, client, f, r.Start) {
				continue
			}
			sev, what := SeverityMedium, "wildcard"
			if sys {
				sev, what = SeverityHigh, "$SYS"
			}
			out = d.emit(out, Alert{
				Check: CheckSubscription, Severity: sev, Time: r.Start, Client: client, Topic: f,
				Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
				Message: fmt.Sprintf("%s subscription %q by %q, which never made one in training (reconnaissance?)", what, f, client),
			})
		}
	}
	return out
}

// publish checks a PUBLISH (activity).
func (d *Detector) publish(out []Alert, client string, r *flow.Record, blind bool) []Alert {
	return d.activity(out, client, r.Topic, r, blind)
}

// activity checks an activity event — a PUBLISH, a CoAP request or
// notification (topic: "METHOD /path", "NOTIFY /path"): unknown activity,
// missing correlation id and, for its case, the order-free skeleton
// checks (case length, occurrences, never-together); the order-dependent
// ones are queued (reorder.go). A blind PUBLISH (by an unidentified
// client) only joins its case, which is then not checked. A CoAP request
// is in a case only if the model has CoAP cases; a notification never.
func (d *Detector) activity(out []Alert, client, topic string, r *flow.Record, blind bool) []Alert {
	t := r.Start
	coap := isCoAP(r)
	corr := r.CorrelationData
	if coap && (!d.coapCases || caseFree(r.CoAP)) {
		corr = nil
	}
	act, known := d.actID[actKey{client, topic}]
	if blind {
		act, known = -1, true
	}
	if !known {
		act = -1
		if d.once(CheckUnknownActivity, client, topic, t) {
			out = d.emit(out, Alert{
				Check: CheckUnknownActivity, Severity: SeverityHigh, Time: t, Client: client, Topic: topic,
				Case: flow.CorrelationText(corr), Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
				Message: unknownActivityMessage(client, topic, coap),
			})
		}
	}
	if len(corr) == 0 {
		if !blind && d.correlated[topic] && d.once(CheckMissingCorrelation, client, topic, t) {
			out = d.emit(out, Alert{
				Check: CheckMissingCorrelation, Severity: SeverityMedium, Time: t, Client: client, Topic: topic,
				Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
				Message: missingCorrelationMessage(client, topic, coap),
			})
		}
		return out
	}

	c := d.cases[string(corr)]
	if c == nil {
		c = d.newCase(string(corr), t)
		if coap && !t.After(d.coapCutUntil) {
			d.cut(c) // starts right after the first CoAP flow: may miss its first events
		}
	} else {
		d.touch(c)
	}
	c.n++
	if !coap && client != Broker && d.toNobody(topic) {
		c.undelivered = true // went to nobody: the case ends here
	}
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
		c.refs = slices.Insert(c.refs, pos, refOf(r))
		if pos < c.checked {
			c.checked++ // later than Reorder: checked below, in place
		}
	}
	alert := func(bit uint16, check Check, sev Severity, msg string) {
		c.reported |= bit
		out = d.emit(out, Alert{
			Check: check, Severity: sev, Time: t, Client: client, Topic: topic,
			Case: flow.CorrelationText(corr), Flows: lastFlows(c.flows, r.FlowID), Message: msg,
			Flow: ref(refOf(r)),
		})
	}
	caseMax := d.sk.length.Max
	if c.n > caseMax && c.reported&bitLength == 0 {
		alert(bitLength, CheckSkeleton, SeverityHigh, fmt.Sprintf(
			"case has %d events, at most %d in training (correlation id reused?)", c.n, caseMax))
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
		if o, _ := d.sk.bounds(act); n > o.Max {
			alert(bitOccMax, CheckSkeleton, SeverityHigh, fmt.Sprintf("%q occurs %d times in the case, at most %d in training (correlation id reused?)", name, n, o.Max))
		}
	}
	if c.reported&bitNever == 0 {
		for j, a := range c.acts {
			if j != pos && a >= 0 && d.sk.neverTogether(a, act) {
				alert(bitNever, CheckSkeleton, SeverityMedium, fmt.Sprintf("%q and %q in one case; never together in training", d.acts[a].Activity, name))
				break
			}
		}
	}
	// The order-dependent checks wait until no earlier flow can still come.
	if pos < c.checked {
		return d.orderChecks(out, c, pos)
	}
	d.pending.add(c, tn)
	return out
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
			Flow: ref(c.refs[i]),
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
		for _, b := range d.sk.targets(alwaysBefore, act) {
			if !occursIn(c.acts[:i], b) {
				alert(bitBefore, CheckSkeleton, SeverityMedium, fmt.Sprintf("%q without %q before it; always preceded in training", name, d.acts[b].Activity))
				break
			}
		}
	}
	// Temporal profile, for cases of normal length.
	if c.reported&bitTemporal == 0 && c.n <= d.sk.length.Max {
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

func unknownActivityMessage(client, topic string, coap bool) string {
	if coap {
		return fmt.Sprintf("%q sent %s, never seen in training", client, topic)
	}
	return fmt.Sprintf("%q published to %q, never seen in training", client, topic)
}

func missingCorrelationMessage(client, topic string, coap bool) string {
	if coap {
		return fmt.Sprintf("CoAP %s by %q without correlation id; every one had one in training", topic, client)
	}
	return fmt.Sprintf("PUBLISH by %q to %q without correlation id; every PUBLISH there had one in training", client, topic)
}
