package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/mission-ids/mission/flow"
)

// ReaderConfig says where a Reader reads stored flows. Zero values take
// the defaults of Config.
type ReaderConfig struct {
	// URL is a mongodb:// or mongodb+srv:// URL. Empty serves DataDir/db
	// with the embedded server for as long as the Reader is open.
	URL        string
	Database   string
	Collection string
	// DataDir is the data directory of a Writer that ran with an empty URL.
	DataDir string
}

// Reader reads stored flow documents: from a MongoDB server, or from the
// embedded database of a data directory, which it serves while open (the
// directory is locked meanwhile, as by a Writer). It is safe for concurrent
// use.
type Reader struct {
	url      string
	embedded *Embedded
	client   *mongo.Client
	coll     *mongo.Collection
}

// OpenReader connects to cfg.URL, or starts the embedded server over
// cfg.DataDir/db when cfg.URL is empty, and checks that the server answers
// within ctx. When a running Writer (a collector) serves the directory, it
// reads through that server's Unix socket instead. With an empty URL it
// fails with an error wrapping ErrNoDatabase when the data directory has no
// embedded database, and ErrDirInUse when a running Writer holds the
// directory with its server on TCP (Config.EmbeddedListen). A
// server that does not answer is an error wrapping ErrUnreachable; a URL
// that does not parse, one wrapping ErrInvalidURL.
func OpenReader(ctx context.Context, cfg ReaderConfig, logger zerolog.Logger) (_ *Reader, err error) {
	c := Config{URL: cfg.URL, Database: cfg.Database, Collection: cfg.Collection, DataDir: cfg.DataDir}.withDefaults()
	r := &Reader{url: c.URL}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	if r.url == "" {
		dir := filepath.Join(c.DataDir, "db")
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("%w: no embedded database in %s: %w", ErrNoDatabase, c.DataDir, err)
		}
		log := logger.With().Str("component", "store").Logger()
		sock, err := EmbeddedSocket(c.DataDir)
		if err != nil {
			return nil, err
		}
		listen := sock
		if listen == "" { // no Unix sockets here
			listen = "127.0.0.1:0"
		}
		r.embedded, err = StartEmbedded(dir, listen, log)
		switch {
		case errors.Is(err, ErrDirInUse) && isSocket(sock):
			// A collector serves the directory: read through its server.
			r.url = SocketURL(sock)
		case err != nil:
			return nil, err
		default:
			r.url = r.embedded.URL()
		}
	}
	opts := options.Client().
		SetServerSelectionTimeout(5 * time.Second).
		ApplyURI(r.url) // settings in the URL win over the default above
	if r.client, err = mongo.Connect(ctx, opts); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, redactError(err, r.url))
	}
	if err := r.client.Ping(ctx, nil); err != nil {
		return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, RedactURL(r.url), redactError(err, r.url))
	}
	r.coll = r.client.Database(c.Database).Collection(c.Collection)
	return r, nil
}

// URL returns the database URL in use: the embedded server's when
// ReaderConfig.URL was empty. It may hold a password (see RedactURL).
func (r *Reader) URL() string { return r.url }

// Embedded reports whether the Reader serves a data directory itself.
func (r *Reader) Embedded() bool { return r.embedded != nil }

// Close disconnects and stops the embedded server, releasing the data
// directory.
func (r *Reader) Close() error {
	var errs []error
	if r.client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := r.client.Disconnect(ctx); err != nil {
			errs = append(errs, fmt.Errorf("store: disconnect: %w", err))
		}
		cancel()
		r.client = nil
	}
	if r.embedded != nil {
		errs = append(errs, r.embedded.Close())
		r.embedded = nil
	}
	return errors.Join(errs...)
}

// Query selects stored flows.
type Query struct {
	// Filter is a MongoDB query document (see ParseFilter); nil or empty
	// matches every document.
	Filter bson.D
	// From and To, when not zero, select flows that start at or after From
	// and before To, to the nanosecond (the indexed date flowStartNanoseconds
	// narrows the search, the nanosecond twin flowStartNs decides).
	// Documents without the twin (the original prototype's) match no range.
	From, To time.Time
	// Protocol, when set ("mqtt", "coap"), selects the flows of that
	// application protocol (applicationProtocol). "mqtt" also selects MQTT
	// documents written before the field existed (they have mqttControlType
	// and no applicationProtocol).
	Protocol string
	// Limit is the most documents Find and Records return; 0 is all.
	// Count and CountBy ignore it.
	Limit int64
}

// ParseFilter parses a MongoDB query document written as (relaxed or
// canonical) extended JSON, e.g. {"mqttTopic": "plant/temp"}.
func ParseFilter(s string) (bson.D, error) {
	var f bson.D
	if err := bson.UnmarshalExtJSON([]byte(s), false, &f); err != nil {
		return nil, fmt.Errorf("store: filter %q is not a JSON query document: %w", s, err)
	}
	return f, nil
}

