package ipfix

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	quietKey   = SessionKey{Exporter: netip.MustParseAddrPort("198.51.100.1:4739"), Transport: UDP}
	flooderIP  = netip.MustParseAddr("203.0.113.66")
	quietIP    = quietKey.Exporter.Addr()
	quietTmplA = tmplN(256, 3)
	quietTmplB = tmplN(257, 2)
)

func flooderKey(port uint16) SessionKey {
	return SessionKey{Exporter: netip.AddrPortFrom(flooderIP, port), Transport: UDP}
}

// tmplN is a template set defining id with n one-byte fields.
func tmplN(id uint16, n int) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	for i := range n {
		b = binary.BigEndian.AppendUint16(b, uint16(1000+i))
		b = binary.BigEndian.AppendUint16(b, 1)
	}
	return set(2, b...)
}

// dataN is a data set for id with n bytes.
func dataN(id uint16, n int) []byte { return set(id, make([]byte, n)...) }

func usageOfExporter(b *Budget, a netip.Addr) ExporterUsage {
	for _, e := range b.Exporters() {
		if e.Exporter == a {
			return e
		}
	}
	return ExporterUsage{Exporter: a}
}

// quietExporter sets up one session with two templates and checks its
// data keeps decoding.
func quietExporter(t *testing.T, d *Decoder) func() {
	t.Helper()
	require.NoError(t, d.Decode(quietKey, msg(1, 0, quietTmplA, quietTmplB), nop))
	return func() {
		t.Helper()
		n := 0
		count := func(Record) error { n++; return nil }
		require.NoError(t, d.Decode(quietKey, msg(1, 0, dataN(256, 3), dataN(257, 4)), count))
		require.Equal(t, 3, n, "one record of 256, two of 257")
		s, err := d.Session(quietKey)
		require.NoError(t, err)
		require.Equal(t, 2, s.NumTemplates())
		require.Zero(t, usageOfExporter(d.Budget(), quietIP).Evictions)
	}
}

// TestBudgetBoundsAreFair floods each bound from one exporter while a
// quiet exporter holds one session and two templates: the bound holds,
// the flooder's state is evicted and counted, the quiet one's survives.
func TestBudgetBoundsAreFair(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lim   Limits
		flood func(t *testing.T, d *Decoder, i int)
		res   Resource
		want  int // bound on the resource after the flood
		evict uint64
	}{
		{
			name: "sessions: ports × domains",
			lim:  Limits{MaxSessions: 5},
			flood: func(t *testing.T, d *Decoder, i int) {
				_ = d.Decode(flooderKey(uint16(10000+i%7)), msg(uint32(i), 0, tmplN(300, 4)), nop)
			},
			res: ResSessions, want: 5, evict: 100 - 4,
		},
		{
			name: "templates: many ids in one session",
			lim:  Limits{MaxTemplates: 10},
			flood: func(t *testing.T, d *Decoder, i int) {
				require.NoError(t, d.Decode(flooderKey(1), msg(0, 0, tmplN(uint16(256+i), 1)), nop))
			},
			res: ResTemplates, want: 10, evict: 100 - 8,
		},
		{
			name: "fields: wide templates",
			lim:  Limits{MaxTemplateFields: 505},
			flood: func(t *testing.T, d *Decoder, i int) {
				require.NoError(t, d.Decode(flooderKey(uint16(i%3)), msg(uint32(i%2), 0, tmplN(uint16(256+i), 50)), nop))
			},
			res: ResFields, want: 505, evict: 100 - 10,
		},
		{
			name: "pending bytes: data for unknown templates",
			lim:  Limits{MaxPendingBytes: 10 * (100 + pendingOverhead)},
			flood: func(t *testing.T, d *Decoder, i int) {
				_ = d.Decode(flooderKey(uint16(i%5)), msg(0, 0, dataN(uint16(400+i), 100)), nop)
			},
			res: ResPendingBytes, want: 10 * (100 + pendingOverhead), evict: 100 - 10,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDecoder(Config{Budget: NewBudget(tc.lim)})
			check := quietExporter(t, d)
			for i := range 100 {
				tc.flood(t, d, i)
				require.LessOrEqual(t, d.Budget().Usage().Get(tc.res), tc.want, "after flood message %d", i)
			}
			check()
			fl := usageOfExporter(d.Budget(), flooderIP)
			require.Equal(t, tc.evict, fl.Evictions.Get(tc.res), "flooder's evictions")
			require.Equal(t, tc.evict, d.Budget().Evictions().Get(tc.res), "total evictions")
			u := d.Budget().Usage()
			require.Equal(t, u.Get(tc.res), fl.Usage.Get(tc.res)+usageOfExporter(d.Budget(), quietIP).Usage.Get(tc.res))
		})
	}
}

