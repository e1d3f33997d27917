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
