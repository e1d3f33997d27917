// Package store writes MQTT flow documents (flow.Document) to MongoDB through
// the official Go driver, without losing them when the database is down, and
// reads them back.
//
// # Naming
//
// Documents go to database Config.Database (default "mission"), collection
// Config.Collection (default "mqtt"). This matches the original collector,
// whose MONGO_COLLECTION variable named the database and which always wrote
// to a collection called "mqtt": MONGO_COLLECTION maps to Config.Database.
//
// # Path of a document
//
// Put and PutBatch give each document an _id (see DocumentID), encode it to
// BSON once, and hand it to a bounded in-memory queue (Config.QueueSize);
// they never wait for the database. A single writer goroutine takes batches
// from the queue (Config.BatchSize documents, or whatever arrived within
// Config.FlushInterval) and inserts each with one unordered InsertMany.
//
// When the queue is full, documents go to an on-disk spool instead
// (Config.DataDir/spool, at most Config.SpoolMaxBytes). When an insert fails
// as a whole (database down, timeout), its batch goes to the spool, the
// writer marks the database unhealthy, sends further batches straight to the
// spool and probes the database with growing pauses (up to 2 s). Once the
// database answers, the spool is replayed, one spool batch after each queue
// batch, and spool segments are deleted once stored. When the spool is full
// as well, the writer keeps what it holds in memory and stops taking from
// the queue until the database answers; the queue fills up. Only then, with
// queue and spool full (or the spool unwritable), are documents dropped:
// PutBatch returns ErrDropped, and they are counted (Stats.Dropped) and
// logged at error level. A duplicate-key error on an
// insert means the document is already stored (an earlier attempt succeeded
// without an answer) and counts as success. Other per-document errors cannot
// succeed on retry: they are counted (Stats.Rejected) and logged.
//
// Close drains the queue into the database or, if it is unreachable before
// Close's context ends, into the spool; a later Writer over the same
// DataDir replays the spool. Spool writes reach the operating system before
// Put or the writer goes on (a crash of the process loses nothing spooled);
// segments are fsynced when sealed and at Close, so a power loss can lose
// the last spooled documents.
//
// # Encoding
//
// Documents are encoded with the driver's rules, except that uint64 fields
// (flowId, packetDeltaCount, octetDeltaCount) above 2^63−1, which BSON
// cannot hold and the driver refuses, are stored as the int64 with the same
// bits (they read back negative; add 2^64).
//
// # Embedded server
//
// With Config.URL empty, Open starts an embedded MongoDB-compatible server
// (FerretDB v1 with its SQLite backend, in this process) over
// Config.DataDir/db, listening on a Unix socket only its user can connect
// to (Config.DataDir/mongodb.sock, see EmbeddedSocket), or on TCP at
// Config.EmbeddedListen when that is set. Writer.URL returns its
// mongodb:// URL (mongodb://%2Fpath%2Fto%2Fmongodb.sock/), which any MongoDB
// client running as the same user can use while the process runs; a Reader
// over the same DataDir reads through it. The data directory is locked: a
// second process over the same DataDir fails to open with ErrDirInUse (the
// spool directory is locked the same way, embedded server or not). The
// embedded server stores about 5,000 flow documents per second on two
// cores (see BenchmarkEmbeddedInsert); beyond that, use MongoDB. Closing it
// waits up to 3 s for other clients still connected to it to go away.
//
// # Reading
//
// OpenReader opens the stored flows for reading, over a URL or, with the
// URL empty, over the embedded database of a data directory (which it
// serves, and locks, while open; ErrNoDatabase when there is none). Its
// Find, Count and CountBy select documents by a MongoDB filter and a start
// time range; Records decodes them back to flow.Records in time order.
//
// # Indexes
//
// Open creates ascending indexes on flowStartNanoseconds,
// mqttCorrelationData, mqttSrcClientId, mqttDstClientId and mqttTopic. With
// Config.Retention > 0 it also creates a TTL index on collectorReceiveTime
// (which Put fills with the current time when the document has none);
// FerretDB v1 does not implement TTL indexes, so Retention with the embedded
// server fails with ErrRetentionUnsupported.
package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// Defaults for Config's zero values.
const (
	DefaultDatabase       = "mission"
	DefaultCollection     = "mqtt"
	DefaultDataDir        = "./mission-data"
	DefaultEmbeddedListen = "" // the private Unix socket, see EmbeddedSocket
	DefaultBatchSize      = 1000
	DefaultFlushInterval  = 200 * time.Millisecond
	DefaultQueueSize      = 100_000
	DefaultSpoolMaxBytes  = 1 << 30
	DefaultWriteTimeout   = 10 * time.Second
	DefaultInsertWorkers  = 4
)

