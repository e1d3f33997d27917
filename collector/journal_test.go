package collector

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/probe"
)

// ackSink keeps documents and acknowledges them only while acking is on;
// the others' done functions wait in pending (a store that took nothing).
type ackSink struct {
	mu      sync.Mutex
	docs    []flow.Document
	acking  atomic.Bool
	pending []func()
}

func (s *ackSink) PutBatch(docs []flow.Document) error { return s.PutBatchAck(docs, func() {}) }

func (s *ackSink) PutBatchAck(docs []flow.Document, done func()) error {
	s.mu.Lock()
	s.docs = append(s.docs, docs...)
	if !s.acking.Load() {
		s.pending = append(s.pending, done)
		done = nil
	}
	s.mu.Unlock()
	if done != nil {
		done()
	}
	return nil
}

func (s *ackSink) ackAll() {
	s.acking.Store(true)
	s.mu.Lock()
	p := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, f := range p {
		f()
	}
}

func (s *ackSink) snapshot() []flow.Document {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]flow.Document(nil), s.docs...)
}

func (s *ackSink) waitFor(t *testing.T, n int) []flow.Document {
	t.Helper()
	require.Eventually(t, func() bool { return len(s.snapshot()) >= n }, 10*time.Second, 5*time.Millisecond, "documents reach the sink")
	return s.snapshot()
}

func testJournal(t *testing.T, dir string, cfg JournalConfig) *Journal {
	t.Helper()
	cfg.Dir = dir
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	j, err := OpenJournal(cfg)
	require.NoError(t, err)
	return j
}

// runJournaled runs a collector with a journal over dir until the returned
// stop is called, which stops the collector and closes the journal.
func runJournaled(t *testing.T, dir string, jcfg JournalConfig, cfg Config, sink Sink) (*Collector, map[string]string, func()) {
	t.Helper()
	j := testJournal(t, dir, jcfg)
	cfg.Journal = j
	cfg.Host, cfg.Port = "127.0.0.1", 0
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	c := New(cfg, sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	addrs, err := c.Addrs(ctx)
	require.NoError(t, err)
	out := map[string]string{}
	for _, a := range addrs {
		out[a.Network()] = a.String()
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
			require.NoError(t, j.Close())
		})
	}
	t.Cleanup(stop)
	return c, out, stop
}

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, journalPrefix+"*"+journalSuffix))
	require.NoError(t, err)
	return m
}

func byFlowID(docs []flow.Document) map[uint64]flow.Document {
	out := map[uint64]flow.Document{}
	for _, d := range docs {
		out[d.FlowID] = d
	}
	return out
}

// TestJournalReplay: flows the store never acknowledged are decoded again
// by the next collector over the journal, over TCP and UDP, with their
// exporter address and observation domain (hence the same _id) and their
// original receive time; acknowledged segments are deleted, including
// segments whose templates an exporter sent in an earlier one (each
// segment starts with the templates its sessions hold).
func TestJournalReplay(t *testing.T) {
	for _, transport := range []string{"tcp", "udp"} {
		t.Run(transport, func(t *testing.T) {
			dir := t.TempDir()
			sink := &ackSink{}
			sink.acking.Store(true)
			jcfg := JournalConfig{RollInterval: 30 * time.Millisecond, FlushInterval: 5 * time.Millisecond}
			c, addrs, stop := runJournaled(t, dir, jcfg, Config{Listen: []string{transport}}, sink)
			exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: transport, Address: addrs[transport], ObservationDomainID: 42,
				TemplateRefresh: time.Hour, Logger: zerolog.Nop()})
			require.NoError(t, err)
			in := records(400)
			send := func(from, to int) {
				for i := from; i < to; i += 5 {
					require.NoError(t, exp.Export(in[i:i+5]))
					require.NoError(t, exp.Flush())
					time.Sleep(4 * time.Millisecond) // several segments; UDP within the socket buffer
				}
			}
			// First half acknowledged: its segments go away, though the
			// templates were in the first one.
			send(0, 200)
			sink.waitFor(t, 200)
			require.Eventually(t, func() bool { return c.cfg.Journal.Stats().Removed >= 3 }, 5*time.Second, 5*time.Millisecond, "%+v", c.cfg.Journal.Stats())
			// Second half taken but never acknowledged (a store that has
			// not written it yet), and then the process is gone.
			sink.acking.Store(false)
			send(200, 400)
			first := byFlowID(sink.waitFor(t, 400))
			require.NoError(t, exp.Close())
			time.Sleep(20 * time.Millisecond)
			stop()
			require.NotEmpty(t, segments(t, dir), "unacknowledged segments stay")
			firstTemplatesGone := true
			for _, s := range segments(t, dir) {
				if filepath.Base(s) == journalName(1) {
					firstTemplatesGone = false
				}
			}
			require.True(t, firstTemplatesGone, "the segment with the exporter's templates was deleted")

			// The next run replays before listening.
			sink2 := &ackSink{}
			sink2.acking.Store(true)
			c2, _, stop2 := runJournaled(t, dir, jcfg, Config{Listen: []string{transport}}, sink2)
			replayed := byFlowID(sink2.snapshot())
			for i := 200; i < 400; i++ {
				id := in[i].FlowID
				got, ok := replayed[id]
				require.True(t, ok, "flow %d replayed", id)
				want := first[id]
				require.Equal(t, want.ExporterAddress, got.ExporterAddress)
				require.EqualValues(t, 42, got.ObservationDomainID)
				require.True(t, want.CollectorReceiveTime.Equal(*got.CollectorReceiveTime), "original receive time")
				require.Equal(t, want.ID, got.ID)
			}
			st := c2.cfg.Journal.Stats()
			require.Positive(t, st.Replayed)
			require.Positive(t, st.ReplayedSeg)
			require.Zero(t, st.Torn)
			// The journal holds the messages not yet stored, not every
			// message of a session: the replay sees sequence numbers jump
			// where acknowledged segments were deleted, which is no loss.
			for a, es := range c2.Exporters() {
				require.Zero(t, es.RecordsLost, "records lost reported by the replay, exporter %v", a)
				require.Zero(t, es.SequenceGaps, "sequence gaps reported by the replay, exporter %v", a)
			}
			stop2()
			require.Empty(t, segments(t, dir), "replayed and acknowledged: deleted")
		})
	}
}

