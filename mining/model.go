package mining

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mission-ids/mission/flow"
)

// ModelVersion is the version of the model format written by Learn.
const ModelVersion = 1

// Model is what normal behaviour looks like, learned from an event log and
// used by the Detector. Its JSON form (docs/detection.md, "Model format"):
//
//	{
//	  "version": 1,
//	  "trained": {"from": "…", "to": "…", "flows": 1234, "cases": 300, "events": 1800},
//	  "rateWindowNs": 10000000000,
//	  "brokers": ["10.0.0.1:1883"],
//	  "activities": [{"activity": "controller → plant/actuators/led/toggleState",
//	                  "client": "controller", "topic": "plant/actuators/led/toggleState",
//	                  "count": 60, "cases": 60, "uncorrelated": 0}, …],
//	  "start": [{"activity": "…", "count": 60}, …],
//	  "end":   [{"activity": "…", "count": 60}, …],
//	  "directlyFollows": [{"from": "…", "to": "…", "count": 60,
//	                       "meanNs": …, "medianNs": …, "stdDevNs": …, "minNs": …, "maxNs": …}, …],
//	  "skeleton": {
//	    "equivalence":   [{"a": "…", "b": "…"}, …],  // where a occurs, b occurs as often
//	    "alwaysAfter":   [{"a": "…", "b": "…"}, …],  // every a is followed (later) by b
//	    "alwaysBefore":  [{"a": "…", "b": "…"}, …],  // every a is preceded (earlier) by b
//	    "neverTogether": [{"a": "…", "b": "…"}, …],  // a and b never in one case (a < b)
//	    "occurrences":   [{"activity": "…", "min": 1, "max": 1}, …], // per case that has it
//	    "caseLength":    {"min": 6, "max": 6}
//	  },
//	  "temporal": [{"from": "…", "to": "…", "count": 60, "meanNs": …, "stdDevNs": …}, …],
//	  "clients": [{"client": "temperatureSensor", "publish": 10, "subscribe": 0, "connect": 1,
//	               "filters": [], "wildcard": false, "sys": false}, …],
//	  "total": {"client": "*", "publish": 120, …},
//	  "correlatedTopics": ["plant/actuators/led/state", …]
//	}
//
// Durations are integer nanoseconds. Rates are the highest number of flows
// of that type the client started in one rate window (rateWindowNs) of the
// training log; "total" is the same over all clients together. All lists
// are sorted, so a model learned twice from the same log is byte-identical.
type Model struct {
	Version          int             `json:"version"`
	Trained          TrainingInfo    `json:"trained"`
	RateWindow       time.Duration   `json:"rateWindowNs"`
	Brokers          []string        `json:"brokers"`
	Activities       []ActivityInfo  `json:"activities"`
	Start            []Count         `json:"start"`
	End              []Count         `json:"end"`
	DirectlyFollows  []Edge          `json:"directlyFollows"`
	Skeleton         Skeleton        `json:"skeleton"`
	Temporal         []Temporal      `json:"temporal"`
	Clients          []ClientProfile `json:"clients"`
	Total            ClientProfile   `json:"total"`
	CorrelatedTopics []string        `json:"correlatedTopics"`
	// Resources are the CoAP resources (server, path) with the methods
	// requested on each (the unusual-method check).
	Resources []Resource `json:"coapResources,omitempty"`
	// Names is the names table the log was named with (mission mine
	// --names); a detector names endpoints with it unless given another
	// (DetectorOptions.Names).
	Names []NameEntry `json:"names,omitempty"`
}

// Resource is one CoAP resource of the training log: a path on a server
// (named like clients) and the methods requested on it, sorted.
type Resource struct {
	Server  string   `json:"server"`
	Path    string   `json:"path"`
	Methods []string `json:"methods"`
}

// TrainingInfo describes the training log.
type TrainingInfo struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Flows  int       `json:"flows"`
	Cases  int       `json:"cases"`
	Events int       `json:"events"`
}

