package mining

import (
	"math"
	"slices"
)

// The log skeleton, once: what each relation means on a case (caseProfile),
// and the constraints of a model compiled for checking (skeleton). Learn
// keeps the relations that hold in (almost) every training case, Evaluate
// counts the constraints a test case violates, and the Detector checks
// live cases against them. Activities are dense int32 ids throughout.

// relation is a binary log-skeleton relation from activity a to b.
type relation uint8

const (
	// equivalence: a case that has a has b as often.
	equivalence relation = iota
	// alwaysAfter: every a is followed later by b (b after the last a).
	alwaysAfter
	// alwaysBefore: every a is preceded by b (b before the first a). At
	// an event of a, as a case grows, that is: b occurs earlier (see
	// occursIn).
	alwaysBefore
	// neverTogether: a and b are not both in a case.
	neverTogether
	numRelations
)

// actStat is what the relations need of one activity of a case.
type actStat struct {
	act                int32
	count, first, last int // occurrences, position of the first and last
}

// caseProfile is a case reduced to what the skeleton needs. The zero value
// is an empty case; reset reuses its memory.
type caseProfile struct {
	n     int       // events
	stats []actStat // by activity id, ascending
}

// reset profiles the case with these activities, in order.
func (p *caseProfile) reset(acts []int32) {
	p.n, p.stats = len(acts), p.stats[:0]
	for i, a := range acts {
		j, found := p.find(a)
		if !found {
			p.stats = slices.Insert(p.stats, j, actStat{act: a, first: i})
		}
		s := &p.stats[j]
		s.count++
		s.last = i
	}
}

