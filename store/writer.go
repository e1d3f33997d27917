package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
)

const (
	minProbePause = 100 * time.Millisecond
	maxProbePause = 2 * time.Second
	maxPingTime   = 2 * time.Second
)

// Put queues one document; see PutBatch.
func (w *Writer) Put(doc flow.Document) error {
	return w.PutBatch([]flow.Document{doc})
}

// PutBatch queues documents for storing and returns without waiting for the
// database. Each document gets an _id if it has none (DocumentID) and a
// collectorReceiveTime of now if it has none; the caller's values are not
// modified. When the queue is full the documents go to the spool, a disk
// write. It returns an error wrapping ErrDropped when the spool was full too
// (the lost documents are counted in Stats.Dropped and logged), ErrClosed
// after Close, or an encoding error for documents that cannot be stored.
func (w *Writer) PutBatch(docs []flow.Document) error {
	return w.PutBatchAck(docs, nil)
}

// PutBatchAck is PutBatch that tells when the documents are safe: done (if
// not nil) is called once, from some goroutine of the Writer, when none of
// the documents it took is only in memory any more: each is inserted,
// found stored already, written to the spool, rejected by the database, or
// dropped (counted and logged). Documents that cannot be encoded are not
// taken. done is not called when PutBatchAck returns ErrClosed; it may be
// called before PutBatchAck returns. It must not block.
func (w *Writer) PutBatchAck(docs []flow.Document, done func()) error {
	var ack *ackGroup
	if done != nil {
		ack = &ackGroup{done: done}
		ack.n.Store(1) // held until every document is handed on
	}
	items := make([]item, 0, len(docs))
	now := time.Now().UTC()
	var encErrs []error
	for i := range docs {
		d := docs[i]
		if d.ID == "" {
			d.ID = DocumentID(&d)
		}
		if d.CollectorReceiveTime == nil {
			d.CollectorReceiveTime = &now
		}
		raw, err := AppendBSON(nil, &d)
		if err != nil {
			w.c.rejected.Add(1)
			encErrs = append(encErrs, fmt.Errorf("store: encode flow %d as BSON: %w", d.FlowID, err))
			continue
		}
		items = append(items, item{raw: raw, ack: ack})
	}
	if len(encErrs) > 0 && w.logEvery(&w.rejectLog) {
		w.log.Error().Err(encErrs[0]).Int("documents", len(encErrs)).Msg("store: cannot encode documents; they are not stored")
	}
	if ack != nil {
		ack.n.Add(int64(len(items)))
	}

	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	queued := 0
queue:
	for _, it := range items {
		select {
		case w.queue <- it:
			queued++
		default:
			break queue
		}
	}
	w.c.accepted.Add(uint64(queued))
	if queued < len(items) {
		if err := w.spill(items[queued:], fromPut); err != nil {
			encErrs = append(encErrs, err)
		}
	}
	ack.settle(1)
	return errors.Join(encErrs...)
}

// item is a queued document: its BSON and whom to tell once it is safe.
type item struct {
	raw []byte
	ack *ackGroup // nil: nobody
}

// ackGroup counts the documents of one PutBatchAck not yet safe (plus one
// while PutBatchAck hands them on) and calls done when none is left.
type ackGroup struct {
	n    atomic.Int64
	done func()
}

func (a *ackGroup) settle(k int64) {
	if a != nil && a.n.Add(-k) == 0 {
		a.done()
	}
}

// settle tells the documents' callers that they are safe.
func settle(items []item) {
	for i := range items {
		items[i].ack.settle(1)
	}
}

// raws are the documents' BSON.
func raws(items []item) [][]byte {
	out := make([][]byte, len(items))
	for i := range items {
		out[i] = items[i].raw
	}
	return out
}

// Where spilled documents come from.
type spillOrigin int

const (
	fromPut   spillOrigin = iota // the queue was full
	fromQueue                    // the database is unreachable
	fromRetry                    // their insert failed
)

