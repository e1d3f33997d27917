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
