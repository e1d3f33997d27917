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

// AlertCollection is where detection alerts are stored, beside the flows.
const AlertCollection = "alerts"

// AlertWriter stores alert documents (any value that marshals to BSON) in
// batches, off the caller's goroutine. Alerts are rare compared with flows:
// a bounded channel and a best-effort insert are enough; what cannot be
// stored is counted and logged.
type AlertWriter struct {
	client  *mongo.Client
	coll    *mongo.Collection
	ch      chan any
	wg      sync.WaitGroup
	log     zerolog.Logger
	stored  atomic.Uint64
	dropped atomic.Uint64
}

// OpenAlerts connects to url and writes to database.alerts.
func OpenAlerts(ctx context.Context, url, database string, log zerolog.Logger) (*AlertWriter, error) {
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
	if err != nil {
		return nil, fmt.Errorf("alerts: connect: %w", err)
	}
	a := &AlertWriter{client: client, coll: client.Database(database).Collection(AlertCollection),
		ch: make(chan any, 10000), log: log}
	a.wg.Add(1)
	go a.run()
	return a, nil
}

// Put queues an alert; it never blocks.
func (a *AlertWriter) Put(v any) {
	select {
	case a.ch <- v:
	default:
		if a.dropped.Add(1)%1000 == 1 {
			a.log.Error().Uint64("dropped", a.dropped.Load()).Msg("alert queue full: alerts not stored (still logged)")
		}
	}
}

// PutAlert queues an alert given as JSON (a detection alert as
// json.Marshal writes it), stored as AlertDocument makes it; it never
// blocks. With Dropped and Close it makes the writer the alert sink of
// detection (mining.AlertSink).
func (a *AlertWriter) PutAlert(alertJSON []byte) error {
	doc, err := AlertDocument(alertJSON)
	if err != nil {
		return fmt.Errorf("alerts: %w", err)
	}
	a.Put(doc)
	return nil
}

// Stored and Dropped count alert documents.
func (a *AlertWriter) Stored() uint64  { return a.stored.Load() }
func (a *AlertWriter) Dropped() uint64 { return a.dropped.Load() }

func (a *AlertWriter) run() {
	defer a.wg.Done()
	batch := make([]any, 0, 256)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := a.coll.InsertMany(ctx, batch, options.InsertMany().SetOrdered(false))
		cancel()
		if err != nil {
			a.dropped.Add(uint64(len(batch)))
			a.log.Error().Err(err).Int("alerts", len(batch)).Msg("cannot store alerts (they were logged)")
		} else {
			a.stored.Add(uint64(len(batch)))
		}
		clear(batch)
		batch = batch[:0]
	}
	for {
		select {
		case v, ok := <-a.ch:
			if !ok {
				flush()
				return
			}
			batch = append(batch, v)
			if len(batch) == cap(batch) {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// Close stores what is queued and disconnects.
func (a *AlertWriter) Close(ctx context.Context) error {
	close(a.ch)
	a.wg.Wait()
	return a.client.Disconnect(ctx)
}

// AlertDocument turns a JSON-tagged alert into a BSON document with the
// same field names (JSON round trip; alerts are few); an RFC 3339 "time"
// becomes a date so alerts can be sorted and expired like flows.
func AlertDocument(jsonBytes []byte) (bson.D, error) {
	var d bson.D
	if err := bson.UnmarshalExtJSON(jsonBytes, false, &d); err != nil {
		return nil, err
	}
	for i := range d {
		if s, ok := d[i].Value.(string); ok && d[i].Key == "time" {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				d[i].Value = t
			}
		}
	}
	return d, nil
}
