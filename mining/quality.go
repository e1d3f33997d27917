package mining

// Quality is how well a model describes a held-out (test) log. All values
// are in [0, 1]; 1 is best.
type Quality struct {
	Cases  int `json:"cases"`
	Events int `json:"events"`
	// UnknownActivities counts test events whose activity the model lacks.
	UnknownActivities int `json:"unknownActivities"`

	DFG      DFGQuality      `json:"dfg"`
	Skeleton SkeletonQuality `json:"skeleton"`
}

// DFGQuality measures the directly-follows model.
type DFGQuality struct {
	// TraceFitness is the share of test cases whose start arc, every
	// directly-follows arc and end arc are all in the model.
	TraceFitness float64 `json:"traceFitness"`
	// ArcFitness is the share of the test log's arcs (start, directly-
	// follows and end, counted with multiplicity) that are in the model.
	ArcFitness float64 `json:"arcFitness"`
	// Precision is escaping-arc precision: in each state (the last
	// activity, or the case start) the model allows a set of next steps
	// (activities or the case end); precision is, averaged over the test
	// log's steps from known states, the share of the allowed next steps
	// the test log takes from that state. 1 means the model allows nothing
	// the test log does not do.
	Precision float64 `json:"precision"`
}

// SkeletonQuality measures the log skeleton.
type SkeletonQuality struct {
	// TraceFitness is the share of test cases that violate no constraint.
	TraceFitness float64 `json:"traceFitness"`
	// ConstraintFitness is PM4Py's per-case deviation fitness averaged
	// over cases: 1 − violated / checked constraints.
	ConstraintFitness float64 `json:"constraintFitness"`
	// Precision averages two shares: of the activity pairs the skeleton
	// lets co-occur (not never-together, both in the test log), those that
	// do co-occur in a test case; and of the occurrence counts the bounds
	// allow for the test log's activities, those that test cases show.
	Precision float64 `json:"precision"`
}

// Evaluate measures model on a test log (typically the later part of a
// log split with SplitByTime).
func Evaluate(m *Model, test *EventLog) Quality {
	ix := newIndex(m)
	traces := test.Traces()
	q := Quality{Cases: len(traces)}
	if len(traces) == 0 {
		return q
	}

	const startState, endState = "\x00start", "\x00end"
	allowed := func(s string) map[string]bool {
		if s == startState {
			return ix.startSet
		}
		return ix.next[s]
	}
	used := map[string]map[string]bool{}
	steps := map[string]int{}
	var arcs, arcsIn, fitTraces int
	for _, tr := range traces {
		q.Events += len(tr.Events)
		ok := true
		prev := startState
		step := func(to string) {
			arcs++
			in := allowed(prev)[to]
			if in {
				arcsIn++
				if used[prev] == nil {
					used[prev] = map[string]bool{}
				}
				used[prev][to] = true
			} else {
				ok = false
			}
			if prev == startState || ix.act[prev] != nil {
				steps[prev]++
			}
		}
		for i := range tr.Events {
			a := tr.Events[i].Activity()
			if ix.act[a] == nil {
				q.UnknownActivities++
			}
			step(a)
			prev = a
		}
		step(endState)
		if ok {
			fitTraces++
		}
	}
	q.DFG.TraceFitness = float64(fitTraces) / float64(len(traces))
	q.DFG.ArcFitness = float64(arcsIn) / float64(arcs)
	var num, den float64
	for s, n := range steps {
		al := allowed(s)
		if len(al) == 0 {
			continue
		}
		num += float64(n) * float64(len(used[s])) / float64(len(al))
		den += float64(n)
	}
	if den > 0 {
		q.DFG.Precision = num / den
	}

	// Skeleton: ids for the model's activities first (known), then the
	// other names its skeleton uses, then the test log's.
	ids := newActivityIDs()
	for i := range m.Activities {
		ids.intern(m.Activities[i].Activity)
	}
	known := int32(len(ids.names))
	for _, n := range skeletonNames(&m.Skeleton) {
		ids.intern(n)
	}
	sk := compileSkeleton(&m.Skeleton, len(ids.names), ids.lookup)
	var fitSk int
	var devSum float64
	cooc := map[uint64]bool{} // a < b
	counts := map[int32]map[int]bool{}
	inTest := map[int32]bool{}
	var p caseProfile
	var buf []int32
	for i := range traces {
		buf = ids.trace(&traces[i], buf)
		p.reset(buf)
		checked, violated := sk.check(&p, known)
		if violated == 0 {
			fitSk++
		}
		if checked > 0 {
			devSum += 1 - float64(violated)/float64(checked)
		} else {
			devSum++
		}
		for j, sa := range p.stats {
			inTest[sa.act] = true
			if counts[sa.act] == nil {
				counts[sa.act] = map[int]bool{}
			}
			counts[sa.act][sa.count] = true
			for _, sb := range p.stats[j+1:] {
				cooc[pairKey(sa.act, sb.act)] = true
			}
		}
	}
	q.Skeleton.TraceFitness = float64(fitSk) / float64(len(traces))
	q.Skeleton.ConstraintFitness = devSum / float64(len(traces))
	var allowPairs, seenPairs, allowCounts, seenCounts int
	for a := range inTest {
		if o, ok := sk.bounds(a); ok {
			allowCounts += o.Max - o.Min + 1
			for c := range counts[a] {
				if c >= o.Min && c <= o.Max {
					seenCounts++
				}
			}
		}
		for b := range inTest {
			if a < b && a < known && b < known && !sk.neverTogether(a, b) {
				allowPairs++
				if cooc[pairKey(a, b)] {
					seenPairs++
				}
			}
		}
	}
	var parts, sum float64
	if allowPairs > 0 {
		parts++
		sum += float64(seenPairs) / float64(allowPairs)
	}
	if allowCounts > 0 {
		parts++
		sum += float64(seenCounts) / float64(allowCounts)
	}
	if parts > 0 {
		q.Skeleton.Precision = sum / parts
	}
	return q
}

// index is a model's directly-follows graph prepared for look-ups by
// activity name.
type index struct {
	act      map[string]*ActivityInfo
	startSet map[string]bool
	next     map[string]map[string]bool // DF successors; "\x00end" for end activities
}

func newIndex(m *Model) *index {
	ix := &index{act: map[string]*ActivityInfo{}, startSet: map[string]bool{}, next: map[string]map[string]bool{}}
	for i := range m.Activities {
		ix.act[m.Activities[i].Activity] = &m.Activities[i]
	}
	for _, s := range m.Start {
		ix.startSet[s.Activity] = true
	}
	addNext := func(from, to string) {
		if ix.next[from] == nil {
			ix.next[from] = map[string]bool{}
		}
		ix.next[from][to] = true
	}
	for _, s := range m.End {
		addNext(s.Activity, "\x00end")
	}
	for _, e := range m.DirectlyFollows {
		addNext(e.From, e.To)
	}
	return ix
}

// skeletonNames returns the activity names the skeleton's constraints use.
func skeletonNames(sk *Skeleton) []string {
	var out []string
	for _, o := range sk.Occurrences {
		out = append(out, o.Activity)
	}
	for _, ps := range [][]Pair{sk.Equivalence, sk.AlwaysAfter, sk.AlwaysBefore, sk.NeverTogether} {
		for _, p := range ps {
			out = append(out, p.A, p.B)
		}
	}
	return out
}
