package store

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
)

// AlertCollection is where detection alerts are stored, beside the flows.
const AlertCollection = "alerts"

// AlertWriter stores alert documents (any value that marshals to BSON) in
// batches, off the caller's goroutine. Alerts are rare compared with flows:
// a bounded queue and a best-effort insert are enough; what cannot be
// stored is counted and logged.
type AlertWriter struct{ w *bgWriter }

// OpenAlerts connects to url and writes to database.alerts.
func OpenAlerts(ctx context.Context, url, database string, log zerolog.Logger) (*AlertWriter, error) {
	w, err := openBackground(ctx, url, database, AlertCollection, "alerts", false, log)
	if err != nil {
		return nil, err
	}
	return &AlertWriter{w}, nil
}

// Put queues an alert; it never blocks.
func (a *AlertWriter) Put(v any) { a.w.put(bgOp{model: mongo.NewInsertOneModel().SetDocument(v)}) }

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
func (a *AlertWriter) Stored() uint64  { return a.w.written.Load() }
func (a *AlertWriter) Dropped() uint64 { return a.w.dropped.Load() }

// Close stores what is queued and disconnects.
func (a *AlertWriter) Close(ctx context.Context) error { return a.w.close(ctx) }

// AlertDocument turns a JSON-tagged alert into a BSON document with the
// same field names; an RFC 3339 "time" becomes a date so alerts can be
// sorted and expired like flows.
func AlertDocument(jsonBytes []byte) (bson.D, error) { return jsonDocument(jsonBytes, "time") }
