package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestNoLossWhileDatabaseKilledTwice streams flows while the database
// process is killed (SIGKILL) and restarted twice; afterwards every flow is
// stored exactly once.
// With one insert in flight, and with eight (several batches fail at each
// kill and come back through the spool).
func TestNoLossWhileDatabaseKilledTwice(t *testing.T) {
	for _, workers := range []int{1, 8} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) { testNoLossWhileKilledTwice(t, workers) })
	}
}

func testNoLossWhileKilledTwice(t *testing.T, workers int) {
	const n = 20_000
	db := startFerretProc(t)
	ctx := context.Background()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: t.TempDir(), QueueSize: 2000, WriteTimeout: 5 * time.Second, InsertWorkers: workers}, testLogger(t))
	require.NoError(t, err)

	// About 4,000 flows/s for 5 s, in batches as a collector would send them.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		docs := testDocs(0, n)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; i += 40 {
			<-tick.C
			if err := w.PutBatch(docs[i : i+40]); err != nil {
				t.Errorf("PutBatch: %v", err)
				return
			}
		}
	}()
	for range 2 {
		time.Sleep(1200 * time.Millisecond)
		db.kill()
		time.Sleep(800 * time.Millisecond)
		db.start()
	}
	wg.Wait()
	waitFor(t, 120*time.Second, "queue and spool drained into the database", settled(w, n))
	require.NoError(t, w.Close(ctx))

	st := w.Stats()
	t.Logf("stats: %+v", st)
	require.EqualValues(t, n, st.Accepted)
	require.Zero(t, st.Dropped)
	require.Zero(t, st.Rejected)
	require.Positive(t, st.InsertErrors, "the kills were noticed")
	require.Positive(t, st.Spooled, "flows waited in the spool")
	require.EqualValues(t, st.Spooled, st.Replayed, "every spooled flow was replayed")

	coll := testClient(t, db.url()).Database("mission").Collection("mqtt")
	stored, flowIDs := countStored(t, coll)
	require.EqualValues(t, n, stored, "every flow stored")
	require.EqualValues(t, n, flowIDs, "no flow stored twice")
}

// TestSpoolFullDropsExactly: with the database down and a tiny spool, the
// flows that fit neither in the spool nor in memory are dropped and counted
// exactly; the others are stored once the database is back.
func TestSpoolFullDropsExactly(t *testing.T) {
	const n = 1000
	db := startFerretProc(t)
	ctx := context.Background()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: t.TempDir(), QueueSize: 50, BatchSize: 100, SpoolMaxBytes: 100 << 10}, testLogger(t))
	require.NoError(t, err)
	db.kill()

	var dropErrs int
	docs := testDocs(0, n)
	for i := 0; i < n; i += 10 {
		if err := w.PutBatch(docs[i : i+10]); err != nil {
			require.ErrorIs(t, err, ErrDropped)
			dropErrs++
		}
		time.Sleep(time.Millisecond) // let the writer find the database down
	}
	waitFor(t, 30*time.Second, "every flow spooled, held or dropped", func() bool {
		s := w.Stats()
		return s.SpoolRecords+int64(s.QueueDepth)+int64(s.Dropped) == n
	})
	st := w.Stats()
	t.Logf("stats: %+v", st)
	require.Positive(t, dropErrs, "PutBatch reports drops")
	require.Positive(t, st.Dropped)
	require.GreaterOrEqual(t, st.QueueDepth, 50, "the queue is used as a buffer too")
	require.LessOrEqual(t, st.SpoolBytes, int64(100<<10))

	db.start()
	waitFor(t, 60*time.Second, "spool and queue stored", settled(w, n-st.Dropped))
	require.NoError(t, w.Close(ctx))
	require.Equal(t, st.Dropped, w.Stats().Dropped, "nothing dropped after the database came back")
	stored, flowIDs := countStored(t, testClient(t, db.url()).Database("mission").Collection("mqtt"))
	require.EqualValues(t, n-int64(st.Dropped), stored, "stored + dropped = sent")
	require.Equal(t, stored, flowIDs)
}

// TestCloseDropsWhatNeitherDatabaseNorSpoolTakes: Close with the database
// down and the spool full counts the documents it must give up.
func TestCloseDropsWhatNeitherDatabaseNorSpoolTakes(t *testing.T) {
	const n = 500
	db := startFerretProc(t)
	ctx := context.Background()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: t.TempDir(), SpoolMaxBytes: 50 << 10, FlushInterval: time.Hour}, testLogger(t))
	require.NoError(t, err)
	db.kill()
	require.NoError(t, w.PutBatch(testDocs(0, n)))
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, w.Close(cctx))
	st := w.Stats()
	require.Positive(t, st.Dropped)
	require.EqualValues(t, n, st.SpoolRecords+int64(st.Dropped))
	require.Zero(t, st.QueueDepth)
}

