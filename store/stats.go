package store

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Writer's counters (monotonic, since Open) and
// gauges (current values), for the collector to export as metrics.
type Stats struct {
	// Gauges.
	QueueDepth    int   // documents in memory: the queue, and those held while the spool is full
	QueueCapacity int   // Config.QueueSize
	SpoolBytes    int64 // bytes in spool segment files
	SpoolRecords  int64 // documents in the spool not yet stored
	SpoolSegments int   // spool segment files
	Healthy       bool  // the last database operation succeeded

	// Counters, in documents unless the name says batches.
	Accepted        uint64 // queued or spooled by Put/PutBatch (not dropped on the way in; may still be dropped later)
	Inserted        uint64 // newly stored (acknowledged by the database)
	Duplicates      uint64 // already stored: duplicate-key errors on retries, counted as success
	InsertBatches   uint64 // insert commands that succeeded (wholly or with per-document errors)
	InsertErrors    uint64 // insert commands that failed as a whole (database down, timeout, …)
	PingErrors      uint64 // failed health probes while the database was unreachable
	Retried         uint64 // documents of failed inserts sent to the spool to be tried again
	Spooled         uint64 // documents written to the spool (queue full, or database unreachable)
	Replayed        uint64 // documents read back from the spool and stored (or found duplicate)
	Dropped         uint64 // lost because the spool was full or could not be written
	Rejected        uint64 // refused by the database with a per-document error other than duplicate key
	SpoolTornRecord uint64 // torn or corrupt spool records skipped at open (crash or disk damage)

	// Insert latency of successful insert commands.
	LastInsertLatency time.Duration
	InsertLatency     Histogram
}

// Histogram is a cumulative latency histogram, shaped for Prometheus'
// MustNewConstHistogram: Counts[i] is the number of observations ≤ Bounds[i].
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

var latencyBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// counters are the Writer's live counters; all fields are updated atomically.
type counters struct {
	accepted, inserted, duplicates, insertBatches, insertErrors, pingErrors atomic.Uint64
	retried, spooled, replayed, dropped, rejected                           atomic.Uint64
	healthy                                                                 atomic.Bool
	lastLatency, latencySum, latencyCount                                   atomic.Int64
	buckets                                                                 [len(latencyBounds) + 1]atomic.Uint64 // per bucket, not cumulative; last is +Inf
}

func (c *counters) observeLatency(d time.Duration) {
	c.lastLatency.Store(int64(d))
	c.latencySum.Add(int64(d))
	c.latencyCount.Add(1)
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	c.buckets[i].Add(1)
}

func (c *counters) histogram() Histogram {
	h := Histogram{
		Bounds: append([]time.Duration(nil), latencyBounds[:]...),
		Counts: make([]uint64, len(latencyBounds)),
	}
	var cum uint64
	for i := range latencyBounds {
		cum += c.buckets[i].Load()
		h.Counts[i] = cum
	}
	h.Count = cum + c.buckets[len(latencyBounds)].Load()
	h.Sum = time.Duration(c.latencySum.Load())
	return h
}
