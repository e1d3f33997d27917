package mining

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Incident is a group of alerts with one cause: the same check and the
// same root (see rootOf), each alert within Idle (flow time) of the
// previous one. It is what an operator reads; the alerts stay available.
type Incident struct {
	// ID is stable while the incident grows, and the same for the same
	// flows whichever way they were read (check, root and first alert time).
	ID       string    `json:"id"`
	Check    Check     `json:"check"`
	Root     string    `json:"root"`
	Severity Severity  `json:"severity"` // the highest of its alerts
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	Count    int       `json:"count"` // alerts
	// Clients, Topics, Cases and Sources (source addresses) hold at most
	// IncidentOptions.MaxSet values each, the first seen; the totals
	// count the distinct values (exactly up to maxSetTracked, then every
	// further alert with a value not held).
	Clients      []string `json:"clients"`
	ClientsTotal int      `json:"clientsTotal"`
	Topics       []string `json:"topics"`
	TopicsTotal  int      `json:"topicsTotal"`
	Cases        []string `json:"cases"`
	CasesTotal   int      `json:"casesTotal"`
	Sources      []string `json:"sources"`
	SourcesTotal int      `json:"sourcesTotal"`
	// Flows are sample flow ids: of the first alerts, at most MaxFlows.
	Flows   []uint64 `json:"flows"`
	Message string   `json:"message"`
	// Closed: no alert came for Idle; the incident will not change.
	Closed bool `json:"closed"`

	sets   [4]countedSet
	flowIn map[uint64]struct{}
	types  map[string]int // rate: flow types
	coap   bool           // its alerts are on CoAP flows
	lastAt int64
}

// IncidentOptions tune the grouping. Zero values select the defaults.
type IncidentOptions struct {
	// Idle closes an incident that got no alert for this long, in flow
	// time (default 60 s).
	Idle time.Duration
	// MaxOpen bounds the incidents open at once (default 1000); at the
	// bound the one idle longest is closed early (counted).
	MaxOpen int
	// MaxSet bounds each of the clients, topics, cases and sources kept
	// (default 100); MaxFlows the sample flows (default 20).
	MaxSet   int
	MaxFlows int
}

func (o *IncidentOptions) defaults() {
	if o.Idle <= 0 {
		o.Idle = time.Minute
	}
	if o.MaxOpen <= 0 {
		o.MaxOpen = 1000
	}
	if o.MaxSet <= 0 {
		o.MaxSet = 100
	}
	if o.MaxFlows <= 0 {
		o.MaxFlows = 20
	}
}

// maxSetTracked bounds the distinct values an incident remembers per set
// to count them exactly.
const maxSetTracked = 1000

// countedSet keeps the first values (to show) and counts distinct ones.
type countedSet struct {
	seen  map[string]struct{}
	total int
}

func (s *countedSet) add(v string, keep *[]string, maxKeep int) {
	if v == "" {
		return
	}
	if _, ok := s.seen[v]; ok {
		return
	}
	s.total++
	if len(s.seen) < maxSetTracked {
		if s.seen == nil {
			s.seen = map[string]struct{}{}
		}
		s.seen[v] = struct{}{}
	}
	if len(*keep) < maxKeep {
		*keep = append(*keep, v)
	}
}

// IncidentChange says what happened to an incident.
type IncidentChange int

// Incident changes.
const (
	IncidentOpened IncidentChange = iota
	IncidentUpdated
	IncidentClosed
)

func (c IncidentChange) String() string {
	return [...]string{"opened", "updated", "closed"}[c]
}

// IncidentStats counts the grouping's work.
type IncidentStats struct {
	Open        int              `json:"open"`
	Opened      map[Check]uint64 `json:"opened"`
	ClosedEarly uint64           `json:"closedEarly"` // at MaxOpen
	Alerts      uint64           `json:"alerts"`
}

// Incidents groups alerts into incidents. Not safe for concurrent use.
type Incidents struct {
	opts  IncidentOptions
	open  map[string]*Incident // by check + root
	stats IncidentStats
}

// NewIncidents prepares a grouping.
func NewIncidents(opts IncidentOptions) *Incidents {
	opts.defaults()
	return &Incidents{opts: opts, open: map[string]*Incident{}, stats: IncidentStats{Opened: map[Check]uint64{}}}
}

