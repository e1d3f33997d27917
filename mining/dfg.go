package mining

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Count is a named frequency.
type Count struct {
	Activity string `json:"activity"`
	Count    int    `json:"count"`
}

// DurationStats summarises a set of durations (nanoseconds in JSON).
type DurationStats struct {
	Mean   time.Duration `json:"meanNs"`
	Median time.Duration `json:"medianNs"`
	StdDev time.Duration `json:"stdDevNs"`
	Min    time.Duration `json:"minNs"`
	Max    time.Duration `json:"maxNs"`
}

func durationStats(ds []time.Duration) DurationStats {
	if len(ds) == 0 {
		return DurationStats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum float64
	for _, d := range s {
		sum += float64(d)
	}
	mean := sum / float64(len(s))
	var v float64
	for _, d := range s {
		v += (float64(d) - mean) * (float64(d) - mean)
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return DurationStats{
		Mean:   time.Duration(mean),
		Median: med,
		StdDev: time.Duration(math.Sqrt(v / float64(len(s)))),
		Min:    s[0],
		Max:    s[len(s)-1],
	}
}

// Edge is one directly-follows relation: To directly followed From in some
// case, Count times, with the given time between the two events.
type Edge struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Count int    `json:"count"`
	DurationStats
}

// DFG is a directly-follows graph of the process view: activities with
// their event counts, directly-follows edges with frequency and duration,
// and start and end activities with the number of cases they start/end.
// All slices are sorted (activities by name, edges by From then To).
type DFG struct {
	Activities []Count `json:"activities"`
	Edges      []Edge  `json:"edges"`
	Start      []Count `json:"start"`
	End        []Count `json:"end"`
	Cases      int     `json:"cases"`
}

// DFGOptions filter a discovered graph. Zero values filter nothing.
type DFGOptions struct {
	// MinActivityCount drops activities with fewer events (and their edges).
	MinActivityCount int
	// MinEdgeCount drops edges (and start/end arcs) seen fewer times.
	MinEdgeCount int
	// Activities, if not empty, keeps only these activities (and the edges
	// between them); cases are not re-linked around removed activities.
	Activities []string
}

// DiscoverDFG discovers the directly-follows graph of the log's process view.
func DiscoverDFG(l *EventLog, opts DFGOptions) *DFG {
	acts := map[string]int{}
	start, end := map[string]int{}, map[string]int{}
	type pair struct{ from, to string }
	durs := map[pair][]time.Duration{}
	traces := l.Traces()
	for _, tr := range traces {
		var prev *Event
		for i := range tr.Events {
			e := &tr.Events[i]
			a := e.Activity()
			acts[a]++
			if prev == nil {
				start[a]++
			} else {
				p := pair{prev.Activity(), a}
				durs[p] = append(durs[p], e.Time.Sub(prev.Time))
			}
			prev = e
		}
		if prev != nil {
			end[prev.Activity()]++
		}
	}
	keep := func(a string) bool {
		if acts[a] < opts.MinActivityCount {
			return false
		}
		return len(opts.Activities) == 0 || slices.Contains(opts.Activities, a)
	}
	g := &DFG{Cases: len(traces)}
	for a, n := range acts {
		if keep(a) {
			g.Activities = append(g.Activities, Count{a, n})
		}
	}
	for p, ds := range durs {
		if keep(p.from) && keep(p.to) && len(ds) >= opts.MinEdgeCount {
			g.Edges = append(g.Edges, Edge{From: p.from, To: p.to, Count: len(ds), DurationStats: durationStats(ds)})
		}
	}
	for a, n := range start {
		if keep(a) && n >= opts.MinEdgeCount {
			g.Start = append(g.Start, Count{a, n})
		}
	}
	for a, n := range end {
		if keep(a) && n >= opts.MinEdgeCount {
			g.End = append(g.End, Count{a, n})
		}
	}
	sortCounts(g.Activities)
	sortCounts(g.Start)
	sortCounts(g.End)
	sortEdges(g.Edges)
	return g
}

func sortCounts(cs []Count) {
	slices.SortFunc(cs, func(a, b Count) int { return strings.Compare(a.Activity, b.Activity) })
}

func sortEdges(es []Edge) {
	slices.SortFunc(es, func(a, b Edge) int {
		return cmp.Or(strings.Compare(a.From, b.From), strings.Compare(a.To, b.To))
	})
}

// Edge returns the edge from → to, if the graph has it.
func (g *DFG) Edge(from, to string) (Edge, bool) {
	i, ok := slices.BinarySearchFunc(g.Edges, Edge{From: from, To: to}, func(a, b Edge) int {
		return cmp.Or(strings.Compare(a.From, b.From), strings.Compare(a.To, b.To))
	})
	if !ok {
		return Edge{}, false
	}
	return g.Edges[i], true
}

// WriteDOT writes the graph in Graphviz DOT: one box per activity (label:
// client, topic and event count), an edge per directly-follows relation
// (label: count, mean and median time), and the start and end arcs from
// and to two circles. Render with `dot -Tsvg`.
func (g *DFG) WriteDOT(w io.Writer) error {
	bw := bufio.NewWriter(w)
	bw.WriteString("digraph dfg {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef3fb\", fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n")
	bw.WriteString("  \"@@start\" [shape=circle, label=\"\", width=0.25, fillcolor=\"#4caf50\"];\n")
	bw.WriteString("  \"@@end\" [shape=doublecircle, label=\"\", width=0.2, fillcolor=\"#f44336\"];\n")
	maxN := 1
	for _, e := range g.Edges {
		maxN = max(maxN, e.Count)
	}
	for _, a := range g.Activities {
		client, topic, ok := strings.Cut(a.Activity, ActivitySep)
		label := a.Activity
		if ok {
			label = client + "\n" + topic
		}
		fmt.Fprintf(bw, "  %s [label=%s];\n", dotID(a.Activity), dotID(label+" ("+strconv.Itoa(a.Count)+")"))
	}
	for _, s := range g.Start {
		fmt.Fprintf(bw, "  \"@@start\" -> %s [label=%s, style=dashed];\n", dotID(s.Activity), dotID(strconv.Itoa(s.Count)))
	}
	for _, e := range g.Edges {
		pen := 1 + 4*float64(e.Count)/float64(maxN)
		label := fmt.Sprintf("%d\nmean %s\nmedian %s", e.Count, formatDuration(e.Mean), formatDuration(e.Median))
		fmt.Fprintf(bw, "  %s -> %s [label=%s, penwidth=%.2f];\n", dotID(e.From), dotID(e.To), dotID(label), pen)
	}
	for _, s := range g.End {
		fmt.Fprintf(bw, "  %s -> \"@@end\" [label=%s, style=dashed];\n", dotID(s.Activity), dotID(strconv.Itoa(s.Count)))
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// dotID quotes s as a DOT string identifier.
func dotID(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