// TestBudgetEvictsLeastRecentlyUsed: within the flooder, the templates it
// uses survive and the oldest unused one goes.
func TestBudgetEvictsLeastRecentlyUsed(t *testing.T) {
	d := NewDecoder(Config{Budget: NewBudget(Limits{MaxTemplates: 3}), MaxBufferedBytes: -1})
	k := flooderKey(1)
	for id := uint16(256); id < 259; id++ {
		require.NoError(t, d.Decode(k, msg(0, 0, tmplN(id, 1)), nop))
	}
	require.NoError(t, d.Decode(k, msg(0, 0, dataN(256, 1)), nop)) // 256 used: 257 is now the oldest
	require.NoError(t, d.Decode(k, msg(0, 0, tmplN(259, 1)), nop))
	s, err := d.Session(k)
	require.NoError(t, err)
	for id, live := range map[uint16]bool{256: true, 257: false, 258: true, 259: true} {
		_, ok := s.Template(0, id)
		require.Equal(t, live, ok, "template %d", id)
	}
	// A refresh counts as a use too.
	require.NoError(t, d.Decode(k, msg(0, 0, tmplN(258, 1)), nop))
	require.NoError(t, d.Decode(k, msg(0, 0, tmplN(260, 1)), nop))
	_, ok := s.Template(0, 256)
	require.False(t, ok)
	_, ok = s.Template(0, 258)
	require.True(t, ok)
	require.Equal(t, uint64(2), d.Budget().Evictions().Templates)
}

// TestBudgetSharedByDecodersAndSessions: UDP decoders and TCP sessions
// charge one budget; Close gives the state back at once.
func TestBudgetSharedByDecodersAndSessions(t *testing.T) {
	b := NewBudget(Limits{MaxTemplates: 4})
	d1, d2 := NewDecoder(Config{Budget: b}), NewDecoder(Config{Budget: b})
	tcp := NewSession(Config{Budget: b}, SessionKey{Exporter: quietKey.Exporter, Transport: TCP})
	require.NoError(t, tcp.Decode(msg(0, 0, quietTmplA, data256), nop))
	require.NoError(t, d1.Decode(flooderKey(1), msg(0, 0, tmplN(256, 1), tmplN(257, 1)), nop))
	require.NoError(t, d2.Decode(flooderKey(2), msg(0, 0, tmplN(256, 1), tmplN(257, 1), tmplN(258, 1)), nop))
	require.Equal(t, Usage{Sessions: 3, Templates: 4, Fields: 3 + 3}, b.Usage())
	require.Equal(t, 1, tcp.NumTemplates(), "the quiet TCP exporter kept its template")
	tcp.Close()
	d1.Close()
	d2.Close()
	require.Equal(t, Usage{}, b.Usage())
	require.Len(t, b.Exporters(), 1, "only the flooder's eviction counts remain")
	require.Equal(t, Evictions{Templates: 2}, b.Exporters()[0].Evictions)
}

// TestBudgetRejectsWhatCannotFit: a template wider than the fields bound
// is refused (not an eviction of everything else).
func TestBudgetRejectsWhatCannotFit(t *testing.T) {
	d := NewDecoder(Config{Budget: NewBudget(Limits{MaxTemplateFields: 10})})
	check := quietExporter(t, d)
	err := d.Decode(flooderKey(1), msg(0, 0, tmplN(256, 11)), nop)
	require.ErrorIs(t, err, ErrLimit)
	require.ErrorIs(t, err, ErrInvalidTemplate)
	check()
	require.Zero(t, d.Budget().Evictions())
}

// TestDecoderForgetsEvictedSessions: transport sessions whose state was
// evicted do not pile up in the Decoder.
func TestDecoderForgetsEvictedSessions(t *testing.T) {
	d := NewDecoder(Config{Budget: NewBudget(Limits{MaxSessions: 8})})
	for port := range 3 * shellSlack {
		require.NoError(t, d.Decode(flooderKey(uint16(port)), msg(0, 0), nop))
		require.LessOrEqual(t, d.NumSessions(), 8+shellSlack)
	}
	require.Equal(t, 8, d.Budget().Usage().Sessions)
	require.Equal(t, uint64(3*shellSlack), d.Counters().Messages, "counters of forgotten sessions are kept")
}

// TestEvictionFreesPending: evicted and replayed data sets leave the
// accounting, and per-session limits still apply under the global one.
func TestEvictionFreesPending(t *testing.T) {
	b := NewBudget(Limits{})
	d := NewDecoder(Config{Budget: b, MaxBufferedBytes: 3 * (8 + pendingOverhead)})
	k := flooderKey(1)
	for range 4 {
		_ = d.Decode(k, msg(0, 0, data256), nop)
	}
	require.Equal(t, 3*(8+pendingOverhead), b.Usage().PendingBytes)
	require.Equal(t, uint64(1), d.Counters().BufferLimitHits)
	n := 0
	require.NoError(t, d.Decode(k, msg(0, 0, tmpl256), func(Record) error { n++; return nil }))
	require.Equal(t, 6, n)
	require.Equal(t, Usage{Sessions: 1, Templates: 1, Fields: 1}, b.Usage())
}

// TestBudgetConcurrentDecoders runs two decoders on one budget from two
// goroutines (as the collector's UDP readers do); run with -race.
func TestBudgetConcurrentDecoders(t *testing.T) {
	b := NewBudget(Limits{MaxSessions: 16, MaxTemplates: 32, MaxTemplateFields: 400, MaxPendingBytes: 4096})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			d := NewDecoder(Config{Budget: b})
			for i := range 2000 {
				k := flooderKey(uint16(g*1000 + i%50))
				_ = d.Decode(k, msg(uint32(i%7), 0, tmplN(uint16(256+i%100), 1+i%30), dataN(uint16(256+(i+1)%100), 40), dataN(uint16(256+i%100), 31)), nop)
				if i%500 == 0 {
					d.Sweep()
				}
			}
			d.Close()
		})
	}
	wg.Wait()
	require.Equal(t, Usage{}, b.Usage())
	require.NotZero(t, b.Evictions())
}