// rootOf is the root of an alert's incident, per check:
//
//   - unknown-client: the source address (a CONNECT flood with fresh ids
//     from one host is one incident), else the client;
//   - rate: the flow type (PUBLISH, SUBSCRIBE, CONNECT; a CoAP flow's
//     kind, "CoAP request"…): a flood trips the
//     bounds of the flooder, the clients it makes busy and all clients
//     together at once;
//   - unknown-activity, subscription, missing-correlation,
//     unsubscribed-delivery, unusual-method, error-burst: the client;
//   - unidentified-connection: the connection (client end → broker end);
//   - directly-follows, skeleton, temporal (case checks): the activity the
//     violation is on (client → topic), so many cases broken the same way
//     are one incident, their cases listed.
func rootOf(a *Alert) string {
	switch a.Check {
	case CheckUnknownClient:
		if a.Flow != nil && a.Flow.Src.IsValid() {
			return "src " + a.Flow.Src.Addr().String()
		}
		return "client " + a.Client
	case CheckRate:
		if a.Flow != nil {
			return "type " + a.Flow.Type
		}
		return "client " + a.Client
	case CheckDirectlyFollows, CheckSkeleton, CheckTemporal:
		return "activity " + Activity(a.Client, a.Topic)
	case CheckUnidentifiedConnection:
		if f := a.Flow; f != nil {
			broker := f.Dst
			if f.Dst.String() == a.Client {
				broker = f.Src
			}
			return "connection " + a.Client + " → " + broker.String()
		}
		return "connection " + a.Client
	}
	return "client " + a.Client
}

// Add groups one alert and returns its incident and whether it was
// opened or updated. Incidents idle for Idle before the alert's time are
// closed first (handed to closed).
func (g *Incidents) Add(a *Alert, closed func(*Incident)) (*Incident, IncidentChange) {
	g.Advance(a.Time, closed)
	g.stats.Alerts++
	key := string(a.Check) + "\x00" + rootOf(a)
	inc := g.open[key]
	change := IncidentUpdated
	if inc == nil {
		if len(g.open) >= g.opts.MaxOpen {
			g.closeOldest(closed)
		}
		root := rootOf(a)
		sum := sha256.Sum256([]byte(string(a.Check) + "\x00" + root + "\x00" + strconv.FormatInt(a.Time.UnixNano(), 10)))
		inc = &Incident{ID: hex.EncodeToString(sum[:8]), Check: a.Check, Root: root, Severity: a.Severity,
			First: a.Time, Last: a.Time, flowIn: map[uint64]struct{}{}, types: map[string]int{}}
		g.open[key] = inc
		g.stats.Opened[a.Check]++
		change = IncidentOpened
	}
	inc.add(a, &g.opts)
	return inc, change
}

func (inc *Incident) add(a *Alert, o *IncidentOptions) {
	inc.Count++
	if a.Time.After(inc.Last) {
		inc.Last = a.Time
	}
	if a.Time.Before(inc.First) {
		inc.First = a.Time
	}
	inc.lastAt = max(inc.lastAt, a.Time.UnixNano())
	if severityRank(a.Severity) > severityRank(inc.Severity) {
		inc.Severity = a.Severity
	}
	inc.sets[0].add(a.Client, &inc.Clients, o.MaxSet)
	inc.sets[1].add(a.Topic, &inc.Topics, o.MaxSet)
	inc.sets[2].add(a.Case, &inc.Cases, o.MaxSet)
	if a.Flow != nil {
		if a.Flow.Src.IsValid() {
			inc.sets[3].add(a.Flow.Src.Addr().String(), &inc.Sources, o.MaxSet)
		}
		inc.types[a.Flow.Type]++
		inc.coap = inc.coap || a.Flow.CoAP != nil
	}
	inc.ClientsTotal, inc.TopicsTotal, inc.CasesTotal, inc.SourcesTotal = inc.sets[0].total, inc.sets[1].total, inc.sets[2].total, inc.sets[3].total
	for _, id := range a.Flows {
		if len(inc.Flows) >= o.MaxFlows {
			break
		}
		if _, ok := inc.flowIn[id]; !ok {
			inc.flowIn[id] = struct{}{}
			inc.Flows = append(inc.Flows, id)
		}
	}
	inc.Message = inc.describe()
}

// Advance closes the incidents without an alert for Idle at now (flow
// time), handing each to closed (may be nil).
func (g *Incidents) Advance(now time.Time, closed func(*Incident)) {
	n := now.UnixNano()
	var due []*Incident
	for k, inc := range g.open {
		if n-inc.lastAt >= int64(g.opts.Idle) {
			due = append(due, inc)
			delete(g.open, k)
		}
	}
	g.finish(due, closed)
}

// Flush closes every open incident.
func (g *Incidents) Flush(closed func(*Incident)) {
	due := make([]*Incident, 0, len(g.open))
	for k, inc := range g.open {
		due = append(due, inc)
		delete(g.open, k)
	}
	g.finish(due, closed)
}

func (g *Incidents) closeOldest(closed func(*Incident)) {
	var oldest string
	var at int64
	for k, inc := range g.open {
		if oldest == "" || inc.lastAt < at {
			oldest, at = k, inc.lastAt
		}
	}
	if inc := g.open[oldest]; inc != nil {
		delete(g.open, oldest)
		g.stats.ClosedEarly++
		g.finish([]*Incident{inc}, closed)
	}
}

