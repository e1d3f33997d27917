package command

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	opts, err := namedDetectorOptions(c, m, log)
	if err != nil {
		return nil, errors.Join(err, aw.Close(context.Background()), iw.Close(context.Background()), closeEVE(eve))
	}
	log.Info().Str("model", path).Str("eve_log", c.String(flagEVELog)).
		Msg("detection enabled: incidents go to the log and the incidents collection, alerts to the alerts collection, metrics")
	// A live capture (no --read) stopped at shutdown leaves cases that
	// are not over: they are cut, not alarmed for ending early.
	live := c.String(flagRead) == ""
	return mining.NewMonitor(m, aw, log, mining.MonitorOptions{Detector: opts, IncidentSink: iw, EVE: eve, CutOnClose: live}), nil
}

func closeEVE(eve *mining.EVEWriter) error {
	if eve == nil {
		return nil
	}
	return eve.Close()
}

// readNames reads the --names file (nil without the flag).
func readNames(c *cli.Context) (*mining.Names, error) {
	path := c.String(flagNames)
	if path == "" {
		return nil, nil
	}
	n, err := mining.ReadNamesFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagNames, err)
	}
	return n, nil
}

// namedDetectorOptions are the detector settings of the flags, with the
// --names table if given: it replaces the table the model was mined with
// (devices renumbered keep their names, and so the model's).
func namedDetectorOptions(c *cli.Context, m *mining.Model, log zerolog.Logger) (mining.DetectorOptions, error) {
	opts := detectorOptions(c)
	names, err := readNames(c)
	if err != nil || names == nil {
		return opts, err
	}
	if !slices.Equal(names.Entries(), m.Names) {
		log.Info().Str("names", c.String(flagNames)).Int("entries", names.Len()).Int("model_entries", len(m.Names)).
			Msg("naming endpoints by the names file, not by the table the model was mined with")
	}
	opts.Names = names
	return opts, nil
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
