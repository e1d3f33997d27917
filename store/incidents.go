package store

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/bson"
)

// IncidentCollection is where detection incidents are stored, beside the
// alerts: one document per incident, _id its id, replaced as it grows.
const IncidentCollection = "incidents"

// IncidentWriter stores incident documents off the caller's goroutine:
// puts of the same id within a batch are coalesced to the latest, and
// each is an upsert by id, so an incident that grows is updated, not
// duplicated. A bounded queue; what cannot be stored is counted and
// logged.
type IncidentWriter struct{ w *bgWriter }

// OpenIncidents connects to url and writes to database.incidents.
func OpenIncidents(ctx context.Context, url, database string, log zerolog.Logger) (*IncidentWriter, error) {
	w, err := openBackground(ctx, url, database, IncidentCollection, "incidents", false, log)
	if err != nil {
		return nil, err
	}
	return &IncidentWriter{w}, nil
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
	w.w.put(upsertByID(id, append(bson.D{{Key: "_id", Value: id}}, doc...)))
	return nil
}

// Stored counts the incident writes done, Dropped those lost.
func (w *IncidentWriter) Stored() uint64  { return w.w.written.Load() }
func (w *IncidentWriter) Dropped() uint64 { return w.w.dropped.Load() }

// Close stores what is queued and disconnects.
func (w *IncidentWriter) Close(ctx context.Context) error { return w.w.close(ctx) }
