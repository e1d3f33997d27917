package store

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/rs/zerolog"
)

// Embedded is an in-process MongoDB-compatible server: FerretDB v1 with its
// SQLite backend, serving the files of one directory on a TCP address. Any
// MongoDB client can query it while it runs.
type Embedded struct {
	url    string
	cancel context.CancelFunc
	done   chan struct{}
	lock   *dirLock
	once   sync.Once
}

// StartEmbedded starts an embedded server over dir (created if missing) and
// listening on addr ("127.0.0.1:0" picks a free loopback port). It fails if
// another process already serves dir. FerretDB's own log output below
// warnings is dropped; warnings and errors go to logger.
func StartEmbedded(dir, addr string, logger zerolog.Logger) (*Embedded, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded database: data directory %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("embedded database: create data directory %q: %w", abs, err)
	}
	lock, err := lockDir(abs, "embedded database")
	if err != nil {
		return nil, err
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Logger:    slog.New(newSlogHandler(logger, slog.LevelWarn)),
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/?" + sqlitePragmas,
	})
	if err != nil {
		_ = lock.unlock()
		return nil, fmt.Errorf("embedded database: start FerretDB on %s over %s (is the address free?): %w", addr, abs, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Embedded{url: f.MongoDBURI(), cancel: cancel, done: make(chan struct{}), lock: lock}
	go func() {
		defer close(e.done)
		_ = f.Run(ctx) // always nil; returns when ctx is canceled
	}()
	return e, nil
}

// sqlitePragmas are added to FerretDB's own (WAL journal, busy timeout):
//   - temp_store(memory): the statement journal of each multi-row INSERT
//     (SQLite keeps one so a failing row can roll back its statement) stays
//     in memory instead of a temporary file written and discarded per batch;
//   - synchronous(normal): in WAL mode a commit no longer waits for fsync;
//     the WAL is synced at checkpoints. A crash of the process loses
//     nothing; a power cut can lose the last commits, like MongoDB's default
//     write concern (journal synced every 100 ms).
//
// Measured with BenchmarkEmbeddedInsert (docs/benchmarks.md).
const sqlitePragmas = "_pragma=temp_store(memory)&_pragma=synchronous(normal)"

// URL returns the server's mongodb:// URL, e.g. "mongodb://127.0.0.1:40123/".
func (e *Embedded) URL() string { return e.url }

// Close stops the server, closes its connections and its files, and releases
// the data directory.
func (e *Embedded) Close() error {
	var err error
	e.once.Do(func() {
		e.cancel()
		<-e.done
		err = e.lock.unlock()
	})
	if err != nil {
		return fmt.Errorf("embedded database: release data directory: %w", err)
	}
	return nil
}

// slogHandler forwards FerretDB's slog records at or above a level to a
// zerolog logger, so the embedded server does not write to stderr itself.
type slogHandler struct {
	log   zerolog.Logger
	level slog.Level
	attrs []slog.Attr
}

func newSlogHandler(l zerolog.Logger, level slog.Level) *slogHandler {
	return &slogHandler{log: l.With().Str("component", "ferretdb").Logger(), level: level}
}

func (h *slogHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *slogHandler) Handle(_ context.Context, r slog.Record) error {
	level := r.Level
	if level < slog.LevelError && isRoutineFerretWarning(r.Message) {
		level = slog.LevelDebug
	}
	var ev *zerolog.Event
	switch {
	case level >= slog.LevelError:
		ev = h.log.Error()
	case level >= slog.LevelWarn:
		ev = h.log.Warn()
	case level >= slog.LevelInfo:
		ev = h.log.Info()
	default:
		ev = h.log.Debug()
	}
	for _, a := range h.attrs {
		ev = ev.Str(a.Key, a.Value.String())
	}
	r.Attrs(func(a slog.Attr) bool {
		ev = ev.Str(a.Key, a.Value.String())
		return true
	})
	ev.Msg(r.Message)
	return nil
}

// isRoutineFerretWarning tells FerretDB warnings that are routine for the
// store: FerretDB dumps every error reply at warning level (duplicate keys on
// retries, the driver's endSessions at disconnect), and warns about each
// connection that ends when a client goes away or the server stops.
func isRoutineFerretWarning(msg string) bool {
	return strings.HasPrefix(msg, "Response header:") ||
		strings.HasPrefix(msg, "Response message:") ||
		msg == "Connection stopped"
}

func (h *slogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *slogHandler) WithGroup(string) slog.Handler { return h }
