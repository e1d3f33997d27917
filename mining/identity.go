package mining

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/lru"
)

// Identity of connections picked up midstream. A flow whose client id is
// unknown (flow.IdentityNone: the probe saw no CONNECT, had no state file
// entry and the collector no identity-table entry) is not checked as the
// flow of some client named address:port — that made every flow of a
// probe started into a running plant an alarm. Instead the detector keeps
// a table of such connections (exporter, client end, broker end) and
// infers the client from the model when the connection's flows allow only
// one client:
//
//   - a PUBLISH by the client on a topic: the clients that published that
//     topic in training (none: no client may, a contradiction);
//   - a SUBSCRIBE: per filter, the clients whose training filters include
//     it; a wildcard or $SYS filter nobody made is a contradiction, any
//     other filter nobody made says nothing;
//   - an UNSUBSCRIBE: the same, a filter nobody made says nothing;
//   - a delivery (broker → client PUBLISH): the clients whose training
//     filters match the topic (none: says nothing — the subscription may
//     predate training);
//   - anything else says nothing.
//
// The candidates are the intersection of what the connection's flows
// said. One left: the connection is inferred to be that client; its
// flows from then on (this one included) are checked as that client's,
// with flow.IdentityInferred and the client id filled in on the
// detector's own copy of the record (the record handed to Observe is
// never changed, so inference never reaches the store), and their alerts
// say identity "inferred" (FlowRef.Identity). None left, or still more
// than one InferWindow after the connection's first flow: the connection
// is unidentified and raises one unidentified-connection notice (low
// severity). An inferred connection whose flow later says it cannot be
// that client (it publishes a topic only another client published) is
// withdrawn: unidentified, one notice.
//
// Flows of a connection not (yet) inferred raise no per-client alert:
// they count towards the rate of all clients together only, and a PUBLISH
// of theirs with a correlation id makes its case unchecked (like an
// unknown activity, without alert): the case has an event of an unknown
// client. A flow with a client id (CONNECT, restored, collector) forgets
// its connection's entry; so does a DISCONNECT.
//
// Bounded: at most MaxConnections entries, least recently seen evicted
// first (DetectorStats.ConnsEvicted); an evicted connection seen again
// starts afresh (and may raise a second notice).

// CheckUnidentifiedConnection: a connection picked up midstream whose
// client the model cannot name (low severity, one per connection).
const CheckUnidentifiedConnection Check = "unidentified-connection"

// connKey is a connection as the detector sees it.
type connKey struct {
	exporter       netip.Addr
	client, broker netip.AddrPort
}

type connState uint8

const (
	connPending      connState = iota // candidates still open
	connInferred                      // one client left: id
	connUnidentified                  // notice raised; flows stay unnamed
	connNamed                         // named by the probe's state file or the collector: held to notice its pickup once
)

// connIdent is one connection without client id.
type connIdent struct {
	key   connKey
	state connState
	any   bool     // pending and nothing said yet: every client is a candidate
	cands []string // pending: the candidates left (sorted)
	id    string   // inferred: the client
	first time.Time
	node  lru.Node[connIdent]
}

// evidence is the set of clients a flow of a connection allows.
// ok false: the flow says nothing.
func (d *Detector) evidence(r *flow.Record, fromClient bool) (clients []string, ok bool) {
	switch {
	case fromClient && r.ControlType == flow.Publish:
		return d.publishers[r.Topic], true
	case fromClient && (r.ControlType == flow.Subscribe || r.ControlType == flow.Unsubscribe):
		var set []string
		said := false
		for _, f := range r.TopicFilters {
			f = shareless(f)
			owners, known := d.filterOwners[f]
			if !known {
				if r.ControlType == flow.Subscribe && (isSys(f) || isWildcard(f)) {
					return nil, true // nobody made such a subscription
				}
				continue
			}
			if !said {
				set, said = owners, true
			} else {
				set = intersect(set, owners)
			}
		}
		return set, said
	case !fromClient && r.ControlType == flow.Publish:
		var set []string
		for i := range d.m.Clients {
			p := &d.m.Clients[i]
			if p.Client == Broker {
				continue
			}
			for _, f := range p.Filters {
				if matchTopic(shareless(f), r.Topic) {
					set = append(set, p.Client)
					break
				}
			}
		}
		return set, len(set) > 0
	}
	return nil, false
}

