package mining

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mission-ids/mission/flow"
)

// Subscription state: the detector follows, from the CONNECT, SUBSCRIBE,
// UNSUBSCRIBE and DISCONNECT flows it sees, which client holds which
// topic filters — as seen in this capture, which may have started after
// some sessions began. A client's state is known once its session start
// (CONNECT) or end (DISCONNECT) was seen: from then on every filter it
// holds was seen. It serves two checks:
//
//   - A PUBLISH (with correlation id, by a client) went to nobody when no
//     client holds a matching filter and every client that could (those
//     that subscribed to a matching filter in training, and those holding
//     one now) is known or was not seen at all in this run. Its case then
//     correctly ends there — a command sent before its actuator
//     subscribed, at start-up — and is not alarmed for ending early: its
//     end-of-case checks (end activity, always-after, equivalence,
//     minimum occurrences) are skipped, the case counted
//     (DetectorStats.Undelivered). A capture that starts mid-run knows
//     nothing of the sessions it did not see begin: nothing is skipped.
//   - A delivery (broker → client PUBLISH) to a known client that
//     subscribed in this session, none of whose filters matches the topic,
//     is an alert of its own (unsubscribed-delivery). Any other client is
//     unknown: not alarmed.
//
// A delivery through a subscription that itself raised a subscription
// alert (a wildcard or $SYS filter the client never made in training) is
// the eavesdropping that alert reported: it is counted
// (DetectorStats.Eavesdropped), not checked again as a process event.
//
// Bounded: at most MaxTracked clients tracked (and as many noted as
// seen), maxClientFilters filters each; what does not fit is counted
// (DetectorStats.SubsDropped) and treated as unknown.

const maxClientFilters = 64

// subFilter is one filter a client holds.
type subFilter struct {
	filter  string
	alerted bool // raised a subscription alert (reconnaissance)
	// until: an unsubscribed filter lingers to this flow time (ns): the
	// broker still delivers what it matched before the UNSUBSCRIBE.
	until int64
}

// unsubscribeGrace is how long after its UNSUBSCRIBE a filter still
// accounts for deliveries (messages the broker matched before).
const unsubscribeGrace = time.Second

// clientSubs is what a client holds.
type clientSubs struct {
	filters []subFilter
	// known: the session's start or end was seen, so filters is all it
	// holds; subscribed: a SUBSCRIBE was seen in this session.
	known, subscribed bool
}

// get returns the state of client, creating it (nil at the bound).
func (d *Detector) get(client string) *clientSubs {
	cs := d.subs[client]
	if cs == nil {
		if len(d.subs) >= d.opts.MaxTracked {
			d.stats.SubsDropped++
			return nil
		}
		cs = &clientSubs{}
		d.subs[client] = cs
	}
	return cs
}

// saw notes that client appeared in this run (bounded: beyond the bound
// clients count as seen, i.e. unknown).
func (d *Detector) saw(client string) {
	if _, ok := d.seen[client]; !ok && len(d.seen) < d.opts.MaxTracked {
		d.seen[client] = struct{}{}
		d.subsGen++
	}
}

func (d *Detector) seenClient(client string) bool {
	_, ok := d.seen[client]
	return ok || len(d.seen) >= d.opts.MaxTracked
}

// subscribe notes the filters of a SUBSCRIBE by client; alerted says
// which of them raised a subscription alert.
func (d *Detector) subscribe(client string, filters []string, alerted func(string) bool) {
	cs := d.get(client)
	if cs == nil {
		return
	}
	d.subsGen++
	cs.subscribed = true
next:
	for _, f := range filters {
		f = shareless(f)
		a := alerted(f)
		for i := range cs.filters {
			if cs.filters[i].filter == f {
				cs.filters[i].alerted = cs.filters[i].alerted || a
				cs.filters[i].until = 0
				continue next
			}
		}
		if len(cs.filters) >= maxClientFilters {
			d.stats.SubsDropped++
			cs.known = false // no longer all it holds
			continue
		}
		cs.filters = append(cs.filters, subFilter{filter: f, alerted: a})
		d.nFilters++
	}
}

// unsubscribe drops filters of client at the UNSUBSCRIBE's end (ns),
// after unsubscribeGrace.
func (d *Detector) unsubscribe(client string, filters []string, end int64) {
	cs := d.subs[client]
	if cs == nil {
		return
	}
	d.subsGen++
	for _, f := range filters {
		f = shareless(f)
		for i := range cs.filters {
			if cs.filters[i].filter == f && cs.filters[i].until == 0 {
				cs.filters[i].until = end + int64(unsubscribeGrace)
				break
			}
		}
	}
}

