package mining

import (
	"cmp"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mission-ids/mission/flow"
)

// Broker is the name given to the broker side of a connection.
const Broker = "broker"

// ActivitySep separates client and topic in an activity name.
const ActivitySep = " → "

// Activity returns the activity name of a PUBLISH by client on topic:
// "client → topic", as in the original study.
func Activity(client, topic string) string { return client + ActivitySep + topic }

// Event is one flow as the event log sees it. Every flow of the log is
// kept (CONNECT, SUBSCRIBE, CoAP pings … too: the model's rates come from
// them); the process view — the one exported as XES/CSV and mined — is the
// activity events (HasActivity: an MQTT PUBLISH, a CoAP request or Observe
// notification) that carry a correlation id (Case != "").
type Event struct {
	FlowID uint64
	Time   time.Time        // flow start
	Type   flow.ControlType // MQTT; 0 for CoAP
	// Client is the source of the flow (the resource): its MQTT client id,
	// "broker" for the broker side, else the endpoint's name (Namer).
	Client string
	Dst    string // the destination, named like Client
	// SrcAddr and DstAddr are the flow's endpoints (zero if unknown).
	SrcAddr, DstAddr netip.AddrPort
	// Topic is the MQTT topic; for CoAP the activity's second half,
	// "METHOD /path" or "NOTIFY /path" (CoAPTopic).
	Topic string
	// Filters are the topic filters of a SUBSCRIBE or UNSUBSCRIBE.
	Filters []string
	// Case is the text form of the correlation id (flow.CorrelationText);
	// "" when the flow carries none, and for a CoAP notification (coap.go).
	Case string
	// CoAP is the kind of a CoAP flow (0 for MQTT); Method and Path are
	// its request's (a notification: the registration's).
	CoAP   CoAPKind
	Method string
	Path   string
	// Error: a CoAP request (or block) answered 4.xx or 5.xx.
	Error bool
}

// Activity returns "Client → Topic".
func (e *Event) Activity() string { return Activity(e.Client, e.Topic) }

// HasActivity reports whether the event is an activity of the process:
// an MQTT PUBLISH, a CoAP request or an Observe notification.
func (e *Event) HasActivity() bool {
	return e.Type == flow.Publish || e.CoAP == CoAPRequest || e.CoAP == CoAPNotification
}

// InProcess reports whether the event belongs to the process view: an
// activity with a correlation id.
func (e *Event) InProcess() bool { return e.Case != "" && e.HasActivity() }

// Trace is one case: the process events that share a correlation id, in
// time order.
type Trace struct {
	Case   string
	Events []Event
}

// EventLog is a set of flows in time order (ties broken by flow id).
type EventLog struct {
	Events []Event
	// Names is the names table the log was named with (nil: none).
	Names *Names
}

// Namer names the endpoints of flows. MQTT: the client id; the broker is
// recognised as the side labelled flow.BrokerClientID, or as an
// address:port that received a CONNECT; a client without a client id is
// named by the names table (Names), else by its address:port. CoAP: an
// endpoint is named by the names table, else by its IP address without
// the port (CoAP clients send from ephemeral ports).
type Namer struct {
	brokers map[netip.AddrPort]struct{}
	names   *Names
}

// NewNamer returns a Namer that knows the given broker endpoints.
func NewNamer(brokers ...netip.AddrPort) *Namer { return NewNamerWith(nil, brokers...) }

// NewNamerWith returns a Namer with a names table (nil: none) that knows
// the given broker endpoints.
func NewNamerWith(names *Names, brokers ...netip.AddrPort) *Namer {
	n := &Namer{brokers: make(map[netip.AddrPort]struct{}), names: names}
	for _, b := range brokers {
		n.brokers[b] = struct{}{}
	}
	return n
}

// Learn notes the broker endpoint of a CONNECT flow.
func (n *Namer) Learn(r *flow.Record) {
	if r.ControlType == flow.Connect && r.ApplicationProtocol != flow.AppCoAP && r.DstAddr.IsValid() && len(n.brokers) < maxBrokers {
		n.brokers[netip.AddrPortFrom(r.DstAddr.Unmap(), r.DstPort)] = struct{}{}
	}
}

const maxBrokers = 1024

