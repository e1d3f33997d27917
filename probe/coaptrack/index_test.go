package coaptrack

import "testing"

// TestIndexCollisions: keys sharing a fingerprint are still told apart,
// whatever the order of entering and removing them.
func TestIndexCollisions(t *testing.T) {
	type val struct{ keys []int }
	holds := func(v *val, k int) bool {
		for _, h := range v.keys {
			if h == k {
				return true
			}
		}
		return false
	}
	a, b := &val{keys: []int{1}}, &val{keys: []int{2, 3}} // b may have two keys
	c := &val{keys: []int{2}}
	tests := []struct {
		name string
		ops  func(ix *index[int, *val])
		want map[int]*val
	}{
		{"one key", func(ix *index[int, *val]) { ix.put(7, 1, a) }, map[int]*val{1: a, 2: nil}},
		{"colliding keys", func(ix *index[int, *val]) { ix.put(7, 1, a); ix.put(7, 2, b) }, map[int]*val{1: a, 2: b, 3: nil}},
		{"first removed", func(ix *index[int, *val]) { ix.put(7, 1, a); ix.put(7, 2, b); ix.del(7, 1, a) }, map[int]*val{1: nil, 2: b}},
		{"second removed", func(ix *index[int, *val]) { ix.put(7, 1, a); ix.put(7, 2, b); ix.del(7, 2, b) }, map[int]*val{1: a, 2: nil}},
		{"two keys of one value, first removed", func(ix *index[int, *val]) { ix.put(7, 2, b); ix.put(7, 3, b); ix.del(7, 2, b) }, map[int]*val{3: b}},
		{"two keys of one value, second removed", func(ix *index[int, *val]) { ix.put(7, 2, b); ix.put(7, 3, b); ix.del(7, 3, b) }, map[int]*val{2: b}},
		{"removal by another value is ignored", func(ix *index[int, *val]) { ix.put(7, 1, a); ix.del(7, 1, b) }, map[int]*val{1: a}},
		{"replaced", func(ix *index[int, *val]) { ix.put(7, 2, b); ix.put(7, 2, c); ix.del(7, 2, b) }, map[int]*val{2: c}},
		{"cleared", func(ix *index[int, *val]) { ix.put(7, 1, a); ix.put(7, 2, b); ix.clear() }, map[int]*val{1: nil, 2: nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix := newIndex(holds)
			tc.ops(&ix)
			n := 0
			for k, want := range tc.want {
				if got := ix.get(7, k); got != want {
					t.Errorf("get(%d) = %v, want %v", k, got, want)
				}
				if want != nil {
					n++
				}
			}
			if ix.len() != n {
				t.Errorf("len %d, want %d", ix.len(), n)
			}
		})
	}
}

// TestIndexAgainstMap: random puts and deletions, with fingerprints drawn
// from a small set so that probe runs wrap around the table, cross each
// other and share fingerprints, agree with a Go map at every step.
func TestIndexAgainstMap(t *testing.T) {
	type val struct{ key int }
	holds := func(v *val, k int) bool { return v.key == k }
	for _, tc := range []struct {
		name    string
		keys    int
		fprints uint64 // distinct fingerprints
	}{
		{"few fingerprints", 200, 37},
		{"one fingerprint per key", 500, 1 << 62},
		{"many keys", 5000, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := func(k int) uint64 { return uint64(k*2654435761) % tc.fprints }
			ix := newIndex(holds)
			ref := map[int]*val{}
			rng := uint64(12345)
			next := func(n int) int { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return int(rng % uint64(n)) }
			for step := range 20 * tc.keys {
				k := next(tc.keys)
				if v, ok := ref[k]; ok && next(3) > 0 {
					ix.del(fp(k), k, v)
					delete(ref, k)
				} else if !ok {
					v := &val{key: k}
					ix.put(fp(k), k, v)
					ref[k] = v
				}
				if step%97 == 0 || step == 20*tc.keys-1 {
					for q := range tc.keys {
						if got := ix.get(fp(q), q); got != ref[q] {
							t.Fatalf("step %d: get(%d) = %v, want %v", step, q, got, ref[q])
						}
					}
					if ix.len() != len(ref) {
						t.Fatalf("step %d: len %d, want %d", step, ix.len(), len(ref))
					}
				}
			}
			if 2*ix.n > len(ix.slots) {
				t.Errorf("%d of %d slots used: more than half", ix.n, len(ix.slots))
			}
		})
	}
}
