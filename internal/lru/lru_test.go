package lru

import (
	"testing"

	"github.com/stretchr/testify/require"
)

type item struct {
	id   int
	node Node[item]
	aux  Node[item] // a second list, as the tracker's per-session list
}

func ids(l *List[item]) []int {
	var out []int
	for it := l.Front(); it != nil; it = l.Next(&it.node) {
		out = append(out, it.id)
	}
	return out
}

func backwards(l *List[item]) []int {
	var out []int
	for n := l.tail; n != nil; n = n.prev {
		out = append(out, n.owner.id)
	}
	return out
}

func TestListOperations(t *testing.T) {
	mk := func(n int) []*item {
		its := make([]*item, n)
		for i := range its {
			its[i] = &item{id: i}
		}
		return its
	}
	tests := []struct {
		name string
		ops  func(l *List[item], its []*item)
		want []int
	}{
		{"empty", func(*List[item], []*item) {}, nil},
		{"push back keeps order", func(l *List[item], its []*item) {
			for _, it := range its[:3] {
				l.PushBack(&it.node, it)
			}
		}, []int{0, 1, 2}},
		{"push front reverses", func(l *List[item], its []*item) {
			for _, it := range its[:3] {
				l.PushFront(&it.node, it)
			}
		}, []int{2, 1, 0}},
		{"move to back", func(l *List[item], its []*item) {
			for _, it := range its[:4] {
				l.PushBack(&it.node, it)
			}
			l.MoveToBack(&its[0].node) // head
			l.MoveToBack(&its[2].node) // middle
			l.MoveToBack(&its[2].node) // already tail
		}, []int{1, 3, 0, 2}},
		{"remove head middle tail", func(l *List[item], its []*item) {
			for _, it := range its[:5] {
				l.PushBack(&it.node, it)
			}
			l.Remove(&its[0].node)
			l.Remove(&its[2].node)
			l.Remove(&its[4].node)
		}, []int{1, 3}},
		{"remove unlinked is a no-op", func(l *List[item], its []*item) {
			l.PushBack(&its[0].node, its[0])
			l.Remove(&its[1].node) // never linked: must not touch the head
			l.Remove(&its[0].node)
			l.Remove(&its[0].node) // twice
			l.PushBack(&its[2].node, its[2])
		}, []int{2}},
		{"move unlinked is a no-op", func(l *List[item], its []*item) {
			l.PushBack(&its[0].node, its[0])
			l.MoveToBack(&its[1].node)
		}, []int{0}},
		{"push of a linked node moves it", func(l *List[item], its []*item) {
			for _, it := range its[:3] {
				l.PushBack(&it.node, it)
			}
			l.PushBack(&its[0].node, its[0])
			l.PushFront(&its[2].node, its[2])
		}, []int{2, 1, 0}},
		{"push of the only node keeps it once", func(l *List[item], its []*item) {
			l.PushBack(&its[0].node, its[0])
			l.PushBack(&its[0].node, its[0])
			l.PushFront(&its[0].node, its[0])
		}, []int{0}},
		{"push back of the tail and front of the head stay put", func(l *List[item], its []*item) {
			for _, it := range its[:3] {
				l.PushBack(&it.node, it)
			}
			l.PushBack(&its[2].node, its[2])
			l.PushFront(&its[0].node, its[0])
		}, []int{0, 1, 2}},
		{"push front of the tail, back of the head", func(l *List[item], its []*item) {
			for _, it := range its[:3] {
				l.PushBack(&it.node, it)
			}
			l.PushFront(&its[2].node, its[2])
			l.PushBack(&its[2].node, its[2])
			l.PushBack(&its[0].node, its[0])
		}, []int{1, 2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l List[item]
			its := mk(5)
			tt.ops(&l, its)
			got := ids(&l)
			require.Equal(t, tt.want, got)
			require.Equal(t, len(tt.want), l.Len())
			rev := make([]int, len(tt.want))
			for i, v := range tt.want {
				rev[len(rev)-1-i] = v
			}
			if len(tt.want) == 0 {
				rev = nil
				require.Nil(t, l.Front())
				require.Nil(t, l.Back())
			} else {
				require.Equal(t, tt.want[0], l.Front().id)
				require.Equal(t, tt.want[len(tt.want)-1], l.Back().id)
			}
			require.Equal(t, rev, backwards(&l), "prev links agree with next links")
			for _, it := range its {
				require.Equal(t, contains(tt.want, it.id), it.node.Linked())
			}
		})
	}
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestTwoListsThroughTwoNodes(t *testing.T) {
	var byAge, bySession List[item]
	its := []*item{{id: 0}, {id: 1}, {id: 2}}
	for _, it := range its {
		byAge.PushBack(&it.node, it)
		bySession.PushFront(&it.aux, it)
	}
	byAge.Remove(&its[1].node)
	require.Equal(t, []int{0, 2}, ids(&byAge))
	var got []int
	for it := bySession.Front(); it != nil; it = bySession.Next(&it.aux) {
		got = append(got, it.id)
	}
	require.Equal(t, []int{2, 1, 0}, got, "the other list is untouched")
}

// Evicting from the front while pushing at the back is the LRU pattern of
// every user; the list must stay consistent through many rounds.
func TestEvictionRounds(t *testing.T) {
	var l List[item]
	pool := make([]*item, 64)
	for i := range pool {
		pool[i] = &item{id: i}
	}
	const capacity = 16
	for round := 0; round < 10_000; round++ {
		it := pool[(round*7)%len(pool)]
		if it.node.Linked() {
			l.MoveToBack(&it.node)
		} else {
			if l.Len() == capacity {
				old := l.Front()
				l.Remove(&old.node)
			}
			l.PushBack(&it.node, it)
		}
		require.Equal(t, it, l.Back())
		require.LessOrEqual(t, l.Len(), capacity)
	}
	require.Len(t, ids(&l), l.Len())
}

func BenchmarkMoveToBack(b *testing.B) {
	var l List[item]
	its := make([]item, 1024)
	for i := range its {
		l.PushBack(&its[i].node, &its[i])
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.MoveToBack(&its[(i*31)&1023].node)
	}
}
