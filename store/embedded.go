package store

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/rs/zerolog"
)

// Embedded is an in-process MongoDB-compatible server: FerretDB v1 with its
// SQLite backend, serving the files of one directory on a Unix socket (or
// a TCP address). Any MongoDB client can query it while it runs.
//
// FerretDB v1 has no authentication: whoever can connect can read, rewrite
// and delete every document. The socket is therefore created in a
// directory only its owner can enter (0700) with mode 0600, so only the
// user mission runs as (and root) can connect; the database files' own
// directory is kept private the same way.
type Embedded struct {
	url    string
	socket string
	cancel context.CancelFunc
	done   chan struct{}
	lock   *dirLock
	once   sync.Once
}

// StartEmbedded starts an embedded server over dir (created if missing,
// mode 0700). listen is either the path of a Unix socket (it has a slash;
// see EmbeddedSocket; its directory is made private and a stale socket
// removed) or a TCP address ("127.0.0.1:0" picks a free loopback port),
// which any local user can reach, and anyone beyond a non-loopback
// address: that is logged, as a warning unless loopback. It fails if
// another process already serves dir. FerretDB's own log output below
// warnings is dropped; warnings and errors go to logger.
func StartEmbedded(dir, listen string, logger zerolog.Logger) (*Embedded, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded database: data directory %q: %w", dir, err)
	}
	if err := privateDir(abs, false, logger); err != nil {
		return nil, err
	}
	lock, err := lockDir(abs, "embedded database")
	if err != nil {
		return nil, err
	}
	unix := strings.Contains(listen, "/")
	lc := ferretdb.ListenerConfig{TCP: listen}
	if unix {
		if err := prepareSocket(listen, filepath.Dir(abs), logger); err != nil {
			_ = lock.unlock()
			return nil, err
		}
		lc = ferretdb.ListenerConfig{Unix: listen}
	}
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  lc,
		Logger:    slog.New(newSlogHandler(logger, slog.LevelWarn)),
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/?" + sqlitePragmas,
	})
	if err != nil {
		_ = lock.unlock()
		return nil, fmt.Errorf("embedded database: start FerretDB on %s over %s (is the address free?): %w", listen, abs, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Embedded{cancel: cancel, done: make(chan struct{}), lock: lock}
	go func() {
		defer close(e.done)
		_ = f.Run(ctx) // always nil; returns when ctx is canceled
	}()
	if unix {
		// net.Listen made the socket as the umask allows; nobody else can
		// reach it meanwhile, its directory being private.
		if err := os.Chmod(listen, 0o600); err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("embedded database: restrict socket %s to its owner: %w", listen, err)
		}
		e.socket, e.url = listen, SocketURL(listen)
		return e, nil
	}
	e.url = f.MongoDBURI()
	ev := logger.Warn()
	msg := "embedded database listening on TCP without authentication: anyone who can reach this address can read, rewrite and delete every flow; leave --embedded-listen unset to use the private Unix socket"
	if host, _, err := net.SplitHostPort(listen); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() || host == "localhost" {
			ev = logger.Info()
			msg = "embedded database listening on loopback TCP without authentication: every local user and process can read, rewrite and delete every flow; leave --embedded-listen unset to use the private Unix socket"
		}
	}
	ev.Str("address", listen).Str("url", e.url).Msg(msg)
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

// URL returns the server's mongodb:// URL: for a socket the path
// percent-encoded as the host (mongodb://%2Fdata%2Fmongodb.sock/, see
// SocketURL), else e.g. "mongodb://127.0.0.1:40123/".
func (e *Embedded) URL() string { return e.url }

// Socket returns the Unix socket path, or "" on TCP.
func (e *Embedded) Socket() string { return e.socket }

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
