package coaptrack

import (
	"encoding/binary"
	"math/bits"
)

// index maps keys to values (pointers) through a 64-bit fingerprint of
// the key: an open-addressing table of 16-byte slots (fingerprint,
// value), linear probing from the slot the fingerprint picks, removal by
// shifting the entries behind back (no tombstones), at most half full.
// Whatever the key's size, a lookup usually reads one cache line of
// slots, and deleting leaves nothing behind to probe past. The value
// holds its key (holds checks it), so a lookup is exact: keys whose
// fingerprint an entry already has go to an exact map beside it (with a
// random seed per tracker, practically never; adversarial collisions
// cost time, never a wrong answer).
type index[K comparable, V comparable] struct {
	slots []indexEntry[V] // len a power of two, or 0
	shift uint8           // 64 − log2(len(slots))
	n     int             // values in slots
	slow  map[K]V
	holds func(v V, k K) bool // v is the entry of k
}

// indexEntry is a slot: empty when v is the zero V.
type indexEntry[V comparable] struct {
	f uint64
	v V
}

const minIndexSlots = 64

func newIndex[K comparable, V comparable](holds func(V, K) bool) index[K, V] {
	return index[K, V]{holds: holds}
}

// spread picks one of 2^(64−shift) places for fingerprint f: the top
// bits of f times the golden ratio (the fingerprint's low bits follow
// sequential message ids too closely to select by). The open tables'
// slots and the linger index's buckets are both chosen by it.
func spread(f uint64, shift uint8) int {
	return int((f * 0x9e3779b97f4a7c15) >> shift)
}

// home is f's first slot.
func (ix *index[K, V]) home(f uint64) int { return spread(f, ix.shift) }

// slot returns the slot holding f, or -1.
func (ix *index[K, V]) slot(f uint64) int {
	if ix.n == 0 {
		return -1
	}
	var zero V
	mask := len(ix.slots) - 1
	for i := ix.home(f); ; i = (i + 1) & mask {
		s := &ix.slots[i]
		if s.v == zero {
			return -1
		}
		if s.f == f {
			return i
		}
	}
}

// line appends to lines the word of the slot a lookup of f reads first
// (Tracker.plan).
func (ix *index[K, V]) line(lines []*uint64, f uint64) []*uint64 {
	if len(ix.slots) == 0 {
		return lines
	}
	return append(lines, &ix.slots[ix.home(f)].f)
}

// get returns k's value (f is k's fingerprint), or the zero V.
func (ix *index[K, V]) get(f uint64, k K) V {
	if i := ix.slot(f); i >= 0 && ix.holds(ix.slots[i].v, k) {
		return ix.slots[i].v
	}
	var zero V
	if len(ix.slow) == 0 {
		return zero
	}
	return ix.slow[k]
}

// put enters k → v.
func (ix *index[K, V]) put(f uint64, k K, v V) {
	if i := ix.slot(f); i >= 0 {
		if cur := ix.slots[i].v; cur != v && ix.holds(cur, k) {
			ix.slots[i].v = v
			return
		}
		if ix.slow == nil {
			ix.slow = make(map[K]V)
		}
		ix.slow[k] = v
		return
	}
	if 2*(ix.n+1) > len(ix.slots) {
		ix.grow()
	}
	ix.insert(f, v)
}

// insert puts f → v in the first free slot from f's home.
func (ix *index[K, V]) insert(f uint64, v V) {
	var zero V
	mask := len(ix.slots) - 1
	i := ix.home(f)
	for ix.slots[i].v != zero {
		i = (i + 1) & mask
	}
	ix.slots[i] = indexEntry[V]{f, v}
	ix.n++
}

func (ix *index[K, V]) grow() {
	old := ix.slots
	n := max(2*len(old), minIndexSlots)
	ix.slots = make([]indexEntry[V], n)
	ix.shift = uint8(64 - bits.TrailingZeros(uint(n)))
	ix.n = 0
	var zero V
	for _, s := range old {
		if s.v != zero {
			ix.insert(s.f, s.v)
		}
	}
}

// del removes k when its value is v.
func (ix *index[K, V]) del(f uint64, k K, v V) {
	if len(ix.slow) > 0 {
		if cur, ok := ix.slow[k]; ok && cur == v {
			delete(ix.slow, k)
			return
		}
	}
	i := ix.slot(f)
	if i < 0 || ix.slots[i].v != v {
		return
	}
	// Shift back the entries after i whose home does not lie cyclically
	// in (i, j]: they were placed past i and must stay findable.
	var zero V
	mask := len(ix.slots) - 1
	for j := (i + 1) & mask; ix.slots[j].v != zero; j = (j + 1) & mask {
		h := ix.home(ix.slots[j].f)
		if (j-h)&mask >= (j-i)&mask {
			ix.slots[i] = ix.slots[j]
			i = j
		}
	}
	ix.slots[i] = indexEntry[V]{}
	ix.n--
}

func (ix *index[K, V]) len() int { return ix.n + len(ix.slow) }

func (ix *index[K, V]) clear() {
	clear(ix.slots)
	ix.n = 0
	clear(ix.slow)
}

// Fingerprints: wyhash's multiply-fold over the key's words, seeded.

func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a^0xa0761d6478bd642f, b^0xe7037ed1a0b428db)
	return hi ^ lo
}

func (e *endpoint) fold(h uint64) uint64 {
	h = mum(h^binary.LittleEndian.Uint64(e.addr[:8]), binary.LittleEndian.Uint64(e.addr[8:]))
	return h ^ uint64(e.port)<<16 ^ uint64(e.v4)
}

func (k *midKey) fingerprint(seed uint64) uint64 {
	h := k.from.fold(seed)
	h = k.to.fold(h)
	return mum(h, uint64(k.mid)^0x8ebc6af09c88c6e3)
}

func (k *tokKey) fingerprint(seed uint64) uint64 {
	h := k.client.fold(seed)
	h = k.server.fold(h)
	return mum(h^uint64(k.n), binary.LittleEndian.Uint64(k.tok[:]))
}