// Config configures a Writer. Zero values take the defaults above.
type Config struct {
	// URL is a mongodb:// or mongodb+srv:// URL. Empty starts the embedded
	// server over DataDir/db.
	URL string
	// Database is the database name (the original's MONGO_COLLECTION).
	Database string
	// Collection is the collection name; the original always used "mqtt".
	Collection string
	// DataDir holds the spool (DataDir/spool) and the embedded server's
	// files (DataDir/db).
	DataDir string
	// EmbeddedListen, if set, is a TCP address for the embedded server
	// instead of its Unix socket (EmbeddedSocket(DataDir)), which only the
	// user mission runs as can connect to. FerretDB has no
	// authentication: on TCP every local user can reach the database.
	EmbeddedListen string
	// Retention > 0 makes the database delete documents that long after
	// collectorReceiveTime (TTL index; MongoDB only).
	Retention time.Duration
	// BatchSize is the most documents per InsertMany.
	BatchSize int
	// FlushInterval is the longest a queued document waits for its batch
	// to fill.
	FlushInterval time.Duration
	// QueueSize is the in-memory queue's capacity, in documents.
	QueueSize int
	// SpoolMaxBytes bounds the on-disk spool.
	SpoolMaxBytes int64
	// WriteTimeout bounds one insert command, and the database check at Open.
	WriteTimeout time.Duration
	// InsertWorkers is the most insert commands in flight at once. Even the
	// embedded server, whose SQLite has one writer, stores ~40 % more with
	// four (the server decodes and converts one batch while SQLite writes
	// another); MongoDB writes batches in parallel.
	InsertWorkers int
	// StartUnreachable lets Open succeed when the database at URL does not
	// answer: flows go to the spool, and the indexes are created, once it
	// answers (a collector restarted while its database is down). Without
	// it Open fails with ErrUnreachable. The embedded server always answers.
	StartUnreachable bool
}