// TestJournalTornRecord: a segment cut inside a record (power loss) is
// replayed up to the cut, which is counted.
func TestJournalTornRecord(t *testing.T) {
	dir := t.TempDir()
	sink := &ackSink{}
	_, addrs, stop := runJournaled(t, dir, JournalConfig{}, Config{Listen: []string{"tcp"}}, sink)
	exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "tcp", Address: addrs["tcp"], ObservationDomainID: 1, Logger: zerolog.Nop()})
	require.NoError(t, err)
	in := records(100)
	for i := 0; i < len(in); i += 10 {
		require.NoError(t, exp.Export(in[i:i+10]))
		require.NoError(t, exp.Flush())
	}
	require.NoError(t, exp.Close())
	sink.waitFor(t, len(in))
	stop()
	segs := segments(t, dir)
	require.Len(t, segs, 1)
	fi, err := os.Stat(segs[0])
	require.NoError(t, err)
	require.NoError(t, os.Truncate(segs[0], fi.Size()-7))

	sink2 := &ackSink{}
	sink2.acking.Store(true)
	c2, _, stop2 := runJournaled(t, dir, JournalConfig{}, Config{Listen: []string{"tcp"}}, sink2)
	got := sink2.snapshot()
	require.Len(t, got, 90, "all but the last message's ten flows")
	require.EqualValues(t, 1, c2.cfg.Journal.Stats().Torn)
	stop2()
	require.Empty(t, segments(t, dir))
}

// TestJournalFull: with a store that takes nothing, a full journal drops
// UDP messages (counted) and holds TCP exporters back until the store
// acknowledges; then everything held back is stored.
func TestJournalFull(t *testing.T) {
	dir := t.TempDir()
	sink := &ackSink{}
	c, addrs, stop := runJournaled(t, dir, JournalConfig{MaxBytes: 64 << 10, RollInterval: 20 * time.Millisecond}, Config{}, sink)
	defer stop()
	in := records(3000)

	udp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "udp", Address: addrs["udp"], ObservationDomainID: 2, Logger: zerolog.Nop()})
	require.NoError(t, err)
	for i := 0; i < 1000; i += 20 {
		require.NoError(t, udp.Export(in[i:i+20]))
		require.NoError(t, udp.Flush())
		time.Sleep(time.Millisecond)
	}
	require.Eventually(t, func() bool { return c.cfg.Journal.Stats().FullDropped > 0 }, 5*time.Second, 5*time.Millisecond, "UDP dropped when full")
	require.Positive(t, c.Exporters()[netip.MustParseAddr("127.0.0.1")].JournalFull)
	st := c.cfg.Journal.Stats()
	require.LessOrEqual(t, st.Bytes, int64(64<<10))

	tcpDone := make(chan error, 1)
	go func() {
		exp, err := probe.NewIPFIXExporter(probe.IPFIXConfig{Transport: "tcp", Address: addrs["tcp"], ObservationDomainID: 3, Logger: zerolog.Nop()})
		if err != nil {
			tcpDone <- err
			return
		}
		for i := 1000; i < 3000; i += 20 {
			if err := exp.Export(in[i : i+20]); err != nil {
				tcpDone <- err
				return
			}
			if err := exp.Flush(); err != nil {
				tcpDone <- err
				return
			}
		}
		tcpDone <- exp.Close()
	}()
	require.Eventually(t, func() bool { return c.cfg.Journal.Stats().FullWaits > 0 }, 5*time.Second, 5*time.Millisecond, "TCP held back")
	time.Sleep(200 * time.Millisecond)
	held := 0
	for _, d := range sink.snapshot() {
		if d.ObservationDomainID == 3 {
			held++
		}
	}
	require.Less(t, held, 2000, "the TCP exporter is held back")

	sink.ackAll()
	require.NoError(t, <-tcpDone)
	require.Eventually(t, func() bool {
		n := 0
		for _, d := range sink.snapshot() {
			if d.ObservationDomainID == 3 {
				n++
			}
		}
		return n == 2000
	}, 10*time.Second, 10*time.Millisecond, "every TCP flow stored once there is room")
}