// spill writes documents to the spool and drops (counts and logs) what does
// not fit. It is PutBatch's way out when the queue is full.
func (w *Writer) spill(docs []item, origin spillOrigin) error {
	rest, err := w.spillSome(docs, origin)
	if len(rest) == 0 {
		return nil
	}
	w.drop(rest, err)
	if err != nil {
		return fmt.Errorf("%w: %d documents: %w", ErrDropped, len(rest), err)
	}
	return fmt.Errorf("%w: %d documents", ErrDropped, len(rest))
}

// spillSome writes as many documents to the spool as fit and returns the
// rest, with the write error if one stopped it.
func (w *Writer) spillSome(docs []item, origin spillOrigin) ([]item, error) {
	n, err := w.spool.append(raws(docs))
	settle(docs[:n])
	w.c.spooled.Add(uint64(n))
	switch origin {
	case fromPut:
		w.c.accepted.Add(uint64(n))
	case fromRetry:
		w.c.retried.Add(uint64(n))
	}
	return docs[n:], err
}

// drop counts lost documents and logs them (throttled) at error level.
func (w *Writer) drop(docs []item, err error) {
	n := len(docs)
	settle(docs)
	total := w.c.dropped.Add(uint64(n))
	if w.logEvery(&w.dropLog) {
		ev := w.log.Error().Int("dropped", n).Uint64("droppedTotal", total).Int64("spoolMaxBytes", w.cfg.SpoolMaxBytes)
		if err != nil {
			ev = ev.Err(err)
		}
		ev.Msg("store: flows dropped: the database is unreachable or slow and the spool is full (or unwritable); raise the spool limit or fix the database")
	}
}

// hold keeps documents the spool had no room for in memory until the
// database answers; while any are held, the writer takes nothing more from
// the queue, so the queue fills and PutBatch drops what neither the queue
// nor the spool can take.
func (w *Writer) hold(docs []item) {
	w.held = append(w.held, docs...)
	w.heldN.Store(int64(len(w.held)))
}

// logEvery reports whether a throttled message may be logged now (at most
// once a second per message kind).
func (w *Writer) logEvery(last *atomic.Int64) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(time.Second) && last.CompareAndSwap(prev, now)
}

// run is the writer goroutine: batches from the queue, inserts, probes an
// unreachable database, replays the spool, and drains the queue at Close.
func (w *Writer) run() {
	defer close(w.done)
	ctx := w.runCtx
	batch := make([]item, 0, w.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		w.reapDone()
		if len(w.held) > 0 {
			w.settle() // every insert's outcome known before the held ones go
			if w.c.healthy.Load() {
				held := w.held
				w.held = nil
				w.heldN.Store(0)
				w.flush(ctx, held)
				continue
			}
			// Spool full, database down: wait for the next probe or Close.
			select {
			case <-time.After(time.Until(w.nextProbe)):
				w.maintain(ctx)
				continue
			case <-w.closing:
				w.drain(ctx, nil)
				return
			}
		}
		hurry := w.c.healthy.Load() && (w.replay != nil || w.spool.stats().records > 0)
		var open bool
		batch, open = w.fill(batch, hurry, timer)
		if len(batch) > 0 {
			w.dispatch(ctx, batch) // the insert owns the batch now
			batch = make([]item, 0, w.cfg.BatchSize)
		}
		if !open {
			w.drain(ctx, batch)
			return
		}
		w.maintain(ctx)
	}
}

// fill adds queued documents to batch until it is full, FlushInterval has
// passed since fill began, or (hurry) the queue is momentarily empty. It
// returns false once the queue is closed and empty.
func (w *Writer) fill(batch []item, hurry bool, timer *time.Timer) ([]item, bool) {
	timer.Reset(w.cfg.FlushInterval)
	for len(batch) < w.cfg.BatchSize {
		select {
		case d, ok := <-w.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, d)
			continue
		default:
		}
		if hurry {
			return batch, true
		}
		select {
		case d, ok := <-w.queue:
			if !ok {
				return batch, false
			}
			batch = append(batch, d)
		case <-timer.C:
			return batch, true
		}
	}
	return batch, true
}