// finish marks incidents closed and hands them over in order of their
// first alert (then id), so the order does not depend on map iteration.
func (g *Incidents) finish(due []*Incident, closed func(*Incident)) {
	slices.SortFunc(due, func(a, b *Incident) int {
		if c := a.First.Compare(b.First); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	for _, inc := range due {
		inc.Closed = true
		if closed != nil {
			closed(inc)
		}
	}
}

// Stats returns the grouping's counters.
func (g *Incidents) Stats() IncidentStats {
	s := g.stats
	s.Open = len(g.open)
	s.Opened = make(map[Check]uint64, len(g.stats.Opened))
	for k, v := range g.stats.Opened {
		s.Opened[k] = v
	}
	return s
}

func severityRank(s Severity) int {
	switch s {
	case SeverityHigh:
		return 3
	case SeverityMedium:
		return 2
	case SeverityLow:
		return 1
	}
	return 0
}

// describe is the incident's one-line message.
func (inc *Incident) describe() string {
	span := inc.Last.Sub(inc.First)
	during := ""
	if inc.Count > 1 {
		during = " in " + formatSpan(span)
	}
	from := ""
	if len(inc.Sources) > 0 {
		from = " from " + list(inc.Sources, inc.SourcesTotal, 3)
	}
	clients := list(inc.Clients, inc.ClientsTotal, 3)
	topics := list(inc.Topics, inc.TopicsTotal, 3)
	alerts := plural(inc.Count, "alert")
	switch inc.Check {
	case CheckUnknownClient:
		return fmt.Sprintf("unknown clients%s: %s never seen in training%s (%s)", from,
			plural(inc.ClientsTotal, "client id"), during, clients)
	case CheckRate:
		typ := strings.TrimPrefix(inc.Root, "type ")
		return fmt.Sprintf("%s flood%s: learned rate bound passed by %s%s (%s, %s)", typ, from,
			plural(inc.ClientsTotal, "client"), during, clients, alerts)
	case CheckUnknownActivity:
		if inc.coap {
			return fmt.Sprintf("%s sent %s never seen from it in training%s (%s)", clients,
				plural(inc.TopicsTotal, "CoAP request"), during, topics)
		}
		return fmt.Sprintf("%s published to %s never seen with it in training%s (%s)", clients,
			plural(inc.TopicsTotal, "topic"), during, topics)
	case CheckSubscription:
		return fmt.Sprintf("%s made %s it never made in training (%s)%s: reconnaissance?", clients,
			plural(inc.TopicsTotal, "wildcard or $SYS subscription"), topics, during)
	case CheckMissingCorrelation:
		return fmt.Sprintf("%s published without correlation id to %s (%s)%s", clients,
			plural(inc.TopicsTotal, "topic"), topics, during)
	case CheckErrorBurst:
		return fmt.Sprintf("CoAP error responses above the learned bound for %s%s%s (%s): resource scanning?", clients, from, during, alerts)
	case CheckUnusualMethod:
		return fmt.Sprintf("%s used %s on CoAP resources that never saw them in training%s (%s)", clients,
			plural(inc.TopicsTotal, "method"), during, topics)
	case CheckProtocolAnomaly:
		return fmt.Sprintf("protocol anomalies from %s%s (%s)%s", clients, from, alerts, during)
	case CheckUnsubscribedDelivery:
		return fmt.Sprintf("broker delivered %s to %s with no matching subscription seen (%s)%s",
			plural(inc.Count, "message"), clients, topics, during)
	case CheckDirectlyFollows, CheckSkeleton, CheckTemporal:
		what := map[Check]string{CheckDirectlyFollows: "out of the learned order",
			CheckSkeleton: "breaking the log skeleton", CheckTemporal: "off the learned timing"}[inc.Check]
		return fmt.Sprintf("%s: %s %s%s (%s)", strings.TrimPrefix(inc.Root, "activity "),
			plural(inc.CasesTotal, "case"), what, during, alerts)
	}
	return fmt.Sprintf("%s: %s%s (%s)", inc.Check, alerts, during, clients)
}

func plural(n int, what string) string {
	s := formatCount(n) + " " + what
	if n != 1 {
		if strings.HasSuffix(what, "s") {
			s += "es"
		} else {
			s += "s"
		}
	}
	return s
}

// formatCount writes n with thousands separators (1,009).
func formatCount(n int) string {
	s := strconv.Itoa(n)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// list names up to n values and how many more there are.
func list(vals []string, total, n int) string {
	if len(vals) == 0 {
		return "-"
	}
	shown := vals[:min(n, len(vals))]
	s := strings.Join(shown, ", ")
	if more := total - len(shown); more > 0 {
		s += fmt.Sprintf(" and %s more", formatCount(more))
	}
	return s
}

func formatSpan(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
