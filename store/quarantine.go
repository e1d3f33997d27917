package store

import (
	"context"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/mongo"
)

// QuarantineCollection holds, with --keep-invalid, the data records the
// collector rejected as flows (no start time, no addresses, an MQTT
// control type outside 1–15, …), for inspection; they are never stored
// as flows.
const QuarantineCollection = "quarantine"

// QuarantineWriter stores rejected records off the caller's goroutine,
// bounded like the other collections beside the flows: what cannot be
// stored is counted and logged. It is the collector's quarantine.
type QuarantineWriter struct{ w *bgWriter }

// OpenQuarantine connects to url and writes to database.quarantine.
func OpenQuarantine(ctx context.Context, url, database string, log zerolog.Logger) (*QuarantineWriter, error) {
	w, err := openBackground(ctx, url, database, QuarantineCollection, "quarantine", false, log)
	if err != nil {
		return nil, err
	}
	return &QuarantineWriter{w}, nil
}

// PutInvalid queues one rejected record; it never blocks.
func (q *QuarantineWriter) PutInvalid(doc map[string]any) {
	raw, err := marshalFields(doc)
	if err != nil {
		q.w.drop(1, "not encodable: "+err.Error())
		return
	}
	q.w.put(bgOp{model: mongo.NewInsertOneModel().SetDocument(raw)})
}

// Stored and Dropped count quarantined records.
func (q *QuarantineWriter) Stored() uint64  { return q.w.written.Load() }
func (q *QuarantineWriter) Dropped() uint64 { return q.w.dropped.Load() }

// Close stores what is queued and disconnects.
func (q *QuarantineWriter) Close(ctx context.Context) error { return q.w.close(ctx) }