// find returns the index of a's entry, or where it would go. Cases are
// short: a few entries are scanned, more are searched.
func (p *caseProfile) find(a int32) (int, bool) {
	if len(p.stats) <= 8 {
		for i := range p.stats {
			if x := p.stats[i].act; x >= a {
				return i, x == a
			}
		}
		return len(p.stats), false
	}
	lo, hi := 0, len(p.stats)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if p.stats[m].act < a {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(p.stats) && p.stats[lo].act == a
}

// stat returns a's entry, nil if the case lacks a.
func (p *caseProfile) stat(a int32) *actStat {
	if j, found := p.find(a); found {
		return &p.stats[j]
	}
	return nil
}

// count is how often a occurs in the case.
func (p *caseProfile) count(a int32) int {
	if s := p.stat(a); s != nil {
		return s.count
	}
	return 0
}

// holds reports whether relation r from a to b holds in the case. Every
// relation holds in a case without a.
func (p *caseProfile) holds(r relation, a, b int32) bool {
	sa := p.stat(a)
	return sa == nil || r.holds(sa, p.stat(b))
}

// holds reports whether r holds from the activity of sa (in the case) to
// that of sb (nil: not in the case).
func (r relation) holds(sa, sb *actStat) bool {
	switch r {
	case equivalence:
		return sb != nil && sb.count == sa.count
	case alwaysAfter:
		return sb != nil && sb.last > sa.last
	case alwaysBefore:
		return sb != nil && sb.first < sa.first
	case neverTogether:
		return sb == nil
	}
	return true
}

// occursIn reports whether activity a is among acts: at an event, the
// always-before relation to b holds when b occursIn the events before it.
func occursIn(acts []int32, a int32) bool {
	return slices.Contains(acts, a)
}

// skeleton is a model's log skeleton compiled for checking: per activity
// id, its occurrence bounds and the targets of its relations.
type skeleton struct {
	occ    []Bounds // {0, MaxInt} where hasOcc is false
	hasOcc []bool
	// to holds, per relation other than neverTogether, the activities b
	// that activity a has the relation to, in the model's order.
	to     [neverTogether][][]int32
	never  map[uint64]bool // pairKey, both orders
	length Bounds          // events per case
}

// compileSkeleton compiles sk over n activity ids; id numbers a name
// (ids below n). Constraints naming an activity id does not know are
// left out.
func compileSkeleton(sk *Skeleton, n int, id func(name string) (int32, bool)) skeleton {
	s := skeleton{occ: make([]Bounds, n), hasOcc: make([]bool, n), never: map[uint64]bool{}, length: sk.CaseLength}
	for i := range s.occ {
		s.occ[i] = Bounds{0, math.MaxInt}
	}
	for r := range s.to {
		s.to[r] = make([][]int32, n)
	}
	for _, o := range sk.Occurrences {
		if i, ok := id(o.Activity); ok {
			s.occ[i], s.hasOcc[i] = Bounds{o.Min, o.Max}, true
		}
	}
	for r, ps := range [neverTogether][]Pair{equivalence: sk.Equivalence, alwaysAfter: sk.AlwaysAfter, alwaysBefore: sk.AlwaysBefore} {
		for _, p := range ps {
			a, ok1 := id(p.A)
			b, ok2 := id(p.B)
			if ok1 && ok2 {
				s.to[r][a] = append(s.to[r][a], b)
			}
		}
	}
	for _, p := range sk.NeverTogether {
		a, ok1 := id(p.A)
		b, ok2 := id(p.B)
		if ok1 && ok2 {
			s.never[pairKey(a, b)] = true
			s.never[pairKey(b, a)] = true
		}
	}
	return s
}

// targets returns the activities a has relation r (not neverTogether) to.
func (s *skeleton) targets(r relation, a int32) []int32 {
	if a < 0 || int(a) >= len(s.to[r]) {
		return nil
	}
	return s.to[r][a]
}

// bounds returns a's occurrence bounds and whether the model has them.
func (s *skeleton) bounds(a int32) (Bounds, bool) {
	if a < 0 || int(a) >= len(s.occ) {
		return Bounds{0, math.MaxInt}, false
	}
	return s.occ[a], s.hasOcc[a]
}

// neverTogether reports whether a and b are never in one case.
func (s *skeleton) neverTogether(a, b int32) bool { return s.never[pairKey(a, b)] }

// check checks a whole case and returns the number of constraints checked
// and violated: case length, the occurrences and relations of each of its
// activities, and never-together for each pair of its activities with ids
// below known (the model's activities).
func (s *skeleton) check(p *caseProfile, known int32) (checked, violated int) {
	checked++
	if p.n < s.length.Min || p.n > s.length.Max {
		violated++
	}
	for i := range p.stats {
		a, c := p.stats[i].act, p.stats[i].count
		if o, ok := s.bounds(a); ok {
			checked++
			if c < o.Min || c > o.Max {
				violated++
			}
		}
		for _, r := range [...]relation{equivalence, alwaysAfter, alwaysBefore} {
			for _, b := range s.targets(r, a) {
				checked++
				if !p.holds(r, a, b) {
					violated++
				}
			}
		}
		for j := i + 1; j < len(p.stats); j++ {
			if b := p.stats[j].act; a < known && b < known {
				checked++
				if s.neverTogether(a, b) {
					violated++
				}
			}
		}
	}
	return checked, violated
}

// activityIDs numbers activity names densely, in the order first seen.
type activityIDs struct {
	byName map[string]int32
	names  []string
}

func newActivityIDs() *activityIDs { return &activityIDs{byName: map[string]int32{}} }

// intern returns name's id, numbering it if new.
func (t *activityIDs) intern(name string) int32 {
	if i, ok := t.byName[name]; ok {
		return i
	}
	i := int32(len(t.names))
	t.byName[name] = i
	t.names = append(t.names, name)
	return i
}

// lookup returns name's id if it has one.
func (t *activityIDs) lookup(name string) (int32, bool) {
	i, ok := t.byName[name]
	return i, ok
}

// trace returns the ids of a trace's activities, interning new ones, in
// buf's memory.
func (t *activityIDs) trace(tr *Trace, buf []int32) []int32 {
	buf = buf[:0]
	for i := range tr.Events {
		buf = append(buf, t.intern(tr.Events[i].Activity()))
	}
	return buf
}
