package mining

import (
	"context"
	"encoding/json"
	"errors"
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

// IncidentSink stores incidents, each as the JSON encoding of an
// Incident with its id, so a sink need not import this package; an
// incident that grows is put again with the same id (to be replaced, not
// added). The store's IncidentWriter is one.
type IncidentSink interface {
	// PutIncident queues one incident; it must not block.
	PutIncident(id string, incidentJSON []byte) error
	Dropped() uint64
	Close(ctx context.Context) error
}

// DefaultMonitorTick is how often a Monitor looks at its clock by
// default: it stores and logs the incidents that grew and, when no flow
// comes, releases held flows and closes idle cases (MonitorOptions).
const DefaultMonitorTick = 250 * time.Millisecond

// MonitorOptions tune a Monitor. Zero values select the defaults.
type MonitorOptions struct {
	Detector  DetectorOptions
	Incidents IncidentOptions
	// Ticks drives the monitor's wall clock: every time received is
	// "now". Nil: a wall-clock ticker every DefaultMonitorTick, stopped
	// by Close. A channel given here belongs to the caller; the monitor
	// stops reading it at Close.
	Ticks <-chan time.Time
	// Now is the wall clock Observe notes the arrival of a flow by
	// (default time.Now); tests that give Ticks give Now too.
	Now func() time.Time
	// Detection runs on flow time: the detector's clock is the flows'
	// capture times, never the wall clock, so a fast replay raises what
	// the same flows raise offline. Only when no flow comes at all does
	// the wall clock help: after DrainAfter of wall time without a flow
	// the flows held for ordering are released (default 2 s), and after
	// IdleAdvance (default 2 × CaseTimeout) the detector is advanced by
	// the wall time elapsed since the last flow, so idle cases close and
	// incidents end on a quiet network.
	DrainAfter  time.Duration
	IdleAdvance time.Duration
	// Incidents go to the log when opened and closed; while growing, at
	// most once per LogEvery (default 10 s) each.
	LogEvery time.Duration
	// IncidentSink stores incidents (nil: none).
	IncidentSink IncidentSink
	// EVE writes alerts as Suricata EVE JSON lines (nil: none).
	EVE *EVEWriter
	// CutOnClose: the flows come from a live capture, so the cases still
	// open at Close are cut by the shutdown, not over: Close closes them
	// without end-of-case checks (counted as cut). Without it (a file
	// read to its end) Close runs their end-of-case checks.
	CutOnClose bool
}

// Monitor runs detection (a Stream) as a service: flows come in through
// Observe (from any goroutine); every alert goes to the log at debug level
// (the alert as JSON under "alert"), to the AlertSink and to EVE; incidents
// go to the log at warn level (opened, then growing at most every
// LogEvery, closed; the incident under "incident") and to the
// IncidentSink. Its counters are exported by Metrics.
type Monitor struct {
	mu     sync.Mutex // guards everything below but the clock plumbing
	st     *Stream
	closed bool
	opts   MonitorOptions

	sink     AlertSink
	log      zerolog.Logger
	lastFlow time.Time // wall time of the last Observe
	idleFrom time.Time // flow time advanced to while idle (zero: not idle)
	drained  bool      // Drain ran since the last flow
	dirty    map[*Incident]struct{}
	logged   map[*Incident]time.Time // wall time an open incident was last logged
	eveErr   uint64

	ticker    *time.Ticker // the default clock, nil when Ticks was given
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// NewMonitor starts detection with model m: alerts go to log and to sink
// (nil: the log only). Close it to report the cases still open.
func NewMonitor(m *Model, sink AlertSink, log zerolog.Logger, opts MonitorOptions) *Monitor {
	opts.Detector.defaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DrainAfter <= 0 {
		opts.DrainAfter = 2 * time.Second
	}
	if opts.IdleAdvance <= 0 {
		opts.IdleAdvance = 2 * opts.Detector.CaseTimeout
	}
	if opts.LogEvery <= 0 {
		opts.LogEvery = 10 * time.Second
	}
	mon := &Monitor{sink: sink, log: log, opts: opts, lastFlow: opts.Now(),
		dirty: map[*Incident]struct{}{}, logged: map[*Incident]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	mon.st = NewStream(m, StreamOptions{Detector: opts.Detector, Incidents: opts.Incidents},
		Handler{Alert: mon.alert, Incident: mon.incident})
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
				mon.tick(now)
			}
			mon.mu.Unlock()
		}
	}
}