// TestCloseDrainsIntoDatabase: documents still queued at Close are stored.
func TestCloseDrainsIntoDatabase(t *testing.T) {
	const n = 5000
	db := startFerretProc(t)
	ctx := context.Background()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: t.TempDir(), FlushInterval: time.Hour, BatchSize: 100_000}, testLogger(t))
	require.NoError(t, err)
	require.NoError(t, w.PutBatch(testDocs(0, n)))
	require.Zero(t, w.Stats().Inserted, "nothing written yet")

	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, w.Close(cctx))
	st := w.Stats()
	require.EqualValues(t, n, st.Inserted)
	require.Zero(t, st.SpoolRecords)
	stored, _ := countStored(t, testClient(t, db.url()).Database("mission").Collection("mqtt"))
	require.EqualValues(t, n, stored)
}

// TestCloseSpoolsWhenDatabaseDown: with the database down, Close puts the
// queue into the spool within its deadline, and the next Writer over the
// same data directory stores it.
func TestCloseSpoolsWhenDatabaseDown(t *testing.T) {
	const n = 5000
	db := startFerretProc(t)
	ctx := context.Background()
	dataDir := t.TempDir()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: dataDir, FlushInterval: time.Hour, BatchSize: 1000}, testLogger(t))
	require.NoError(t, err)
	db.kill()
	require.NoError(t, w.PutBatch(testDocs(0, n)))

	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, w.Close(cctx))
	require.Less(t, time.Since(start), 8*time.Second, "Close keeps to its deadline")
	st := w.Stats()
	require.EqualValues(t, n, st.SpoolRecords)
	require.Zero(t, st.Dropped)
	require.Zero(t, st.Inserted)

	db.start()
	w, err = Open(ctx, Config{URL: db.url(), DataDir: dataDir}, testLogger(t))
	require.NoError(t, err)
	waitFor(t, 60*time.Second, "spool replayed by the next writer", settled(w, n))
	require.NoError(t, w.Close(ctx))
	require.EqualValues(t, n, w.Stats().Replayed)
	stored, flowIDs := countStored(t, testClient(t, db.url()).Database("mission").Collection("mqtt"))
	require.EqualValues(t, n, stored)
	require.EqualValues(t, n, flowIDs)
}

// TestCloseWithEndedContextSpools: a Close whose context has already ended
// spools instead of inserting.
func TestCloseWithEndedContextSpools(t *testing.T) {
	db := startFerretProc(t)
	ctx := context.Background()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: t.TempDir(), FlushInterval: time.Hour}, testLogger(t))
	require.NoError(t, err)
	require.NoError(t, w.PutBatch(testDocs(0, 300)))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = w.Close(cctx)
	require.True(t, err == nil || errors.Is(err, context.Canceled), "%v", err)
	require.EqualValues(t, 300, w.Stats().SpoolRecords)
}

// TestPutBatchAck: every batch's done is called once, when its documents
// are inserted or spooled: with the database up (done after the insert),
// and with it killed (done once spooled, before the database is back).
func TestPutBatchAck(t *testing.T) {
	const batches, per = 100, 20
	db := startFerretProc(t)
	ctx := context.Background()
	w, err := Open(ctx, Config{URL: db.url(), DataDir: t.TempDir(), QueueSize: 500, FlushInterval: 20 * time.Millisecond}, testLogger(t))
	require.NoError(t, err)
	docs := testDocs(0, batches*per)
	acks := make([]atomic.Int32, batches)
	put := func(from, to int) {
		for b := from; b < to; b++ {
			require.NoError(t, w.PutBatchAck(docs[b*per:(b+1)*per], func() { acks[b].Add(1) }))
		}
	}
	acked := func(from, to int) func() bool {
		return func() bool {
			for b := from; b < to; b++ {
				if acks[b].Load() == 0 {
					return false
				}
			}
			return true
		}
	}

	put(0, batches/2)
	waitFor(t, 30*time.Second, "first half acknowledged", acked(0, batches/2))
	require.GreaterOrEqual(t, w.Stats().Inserted, uint64(batches/2*per), "acknowledged after the insert")

	db.kill()
	put(batches/2, batches)
	waitFor(t, 30*time.Second, "second half acknowledged with the database down", acked(batches/2, batches))
	st := w.Stats()
	require.False(t, st.Healthy)
	require.EqualValues(t, batches/2*per, st.SpoolRecords, "acknowledged once spooled")

	db.start()
	waitFor(t, 60*time.Second, "spool stored", settled(w, batches*per))
	require.NoError(t, w.Close(ctx))
	for b := range acks {
		require.EqualValues(t, 1, acks[b].Load(), "batch %d acknowledged once", b)
	}
	require.ErrorIs(t, w.PutBatchAck(docs[:1], func() { t.Error("done after ErrClosed") }), ErrClosed)
}
