package command

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/metrics"
	"github.com/mission-ids/mission/mining"
	"github.com/mission-ids/mission/store"
)

// detection runs a learned model over the flows a collector stores
// (--model): alerts go to the log as JSON, to the alerts collection and
// to metrics.
type detection struct {
	mu     sync.Mutex
	det    *mining.Detector
	alerts *store.AlertWriter
	log    zerolog.Logger
	stop   chan struct{}
	done   chan struct{}
}

func startDetection(c *cli.Context, w *store.Writer, log zerolog.Logger) (*detection, error) {
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
	d := &detection{det: mining.NewDetector(m, mining.DetectorOptions{}), alerts: aw, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(d.done)
		t := time.NewTicker(250 * time.Millisecond) // releases order-dependent alerts (the detector reorders within 500 ms)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case now := <-t.C:
				d.mu.Lock()
				alerts := d.det.Advance(now)
				d.mu.Unlock()
				d.report(alerts)
			}
		}
	}()
	log.Info().Str("model", path).Msg("detection enabled: alerts go to the log, the alerts collection and metrics")
	return d, nil
}

func readModel(path string) (*mining.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagModel, err)
	}
	defer f.Close()
	m, err := mining.ReadModel(f)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w (learn one with mission mine)", flagModel, path, err)
	}
	return m, nil
}

// observe is the collector's Flows hook.
func (d *detection) observe(r *flow.Record) {
	d.mu.Lock()
	alerts := d.det.Observe(r)
	d.mu.Unlock()
	d.report(alerts)
}

func (d *detection) report(alerts []mining.Alert) {
	for i := range alerts {
		js, err := json.Marshal(&alerts[i])
		if err != nil {
			continue
		}
		d.log.Warn().RawJSON("alert", js).Msg(alerts[i].Message)
		if doc, err := store.AlertDocument(js); err == nil {
			d.alerts.Put(doc)
		}
	}
}

func (d *detection) metrics(e metrics.Emitter) {
	d.mu.Lock()
	st := d.det.Stats()
	d.mu.Unlock()
	for check, n := range st.Alerts {
		e.Counter("mission_detect_alerts_total", "Alerts raised, by check.", float64(n), "check", string(check))
	}
	e.Counter("mission_detect_flows_total", "Flows checked against the model.", float64(st.Flows))
	e.Gauge("mission_detect_open_cases", "Cases (correlation ids) open now.", float64(st.OpenCases))
	e.Counter("mission_detect_alerts_dropped_total", "Alerts that could not be stored (still logged).", float64(d.alerts.Dropped()))
}

// close reports the alerts of the cases still open and stores everything.
func (d *detection) close() error {
	if d == nil {
		return nil
	}
	close(d.stop)
	<-d.done
	d.mu.Lock()
	alerts := d.det.Flush()
	d.mu.Unlock()
	d.report(alerts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.alerts.Close(ctx)
}