func (c Config) withDefaults() Config {
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Collection == "" {
		c.Collection = DefaultCollection
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.SpoolMaxBytes == 0 {
		c.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.InsertWorkers == 0 {
		c.InsertWorkers = DefaultInsertWorkers
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.BatchSize < 0 || c.BatchSize > 100_000:
		return fmt.Errorf("store: batch size %d out of range: use 1 to 100000", c.BatchSize)
	case c.InsertWorkers < 0 || c.InsertWorkers > 64:
		return fmt.Errorf("store: %d insert workers out of range: use 1 to 64", c.InsertWorkers)
	case c.QueueSize < 0:
		return fmt.Errorf("store: queue size %d is negative", c.QueueSize)
	case c.SpoolMaxBytes < 0:
		return fmt.Errorf("store: spool size %d is negative", c.SpoolMaxBytes)
	case c.FlushInterval < 0 || c.WriteTimeout < 0 || c.Retention < 0:
		return errors.New("store: flush interval, write timeout and retention must not be negative")
	case c.Retention > 0 && c.Retention < time.Second:
		return fmt.Errorf("store: retention %s is under the TTL index's one-second resolution", c.Retention)
	}
	return nil
}

// Errors callers branch on.
var (
	// ErrClosed is returned by Put and PutBatch after Close.
	ErrClosed = errors.New("store: writer closed")
	// ErrDropped means documents were lost because the spool is full or
	// unwritable; the Writer has counted and logged them.
	ErrDropped = errors.New("store: spool full, documents dropped")
	// ErrDirInUse is returned when another process (or another Writer or
	// Embedded in this process) already uses a data directory.
	ErrDirInUse = errors.New("store: data directory in use")
	// ErrRetentionUnsupported means the server has no TTL indexes.
	ErrRetentionUnsupported = errors.New("store: the database does not support TTL indexes (retention)")
	// ErrUnreachable means the database server did not answer (Open's
	// and OpenReader's check).
	ErrUnreachable = errors.New("store: cannot reach the database")
	// ErrInvalidURL means the database URL or its options do not parse.
	ErrInvalidURL = errors.New("store: invalid MongoDB URL or options")
	// ErrNoDatabase means a Reader was given no URL and its data directory
	// holds no embedded database.
	ErrNoDatabase = errors.New("store: no database to read")
)

// Writer stores flow documents; see the package documentation. It is safe
// for concurrent use.
type Writer struct {
	cfg      Config
	log      zerolog.Logger
	url      string
	embedded *Embedded
	client   *mongo.Client
	coll     *mongo.Collection
	spool    *spool

	mu     sync.RWMutex // guards closed and sending on queue
	closed bool
	queue  chan item

	runCtx    context.Context // canceled when Close's context ends
	runCancel context.CancelFunc
	done      chan struct{} // closed when the writer goroutine returns
	closeErr  error
	closeOnce sync.Once

	closing chan struct{} // closed by Close

	// Owned by the writer goroutine.
	held       []item // taken from the queue, no room in the spool, database down
	heldN      atomic.Int64
	replay     *segmentReader
	inflight   int               // insert commands running (at most InsertWorkers)
	results    chan insertResult // their outcomes, read by the writer goroutine
	nextProbe  time.Time
	probePause time.Duration
	// needIndexes: the database did not answer at Open (StartUnreachable);
	// the indexes are created when it first does.
	needIndexes bool

	c                               counters
	dropLog, rejectLog, spoolErrLog atomic.Int64 // throttles: last log time (Unix ns)
}

// Open checks the configuration, starts the embedded server if Config.URL
// is empty, opens the spool, connects to the database, creates the indexes
// and starts the writer goroutine. ctx bounds the start; the database must
// answer within it (and within Config.WriteTimeout), else the error wraps
// ErrUnreachable. A data directory in use by another Writer, Reader or
// process is an error wrapping ErrDirInUse; Config.Retention on a server
// without TTL indexes, one wrapping ErrRetentionUnsupported.
func Open(ctx context.Context, cfg Config, logger zerolog.Logger) (_ *Writer, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	w := &Writer{
		cfg:     cfg,
		log:     logger.With().Str("component", "store").Logger(),
		url:     cfg.URL,
		queue:   make(chan item, cfg.QueueSize),
		results: make(chan insertResult, cfg.InsertWorkers),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
	}
	w.runCtx, w.runCancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			w.release(context.Background())
		}
	}()
	if w.url == "" {
		listen := cfg.EmbeddedListen
		if listen == "" {
			if listen, err = EmbeddedSocket(cfg.DataDir); err != nil {
				return nil, err
			}
			if listen == "" { // no Unix sockets here
				listen = "127.0.0.1:0"
			}
		}
		w.embedded, err = StartEmbedded(filepath.Join(cfg.DataDir, "db"), listen, w.log)
		if err != nil {
			return nil, err
		}
		w.url = w.embedded.URL()
	}
	w.spool, err = openSpool(filepath.Join(cfg.DataDir, "spool"), cfg.SpoolMaxBytes, w.log)
	if err != nil {
		return nil, err
	}
	opts := options.Client().
		SetServerSelectionTimeout(2 * time.Second).
		SetConnectTimeout(5 * time.Second).
		ApplyURI(w.url) // settings in the URL win over the defaults above
	w.client, err = mongo.Connect(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, redactError(err, w.url))
	}
	w.coll = w.client.Database(cfg.Database).Collection(cfg.Collection)
	pctx, cancel := context.WithTimeout(ctx, cfg.WriteTimeout)
	defer cancel()
	if err := w.client.Ping(pctx, nil); err != nil {
		if !cfg.StartUnreachable || w.embedded != nil {
			return nil, fmt.Errorf("%w at %s: %w", ErrUnreachable, RedactURL(w.url), redactError(err, w.url))
		}
		w.log.Warn().Err(redactError(err, w.url)).Str("url", RedactURL(w.url)).
			Msg("store: database not answering at start; spooling flows to disk until it answers")
		w.c.pingErrors.Add(1)
		w.needIndexes = true
		w.probePause = minProbePause
		w.nextProbe = time.Now().Add(w.probePause)
		go w.run()
		return w, nil
	}
	if err := ensureIndexes(pctx, w.coll, cfg.Retention, w.embedded != nil, w.log); err != nil {
		return nil, redactError(err, w.url)
	}
	w.c.healthy.Store(true)
	go w.run()
	return w, nil
}

