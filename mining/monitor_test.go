package mining

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/metrics"
)

// memSink is an AlertSink in memory.
type memSink struct {
	mu       sync.Mutex
	alerts   []Alert
	dropped  uint64
	closed   bool
	closeErr error
	late     int // alerts put after Close
}

func (s *memSink) PutAlert(js []byte) error {
	var a Alert
	if err := json.Unmarshal(js, &a); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.late++
	}
	s.alerts = append(s.alerts, a)
	return nil
}

func (s *memSink) Dropped() uint64 { s.mu.Lock(); defer s.mu.Unlock(); return s.dropped }

func (s *memSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.closeErr
}

func (s *memSink) snapshot() []Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Alert(nil), s.alerts...)
}

// has reports whether the sink holds an alert of check whose message
// contains what.
func (s *memSink) has(check Check, what string) bool {
	for _, a := range s.snapshot() {
		if a.Check == check && strings.Contains(a.Message, what) {
			return true
		}
	}
	return false
}

// syncBuffer is a log destination safe for the monitor's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// lines returns the log lines as JSON objects.
func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// gather scrapes fn and returns each metric's value by name and labels
// ("name" or "name{label=value}").
func gather(t *testing.T, fn metrics.Func) map[string]float64 {
	mfs, err := metrics.Registry(fn).Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "mission_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			k := mf.GetName()
			for _, l := range m.GetLabel() {
				k += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[k] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[k] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestMonitor(t *testing.T) {
	m := trainedModel(t)
	s := newSim(21)
	start := t0.Add(120 * time.Hour)
	at := s.startPlant(start)
	attacks()[2].run(s, at) // wildcard and $SYS subscription: alerted at once
	// A case that starts with the controller's toggle: the start check
	// waits for the reorder delay; the case stays open (no end, no state).
	lone := at.Add(2 * time.Second)
	s.up(controller, flow.Publish, lone, toggleTopic("led"), []byte("0badcafe-0000-4000-8000-000000000001"))
	recs := s.sorted()

	sink := &memSink{dropped: 3}
	var logBuf syncBuffer
	ticks := make(chan time.Time)
	wall := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	mon := NewMonitor(m, sink, zerolog.New(&logBuf), MonitorOptions{Ticks: ticks, Now: func() time.Time { return wall }})
	for i := range recs {
		mon.Observe(&recs[i])
	}

	// The attack's alerts reach the sink as Observe returns (the flows
	// after them moved the flow clock past the reorder window).
	require.True(t, sink.has(CheckSubscription, `"plant/#"`), "%v", sink.snapshot())
	require.True(t, sink.has(CheckSubscription, `"$SYS/#"`), "%v", sink.snapshot())
	require.False(t, sink.has(CheckDirectlyFollows, "starts with"), "released before the reorder delay")

	// Detection runs on flow time: a tick soon after the last flow
	// changes nothing …
	ticks <- wall.Add(time.Second)
	ticks <- wall.Add(time.Second)
	require.False(t, sink.has(CheckDirectlyFollows, "starts with"), "released before the reorder delay")
	// … but after DrainAfter (2 s) of wall time without a flow, the held
	// flows are released and the reorder-delayed checks run: start
	// activity and always-before.
	ticks <- wall.Add(3 * time.Second)
	require.Eventually(t, func() bool {
		return sink.has(CheckDirectlyFollows, "starts with") && sink.has(CheckSkeleton, "before it")
	}, 10*time.Second, time.Millisecond, "%v", sink.snapshot())
	require.False(t, sink.has(CheckDirectlyFollows, "ends with"), "the case is still open")

	got := gather(t, mon.Metrics)
	require.Equal(t, map[string]float64{
		"mission_detect_alerts_total{check=subscription}":        2,
		"mission_detect_alerts_total{check=directly-follows}":    1,
		"mission_detect_alerts_total{check=skeleton}":            1,
		"mission_detect_incidents_total{check=subscription}":     1,
		"mission_detect_incidents_total{check=directly-follows}": 1,
		"mission_detect_incidents_total{check=skeleton}":         1,
		"mission_detect_open_incidents":                          3,
		"mission_detect_incidents_closed_early_total":            0,
		"mission_detect_flows_total":                             float64(len(recs)),
		"mission_detect_open_cases":                              1,
		"mission_detect_evicted_cases_total":                     0,
		"mission_detect_sequencer_flows":                         0,
		"mission_detect_subscription_filters":                    17, // controller 10, actuators 5, doorSensor 2
		"mission_detect_subscriptions_dropped_total":             0,
		"mission_detect_undelivered_cases_total":                 0,
		"mission_detect_connections":                             0,
		"mission_detect_cut_cases_total":                         0,
		"mission_detect_connections_evicted_total":               0,
		"mission_detect_identities_inferred_total":               0,
		"mission_detect_identities_withdrawn_total":              0,
		"mission_detect_unidentified_connections_total":          0,
		"mission_detect_identity_flows_total{identity=inferred}": 0,
		"mission_detect_identity_flows_total{identity=none}":     0,
		"mission_detect_eavesdropped_total":                      0,
		"mission_detect_sequencer_late_total":                    0,
		"mission_detect_sequencer_forced_total":                  0,
		"mission_detect_alerts_dropped_total":                    3,
	}, got)

	// Close reports the end-of-case checks of the open case and closes the sink.
	require.NoError(t, mon.Close(context.Background()))
	require.True(t, sink.has(CheckDirectlyFollows, "ends with"), "%v", sink.snapshot())
	require.True(t, sink.has(CheckSkeleton, "not followed by"), "%v", sink.snapshot())
	require.True(t, sink.closed)
	require.Zero(t, gather(t, mon.Metrics)["mission_detect_open_cases"])

	// Every alert was logged at debug level with the alert as JSON; the
	// incidents at warn (opened) and info (closed) level.
	alerts := sink.snapshot()
	var logged []Alert
	incidents := map[string][]string{}
	for _, l := range logBuf.lines(t) {
		if inc, ok := l["incident"].(map[string]any); ok {
			incidents[inc["check"].(string)] = append(incidents[inc["check"].(string)], l["level"].(string))
			continue
		}
		require.Equal(t, "debug", l["level"])
		js, err := json.Marshal(l["alert"])
		require.NoError(t, err)
		var a Alert
		require.NoError(t, json.Unmarshal(js, &a))
		require.Equal(t, a.Message, l["message"])
		logged = append(logged, a)
	}
	require.Equal(t, alerts, logged)
	require.Equal(t, map[string][]string{"subscription": {"warn", "info"}, "directly-follows": {"warn", "info"},
		"skeleton": {"warn", "info"}}, incidents)

	// After Close: flows are ignored, Close does nothing more.
	mon.Observe(&recs[len(recs)-1])
	require.NoError(t, mon.Close(context.Background()))
	require.Zero(t, sink.late)
	require.Len(t, sink.snapshot(), len(alerts))
}

func TestMonitorClose(t *testing.T) {
	var nilMon *Monitor
	require.NoError(t, nilMon.Close(context.Background()))

	// The default wall-clock ticker, no sink: Close stops it.
	mon := NewMonitor(&Model{}, nil, zerolog.Nop(), MonitorOptions{})
	mon.Observe(&flow.Record{ControlType: flow.Publish, CorrelationData: []byte{1}})
	require.Equal(t, 0.0, gather(t, mon.Metrics)["mission_detect_alerts_dropped_total"])
	require.NoError(t, mon.Close(context.Background()))

	// The sink's close error is returned, wrapped.
	errDown := errors.New("database down")
	sink := &memSink{closeErr: errDown}
	mon = NewMonitor(&Model{}, sink, zerolog.Nop(), MonitorOptions{Ticks: make(chan time.Time)})
	err := mon.Close(context.Background())
	require.ErrorIs(t, err, errDown)
	require.ErrorIs(t, mon.Close(context.Background()), errDown)
}

func TestReadModelFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "model.json")
	var buf bytes.Buffer
	require.NoError(t, trainedModel(t).WriteJSON(&buf))
	require.NoError(t, os.WriteFile(good, buf.Bytes(), 0o644))
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"version": 7, "rateWindowNs": 1}`), 0o644))

	for _, tc := range []struct {
		name, path string
		is         error
		contains   string
	}{
		{"good", good, nil, ""},
		{"missing", filepath.Join(dir, "none.json"), os.ErrNotExist, "none.json"},
		{"other version", bad, ErrModelVersion, "bad.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ReadModelFile(tc.path)
			if tc.contains == "" {
				require.NoError(t, err)
				require.Len(t, m.Activities, 30)
				return
			}
			require.ErrorIs(t, err, tc.is)
			require.Contains(t, err.Error(), tc.contains)
			require.NotContains(t, err.Error(), "--")
		})
	}
}