// intersect returns the sorted strings in both a and b (sorted), in a new
// slice.
func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if _, ok := slices.BinarySearch(b, s); ok {
			out = append(out, s)
		}
	}
	return out
}

// identify looks at a flow without client id. It returns the record to
// check — r, or a copy naming the inferred client — whether that record
// is unidentified, and the notice (if one is due) appended to out.
func (d *Detector) identify(out []Alert, r *flow.Record) (_ []Alert, _ *flow.Record, unidentified bool) {
	clientEnd, brokerEnd, idp := r.ClientSide()
	fromClient := idp == &r.SrcClientID
	k := connKey{exporter: r.Exporter.Addr(), client: unmap(clientEnd), broker: unmap(brokerEnd)}
	ci := d.conns[k]
	if ci == nil {
		if len(d.conns) >= d.opts.MaxConnections {
			if old := d.connLRU.Front(); old != nil {
				d.forgetConn(old)
				d.stats.ConnsEvicted++
			}
		}
		ci = &connIdent{key: k, any: true, first: r.Start}
		d.conns[k] = ci
		d.pickup(r.Start)
	} else if ci.state == connNamed {
		*ci = connIdent{key: k, any: true, first: r.Start, node: ci.node}
	}
	d.connLRU.PushBack(&ci.node, ci)
	if r.ControlType == flow.Disconnect {
		defer d.forgetConn(ci)
	}
	notice := func(why string) {
		ci.state, ci.id, ci.cands = connUnidentified, "", nil
		d.stats.Unidentified++
		out = d.emit(out, Alert{
			Check: CheckUnidentifiedConnection, Severity: SeverityLow, Time: r.Start,
			Client: k.client.String(), Topic: r.Topic, Flows: []uint64{r.FlowID}, Flow: ref(refOf(r)),
			Message: fmt.Sprintf("connection %s → %s picked up without its CONNECT: %s; its flows are not checked per client",
				k.client, k.broker, why),
		})
	}
	ev, said := d.evidence(r, fromClient)
	switch ci.state {
	case connPending:
		if said {
			if ci.any {
				ci.cands, ci.any = slices.Clone(ev), false
			} else {
				ci.cands = intersect(ci.cands, ev)
			}
		}
		switch {
		case !ci.any && len(ci.cands) == 1:
			ci.state, ci.id = connInferred, ci.cands[0]
			ci.cands = nil
			d.stats.Inferred++
		case !ci.any && len(ci.cands) == 0:
			notice(fmt.Sprintf("no client of the model did all it did (last: %s)", describeFlow(r, fromClient)))
		case r.Start.Sub(ci.first) >= d.opts.InferWindow:
			who := "any client"
			if !ci.any {
				who = strings.Join(ci.cands, ", ")
			}
			notice(fmt.Sprintf("still ambiguous after %s (%s)", formatDuration(d.opts.InferWindow), who))
		}
	case connInferred:
		if said {
			if _, ok := slices.BinarySearch(ev, ci.id); !ok {
				d.stats.Withdrawn++
				others := "no client"
				if len(ev) > 0 {
					others = "only " + strings.Join(ev, ", ")
				}
				notice(fmt.Sprintf("inferred as %q, withdrawn: %s, which in training %s did", ci.id, describeFlow(r, fromClient), others))
			}
		}
	}
	if ci.state != connInferred {
		d.stats.UnidentifiedFlows++
		return out, r, true
	}
	c := *r
	if fromClient {
		c.SrcClientID = ci.id
	} else {
		c.DstClientID = ci.id
	}
	c.IdentitySource = flow.IdentityInferred
	d.stats.InferredFlows++
	return out, &c, false
}