// ActivityInfo is one known activity (a PUBLISH by a client on a topic).
type ActivityInfo struct {
	Activity string `json:"activity"`
	Client   string `json:"client"`
	Topic    string `json:"topic"`
	Count    int    `json:"count"`        // events in cases
	Cases    int    `json:"cases"`        // cases with at least one
	Uncorr   int    `json:"uncorrelated"` // PUBLISHes (CoAP: requests, notifications) without correlation id
	// Protocol is "coap" for a CoAP activity ("" for MQTT).
	Protocol string `json:"protocol,omitempty"`
	// Rate is the highest number of flows of a CoAP activity in one rate
	// window (0 for MQTT activities: not checked per activity).
	Rate int `json:"rate,omitempty"`
}

// Pair is an ordered pair of activities in a skeleton relation.
type Pair struct {
	A string `json:"a"`
	B string `json:"b"`
}

// Occurrence bounds how often an activity occurs in a case that has it.
type Occurrence struct {
	Activity string `json:"activity"`
	Min      int    `json:"min"`
	Max      int    `json:"max"`
}

// Bounds is a closed integer interval.
type Bounds struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// Skeleton is a log skeleton (Verbeek & Carmona 2021, as in PM4Py's
// log_skeleton discovery), restricted to the relations named here.
type Skeleton struct {
	Equivalence   []Pair       `json:"equivalence"`
	AlwaysAfter   []Pair       `json:"alwaysAfter"`
	AlwaysBefore  []Pair       `json:"alwaysBefore"`
	NeverTogether []Pair       `json:"neverTogether"`
	Occurrences   []Occurrence `json:"occurrences"`
	CaseLength    Bounds       `json:"caseLength"`
}

// Temporal is one entry of the temporal profile: the time from an event of
// From to a later event of To in the same case.
type Temporal struct {
	From   string        `json:"from"`
	To     string        `json:"to"`
	Count  int           `json:"count"`
	Mean   time.Duration `json:"meanNs"`
	StdDev time.Duration `json:"stdDevNs"`
}

// ClientProfile is what a client did in training: its highest number of
// PUBLISH, SUBSCRIBE and CONNECT flows (CoAP: requests, notifications,
// empty messages, later blocks, requests answered with an error) in one
// rate window, and its subscriptions.
type ClientProfile struct {
	Client            string   `json:"client"`
	Publish           int      `json:"publish"`
	Subscribe         int      `json:"subscribe"`
	Connect           int      `json:"connect"`
	CoAPRequests      int      `json:"coapRequests,omitempty"`
	CoAPNotifications int      `json:"coapNotifications,omitempty"`
	CoAPEmpty         int      `json:"coapEmpty,omitempty"`
	CoAPBlocks        int      `json:"coapBlocks,omitempty"`
	CoAPErrors        int      `json:"coapErrors,omitempty"` // requests answered 4.xx or 5.xx
	Filters           []string `json:"filters,omitempty"`
	Wildcard          bool     `json:"wildcard"` // subscribed with + or #
	Sys               bool     `json:"sys"`      // subscribed to $SYS (or another $ topic)
}

// LearnOptions tune Learn. Zero values select the defaults.
type LearnOptions struct {
	// RateWindow is the window of the per-client rates (default 10 s).
	RateWindow time.Duration
	// Noise is the share of cases allowed to violate a skeleton relation
	// that is still kept (PM4Py's noise_threshold; default 0: exact).
	Noise float64
	// MaxTemporalCase bounds the events of a case used for the temporal
	// profile (all pairs, quadratic; default 64).
	MaxTemporalCase int
	// MaxFilters bounds the subscription filters kept per client (default 64).
	MaxFilters int
}

func (o *LearnOptions) defaults() {
	if o.RateWindow <= 0 {
		o.RateWindow = 10 * time.Second
	}
	if o.MaxTemporalCase <= 0 {
		o.MaxTemporalCase = 64
	}
	if o.MaxFilters <= 0 {
		o.MaxFilters = 64
	}
}

