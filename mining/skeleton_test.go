package mining

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// ids turns a hand-written trace, one letter an activity, into ids:
// "ABA" is A(0) B(1) A(0).
func ids(trace string) []int32 {
	out := make([]int32, len(trace))
	for i := range trace {
		out[i] = int32(trace[i] - 'A')
	}
	return out
}

func act(c byte) int32 { return int32(c - 'A') }

func TestCaseProfileRelations(t *testing.T) {
	for _, tc := range []struct {
		trace string
		r     relation
		a, b  byte
		want  bool
	}{
		// Every relation holds in a case without a.
		{"BCB", equivalence, 'A', 'B', true},
		{"BCB", alwaysAfter, 'A', 'B', true},
		{"BCB", alwaysBefore, 'A', 'B', true},
		{"BCB", neverTogether, 'A', 'B', true},
		{"", alwaysAfter, 'A', 'B', true},

		// Equivalence: as often.
		{"AB", equivalence, 'A', 'B', true},
		{"ABBA", equivalence, 'A', 'B', true},
		{"ABB", equivalence, 'A', 'B', false},
		{"AAB", equivalence, 'A', 'B', false},
		{"AC", equivalence, 'A', 'B', false},
		{"B", equivalence, 'B', 'A', false},

		// Always-after: b after the last a.
		{"AB", alwaysAfter, 'A', 'B', true},
		{"ABAB", alwaysAfter, 'A', 'B', true},
		{"AAB", alwaysAfter, 'A', 'B', true},
		{"ABA", alwaysAfter, 'A', 'B', false},
		{"BA", alwaysAfter, 'A', 'B', false},
		{"A", alwaysAfter, 'A', 'B', false},

		// Always-before: b before the first a.
		{"BA", alwaysBefore, 'A', 'B', true},
		{"BAA", alwaysBefore, 'A', 'B', true},
		{"BABA", alwaysBefore, 'A', 'B', true},
		{"ABA", alwaysBefore, 'A', 'B', false},
		{"AB", alwaysBefore, 'A', 'B', false},
		{"A", alwaysBefore, 'A', 'B', false},

		// Never-together: not both.
		{"AC", neverTogether, 'A', 'B', true},
		{"AB", neverTogether, 'A', 'B', false},
		{"BCA", neverTogether, 'A', 'B', false},
	} {
		var p caseProfile
		p.reset(ids(tc.trace))
		require.Equal(t, tc.want, p.holds(tc.r, act(tc.a), act(tc.b)), "%q relation %d from %c to %c", tc.trace, tc.r, tc.a, tc.b)

		if tc.r == alwaysBefore {
			// The detector's form, event by event: every a has b before it.
			tr := ids(tc.trace)
			inc := true
			for i, x := range tr {
				if x == act(tc.a) && !occursIn(tr[:i], act(tc.b)) {
					inc = false
				}
			}
			require.Equal(t, tc.want, inc, "%q event by event", tc.trace)
		}
	}
}

func TestCaseProfileReset(t *testing.T) {
	var p caseProfile
	p.reset(ids("CACBA"))
	require.Equal(t, 5, p.n)
	require.Equal(t, []actStat{
		{act: 0, count: 2, first: 1, last: 4},
		{act: 1, count: 1, first: 3, last: 3},
		{act: 2, count: 2, first: 0, last: 2},
	}, p.stats)
	require.Equal(t, 2, p.count(act('C')))
	require.Zero(t, p.count(act('D')))
	require.Nil(t, p.stat(act('D')))

	// Reused: nothing of the previous case is left.
	p.reset(ids("D"))
	require.Equal(t, 1, p.n)
	require.Equal(t, []actStat{{act: 3, count: 1}}, p.stats)
	p.reset(nil)
	require.Zero(t, p.n)
	require.Empty(t, p.stats)
}

// letterIDs numbers the activities "A", "B", … like ids.
func letterIDs(name string) (int32, bool) {
	if len(name) != 1 || name[0] < 'A' || name[0] > 'Z' {
		return 0, false
	}
	return act(name[0]), true
}

