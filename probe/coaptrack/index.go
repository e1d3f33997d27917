package coaptrack

import (
	"encoding/binary"
	"math/bits"
)

// index maps keys to values (pointers) through a 64-bit fingerprint of
// the key: the table's slots are 16 bytes whatever the key, so a large
// capture's million exchanges take a third of the memory of a map keyed
// by the 42- or 50-byte keys, with fewer cache and TLB misses per lookup.
// The value holds its key (holds checks it), so a lookup is exact: keys
// whose fingerprint an entry already has go to an exact map beside it
// (with a random seed per tracker, practically never; adversarial
// collisions cost time, never a wrong answer).
type index[K comparable, V comparable] struct {
	fast  map[uint64]V
	slow  map[K]V
	holds func(v V, k K) bool // v is the entry of k
}

func newIndex[K comparable, V comparable](holds func(V, K) bool) index[K, V] {
	return index[K, V]{fast: make(map[uint64]V), holds: holds}
}

// get returns k's value (f is k's fingerprint), or the zero V.
func (ix *index[K, V]) get(f uint64, k K) V {
	v, ok := ix.fast[f]
	if ok && ix.holds(v, k) {
		return v
	}
	var zero V
	if len(ix.slow) == 0 {
		return zero
	}
	return ix.slow[k]
}

// put enters k → v.
func (ix *index[K, V]) put(f uint64, k K, v V) {
	cur, ok := ix.fast[f]
	if !ok || cur != v && ix.holds(cur, k) {
		ix.fast[f] = v
		return
	}
	if ix.slow == nil {
		ix.slow = make(map[K]V)
	}
	ix.slow[k] = v
}

// del removes k when its value is v.
func (ix *index[K, V]) del(f uint64, k K, v V) {
	if len(ix.slow) > 0 {
		if cur, ok := ix.slow[k]; ok && cur == v {
			delete(ix.slow, k)
			return
		}
	}
	if cur, ok := ix.fast[f]; ok && cur == v {
		delete(ix.fast, f)
	}
}

func (ix *index[K, V]) len() int { return len(ix.fast) + len(ix.slow) }

func (ix *index[K, V]) clear() {
	clear(ix.fast)
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
