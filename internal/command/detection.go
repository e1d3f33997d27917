package command

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/mining"
	"github.com/mission-ids/mission/store"
)

// startDetection starts a mining.Monitor over the flows a collector
// stores when --model is given (nil otherwise; a nil Monitor's Close does
// nothing): incidents go to the log and the incidents collection, alerts
// to the alerts collection (and the log at debug level), both to metrics,
// alerts to --eve-log if given.
func startDetection(c *cli.Context, w *store.Writer, log zerolog.Logger) (*mining.Monitor, error) {
	path := c.String(flagModel)
	if path == "" {
		return nil, nil
	}
	m, err := readModel(path)
	if err != nil {
		return nil, err
	}
	aw, err := store.OpenAlerts(c.Context, w.URL(), c.String(flagMongoCollection), log)
	if err != nil {
		return nil, err
	}
	iw, err := store.OpenIncidents(c.Context, w.URL(), c.String(flagMongoCollection), log)
	if err != nil {
		return nil, errors.Join(err, aw.Close(context.Background()))
	}
	eve, err := openEVE(c, log)
	if err != nil {
		return nil, errors.Join(err, aw.Close(context.Background()), iw.Close(context.Background()))
	}
	log.Info().Str("model", path).Str("eve_log", c.String(flagEVELog)).
		Msg("detection enabled: incidents go to the log and the incidents collection, alerts to the alerts collection, metrics")
	// A live capture (no --read) stopped at shutdown leaves cases that
	// are not over: they are cut, not alarmed for ending early.
	live := c.String(flagRead) == ""
	return mining.NewMonitor(m, aw, log, mining.MonitorOptions{Detector: detectorOptions(c), IncidentSink: iw, EVE: eve, CutOnClose: live}), nil
}

func readModel(path string) (*mining.Model, error) {
	m, err := mining.ReadModelFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w (learn one with mission mine)", flagModel, err)
	}
	return m, nil
}

// closeDetection reports the alerts of the cases still open and stores
// everything.
func closeDetection(mon *mining.Monitor) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return mon.Close(ctx)
}