// tick applies the wall-clock fallback and reports grown incidents.
func (mon *Monitor) tick(now time.Time) {
	quiet := now.Sub(mon.lastFlow)
	if quiet >= mon.opts.DrainAfter && !mon.drained {
		mon.st.Drain()
		mon.drained = true
	}
	if quiet >= mon.opts.IdleAdvance {
		if mon.idleFrom.IsZero() {
			mon.idleFrom = mon.st.Clock()
		}
		if !mon.idleFrom.IsZero() {
			mon.st.Advance(mon.idleFrom.Add(quiet))
		}
	}
	mon.flushIncidents(now)
	mon.flushEVE()
}

// Observe checks one flow (the collector's Flows hook). Flows observed
// after Close are ignored.
func (mon *Monitor) Observe(r *flow.Record) {
	mon.mu.Lock()
	defer mon.mu.Unlock()
	if mon.closed {
		return
	}
	mon.lastFlow, mon.idleFrom, mon.drained = mon.opts.Now(), time.Time{}, false
	if e := mon.opts.EVE; e != nil && r.Anomalies != 0 {
		if err := e.Anomalies(r); err != nil {
			mon.eveError(err)
		}
	}
	mon.st.Observe(r)
}

// alert logs and stores an alert; the caller holds mu, so nothing is put
// into the sink once Close has closed it.
func (mon *Monitor) alert(a *Alert) {
	js, err := json.Marshal(a)
	if err != nil {
		return
	}
	mon.log.Debug().RawJSON("alert", js).Msg(a.Message)
	if mon.sink != nil {
		_ = mon.sink.PutAlert(js) // counted by the sink; the alert is logged
	}
	if mon.opts.EVE != nil {
		if err := mon.opts.EVE.Alert(a); err != nil {
			mon.eveError(err)
		}
	}
}

func (mon *Monitor) eveError(err error) {
	mon.eveErr++
	if mon.eveErr%1000 == 1 {
		mon.log.Error().Err(err).Uint64("errors", mon.eveErr).Msg("cannot write EVE log")
	}
}

func (mon *Monitor) flushEVE() {
	if mon.opts.EVE != nil {
		if err := mon.opts.EVE.Flush(); err != nil {
			mon.eveError(err)
		}
	}
}

// incident reports an incident change: opened and closed at once, grown
// ones at the next tick.
func (mon *Monitor) incident(inc *Incident, change IncidentChange) {
	switch change {
	case IncidentOpened:
		mon.putIncident(inc, "incident opened")
		mon.logged[inc] = mon.opts.Now()
	case IncidentUpdated:
		mon.dirty[inc] = struct{}{}
	case IncidentClosed:
		delete(mon.dirty, inc)
		delete(mon.logged, inc)
		mon.putIncident(inc, "incident closed")
	}
}

func (mon *Monitor) flushIncidents(now time.Time) {
	for inc := range mon.dirty {
		msg := ""
		if now.Sub(mon.logged[inc]) >= mon.opts.LogEvery {
			msg = "incident updated"
			mon.logged[inc] = now
		}
		mon.putIncident(inc, msg)
	}
	clear(mon.dirty)
}

// putIncident stores inc and, with a msg, logs it.
func (mon *Monitor) putIncident(inc *Incident, msg string) {
	js, err := json.Marshal(inc)
	if err != nil {
		return
	}
	if msg != "" {
		ev := mon.log.Warn()
		if inc.Closed {
			ev = mon.log.Info()
		}
		ev.RawJSON("incident", js).Msg(msg + ": " + inc.Message)
	}
	if mon.opts.IncidentSink != nil {
		_ = mon.opts.IncidentSink.PutIncident(inc.ID, js)
	}
}

