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

// IncidentCollection is where detection incidents are stored, beside the
// alerts: one document per incident, _id its id, replaced as it grows.
const IncidentCollection = "incidents"

type incidentPut struct {
	id  string
	doc bson.D
}

// IncidentWriter stores incident documents off the caller's goroutine:
// puts of the same id within a batch are coalesced to the latest, and
// each is an upsert by id, so an incident that grows is updated, not
// duplicated. A bounded queue; what cannot be stored is counted and
// logged.
type IncidentWriter struct {
	client  *mongo.Client
	coll    *mongo.Collection
	ch      chan incidentPut
	wg      sync.WaitGroup
	log     zerolog.Logger
	stored  atomic.Uint64
	dropped atomic.Uint64
}

// OpenIncidents connects to url and writes to database.incidents.
func OpenIncidents(ctx context.Context, url, database string, log zerolog.Logger) (*IncidentWriter, error) {
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(url))
	if err != nil {
		return nil, fmt.Errorf("incidents: connect: %w", err)
	}
	w := &IncidentWriter{client: client, coll: client.Database(database).Collection(IncidentCollection),
		ch: make(chan incidentPut, 10000), log: log}
	w.wg.Add(1)
	go w.run()
	return w, nil
}

// PutIncident queues an incident given as JSON with its id (a detection
// incident as json.Marshal writes it; "first" and "last" become dates);
// it never blocks. With Dropped and Close it makes the writer the
// incident sink of detection (mining.IncidentSink).
func (w *IncidentWriter) PutIncident(id string, incidentJSON []byte) error {
	doc, err := jsonDocument(incidentJSON, "first", "last")
	if err != nil {
		return fmt.Errorf("incidents: %w", err)
	}
	doc = append(bson.D{{Key: "_id", Value: id}}, doc...)
	select {
	case w.ch <- incidentPut{id, doc}:
	default:
		if w.dropped.Add(1)%1000 == 1 {
			w.log.Error().Uint64("dropped", w.dropped.Load()).Msg("incident queue full: incident updates not stored (still logged)")
		}
	}
	return nil
}

// Stored counts the incident writes done, Dropped those lost.
func (w *IncidentWriter) Stored() uint64  { return w.stored.Load() }
func (w *IncidentWriter) Dropped() uint64 { return w.dropped.Load() }

func (w *IncidentWriter) run() {
	defer w.wg.Done()
	batch := map[string]bson.D{}
	var order []string
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	flush := func() {
		if len(order) == 0 {
			return
		}
		models := make([]mongo.WriteModel, 0, len(order))
		for _, id := range order {
			models = append(models, mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: id}}).
				SetReplacement(batch[id]).SetUpsert(true))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := w.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
		cancel()
		if err != nil {
			w.dropped.Add(uint64(len(models)))
			w.log.Error().Err(err).Int("incidents", len(models)).Msg("cannot store incidents (they were logged)")
		} else {
			w.stored.Add(uint64(len(models)))
		}
		clear(batch)
		order = order[:0]
	}
	for {
		select {
		case p, ok := <-w.ch:
			if !ok {
				flush()
				return
			}
			if _, dup := batch[p.id]; !dup {
				order = append(order, p.id)
			}
			batch[p.id] = p.doc
			if len(order) >= 256 {
				flush()
			}
		case <-tick.C:
			flush()
		}
	}
}

// Close stores what is queued and disconnects.
func (w *IncidentWriter) Close(ctx context.Context) error {
	close(w.ch)
	w.wg.Wait()
	if err := w.client.Disconnect(ctx); err != nil {
		return fmt.Errorf("incidents: disconnect: %w", err)
	}
	return nil
}

// jsonDocument turns JSON into a BSON document with the same field
// names; the named fields holding RFC 3339 text become dates.
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