func TestSkeletonCheck(t *testing.T) {
	model := Skeleton{
		Equivalence:   []Pair{{"A", "B"}, {"B", "A"}},
		AlwaysAfter:   []Pair{{"A", "C"}},
		AlwaysBefore:  []Pair{{"C", "A"}, {"A", "ghost"}}, // an unknown name is left out
		NeverTogether: []Pair{{"A", "D"}},
		Occurrences:   []Occurrence{{"A", 1, 1}, {"B", 1, 1}, {"C", 1, 2}},
		CaseLength:    Bounds{3, 4},
	}
	sk := compileSkeleton(&model, 5, letterIDs)
	require.Equal(t, []int32{act('B')}, sk.targets(equivalence, act('A')))
	require.Equal(t, []int32{act('A')}, sk.targets(alwaysBefore, act('C')))
	require.Empty(t, sk.targets(alwaysBefore, act('A')))
	require.Nil(t, sk.targets(alwaysAfter, 7), "beyond the ids")
	require.True(t, sk.neverTogether(act('D'), act('A')), "symmetric")
	require.False(t, sk.neverTogether(act('A'), act('B')))
	b, ok := sk.bounds(act('C'))
	require.True(t, ok)
	require.Equal(t, Bounds{1, 2}, b)
	b, ok = sk.bounds(act('E'))
	require.False(t, ok)
	require.Equal(t, Bounds{0, math.MaxInt}, b)

	for _, tc := range []struct {
		trace             string
		known             int32
		checked, violated int
	}{
		// length; A: occ, equiv, after; B: occ, equiv; C: occ, before; pairs AB AC BC
		{"ABC", 5, 1 + 3 + 2 + 2 + 3, 0},
		{"BAC", 5, 11, 0},
		{"ACB", 5, 11, 0},
		{"CAB", 5, 11, 2},                 // A not followed by C, C without A before
		{"ABCC", 5, 11, 0},                // C twice is allowed
		{"ABCCC", 5, 11, 2},               // too long, C too often
		{"AABC", 5, 11, 3},                // A twice; A and B, B and A not equally often
		{"ABCD", 5, 1 + 3 + 2 + 2 + 6, 1}, // D unconstrained but never with A
		{"ABCD", 3, 1 + 3 + 2 + 2 + 3, 0}, // D not a model activity: no pairs with it
		{"E", 5, 1, 1},                    // too short; E unconstrained
	} {
		var p caseProfile
		p.reset(ids(tc.trace))
		checked, violated := sk.check(&p, tc.known)
		require.Equal(t, tc.checked, checked, "%q checked", tc.trace)
		require.Equal(t, tc.violated, violated, "%q violated", tc.trace)
	}
}

func TestLearnSkeletonFromHandWrittenTraces(t *testing.T) {
	traces := func(ts ...string) []Trace {
		var out []Trace
		for _, s := range ts {
			tr := Trace{Case: s}
			for i := range s {
				tr.Events = append(tr.Events, Event{Client: "c", Topic: s[i : i+1], Time: t0.Add(time.Duration(i) * time.Second)})
			}
			out = append(out, tr)
		}
		return out
	}
	a, b, c, d := Activity("c", "A"), Activity("c", "B"), Activity("c", "C"), Activity("c", "D")
	sk := learnSkeleton(traces("ABC", "ABC", "AC", "D"), 0)
	require.Equal(t, Bounds{1, 3}, sk.CaseLength)
	require.Equal(t, []Occurrence{{a, 1, 1}, {b, 1, 1}, {c, 1, 1}, {d, 1, 1}}, sk.Occurrences)
	require.Equal(t, []Pair{{a, c}, {b, a}, {b, c}, {c, a}}, sk.Equivalence)
	require.Equal(t, []Pair{{a, c}, {b, c}}, sk.AlwaysAfter)
	require.Equal(t, []Pair{{b, a}, {c, a}}, sk.AlwaysBefore)
	require.Equal(t, []Pair{{a, d}, {b, d}, {c, d}}, sk.NeverTogether)

	// With noise 0.5, a relation may fail in half the cases it concerns:
	// A → B holds in 2 of 3 cases with A.
	sk = learnSkeleton(traces("ABC", "ABC", "AC", "D"), 0.5)
	require.Contains(t, sk.Equivalence, Pair{a, b})
	require.Contains(t, sk.AlwaysAfter, Pair{a, b})
	require.NotContains(t, sk.AlwaysAfter, Pair{c, a})
}
