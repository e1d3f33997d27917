// Command ferretserver runs the store's embedded FerretDB server as a
// separate process, so that tests can kill it (SIGKILL) and restart it on the
// same port and data directory. It is a test helper, not part of mission.
//
//	ferretserver -addr 127.0.0.1:PORT -dir DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/store"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	dir := flag.String("dir", "", "data directory")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "ferretserver: -dir is required")
		os.Exit(2)
	}
	logger := zerolog.New(os.Stderr).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	e, err := store.StartEmbedded(*dir, *addr, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferretserver:", err)
		os.Exit(1)
	}
	fmt.Println(e.URL()) // the test reads this line to know the server is up
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	if err := e.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "ferretserver:", err)
		os.Exit(1)
	}
}