// insertResult is the outcome of one insert started by dispatch.
type insertResult struct {
	batch []item
	err   error
}

// dispatch starts storing a batch from the queue in its own goroutine,
// once fewer than InsertWorkers inserts are in flight; when the database
// is unreachable the batch is spooled instead. Outcomes are handled by the
// writer goroutine (reap), which alone touches the spool state.
func (w *Writer) dispatch(ctx context.Context, batch []item) {
	for w.inflight >= w.cfg.InsertWorkers {
		w.reap(<-w.results)
	}
	if !w.c.healthy.Load() {
		w.flush(ctx, batch)
		return
	}
	w.inflight++
	go func() { w.results <- insertResult{batch, w.insert(ctx, raws(batch))} }()
}

// reap handles a finished insert: a failed batch goes to the spool (or is
// held) and the database is marked unreachable.
func (w *Writer) reap(r insertResult) {
	w.inflight--
	if r.err != nil {
		w.unhealthy(r.err)
		rest, err := w.spillSome(r.batch, fromRetry)
		w.holdOrLog(rest, err)
		return
	}
	settle(r.batch)
}

// reapDone handles the inserts that have finished, without waiting.
func (w *Writer) reapDone() {
	for {
		select {
		case r := <-w.results:
			w.reap(r)
		default:
			return
		}
	}
}

// settle waits for every insert in flight.
func (w *Writer) settle() {
	for w.inflight > 0 {
		w.reap(<-w.results)
	}
}

// flush stores a batch and waits for the answer, or spools it when the
// database is unreachable or the insert fails.
func (w *Writer) flush(ctx context.Context, batch []item) {
	if !w.c.healthy.Load() {
		rest, err := w.spillSome(batch, fromQueue)
		w.holdOrLog(rest, err)
		return
	}
	if err := w.insert(ctx, raws(batch)); err != nil {
		w.unhealthy(err)
		rest, err := w.spillSome(batch, fromRetry)
		w.holdOrLog(rest, err)
		return
	}
	settle(batch)
}

func (w *Writer) holdOrLog(rest []item, err error) {
	if err != nil && w.logEvery(&w.spoolErrLog) {
		w.log.Error().Err(err).Msg("store: cannot write to the spool; holding flows in memory")
	}
	if len(rest) > 0 {
		w.hold(rest)
	}
}

// drain empties the closed queue at Close: into the database while it
// answers (one last probe if it did not), else into the spool.
func (w *Writer) drain(ctx context.Context, batch []item) {
	w.settle()
	batch = append(w.held, batch...)
	w.held = nil
	defer func() {
		w.settle()
		// What neither the database nor the spool took is lost.
		if len(w.held) > 0 {
			w.drop(w.held, nil)
			w.held = nil
			w.heldN.Store(0)
		}
	}()
	probed := false
	flush := func(b []item) {
		if !w.c.healthy.Load() && !probed && ctx.Err() == nil {
			probed = true
			w.probe(ctx)
		}
		w.dispatch(ctx, b)
	}
	for d := range w.queue {
		batch = append(batch, d)
		if len(batch) >= w.cfg.BatchSize {
			flush(batch)
			batch = make([]item, 0, w.cfg.BatchSize)
		}
	}
	if len(batch) > 0 {
		flush(batch)
	}
}

