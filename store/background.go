package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// bgWriter writes to one collection off the caller's goroutine, for the
// small collections beside the flows (alerts, incidents, sessions,
// quarantine): a bounded queue of write operations, applied in bulk every
// 200 ms or per 256. Operations with the same key in one batch coalesce to
// the latest, at the place of the first (the final state is the same, as
// operations on different keys commute). What cannot be queued or written
// is counted and logged, never blocks the caller: these collections are
// evidence and caches beside the flows, whose own path never drops.
type bgWriter struct {
	what    string // for logs and errors: "alerts", …
	client  *mongo.Client
	coll    *mongo.Collection
	ordered bool
	log     zerolog.Logger

	mu     sync.RWMutex // guards closed against queueing while close runs
	closed bool
	ch     chan bgOp
	wg     sync.WaitGroup

	written, dropped atomic.Uint64
}

// bgOp is one write; key coalesces writes of one document ("" never).
type bgOp struct {
	key   string
	model mongo.WriteModel
}

const (
	bgQueue = 10_000
	bgBatch = 256
	bgEvery = 200 * time.Millisecond
)

func openBackground(ctx context.Context, url, database, collection, what string, ordered bool, log zerolog.Logger) (*bgWriter, error) {
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
	if err != nil {
		return nil, fmt.Errorf("%s: connect: %w", what, err)
	}
	w := &bgWriter{what: what, client: client, coll: client.Database(database).Collection(collection), ordered: ordered,
		log: log, ch: make(chan bgOp, bgQueue)}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// put queues an operation; it never blocks.
func (w *bgWriter) put(op bgOp) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		w.drop(1, "written after close")
		return
	}
	select {
	case w.ch <- op:
	default:
		w.drop(1, "queue full")
	}
}

// drop counts lost documents and logs the first and then one line per
// thousand.
func (w *bgWriter) drop(n int, why string) {
	total := w.dropped.Add(uint64(n))
	if before := total - uint64(n); before == 0 || before/1000 != total/1000 {
		w.log.Error().Str("collection", w.what).Str("why", why).Uint64("dropped", total).Msg("documents beside the flows not stored")
	}
}

func (w *bgWriter) run() {
	defer w.wg.Done()
	batch := make([]mongo.WriteModel, 0, bgBatch)
	at := map[string]int{} // key → index in batch
	tick := time.NewTicker(bgEvery)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := w.coll.BulkWrite(ctx, batch, options.BulkWrite().SetOrdered(w.ordered))
		cancel()
		if err != nil {
			w.log.Error().Err(err).Str("collection", w.what).Int("documents", len(batch)).Msg("cannot write documents beside the flows")
			w.drop(len(batch), "write failed")
		} else {
			w.written.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
		clear(at)
	}
	for {
		select {
		case op, ok := <-w.ch:
			if !ok {
				flush()
				return
			}
			if i, dup := at[op.key]; dup && op.key != "" {
				batch[i] = op.model
				continue
			}
			if op.key != "" {
				at[op.key] = len(batch)
			}
			batch = append(batch, op.model)
			if len(batch) >= bgBatch {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// close writes what is queued and disconnects; later puts are dropped and
// counted.
func (w *bgWriter) close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	close(w.ch)
	w.mu.Unlock()
	w.wg.Wait()
	if err := w.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("%s: disconnect: %w", w.what, err)
	}
	return nil
}

// jsonDocument turns JSON into a BSON document with the same field
// names; the named fields holding RFC 3339 text become dates (so alerts
// and incidents sort and expire like flows).
func jsonDocument(jsonBytes []byte, times ...string) (bson.D, error) {
	var d bson.D
	if err := bson.UnmarshalExtJSON(jsonBytes, false, &d); err != nil {
		return nil, err
	}
	for i := range d {
		s, ok := d[i].Value.(string)
		if !ok {
			continue
		}
		for _, k := range times {
			if d[i].Key == k {
				if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
					d[i].Value = t
				}
			}
		}
	}
	return d, nil
}

func upsertByID(id string, doc any) bgOp {
	return bgOp{key: id, model: mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).SetReplacement(doc).SetUpsert(true)}
}
