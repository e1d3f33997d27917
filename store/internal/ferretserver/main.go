// Command ferretserver runs a FerretDB server as a separate process: the
// store's embedded server (SQLite files in -dir), so that tests can kill it
// (SIGKILL) and restart it on the same port and data directory; or, with
// -postgresql, FerretDB over a PostgreSQL database, the external
// MongoDB-compatible server scripts/bench-external-store.sh measures. It is a
// test and benchmark helper, not part of mission.
//
//	ferretserver -addr 127.0.0.1:PORT -dir DIR
//	ferretserver -addr 127.0.0.1:PORT -postgresql postgres://HOST:PORT/DB
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/store"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	dir := flag.String("dir", "", "data directory of the embedded (SQLite) server")
	pg := flag.String("postgresql", "", "serve this PostgreSQL database instead of SQLite files")
	flag.Parse()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	if *pg != "" {
		if err := servePostgreSQL(*addr, *pg, sig); err != nil {
			fmt.Fprintln(os.Stderr, "ferretserver:", err)
			os.Exit(1)
		}
		return
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ferretserver: -dir or -postgresql is required")
		os.Exit(2)
	}
	logger := zerolog.New(os.Stderr).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	e, err := store.StartEmbedded(*dir, *addr, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretserver:", err)
		os.Exit(1)
	}
	fmt.Println(e.URL()) // the test reads this line to know the server is up
	<-sig
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "ferretserver:", err)
		os.Exit(1)
	}
}

// servePostgreSQL runs FerretDB's PostgreSQL handler until a signal.
func servePostgreSQL(addr, url string, sig <-chan os.Signal) error {
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:      ferretdb.ListenerConfig{TCP: addr},
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Handler:       "postgresql",
		PostgreSQLURL: url,
	})
	if err != nil {
		return fmt.Errorf("start FerretDB over %s: %w", url, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	fmt.Println(f.MongoDBURI())
	<-sig
	cancel()
	<-done
	return nil
}