// describeFlow is what a flow did, for notices.
func describeFlow(r *flow.Record, fromClient bool) string {
	switch {
	case fromClient && r.ControlType == flow.Publish:
		return fmt.Sprintf("PUBLISH to %q", r.Topic)
	case fromClient:
		return fmt.Sprintf("%s %q", r.ControlType, r.TopicFilters)
	case r.ControlType == flow.Publish:
		return fmt.Sprintf("delivery of %q", r.Topic)
	}
	return r.ControlType.String()
}

// forgetConn drops a connection's entry.
func (d *Detector) forgetConn(ci *connIdent) {
	if d.conns[ci.key] == ci {
		delete(d.conns, ci.key)
	}
	if ci.node.Linked() {
		d.connLRU.Remove(&ci.node)
	}
}

// named handles a flow whose client id it carries: a connection named
// from its CONNECT forgets its entry; one named by the state file or the
// collector (picked up midstream) is noted, and its first flow is a
// pickup (see pickup).
func (d *Detector) named(r *flow.Record) {
	src := r.IdentitySource
	midstream := src == flow.IdentityRestored || src == flow.IdentityCollector
	if len(d.conns) == 0 && !midstream {
		return
	}
	clientEnd, brokerEnd, _ := r.ClientSide()
	k := connKey{exporter: r.Exporter.Addr(), client: unmap(clientEnd), broker: unmap(brokerEnd)}
	ci := d.conns[k]
	if !midstream || r.ControlType == flow.Disconnect {
		if ci != nil {
			d.forgetConn(ci)
		}
		return
	}
	if ci == nil {
		if len(d.conns) >= d.opts.MaxConnections {
			if old := d.connLRU.Front(); old != nil {
				d.forgetConn(old)
				d.stats.ConnsEvicted++
			}
		}
		ci = &connIdent{key: k, state: connNamed, first: r.Start}
		d.conns[k] = ci
		d.pickup(r.Start)
	} else if ci.state != connNamed {
		*ci = connIdent{key: k, state: connNamed, first: ci.first, node: ci.node} // named now
	}
	d.connLRU.PushBack(&ci.node, ci)
}

// pickup notes that a connection was picked up midstream at t (its first
// flow here, without CONNECT: the probe started or restarted, or its
// resynchronisation proved a boundary): the capture missed what happened
// on it before, so the cases open now, and those that start within
// cutWindow, may miss events. They are cut: not checked further, without
// alert (DetectorStats.CutCases).
func (d *Detector) pickup(t time.Time) {
	if u := t.Add(d.cutWindow); u.After(d.cutUntil) {
		d.cutUntil = u
	}
	for c := d.recent.Front(); c != nil; c = d.recent.Next(&c.node) {
		d.cut(c)
	}
}

// cut marks a case cut by a capture boundary.
func (d *Detector) cut(c *openCase) {
	if !c.tainted {
		c.tainted = true
		d.stats.CutCases++
	}
}

// Cut marks every open case as cut by the end of the capture (a live
// capture stopped): Flush then closes them without end-of-case checks.
func (d *Detector) Cut() {
	for c := d.recent.Front(); c != nil; c = d.recent.Next(&c.node) {
		d.cut(c)
	}
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	if !ap.Addr().IsValid() {
		return ap
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// unnamed reports whether r is a flow without client id whose identity
// the detector has to work out.
func unnamed(r *flow.Record) bool {
	if r.IdentitySource != flow.IdentityNone {
		return false
	}
	if r.SrcClientID == flow.BrokerClientID {
		return r.DstClientID == ""
	}
	return r.SrcClientID == "" && r.DstClientID == flow.BrokerClientID
}

// InferredClient returns the client inferred for the connection of flow
// r (its exporter address, client and broker ends), if the detector holds
// one.
func (d *Detector) InferredClient(r *flow.Record) (string, bool) {
	clientEnd, brokerEnd, _ := r.ClientSide()
	ci := d.conns[connKey{exporter: r.Exporter.Addr(), client: unmap(clientEnd), broker: unmap(brokerEnd)}]
	if ci == nil || ci.state != connInferred {
		return "", false
	}
	return ci.id, true
}
