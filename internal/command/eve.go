package command

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/mining"
)

const flagEVELog = "eve-log"

// eveFlag writes alerts as Suricata EVE JSON lines (detect, collect,
// all-in-one).
// benignFlag names the protocol anomalies detection does not alarm.
func benignFlag() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagBenignAnomalies, Value: strings.Join(mining.DefaultBenignAnomalies, ","), EnvVars: []string{"BENIGN_ANOMALIES"},
			Usage: "comma-separated protocol anomalies (docs/anomalies.md) that raise no protocol-anomaly alert; none: alarm all"},
	}
}

// detectorOptions are the detector settings the flags give.
func detectorOptions(c *cli.Context) mining.DetectorOptions {
	benign := []string{}
	if v := strings.TrimSpace(c.String(flagBenignAnomalies)); v != "" && v != "none" {
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				benign = append(benign, n)
			}
		}
	}
	return mining.DetectorOptions{BenignAnomalies: benign}
}

const flagBenignAnomalies = "benign-anomalies"

func eveFlag() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagEVELog, EnvVars: []string{"EVE_LOG"},
			Usage: "append alerts as Suricata EVE JSON lines to this file (reopened on SIGHUP, for logrotate)"},
	}
}

// openEVE opens the --eve-log file (nil without the flag).
func openEVE(c *cli.Context, log zerolog.Logger) (*mining.EVEWriter, error) {
	path := c.String(flagEVELog)
	if path == "" {
		return nil, nil
	}
	f, err := openReopenable(path, log)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagEVELog, err)
	}
	return mining.NewEVEWriter(f), nil
}

// reopenable is an append-mode file that reopens its path on SIGHUP, so
// logrotate can move it away (then send SIGHUP, as for Suricata).
type reopenable struct {
	mu   sync.Mutex
	path string
	f    *os.File
	hup  chan os.Signal
	done chan struct{}
	log  zerolog.Logger
}

func openReopenable(path string, log zerolog.Logger) (*reopenable, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	r := &reopenable{path: path, f: f, hup: make(chan os.Signal, 1), done: make(chan struct{}), log: log}
	signal.Notify(r.hup, syscall.SIGHUP)
	go r.watch()
	return r, nil
}

func (r *reopenable) watch() {
	for {
		select {
		case <-r.done:
			return
		case <-r.hup:
			if err := r.reopen(); err != nil {
				r.log.Error().Err(err).Str("file", r.path).Msg("cannot reopen EVE log; still writing to the old file")
			} else {
				r.log.Info().Str("file", r.path).Msg("EVE log reopened")
			}
		}
	}
}

func (r *reopenable) reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	return old.Close()
}

func (r *reopenable) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Write(p)
}

func (r *reopenable) Close() error {
	signal.Stop(r.hup)
	close(r.done)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}
