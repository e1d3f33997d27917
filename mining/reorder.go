package mining

import "math"

// reorderQueue holds the open cases with events whose order-dependent
// checks wait until no earlier flow can still arrive (DetectorOptions.Reorder).
type reorderQueue struct {
	cases []*openCase // each with pidx its index here
	// min is the earliest start (ns) of a waiting event: an upper bound
	// on it, lowered as events arrive and recomputed by settle.
	min int64
}

// add notes that c has an event starting at tn (ns) waiting for its checks.
func (q *reorderQueue) add(c *openCase, tn int64) {
	if c.pidx < 0 {
		c.pidx = len(q.cases)
		q.cases = append(q.cases, c)
	}
	if len(q.cases) == 1 || tn < q.min {
		q.min = tn
	}
}

// remove takes c out of the queue, if it is in.
func (q *reorderQueue) remove(c *openCase) {
	if c.pidx < 0 {
		return
	}
	last := len(q.cases) - 1
	q.cases[c.pidx] = q.cases[last]
	q.cases[c.pidx].pidx = c.pidx
	q.cases[last] = nil
	q.cases = q.cases[:last]
	c.pidx = -1
}

// settle runs the order-dependent checks of every pending event that
// started at or before horizon (ns).
func (d *Detector) settle(out []Alert, horizon int64) []Alert {
	q := &d.pending
	if len(q.cases) == 0 || horizon < q.min {
		return out
	}
	next := int64(math.MaxInt64)
	for i := 0; i < len(q.cases); {
		c := q.cases[i]
		out = d.settleCase(out, c, horizon)
		if c.pidx < 0 {
			continue // removed: q.cases[i] is another case now
		}
		next = min(next, c.times[c.checked])
		i++
	}
	q.min = next
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
		d.pending.remove(c)
	}
	return out
}