// URL returns the database URL in use: the embedded server's when
// Config.URL was empty (for the caller to print), else Config.URL.
func (w *Writer) URL() string { return w.url }

// Embedded reports whether the Writer runs the embedded server.
func (w *Writer) Embedded() bool { return w.embedded != nil }

// Stats returns a snapshot of the Writer's counters and gauges.
func (w *Writer) Stats() Stats {
	sp := w.spool.stats()
	return Stats{
		QueueDepth:        len(w.queue) + int(w.heldN.Load()),
		QueueCapacity:     cap(w.queue),
		SpoolBytes:        sp.bytes,
		SpoolRecords:      sp.records,
		SpoolSegments:     sp.segments,
		Healthy:           w.c.healthy.Load(),
		Accepted:          w.c.accepted.Load(),
		Inserted:          w.c.inserted.Load(),
		Duplicates:        w.c.duplicates.Load(),
		InsertBatches:     w.c.insertBatches.Load(),
		InsertErrors:      w.c.insertErrors.Load(),
		PingErrors:        w.c.pingErrors.Load(),
		Retried:           w.c.retried.Load(),
		Spooled:           w.c.spooled.Load(),
		Replayed:          w.c.replayed.Load(),
		Dropped:           w.c.dropped.Load(),
		Rejected:          w.c.rejected.Load(),
		SpoolTornRecord:   sp.torn,
		LastInsertLatency: time.Duration(w.c.lastLatency.Load()),
		InsertLatency:     w.c.histogram(),
	}
}

// Close stops accepting documents, drains the queue into the database (or,
// when it is unreachable before ctx ends, into the spool), then closes the
// spool, the connection and the embedded server. Documents that could not
// be stored are on disk for the next Writer over the same DataDir, except
// those counted as dropped.
func (w *Writer) Close(ctx context.Context) error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		close(w.closing)
		close(w.queue)
		w.mu.Unlock()
		stop := context.AfterFunc(ctx, w.runCancel) // past the deadline, insert no more: spool
		<-w.done
		stop()
		w.closeErr = w.release(ctx)
	})
	return w.closeErr
}

// release closes what Open opened, in reverse order.
func (w *Writer) release(ctx context.Context) error {
	w.runCancel()
	var errs []error
	if w.spool != nil {
		errs = append(errs, w.spool.close())
	}
	if w.client != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := w.client.Disconnect(dctx); err != nil {
			errs = append(errs, fmt.Errorf("store: disconnect: %w", err))
		}
		cancel()
	}
	if w.embedded != nil {
		errs = append(errs, w.embedded.Close())
	}
	return errors.Join(errs...)
}