// Brokers returns the known broker endpoints, sorted.
func (n *Namer) Brokers() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(n.brokers))
	for b := range n.brokers {
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// Name returns the name of an MQTT endpoint with client id id.
func (n *Namer) Name(id string, addr netip.Addr, port uint16) string {
	if id == flow.BrokerClientID {
		return Broker
	}
	if id != "" {
		return id
	}
	ap := netip.AddrPortFrom(addr.Unmap(), port)
	if _, ok := n.brokers[ap]; ok {
		return Broker
	}
	if !addr.IsValid() {
		return "unknown"
	}
	if name, ok := n.names.Lookup(ap); ok {
		return name
	}
	return ap.String()
}

// Host returns the name of a CoAP endpoint: its names-table name, else
// its IP address.
func (n *Namer) Host(addr netip.Addr, port uint16) string {
	if !addr.IsValid() {
		return "unknown"
	}
	if name, ok := n.names.Lookup(netip.AddrPortFrom(addr, port)); ok {
		return name
	}
	return addr.Unmap().String()
}

// Event converts a record to an event, naming its endpoints.
func (n *Namer) Event(r *flow.Record) Event {
	e := Event{
		FlowID: r.FlowID,
		Time:   r.Start,
		Type:   r.ControlType,
		Case:   flow.CorrelationText(r.CorrelationData),
	}
	if r.ApplicationProtocol == flow.AppCoAP {
		e.Client, e.Dst = n.Host(r.SrcAddr, r.SrcPort), n.Host(r.DstAddr, r.DstPort)
		if c := r.CoAP; c != nil {
			e.CoAP, e.Method, e.Path, e.Topic = coapEvent(c)
			e.Error = coapError(e.CoAP, c)
			if caseFree(c) {
				e.Case = "" // a notification carries its registration's case key
			}
		}
	} else {
		e.Client = n.Name(r.SrcClientID, r.SrcAddr, r.SrcPort)
		e.Dst = n.Name(r.DstClientID, r.DstAddr, r.DstPort)
		e.Topic = r.Topic
	}
	if r.SrcAddr.IsValid() {
		e.SrcAddr = netip.AddrPortFrom(r.SrcAddr.Unmap(), r.SrcPort)
	}
	if r.DstAddr.IsValid() {
		e.DstAddr = netip.AddrPortFrom(r.DstAddr.Unmap(), r.DstPort)
	}
	if len(r.TopicFilters) > 0 {
		e.Filters = slices.Clone(r.TopicFilters)
	}
	return e
}

// FromRecords builds an event log from flow records without a names
// table (NewEventLog).
func FromRecords(recs []flow.Record) *EventLog { return NewEventLog(recs, nil) }

// NewEventLog builds an event log from flow records, naming endpoints
// with names (nil: none; the log keeps it for the model, Learn). Broker
// endpoints are learned from all CONNECT flows first, so the order of
// records does not matter for naming.
func NewEventLog(recs []flow.Record, names *Names) *EventLog {
	n := NewNamerWith(names)
	for i := range recs {
		n.Learn(&recs[i])
	}
	l := &EventLog{Events: make([]Event, 0, len(recs)), Names: names}
	for i := range recs {
		l.Events = append(l.Events, n.Event(&recs[i]))
	}
	l.sort()
	return l
}

// ReadJSONLines reads flow.Document JSON lines (flow.ReadJSONLines: the
// probe's --stdout) into an event log. A malformed line is a *flow.LineError.
func ReadJSONLines(r io.Reader) (*EventLog, error) {
	var recs []flow.Record
	if err := flow.ReadJSONLines(r, func(rec *flow.Record) error {
		recs = append(recs, *rec)
		return nil
	}); err != nil {
		return nil, err
	}
	return FromRecords(recs), nil
}

func (l *EventLog) sort() {
	slices.SortStableFunc(l.Events, func(a, b Event) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.FlowID, b.FlowID)
	})
}

// Traces returns the cases of the process view, each in time order, the
// cases ordered by their first event.
func (l *EventLog) Traces() []Trace {
	idx := make(map[string]int)
	var out []Trace
	for i := range l.Events {
		e := &l.Events[i]
		if !e.InProcess() {
			continue
		}
		j, ok := idx[e.Case]
		if !ok {
			j = len(out)
			idx[e.Case] = j
			out = append(out, Trace{Case: e.Case})
		}
		out[j].Events = append(out[j].Events, *e)
	}
	return out
}

// ProcessEvents returns the number of events in the process view.
func (l *EventLog) ProcessEvents() int {
	n := 0
	for i := range l.Events {
		if l.Events[i].InProcess() {
			n++
		}
	}
	return n
}

// Span returns the times of the first and last event (zero for an empty log).
func (l *EventLog) Span() (first, last time.Time) {
	if len(l.Events) == 0 {
		return
	}
	return l.Events[0].Time, l.Events[len(l.Events)-1].Time
}

// SplitByTime splits the log for training and testing: the cut is the
// start of the case at fraction frac (0 < frac < 1) of the cases in time
// order. Whole cases go to the side their first event falls on; events
// outside the process view go by their own time.
func (l *EventLog) SplitByTime(frac float64) (train, test *EventLog) {
	traces := l.Traces()
	if len(traces) == 0 {
		return l.SplitAt(time.Time{})
	}
	k := int(frac * float64(len(traces)))
	k = max(0, min(k, len(traces)-1))
	return l.SplitAt(traces[k].Events[0].Time)
}

// SplitAt splits the log at cut: cases whose first event is before cut, and
// other events before cut, go to train; the rest to test.
func (l *EventLog) SplitAt(cut time.Time) (train, test *EventLog) {
	first := make(map[string]time.Time)
	for i := range l.Events {
		e := &l.Events[i]
		if _, ok := first[e.Case]; e.InProcess() && !ok {
			first[e.Case] = e.Time
		}
	}
	train, test = &EventLog{Names: l.Names}, &EventLog{Names: l.Names}
	for i := range l.Events {
		e := l.Events[i]
		t := e.Time
		if e.InProcess() {
			t = first[e.Case]
		}
		if t.Before(cut) {
			train.Events = append(train.Events, e)
		} else {
			test.Events = append(test.Events, e)
		}
	}
	return train, test
}

// isWildcard reports whether a topic filter has a wildcard.
func isWildcard(f string) bool { return strings.ContainsAny(f, "+#") }

// isSys reports whether a topic filter addresses the broker's $SYS tree
// (or any $-topic, which only brokers publish).
func isSys(f string) bool {
	if strings.HasPrefix(f, "$share/") { // shared subscription: $share/group/filter
		rest := f[len("$share/"):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			f = rest[i+1:]
		}
	}
	return strings.HasPrefix(f, "$")
}
