package mining

import (
	"net/netip"
	"slices"
	"time"

	"github.com/mission-ids/mission/flow"
)

// actKey finds an activity by what a flow shows of it.
type actKey struct{ client, topic string }

// pairKey is the key of an ordered pair of activity ids.
func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// compiled is a Model prepared for the Detector's checks: activities have
// dense ids (their index in Model.Activities) and every relation is a
// table look-up. It is read-only once built.
type compiled struct {
	m *Model
	// window is the model's rate window (10 s if the model has none).
	window  int64
	brokers []netip.AddrPort

	actID      map[actKey]int32
	acts       []ActivityInfo
	start, end []bool
	df         map[uint64]bool
	sk         skeleton
	temporal   map[uint64]Temporal // pairs seen at least MinTemporalCount times
	clients    map[string]*ClientProfile
	unknownMax ClientProfile // highest learned rates: the bound for unknown clients
	correlated map[string]bool
	// Identity inference (identity.go): the clients (not the broker) that
	// published each topic, and that held each filter (without $share
	// prefix), sorted.
	publishers   map[string][]string
	filterOwners map[string][]string
	// CoAP (coapcheck.go): the methods requested per resource (bit m for
	// method code m), and whether the model has CoAP cases: without, CoAP
	// flows are checked case-free only, correlation id or not.
	resources map[resourceKey]uint32
	coapCases bool
	// names is the names table endpoints are named with.
	names *Names
}

// resourceKey is a CoAP resource: a server's name and a path.
type resourceKey struct{ server, path string }

// compile prepares model m for a detector with options opts (defaults
// applied). Names the model does not list as activities are ignored.
func compile(m *Model, opts *DetectorOptions) compiled {
	c := compiled{
		m: m, window: int64(m.RateWindow),
		actID: map[actKey]int32{}, df: map[uint64]bool{},
		temporal: map[uint64]Temporal{}, clients: map[string]*ClientProfile{}, correlated: map[string]bool{},
	}
	if c.window <= 0 {
		c.window = int64(10 * time.Second)
	}
	for _, b := range m.Brokers {
		if ap, err := netip.ParseAddrPort(b); err == nil {
			c.brokers = append(c.brokers, ap)
		}
	}
	byName := map[string]int32{}
	c.acts = m.Activities
	n := len(m.Activities)
	c.start, c.end = make([]bool, n), make([]bool, n)
	for i, a := range m.Activities {
		byName[a.Activity] = int32(i)
		c.actID[actKey{a.Client, a.Topic}] = int32(i)
	}
	id := func(name string) (int32, bool) { i, ok := byName[name]; return i, ok }
	for _, s := range m.Start {
		if i, ok := id(s.Activity); ok {
			c.start[i] = true
		}
	}
	for _, s := range m.End {
		if i, ok := id(s.Activity); ok {
			c.end[i] = true
		}
	}
	for _, e := range m.DirectlyFollows {
		a, ok1 := id(e.From)
		b, ok2 := id(e.To)
		if ok1 && ok2 {
			c.df[pairKey(a, b)] = true
		}
	}
	c.sk = compileSkeleton(&m.Skeleton, n, id)
	for _, t := range m.Temporal {
		a, ok1 := id(t.From)
		b, ok2 := id(t.To)
		if ok1 && ok2 && t.Count >= opts.MinTemporalCount {
			c.temporal[pairKey(a, b)] = t
		}
	}
	for i := range m.Clients {
		p := &m.Clients[i]
		c.clients[p.Client] = p
		for k := range numRateKinds {
			c.unknownMax.setRate(k, p.rate(k))
		}
	}
	c.publishers, c.filterOwners = map[string][]string{}, map[string][]string{}
	for _, a := range m.Activities {
		if a.Client != Broker && a.Protocol == "" && !slices.Contains(c.publishers[a.Topic], a.Client) {
			c.publishers[a.Topic] = append(c.publishers[a.Topic], a.Client)
		}
	}
	for i := range m.Clients {
		p := &m.Clients[i]
		if p.Client == Broker {
			continue
		}
		for _, f := range p.Filters {
			f = shareless(f)
			if !slices.Contains(c.filterOwners[f], p.Client) {
				c.filterOwners[f] = append(c.filterOwners[f], p.Client)
			}
		}
	}
	for _, l := range c.publishers {
		slices.Sort(l)
	}
	for _, l := range c.filterOwners {
		slices.Sort(l)
	}
	for _, t := range m.CorrelatedTopics {
		c.correlated[t] = true
	}
	c.resources = map[resourceKey]uint32{}
	for _, r := range m.Resources {
		for _, name := range r.Methods {
			if code, ok := coapMethodCode(name); ok {
				c.resources[resourceKey{r.Server, r.Path}] |= 1 << code
			}
		}
	}
	for _, a := range m.Activities {
		if a.Protocol == flow.AppCoAP.String() && a.Cases > 0 {
			c.coapCases = true
		}
	}
	c.names = opts.Names
	if c.names == nil {
		c.names, _ = NamesFromEntries(m.Names) // checked by ReadModel
	}
	return c
}