// Metrics emits the detection counters (a metrics.Func).
func (mon *Monitor) Metrics(e metrics.Emitter) {
	mon.mu.Lock()
	st, seq, inc := mon.st.Stats()
	mon.mu.Unlock()
	for check, n := range st.Alerts {
		e.Counter("mission_detect_alerts_total", "Alerts raised, by check.", float64(n), "check", string(check))
	}
	for check, n := range inc.Opened {
		e.Counter("mission_detect_incidents_total", "Incidents opened, by check.", float64(n), "check", string(check))
	}
	e.Gauge("mission_detect_open_incidents", "Incidents open now (an alert within the incident idle time).", float64(inc.Open))
	e.Counter("mission_detect_incidents_closed_early_total", "Incidents closed early at the open-incident bound.", float64(inc.ClosedEarly))
	e.Counter("mission_detect_flows_total", "Flows checked against the model.", float64(st.Flows))
	e.Gauge("mission_detect_open_cases", "Cases (correlation ids) open now.", float64(st.OpenCases))
	e.Counter("mission_detect_evicted_cases_total", "Open cases evicted at the bound, without their end-of-case checks.", float64(st.Evicted))
	e.Gauge("mission_detect_subscription_filters", "Topic filters held by clients, as seen (subscription state).", float64(st.Filters))
	e.Counter("mission_detect_subscriptions_dropped_total", "Subscription state not kept at its bounds (treated as unknown).", float64(st.SubsDropped))
	e.Counter("mission_detect_undelivered_cases_total", "Cases that ended at a PUBLISH nobody was subscribed to (not alarmed).", float64(st.Undelivered))
	e.Counter("mission_detect_eavesdropped_total", "Deliveries through an alerted (reconnaissance) subscription.", float64(st.Eavesdropped))
	e.Counter("mission_detect_cut_cases_total", "Cases cut by a capture boundary (a connection picked up midstream, a live capture stopped): not checked further.", float64(st.CutCases))
	e.Gauge("mission_detect_connections", "Connections without client id held for identity inference.", float64(st.Connections))
	e.Counter("mission_detect_connections_evicted_total", "Connections without client id evicted at the bound (least recently seen).", float64(st.ConnsEvicted))
	e.Counter("mission_detect_identities_inferred_total", "Connections without client id whose client was inferred from the model.", float64(st.Inferred))
	e.Counter("mission_detect_identities_withdrawn_total", "Inferred identities withdrawn (a later flow contradicted the model).", float64(st.Withdrawn))
	e.Counter("mission_detect_unidentified_connections_total", "Connections left unidentified (one unidentified-connection notice each).", float64(st.Unidentified))
	e.Counter("mission_detect_identity_flows_total", "Flows without client id, by outcome.", float64(st.InferredFlows), "identity", "inferred")
	e.Counter("mission_detect_identity_flows_total", "Flows without client id, by outcome.", float64(st.UnidentifiedFlows), "identity", "none")
	e.Gauge("mission_detect_sequencer_flows", "Flows held to be put in start order.", float64(seq.Buffered))
	e.Counter("mission_detect_sequencer_late_total", "Flows that came later than the reorder window.", float64(seq.Late))
	e.Counter("mission_detect_sequencer_forced_total", "Flows released early at the sequencer bound.", float64(seq.Forced))
	var dropped uint64
	if mon.sink != nil {
		dropped = mon.sink.Dropped()
	}
	e.Counter("mission_detect_alerts_dropped_total", "Alerts that could not be stored (still logged).", float64(dropped))
	if s := mon.opts.IncidentSink; s != nil {
		e.Counter("mission_detect_incidents_dropped_total", "Incident writes that could not be stored (still logged).", float64(s.Dropped()))
	}
}

// Close stops the clock, reports what is still open (held flows, the
// end-of-case checks of open cases, open incidents) and closes the sinks
// within ctx. Closing a nil Monitor, or closing twice, does nothing more.
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
		if mon.opts.CutOnClose {
			mon.st.Cut()
		}
		mon.st.Flush()
		mon.flushIncidents(mon.opts.Now())
		mon.flushEVE()
		mon.closed = true
		mon.mu.Unlock()
		var errs []error
		if mon.sink != nil {
			if err := mon.sink.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("mining: close alert sink: %w", err))
			}
		}
		if s := mon.opts.IncidentSink; s != nil {
			if err := s.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("mining: close incident sink: %w", err))
			}
		}
		if e := mon.opts.EVE; e != nil {
			if err := e.Close(); err != nil {
				errs = append(errs, fmt.Errorf("mining: close EVE log: %w", err))
			}
		}
		mon.closeErr = errors.Join(errs...)
	})
	return mon.closeErr
}