// pruneSubs drops the unsubscribed filters whose grace ended at h (ns).
func (d *Detector) pruneSubs(h int64) {
	for _, cs := range d.subs {
		n := len(cs.filters)
		cs.filters = slices.DeleteFunc(cs.filters, func(f subFilter) bool { return f.until != 0 && f.until < h })
		if len(cs.filters) != n {
			d.nFilters -= n - len(cs.filters)
			d.subsGen++
		}
	}
}

// session notes a session start (CONNECT) or end (DISCONNECT) of client:
// it holds nothing now, and that is known.
func (d *Detector) session(client string) {
	cs := d.get(client)
	if cs == nil {
		return
	}
	d.subsGen++
	d.nFilters -= len(cs.filters)
	*cs = clientSubs{filters: cs.filters[:0], known: true}
}

// toNobody reports whether a PUBLISH on topic went to nobody, as far as
// the subscription state tells (see above); cached per topic until the
// state changes.
func (d *Detector) toNobody(topic string) bool {
	if d.nobodyGen != d.subsGen || len(d.nobody) >= d.opts.MaxTracked {
		clear(d.nobody)
		d.nobodyGen = d.subsGen
	}
	if v, ok := d.nobody[topic]; ok {
		return v
	}
	v := d.computeNobody(topic)
	d.nobody[topic] = v
	return v
}

func (d *Detector) computeNobody(topic string) bool {
	for _, cs := range d.subs {
		for _, f := range cs.filters {
			if matchTopic(f.filter, topic) {
				return false
			}
		}
	}
	for i := range d.m.Clients {
		p := &d.m.Clients[i]
		for _, f := range p.Filters {
			if !matchTopic(shareless(f), topic) {
				continue
			}
			if cs := d.subs[p.Client]; cs != nil && cs.known {
				break // known to hold nothing matching
			}
			if d.seenClient(p.Client) {
				return false // seen, state unknown: it may hold one
			}
			break // not seen at all in this run: not connected
		}
	}
	return true
}

// delivery checks a broker → client PUBLISH. It returns skip when the
// delivery went through an alerted subscription only (eavesdropping,
// already reported).
func (d *Detector) delivery(out []Alert, r *flow.Record) (_ []Alert, skip bool) {
	if r.DstClientID == "" || r.DstClientID == flow.BrokerClientID {
		return out, false
	}
	dst := d.namer.Name(r.DstClientID, r.DstAddr, r.DstPort)
	cs := d.subs[dst]
	if cs == nil {
		return out, false // not seen: unknown
	}
	matched, clean := false, false
	tn := r.Start.UnixNano()
	for _, f := range cs.filters {
		if (f.until == 0 || tn <= f.until) && matchTopic(f.filter, r.Topic) {
			matched = true
			clean = clean || !f.alerted
		}
	}
	switch {
	case matched && !clean:
		d.stats.Eavesdropped++
		return out, true
	case matched, !cs.known || !cs.subscribed:
		return out, false // delivered as subscribed, or unknown
	}
	if d.once(CheckUnsubscribedDelivery, dst, r.Topic, r.Start) {
		out = d.emit(out, Alert{
			Check: CheckUnsubscribedDelivery, Severity: SeverityMedium, Time: r.Start, Client: dst, Topic: r.Topic,
			Case: flow.CorrelationText(r.CorrelationData), Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
			Message: fmt.Sprintf("broker delivered %q to %q, which holds no matching subscription (seen: %s)",
				r.Topic, dst, filterList(cs.filters)),
		})
	}
	return out, false
}

func filterList(fs []subFilter) string {
	if len(fs) == 0 {
		return "none"
	}
	names := make([]string, 0, min(len(fs), 5))
	for i, f := range fs {
		if i == 5 {
			names = append(names, "…")
			break
		}
		names = append(names, f.filter)
	}
	return strings.Join(names, ", ")
}

// shareless strips the $share/group/ prefix of a shared subscription.
func shareless(f string) string {
	if rest, ok := strings.CutPrefix(f, "$share/"); ok {
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			return rest[i+1:]
		}
	}
	return f
}

// matchTopic reports whether MQTT topic filter f matches topic name t:
// "+" matches one level, a trailing "#" the parent level and any below;
// wildcards at the first level do not match topics starting with "$"
// (MQTT 5 §4.7.2).
func matchTopic(f, t string) bool {
	if f == "" || t == "" {
		return false
	}
	if t[0] == '$' && (f[0] == '+' || f[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(t, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#" // "a/#" matches "a"
		case !fmore:
			return false
		}
		f, t = frest, trest
	}
}
