package mining

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/metrics"
)

// AlertSink stores the alerts a Monitor raises, each as the JSON encoding
// of an Alert (so a sink need not import this package). The store's
// AlertWriter is one.
type AlertSink interface {
	// PutAlert queues one alert; it must not block. An error means the
	// alert cannot be stored (it was logged all the same).
	PutAlert(alertJSON []byte) error
	// Dropped counts the alerts that could not be stored.
	Dropped() uint64
	// Close stores what is queued and releases the sink.
	Close(ctx context.Context) error
}

// DefaultMonitorTick is how often a Monitor advances its detector by
// default: it releases the order-dependent alerts (the detector reorders
// within DetectorOptions.Reorder, 500 ms by default) and closes idle cases.
const DefaultMonitorTick = 250 * time.Millisecond

// MonitorOptions tune a Monitor. Zero values select the defaults.
type MonitorOptions struct {
	Detector DetectorOptions
	// Ticks drives the detector's clock: the monitor calls Detector.Advance
	// with every time received. Nil: a wall-clock ticker every
	// DefaultMonitorTick, stopped by Close. A channel given here belongs to
	// the caller; the monitor stops reading it at Close.
	Ticks <-chan time.Time
}

// Monitor runs a Detector as a service: flows come in through Observe
// (from any goroutine), the clock from MonitorOptions.Ticks, and every
// alert goes to the log (warn level, the alert as JSON under "alert") and
// to the sink. Its counters are exported by Metrics.
type Monitor struct {
	mu     sync.Mutex // guards det and closed; alerts are reported under it
	det    *Detector
	closed bool

	sink AlertSink
	log  zerolog.Logger

	ticker    *time.Ticker // the default clock, nil when Ticks was given
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewMonitor starts detection with model m: alerts go to log and to sink
// (nil: the log only). Close it to report the cases still open.
func NewMonitor(m *Model, sink AlertSink, log zerolog.Logger, opts MonitorOptions) *Monitor {
	mon := &Monitor{det: NewDetector(m, opts.Detector), sink: sink, log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
	ticks := opts.Ticks
	if ticks == nil {
		mon.ticker = time.NewTicker(DefaultMonitorTick)
		ticks = mon.ticker.C
	}
	go mon.run(ticks)
	return mon
}

func (mon *Monitor) run(ticks <-chan time.Time) {
	defer close(mon.done)
	for {
		select {
		case <-mon.stop:
			return
		case now := <-ticks:
			mon.mu.Lock()
			if !mon.closed {
				mon.report(mon.det.Advance(now))
			}
			mon.mu.Unlock()
		}
	}
}

// Observe checks one flow (the collector's Flows hook). Flows observed
// after Close are ignored.
func (mon *Monitor) Observe(r *flow.Record) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if mon.closed {
		return
	}
	mon.report(mon.det.Observe(r))
}

// report logs and stores alerts; the caller holds mu, so nothing is put
// into the sink once Close has closed it.
func (mon *Monitor) report(alerts []Alert) {
	for i := range alerts {
		js, err := json.Marshal(&alerts[i])
		if err != nil {
			continue
		}
		mon.log.Warn().RawJSON("alert", js).Msg(alerts[i].Message)
		if mon.sink != nil {
			_ = mon.sink.PutAlert(js) // counted by the sink; the alert is logged
		}
	}
}

// Metrics emits the detection counters (a metrics.Func).
func (mon *Monitor) Metrics(e metrics.Emitter) {
	mon.mu.Lock()
	st := mon.det.Stats()
	mon.mu.Unlock()
	for check, n := range st.Alerts {
		e.Counter("mission_detect_alerts_total", "Alerts raised, by check.", float64(n), "check", string(check))
	}
	e.Counter("mission_detect_flows_total", "Flows checked against the model.", float64(st.Flows))
	e.Gauge("mission_detect_open_cases", "Cases (correlation ids) open now.", float64(st.OpenCases))
	var dropped uint64
	if mon.sink != nil {
		dropped = mon.sink.Dropped()
	}
	e.Counter("mission_detect_alerts_dropped_total", "Alerts that could not be stored (still logged).", float64(dropped))
}

// Close stops the clock, reports the alerts of the cases still open
// (their end-of-case checks) and closes the sink within ctx. Closing a nil
// Monitor, or closing twice, does nothing more.
func (mon *Monitor) Close(ctx context.Context) error {
	if mon == nil {
		return nil
	}
	mon.closeOnce.Do(func() {
		close(mon.stop)
		<-mon.done
		if mon.ticker != nil {
			mon.ticker.Stop()
		}
		mon.mu.Lock()
		mon.report(mon.det.Flush())
		mon.closed = true
		mon.mu.Unlock()
		if mon.sink != nil {
			if err := mon.sink.Close(ctx); err != nil {
				mon.closeErr = fmt.Errorf("mining: close alert sink: %w", err)
			}
		}
	})
	return mon.closeErr
}
