package coaptrack

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe/app"
)

// TestShardedEqualsTracker: the same datagrams through a Tracker and
// through Sharded (1, 2 and 5 shards) make the same flows, field by
// field (only flow ids and order differ), and the same counters; flow
// ids stay unique; a second run after FlushAll works too.
func TestShardedEqualsTracker(t *testing.T) {
	mix := benchMix(3000)
	run := func(tr app.DatagramTracker, passes int) {
		var d app.Datagram
		ts := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
		for pass := range passes {
			for i, x := range mix {
				p := slices.Clone(x.payload)
				mid := binary.BigEndian.Uint16(p[2:4])
				binary.BigEndian.PutUint16(p[2:4], mid+uint16(8*pass))
				d.Src, d.Dst, d.Payload, d.Time = x.src, x.dst, p, ts
				tr.Datagram(&d)
				ts += int64(50 * time.Microsecond)
				if i%700 == 0 {
					tr.AdvanceAt(ts)
				}
			}
			ts += int64(20 * time.Second) // idle exchanges end in the next pass
		}
		tr.FlushAll()
	}
	key := func(r flow.Record) string {
		r.FlowID = 0
		c := *r.CoAP
		r.CoAP = nil
		return fmt.Sprintf("%+v %+v %x", r, c, c.Token)
	}
	ref := &collect{}
	one := New(Config{}, ref)
	run(one, 3)
	var want []string
	for _, r := range ref.flows {
		want = append(want, key(r))
	}
	slices.Sort(want)
	wantStats := one.Stats()
	require.NotZero(t, wantStats.Flows[KindNotification])
	require.NotZero(t, wantStats.Retransmissions)

	for _, n := range []int{1, 2, 5} {
		t.Run(fmt.Sprint(n, " shards"), func(t *testing.T) {
			got := &collect{}
			sh := NewSharded(Config{}, n, got)
			for round := range 2 {
				got.flows = got.flows[:0]
				run(sh, 3)
				var keys []string
				ids := map[uint64]bool{}
				for _, r := range got.flows {
					keys = append(keys, key(r))
					require.False(t, ids[r.FlowID], "flow id %d twice", r.FlowID)
					ids[r.FlowID] = true
				}
				slices.Sort(keys)
				require.Equal(t, want, keys, "round %d", round+1)
				st := sh.Stats()
				if round == 0 {
					// An id forgotten early by a full bucket of a linger
					// index depends on the tables' sizes and seeds, which
					// differ; it is rare.
					require.LessOrEqual(t, st.LingerEvicted, st.Datagrams/1000)
					require.LessOrEqual(t, wantStats.LingerEvicted, st.Datagrams/1000)
					ws := wantStats
					st.LingerEvicted, ws.LingerEvicted = 0, 0
					require.Equal(t, ws, st)
				} else {
					require.Equal(t, 2*wantStats.Datagrams, st.Datagrams, "counters are cumulative")
				}
			}
		})
	}
}
