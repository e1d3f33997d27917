package mining

import (
	"fmt"
	"math"

	"github.com/mission-ids/mission/flow"
)

// closeCase settles and closes case c with its end-of-case checks: end
// activity, minimum occurrences, always-after, equivalence.
func (d *Detector) closeCase(out []Alert, c *openCase) []Alert {
	d.stats.Closed++
	defer d.remove(c)
	out = d.settleCase(out, c, math.MaxInt64)
	if c.tainted || c.n > len(c.acts) || c.n > d.sk.length.Max || len(c.acts) == 0 {
		return out // reported on arrival
	}
	if c.undelivered {
		d.stats.Undelivered++
		return out // ends where a PUBLISH went to nobody: not alarmed (subs.go)
	}
	caseID := flow.CorrelationText([]byte(c.key))
	alert := func(bit uint16, check Check, sev Severity, act int32, msg string) {
		c.reported |= bit
		a := d.acts[act]
		out = d.emit(out, Alert{
			Check: check, Severity: sev, Time: c.last, Client: a.Client, Topic: a.Topic,
			Case: caseID, Flows: lastFlows(c.flows, c.flows[len(c.flows)-1]), Message: msg,
			Flow: ref(c.refs[len(c.refs)-1]),
		})
	}
	lastAct := c.acts[len(c.acts)-1]
	if lastAct >= 0 && !d.end[lastAct] && c.reported&bitEnd == 0 {
		alert(bitEnd, CheckDirectlyFollows, SeverityMedium, lastAct, fmt.Sprintf("case ends with %q, which never ended a case", d.acts[lastAct].Activity))
	}
	p := &d.prof
	p.reset(c.acts)
	for i, a := range c.acts {
		st := p.stat(a)
		if a < 0 || st.first != i {
			continue // each activity once, in order of first occurrence
		}
		name := d.acts[a].Activity
		n := st.count
		if o, _ := d.sk.bounds(a); n < o.Min && c.reported&bitOccMin == 0 {
			alert(bitOccMin, CheckSkeleton, SeverityLow, a, fmt.Sprintf("%q occurs %d times in the case, at least %d in training", name, n, o.Min))
		}
		if c.reported&bitAfter == 0 {
			for _, b := range d.sk.targets(alwaysAfter, a) {
				if !alwaysAfter.holds(st, p.stat(b)) {
					alert(bitAfter, CheckSkeleton, SeverityMedium, a, fmt.Sprintf("%q not followed by %q; always followed in training (chain broken off?)", name, d.acts[b].Activity))
					break
				}
			}
		}
		if c.reported&bitEquiv == 0 {
			for _, b := range d.sk.targets(equivalence, a) {
				if !equivalence.holds(st, p.stat(b)) {
					alert(bitEquiv, CheckSkeleton, SeverityMedium, a, fmt.Sprintf("%q occurs %d times and %q %d; always equally often in training", name, n, d.acts[b].Activity, p.count(b)))
					break
				}
			}
		}
	}
	return out
}