// filter combines q's filter and time range: on the indexed date, widened
// to whole milliseconds (BSON dates stop there), and exactly on the
// nanosecond twin.
func (q *Query) filter() bson.D {
	if q.Protocol != "" {
		inner := *q
		inner.Protocol = ""
		var sel bson.D
		if q.Protocol == "mqtt" {
			sel = bson.D{{Key: "$or", Value: bson.A{
				bson.D{{Key: "applicationProtocol", Value: "mqtt"}},
				bson.D{{Key: "applicationProtocol", Value: bson.D{{Key: "$exists", Value: false}}}, {Key: "mqttControlType", Value: bson.D{{Key: "$gt", Value: 0}}}},
			}}}
		} else {
			sel = bson.D{{Key: "applicationProtocol", Value: q.Protocol}}
		}
		rest := inner.filter()
		if len(rest) == 0 {
			return sel
		}
		return bson.D{{Key: "$and", Value: bson.A{sel, rest}}}
	}
	date, ns := bson.D{}, bson.D{}
	if !q.From.IsZero() {
		date = append(date, bson.E{Key: "$gte", Value: q.From.Truncate(time.Millisecond)})
		ns = append(ns, bson.E{Key: "$gte", Value: q.From.UnixNano()})
	}
	if !q.To.IsZero() {
		date = append(date, bson.E{Key: "$lt", Value: q.To.Truncate(time.Millisecond).Add(time.Millisecond)})
		ns = append(ns, bson.E{Key: "$lt", Value: q.To.UnixNano()})
	}
	switch {
	case len(date) == 0 && q.Filter == nil:
		return bson.D{}
	case len(date) == 0:
		return q.Filter
	}
	rng := bson.D{{Key: "flowStartNanoseconds", Value: date}, {Key: "flowStartNs", Value: ns}}
	if len(q.Filter) == 0 {
		return rng
	}
	return bson.D{{Key: "$and", Value: bson.A{q.Filter, rng}}}
}

// Find calls fn with each document q selects, in order of the stored start
// date (milliseconds: the indexed field), at most q.Limit of them. The
// bson.Raw is valid only during the call. An error from fn stops Find and
// is returned as is.
func (r *Reader) Find(ctx context.Context, q Query, fn func(bson.Raw) error) error {
	opts := options.Find().SetSort(bson.D{{Key: "flowStartNanoseconds", Value: 1}})
	if q.Limit > 0 {
		opts.SetLimit(q.Limit)
	}
	cur, err := r.coll.Find(ctx, q.filter(), opts)
	if err != nil {
		return fmt.Errorf("store: find: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		if err := fn(cur.Current); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("store: find: %w", err)
	}
	return nil
}

// Records calls fn with the Record (flow.Document.Record) of each document
// q selects, in time order to the nanosecond, at most q.Limit of them. Each
// call gets a new Record, which fn may keep. An error from fn stops Records
// and is returned as is.
func (r *Reader) Records(ctx context.Context, q Query, fn func(*flow.Record) error) error {
	// The date orders documents of the original prototype, which have no
	// nanosecond twin; the twin orders flows within a millisecond.
	opts := options.Find().SetSort(bson.D{{Key: "flowStartNanoseconds", Value: 1}, {Key: "flowStartNs", Value: 1}})
	if q.Limit > 0 {
		opts.SetLimit(q.Limit)
	}
	cur, err := r.coll.Find(ctx, q.filter(), opts)
	if err != nil {
		return fmt.Errorf("store: read stored flows: %w", err)
	}
	defer cur.Close(context.WithoutCancel(ctx))
	for cur.Next(ctx) {
		var d flow.Document
		if err := cur.Decode(&d); err != nil {
			return fmt.Errorf("store: stored flow %v: %w", cur.Current.Lookup("_id"), err)
		}
		rec, err := d.Record()
		if err != nil {
			return fmt.Errorf("store: stored flow %q: %w", d.ID, err)
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	if err := cur.Err(); err != nil {
		return fmt.Errorf("store: read stored flows: %w", err)
	}
	return nil
}

// Count returns the number of documents q selects.
func (r *Reader) Count(ctx context.Context, q Query) (int64, error) {
	n, err := r.coll.CountDocuments(ctx, q.filter())
	if err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}

// FieldCount is the number of documents with one value of a field.
type FieldCount struct {
	// Value is the field's value as the driver decodes it into an any
	// (string, int32, int64, primitive.DateTime, bson.D, …); nil for
	// documents without the field.
	Value any
	Count int64
}

// CountBy counts the documents q selects per value of field (a top-level
// field name or a dotted path, e.g. "ipfixFields.protocolIdentifier"),
// most frequent first, ties in the database's order of values.
func (r *Reader) CountBy(ctx context.Context, q Query, field string) ([]FieldCount, error) {
	if field == "" || field[0] == '$' {
		return nil, fmt.Errorf("store: count by %q: not a field name", field)
	}
	cur, err := r.coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: q.filter()}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$" + field}, {Key: "count", Value: bson.D{{Key: "$sum", Value: 1}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "count", Value: -1}, {Key: "_id", Value: 1}}}},
	})
	if err != nil {
		return nil, fmt.Errorf("store: count by %s: %w", field, err)
	}
	var rows []struct {
		Value any   `bson:"_id"`
		Count int64 `bson:"count"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return nil, fmt.Errorf("store: count by %s: %w", field, err)
	}
	out := make([]FieldCount, len(rows))
	for i, row := range rows {
		out[i] = FieldCount(row)
	}
	return out, nil
}

// isSocket reports whether path is a Unix socket.
func isSocket(path string) bool {
	fi, err := os.Stat(path)
	return path != "" && err == nil && fi.Mode()&os.ModeSocket != 0
}