// ErrEmptyLog is returned by Learn for a log with nothing to learn: no
// case (PUBLISH or CoAP flow with a correlation id) and no CoAP request.
var ErrEmptyLog = errors.New("mining: the log has no PUBLISH with a correlation id and no CoAP request")

// Learn learns a model from a training log. A log of CoAP flows without
// correlation ids gives a case-free model: activities, rates and
// resources, no process (start, end, directly-follows, skeleton).
func Learn(l *EventLog, opts LearnOptions) (*Model, error) {
	opts.defaults()
	traces := l.Traces()
	if len(traces) == 0 && !slices.ContainsFunc(l.Events, func(e Event) bool { return e.CoAP == CoAPRequest }) {
		return nil, ErrEmptyLog
	}
	m := &Model{Version: ModelVersion, RateWindow: opts.RateWindow}
	m.Trained.From, m.Trained.To = l.Span()
	m.Trained.Flows = len(l.Events)
	m.Trained.Cases = len(traces)

	g := DiscoverDFG(l, DFGOptions{})
	m.Start, m.End, m.DirectlyFollows = g.Start, g.End, g.Edges
	m.Trained.Events = l.ProcessEvents()

	m.Activities = learnActivities(l, traces)
	learnActivityRates(l, m.Activities, opts.RateWindow)
	m.Skeleton = learnSkeleton(traces, opts.Noise)
	m.Temporal = learnTemporal(traces, opts.MaxTemporalCase)
	m.Clients, m.Total = learnRates(l, opts)
	m.CorrelatedTopics = learnCorrelatedTopics(l)
	m.Resources = learnResources(l)
	m.Names = l.Names.Entries()

	brokers := map[string]bool{}
	for i := range l.Events {
		e := &l.Events[i]
		if e.Type == flow.Connect && e.DstAddr.IsValid() {
			brokers[e.DstAddr.String()] = true
		}
	}
	m.Brokers = sortedKeys(brokers)
	return m, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func learnActivities(l *EventLog, traces []Trace) []ActivityInfo {
	info := map[string]*ActivityInfo{}
	get := func(e *Event) *ActivityInfo {
		a := e.Activity()
		ai, ok := info[a]
		if !ok {
			ai = &ActivityInfo{Activity: a, Client: e.Client, Topic: e.Topic}
			info[a] = ai
		}
		return ai
	}
	for i := range l.Events {
		e := &l.Events[i]
		if !e.HasActivity() {
			continue
		}
		ai := get(e)
		if e.CoAP != 0 {
			ai.Protocol = flow.AppCoAP.String()
		}
		if e.Case == "" {
			ai.Uncorr++
		}
	}
	for _, tr := range traces {
		seen := map[string]bool{}
		for i := range tr.Events {
			ai := get(&tr.Events[i])
			ai.Count++
			if !seen[ai.Activity] {
				seen[ai.Activity] = true
				ai.Cases++
			}
		}
	}
	out := make([]ActivityInfo, 0, len(info))
	for _, k := range sortedKeys(info) {
		out = append(out, *info[k])
	}
	return out
}

func learnSkeleton(traces []Trace, noise float64) Skeleton {
	// Activity ids in name order, so the relations come out sorted.
	names := map[string]bool{}
	for i := range traces {
		for j := range traces[i].Events {
			names[traces[i].Events[j].Activity()] = true
		}
	}
	ids := newActivityIDs()
	acts := sortedKeys(names)
	for _, a := range acts {
		ids.intern(a)
	}
	profiles := make([]caseProfile, len(traces))
	sk := Skeleton{CaseLength: Bounds{Min: math.MaxInt}}
	if len(traces) == 0 {
		sk.CaseLength.Min = 0
	}
	occ := make([]Bounds, len(acts))
	// Cases per activity, to scan only relevant cases.
	casesOf := make([][]int, len(acts))
	var buf []int32
	for i := range traces {
		buf = ids.trace(&traces[i], buf)
		p := &profiles[i]
		p.reset(buf)
		sk.CaseLength.Min = min(sk.CaseLength.Min, p.n)
		sk.CaseLength.Max = max(sk.CaseLength.Max, p.n)
		for _, st := range p.stats {
			if len(casesOf[st.act]) == 0 {
				occ[st.act] = Bounds{st.count, st.count}
			}
			occ[st.act].Min, occ[st.act].Max = min(occ[st.act].Min, st.count), max(occ[st.act].Max, st.count)
			casesOf[st.act] = append(casesOf[st.act], i)
		}
	}
	for a, name := range acts {
		sk.Occurrences = append(sk.Occurrences, Occurrence{Activity: name, Min: occ[a].Min, Max: occ[a].Max})
	}
	// A relation is kept when the cases violating it are at most noise
	// times the cases it is relevant to (those with a).
	allowed := func(viol, relevant int) bool {
		return relevant > 0 && float64(viol) <= noise*float64(relevant)
	}
	keep := [numRelations]*[]Pair{equivalence: &sk.Equivalence, alwaysAfter: &sk.AlwaysAfter,
		alwaysBefore: &sk.AlwaysBefore, neverTogether: &sk.NeverTogether}
	for a := range acts {
		for b := range acts {
			if a == b {
				continue
			}
			rel := casesOf[a]
			var viol [numRelations]int
			for _, i := range rel {
				for r := range viol {
					if !profiles[i].holds(relation(r), int32(a), int32(b)) {
						viol[r]++
					}
				}
			}
			for r, v := range viol {
				if relation(r) == neverTogether && a > b {
					continue // symmetric: once, a < b
				}
				if allowed(v, len(rel)) {
					*keep[r] = append(*keep[r], Pair{acts[a], acts[b]})
				}
			}
		}
	}
	return sk
}

func learnTemporal(traces []Trace, maxCase int) []Temporal {
	type pair struct{ from, to string }
	type acc struct {
		n         int
		sum, sum2 float64
	}
	accs := map[pair]*acc{}
	for _, tr := range traces {
		if len(tr.Events) > maxCase {
			continue
		}
		acts := make([]string, len(tr.Events))
		for i := range tr.Events {
			acts[i] = tr.Events[i].Activity()
		}
		for i := range tr.Events {
			for j := i + 1; j < len(tr.Events); j++ {
				p := pair{acts[i], acts[j]}
				a, ok := accs[p]
				if !ok {
					a = &acc{}
					accs[p] = a
				}
				d := float64(tr.Events[j].Time.Sub(tr.Events[i].Time))
				a.n++
				a.sum += d
				a.sum2 += d * d
			}
		}
	}
	out := make([]Temporal, 0, len(accs))
	for p, a := range accs {
		mean := a.sum / float64(a.n)
		v := max(0, a.sum2/float64(a.n)-mean*mean)
		out = append(out, Temporal{From: p.from, To: p.to, Count: a.n, Mean: time.Duration(mean), StdDev: time.Duration(math.Sqrt(v))})
	}
	slices.SortFunc(out, func(a, b Temporal) int {
		return cmp.Or(strings.Compare(a.From, b.From), strings.Compare(a.To, b.To))
	})
	return out
}

// rateKind is what a rate counts: flows of one MQTT type, or CoAP flows
// of one kind.
type rateKind uint8

const (
	ratePublish rateKind = iota
	rateSubscribe
	rateConnect
	rateCoAPRequest
	rateCoAPNotification
	rateCoAPEmpty
	rateCoAPBlock
	rateCoAPErrors // requests answered 4.xx or 5.xx (CheckErrorBurst)
	numRateKinds
	rateNone rateKind = 255
)

// String names the flows a rate counts ("PUBLISH", "CoAP request").
func (k rateKind) String() string {
	switch k {
	case ratePublish:
		return flow.Publish.String()
	case rateSubscribe:
		return flow.Subscribe.String()
	case rateConnect:
		return flow.Connect.String()
	case rateCoAPRequest:
		return CoAPRequest.String()
	case rateCoAPNotification:
		return CoAPNotification.String()
	case rateCoAPEmpty:
		return CoAPEmpty.String()
	case rateCoAPBlock:
		return CoAPBlock.String()
	case rateCoAPErrors:
		return "CoAP error response"
	}
	return ""
}

// mqttRate is the rate an MQTT flow type counts in (rateNone: none).
func mqttRate(t flow.ControlType) rateKind {
	switch t {
	case flow.Publish:
		return ratePublish
	case flow.Subscribe:
		return rateSubscribe
	case flow.Connect:
		return rateConnect
	}
	return rateNone
}

// coapRate is the rate a CoAP kind counts in.
func coapRate(k CoAPKind) rateKind {
	switch k {
	case CoAPRequest:
		return rateCoAPRequest
	case CoAPNotification:
		return rateCoAPNotification
	case CoAPEmpty:
		return rateCoAPEmpty
	case CoAPBlock:
		return rateCoAPBlock
	}
	return rateNone
}

func (e *Event) rateKind() rateKind {
	if e.CoAP != 0 {
		return coapRate(e.CoAP)
	}
	return mqttRate(e.Type)
}

// errorRate is rateCoAPErrors for a CoAP request answered with an error
// (rateNone otherwise).
func (e *Event) errorRate() rateKind {
	if e.Error {
		return rateCoAPErrors
	}
	return rateNone
}

// field is the profile's learned bound of kind k.
func (p *ClientProfile) field(k rateKind) *int {
	switch k {
	case ratePublish:
		return &p.Publish
	case rateSubscribe:
		return &p.Subscribe
	case rateConnect:
		return &p.Connect
	case rateCoAPRequest:
		return &p.CoAPRequests
	case rateCoAPNotification:
		return &p.CoAPNotifications
	case rateCoAPEmpty:
		return &p.CoAPEmpty
	case rateCoAPBlock:
		return &p.CoAPBlocks
	case rateCoAPErrors:
		return &p.CoAPErrors
	}
	return nil
}

func (p *ClientProfile) rate(k rateKind) int {
	if f := p.field(k); f != nil {
		return *f
	}
	return 0
}

func (p *ClientProfile) setRate(k rateKind, n int) {
	if f := p.field(k); f != nil {
		*f = max(*f, n)
	}
}

// slidingCount is the number of flows in the rate window ending at t (ns),
// estimated from the count of t's fixed window (cur) and of the one before
// (prev), weighted by the share of it the sliding window still covers. A
// burst that straddles a window boundary then counts in full wherever the
// fixed windows fall; learning and detection count the same way.
func slidingCount(cur, prev int, t, window int64) int {
	return cur + int(int64(prev)*(window-t%window)/window)
}

// TotalClient is the name of the all-clients profile.
const TotalClient = "*"

func learnRates(l *EventLog, opts LearnOptions) ([]ClientProfile, ClientProfile) {
	type key struct {
		client string
		kind   rateKind
		window int64
	}
	counts := map[key]int{}
	profiles := map[string]*ClientProfile{}
	total := ClientProfile{Client: TotalClient}
	for i := range l.Events {
		e := &l.Events[i]
		p, ok := profiles[e.Client]
		if !ok {
			p = &ClientProfile{Client: e.Client}
			profiles[e.Client] = p
		}
		for _, f := range e.Filters {
			if e.Type != flow.Subscribe || e.CoAP != 0 {
				break
			}
			if isWildcard(f) {
				p.Wildcard = true
			}
			if isSys(f) {
				p.Sys = true
			}
			if !slices.Contains(p.Filters, f) && len(p.Filters) < opts.MaxFilters {
				p.Filters = append(p.Filters, f)
			}
		}
		t := e.Time.UnixNano()
		w := t / int64(opts.RateWindow)
		for _, kind := range [2]rateKind{e.rateKind(), e.errorRate()} {
			if kind == rateNone {
				continue
			}
			k, before := key{e.Client, kind, w}, key{e.Client, kind, w - 1}
			counts[k]++
			p.setRate(kind, slidingCount(counts[k], counts[before], t, int64(opts.RateWindow)))
			k.client, before.client = TotalClient, TotalClient
			counts[k]++
			total.setRate(kind, slidingCount(counts[k], counts[before], t, int64(opts.RateWindow)))
		}
	}
	out := make([]ClientProfile, 0, len(profiles))
	for _, c := range sortedKeys(profiles) {
		p := profiles[c]
		slices.Sort(p.Filters)
		out = append(out, *p)
	}
	return out, total
}

// learnActivityRates sets the rate of each CoAP activity: its highest
// number of flows in one rate window (slidingCount).
func learnActivityRates(l *EventLog, acts []ActivityInfo, window time.Duration) {
	type key struct {
		act    string
		window int64
	}
	counts := map[key]int{}
	peak := map[string]int{}
	for i := range l.Events {
		e := &l.Events[i]
		if e.CoAP == 0 || !e.HasActivity() {
			continue
		}
		t := e.Time.UnixNano()
		k := key{e.Activity(), t / int64(window)}
		counts[k]++
		n := slidingCount(counts[k], counts[key{k.act, k.window - 1}], t, int64(window))
		peak[k.act] = max(peak[k.act], n)
	}
	for i := range acts {
		acts[i].Rate = peak[acts[i].Activity]
	}
}

// learnResources returns the CoAP resources requested: per server and
// path, the methods.
func learnResources(l *EventLog) []Resource {
	type key struct{ server, path string }
	methods := map[key][]string{}
	for i := range l.Events {
		e := &l.Events[i]
		if e.CoAP != CoAPRequest && e.CoAP != CoAPBlock {
			continue
		}
		k := key{e.Dst, e.Path}
		if !slices.Contains(methods[k], e.Method) {
			methods[k] = append(methods[k], e.Method)
		}
	}
	out := make([]Resource, 0, len(methods))
	for k, ms := range methods {
		slices.Sort(ms)
		out = append(out, Resource{Server: k.server, Path: k.path, Methods: ms})
	}
	slices.SortFunc(out, func(a, b Resource) int {
		return cmp.Or(strings.Compare(a.Server, b.Server), strings.Compare(a.Path, b.Path))
	})
	if len(out) == 0 {
		return nil
	}
	return out
}

// learnCorrelatedTopics returns the topics on which every PUBLISH carried a
// correlation id.
func learnCorrelatedTopics(l *EventLog) []string {
	with, without := map[string]int{}, map[string]int{}
	for i := range l.Events {
		e := &l.Events[i]
		if !e.HasActivity() {
			continue
		}
		if e.Case != "" {
			with[e.Topic]++
		} else {
			without[e.Topic]++
		}
	}
	var out []string
	for _, t := range sortedKeys(with) {
		if without[t] == 0 {
			out = append(out, t)
		}
	}
	return out
}

// WriteJSON writes the model as indented JSON.
func (m *Model) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(m)
}

// ErrModelVersion is returned when reading a model of another format version.
var ErrModelVersion = errors.New("mining: unsupported model version")

// ReadModel reads a model written by WriteJSON (or json.Marshal).
func ReadModel(r io.Reader) (*Model, error) {
	var m Model
	dec := json.NewDecoder(r)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("mining: model: %w", err)
	}
	if m.Version != ModelVersion {
		return nil, fmt.Errorf("%w: %d (want %d)", ErrModelVersion, m.Version, ModelVersion)
	}
	if m.RateWindow <= 0 {
		return nil, fmt.Errorf("mining: model: rateWindowNs must be positive")
	}
	if _, err := NamesFromEntries(m.Names); err != nil {
		return nil, fmt.Errorf("mining: model: %w", err)
	}
	return &m, nil
}

// ReadModelFile reads a model file written by WriteJSON (mission mine).
func ReadModelFile(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mining: model file: %w", err)
	}
	defer f.Close()
	m, err := ReadModel(f)
	if err != nil {
		return nil, fmt.Errorf("mining: model file %s: %w", path, err)
	}
	return m, nil
}
