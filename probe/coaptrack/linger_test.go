package coaptrack

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/coapparse"
	"github.com/mission-ids/mission/probe/app"
)

// TestLingerRing: entries keep their sequence numbers when the ring
// grows, dead ones are skipped by at, and a ring at its maximum is full.
func TestLingerRing(t *testing.T) {
	r := newLingerRing(3000, 1) // at most 4,096 slots
	require.Equal(t, 4096, r.max)
	var seqs []uint64
	for i := range 4096 {
		require.False(t, r.full(), "push %d", i)
		e := r.push()
		e.last = int64(i)
		seqs = append(seqs, e.seq)
	}
	require.True(t, r.full())
	require.Len(t, r.slots, 4096)
	for i, s := range seqs {
		e := r.at(s)
		require.NotNil(t, e, "entry %d", i)
		require.Equal(t, int64(i), e.last)
	}
	r.kill(r.at(seqs[10]))
	require.Nil(t, r.at(seqs[10]))
	require.Nil(t, r.at(seqs[len(seqs)-1]+1), "not pushed yet")
	for i := range 11 {
		require.Equal(t, seqs[i], r.front().seq)
		r.pop()
	}
	require.Equal(t, 4096-11, r.live)
	require.Nil(t, r.at(seqs[0]), "popped")
	require.False(t, r.full())
	e := r.push()
	require.Equal(t, seqs[len(seqs)-1]+1, e.seq)
	require.Same(t, e, r.at(e.seq))
	r.reset()
	require.Nil(t, r.front())
	require.Nil(t, r.at(e.seq))
	require.Equal(t, e.seq+1, r.push().seq, "sequence numbers never repeat")
}

// TestLingering: an ended exchange absorbs copies of its messages until
// Linger has passed, the MaxExchanges bound forgets the oldest first, and
// a new request reusing a lingering message id ends the old exchange's
// linger at once.
func TestLingering(t *testing.T) {
	const n = 300
	ts := int64(1_800_000_000_000_000_000)
	type step struct {
		mid    uint16
		token  string
		repeat bool // a copy of the request after its ACK
	}
	tests := []struct {
		name       string
		max        int
		after      time.Duration // capture time between the exchanges and the copies
		copies     []step
		flows      int // in all
		duplicates uint64
		lingering  int
		evicted    uint64
	}{
		{"copies of recent exchanges are duplicates", 1000, time.Second,
			[]step{{1, "t1", true}, {n, fmt.Sprint("t", n), true}}, n, 2, n, 0},
		{"the bound forgets the oldest", 100, time.Second,
			// mid 1 was forgotten: its copy opens a flow (and evicts one more).
			[]step{{1, "t1", true}, {n, fmt.Sprint("t", n), true}}, n + 1, 1, 99, n - 100 + 1},
		{"after the linger copies open flows", 1000, time.Minute,
			[]step{{1, "t1", true}}, n + 1, 0, 0, 0},
		{"a new token on a lingering message id ends that linger", 1000, time.Second,
			[]step{{7, "other", false}, {7, "t7", true}}, n + 2, 0, n - 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &collect{}
			tr := New(Config{MaxExchanges: tt.max}, out)
			at := ts
			dg := func(fromClient bool, p []byte) {
				src, dst := client, server
				if !fromClient {
					src, dst = server, client
				}
				tr.Datagram(&app.Datagram{Src: src, Dst: dst, Payload: p, Time: at})
				at += int64(time.Millisecond)
			}
			for i := 1; i <= n; i++ {
				tok := fmt.Sprint("t", i)
				dg(true, msg(t, coapparse.Confirmable, coapparse.GET, uint16(i), tok, "/s"))
				dg(false, msg(t, coapparse.Acknowledgement, coapparse.Content, uint16(i), tok, ""))
			}
			at += int64(tt.after)
			tr.AdvanceAt(at)
			for _, c := range tt.copies {
				dg(true, msg(t, coapparse.Confirmable, coapparse.GET, c.mid, c.token, "/s"))
				if !c.repeat {
					dg(false, msg(t, coapparse.Acknowledgement, coapparse.Content, c.mid, c.token, ""))
				}
			}
			require.Equal(t, tt.lingering, tr.Stats().Lingering)
			tr.FlushAll()
			st := tr.Stats()
			require.Zero(t, st.Lingering)
			require.Len(t, out.flows, tt.flows, "%+v", st)
			require.Equal(t, tt.duplicates, st.Duplicates, "%+v", st)
			require.Equal(t, tt.evicted, st.LingerEvicted, "%+v", st)
			requireEveryDatagramCounted(t, st, out.flows)
		})
	}
}

// TestLingerIndex: message ids are found while their exchange is kept,
// across growth of the ring, and not once it left; a bucket of eight ids
// of kept exchanges forgets its oldest for a ninth.
func TestLingerIndex(t *testing.T) {
	r := newLingerRing(1<<16, 42)
	p := pair{endpointOf(client), endpointOf(server)}
	key := func(mid uint16) midKey { return midKey{p.client, p.server, mid} }
	push := func(mid uint16) uint64 {
		e := r.push()
		e.key = tokKey{pair: p}
		require.True(t, e.mids.add(&p, key(mid)))
		k := key(mid)
		r.enter(k.fingerprint(r.seed), e.seq)
		return e.seq
	}
	for mid := range uint16(3000) { // grows 1,024 → 2,048 → 4,096
		push(mid)
	}
	for mid := range uint16(3000) {
		k := key(mid)
		e := r.find(k.fingerprint(r.seed), k)
		require.NotNil(t, e, "mid %d", mid)
		require.Equal(t, uint64(mid)+1, e.seq)
	}
	k := key(3000)
	require.Nil(t, r.find(k.fingerprint(r.seed), k), "never entered")
	for range 100 {
		r.pop()
	}
	k = key(99)
	require.Nil(t, r.find(k.fingerprint(r.seed), k), "left the ring")
	k = key(100)
	require.NotNil(t, r.find(k.fingerprint(r.seed), k))
	r.kill(r.at(101 + 1)) // mid 101
	k = key(101)
	require.Nil(t, r.find(k.fingerprint(r.seed), k), "dead")

	// Nine ids in one bucket: fingerprints differing only above the
	// bucket bits (the entries' mids do not match them, so find is asked
	// through the slots directly).
	r = newLingerRing(1<<16, 42)
	var seqs []uint64
	for range 9 {
		e := r.push()
		seqs = append(seqs, e.seq)
	}
	// Fingerprints of one bucket: the bucket is the top bits of f·φ, so
	// f = (5<<shift + small)·φ⁻¹ (mod 2^64) for φ⁻¹ the inverse of φ.
	const phiInv = 0xf1de83e19937733d
	fp := func(i int) uint64 { return (uint64(5)<<r.shift + uint64(i)<<20) * phiInv }
	for i, s := range seqs {
		require.Equal(t, i < 8, r.enter(fp(i), s), "id %d", i)
	}
	b := &r.index[5]
	var held []uint32
	for _, sl := range b {
		held = append(held, sl.seq)
	}
	require.NotContains(t, held, uint32(seqs[0]), "the oldest was forgotten")
	require.Contains(t, held, uint32(seqs[8]))
	// Once the exchanges left the ring their slots are free again.
	for range 9 {
		r.pop()
	}
	require.True(t, r.enter(fp(99), r.push().seq))
}
