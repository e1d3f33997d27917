package store

import "github.com/mission-ids/mission/internal/metrics"

// Metrics emits the Writer's counters and gauges as mission_store_*.
func (w *Writer) Metrics(e metrics.Emitter) {
	s := w.Stats()
	g := func(name, help string, v float64) { e.Gauge("mission_store_"+name, help, v) }
	c := func(name, help string, v uint64) { e.Counter("mission_store_"+name, help, float64(v)) }
	g("queue_depth", "Documents in the in-memory queue.", float64(s.QueueDepth))
	g("spool_bytes", "Bytes in the on-disk spool.", float64(s.SpoolBytes))
	g("spool_documents", "Documents in the spool waiting for the database.", float64(s.SpoolRecords))
	healthy := 0.0
	if s.Healthy {
		healthy = 1
	}
	g("healthy", "1 if the last database operation succeeded.", healthy)
	g("last_insert_latency_seconds", "Latency of the last insert command.", s.LastInsertLatency.Seconds())
	c("accepted_total", "Documents accepted for storing.", s.Accepted)
	c("inserted_total", "Documents stored.", s.Inserted)
	c("duplicates_total", "Retried documents found already stored.", s.Duplicates)
	c("insert_batches_total", "Successful insert commands.", s.InsertBatches)
	c("insert_errors_total", "Failed insert commands.", s.InsertErrors)
	c("spooled_total", "Documents written to the spool.", s.Spooled)
	c("replayed_total", "Documents replayed from the spool.", s.Replayed)
	c("dropped_total", "Documents lost (spool full or unwritable).", s.Dropped)
	c("rejected_total", "Documents the database refused.", s.Rejected)
}