// maintain probes an unreachable database when its pause is over, and
// replays one batch from the spool when the database answers.
func (w *Writer) maintain(ctx context.Context) {
	if !w.c.healthy.Load() {
		if time.Now().Before(w.nextProbe) {
			return
		}
		if !w.probe(ctx) {
			return
		}
	}
	if w.replay == nil {
		seg, err := w.spool.oldest()
		if err != nil {
			w.log.Error().Err(err).Msg("store: spool replay")
			return
		}
		if seg == nil {
			return
		}
		if w.replay, err = openSegmentReader(seg); err != nil {
			w.log.Error().Err(err).Msg("store: spool replay")
			return
		}
	}
	recs := w.replay.next(w.cfg.BatchSize)
	if len(recs) > 0 {
		if err := w.insert(ctx, recs); err != nil {
			w.unhealthy(err)
			return // the records stay in the segment for the next attempt
		}
		w.replay.advance(len(recs))
		w.spool.replayed(w.replay.seg, int64(len(recs)))
		w.c.replayed.Add(uint64(len(recs)))
	}
	if w.replay.done() {
		if err := w.spool.remove(w.replay.seg); err != nil {
			w.log.Error().Err(err).Msg("store: spool replay")
		}
		w.replay = nil
		if st := w.spool.stats(); st.records == 0 {
			w.log.Info().Uint64("replayed", w.c.replayed.Load()).Msg("store: spool replayed")
		}
	}
}

// probe pings the database; on success it marks it healthy.
func (w *Writer) probe(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, min(w.cfg.WriteTimeout, maxPingTime))
	err := w.client.Ping(pctx, nil)
	if err == nil && w.needIndexes {
		if err = ensureIndexes(pctx, w.coll, w.cfg.Retention, false, w.log); err == nil {
			w.needIndexes = false
		} else if errors.Is(err, ErrRetentionUnsupported) {
			// A configuration the server cannot honour: said once, and
			// the flows are stored without the TTL index.
			w.log.Error().Err(err).Msg("store: flows are kept without expiry")
			w.needIndexes, err = false, nil
		} else {
			w.log.Warn().Err(redactError(err, w.url)).Msg("store: database answers but creating the indexes failed; retrying")
		}
	}
	cancel()
	if err != nil {
		w.c.pingErrors.Add(1)
		w.probePause = min(max(w.probePause*2, minProbePause), maxProbePause)
		w.nextProbe = time.Now().Add(w.probePause)
		return false
	}
	w.probePause = 0
	w.c.healthy.Store(true)
	st := w.spool.stats()
	w.log.Info().Int64("spooled", st.records).Msg("store: database reachable again; replaying the spool")
	return true
}

func (w *Writer) unhealthy(err error) {
	if w.c.healthy.Swap(false) {
		w.log.Warn().Err(err).Str("url", RedactURL(w.url)).
			Msg("store: database write failed; spooling flows to disk until it answers again")
	}
	w.probePause = minProbePause
	w.nextProbe = time.Now().Add(w.probePause)
}

// insert stores docs with one unordered InsertMany. Duplicate keys count as
// stored; other per-document errors are counted as rejected and logged. An
// error means the command failed as a whole and nothing can be assumed
// about which documents were stored.
func (w *Writer) insert(ctx context.Context, docs [][]byte) error {
	ictx, cancel := context.WithTimeout(ctx, w.cfg.WriteTimeout)
	defer cancel()
	ds := make([]any, len(docs))
	for i, d := range docs {
		ds[i] = bson.Raw(d)
	}
	start := time.Now()
	_, err := w.coll.InsertMany(ictx, ds, options.InsertMany().SetOrdered(false))
	elapsed := time.Since(start)
	if err != nil {
		var bwe mongo.BulkWriteException
		if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
			w.c.insertErrors.Add(1)
			return fmt.Errorf("store: insert %d documents: %w", len(docs), err)
		}
		var dups, rejected int
		for _, we := range bwe.WriteErrors {
			if isDuplicateKey(we.Code) {
				dups++
				continue
			}
			rejected++
			if w.logEvery(&w.rejectLog) {
				w.log.Error().Int("code", we.Code).Str("error", we.Message).
					Msg("store: the database refused a flow document; it is not stored")
			}
		}
		w.c.duplicates.Add(uint64(dups))
		w.c.rejected.Add(uint64(rejected))
		w.c.inserted.Add(uint64(len(docs) - dups - rejected))
	} else {
		w.c.inserted.Add(uint64(len(docs)))
	}
	w.c.insertBatches.Add(1)
	w.c.observeLatency(elapsed)
	return nil
}

func isDuplicateKey(code int) bool { return code == 11000 || code == 11001 || code == 12582 }
