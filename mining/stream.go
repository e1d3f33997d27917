package mining

import (
	"time"

	"github.com/mission-ids/mission/flow"
)

// Stream is detection end to end on flow time: flows go through a
// Sequencer (start order, DetectorOptions.Reorder), a Detector and the
// incident grouping; alerts and incident changes go to a Handler. mission
// detect and the Monitor (collect, all-in-one) both run one, so the same
// flows raise the same alerts and incidents however they are read. Not
// safe for concurrent use.
type Stream struct {
	seq     *Sequencer
	det     *Detector
	inc     *Incidents
	h       Handler
	reorder time.Duration
	swept   int64 // second of flow time of the last incident sweep
	closed  func(*Incident)
	observe func(*flow.Record)
}

// Handler receives a Stream's output; nil fields are skipped.
type Handler struct {
	// Alert is called for every alert, in order.
	Alert func(a *Alert)
	// Incident is called when an incident opens, grows (every alert) and
	// closes. The incident is the Stream's own: read it during the call.
	Incident func(inc *Incident, change IncidentChange)
}

// StreamOptions tune a Stream. Zero values select the defaults.
type StreamOptions struct {
	Detector  DetectorOptions
	Incidents IncidentOptions
	// SequencerMax bounds the flows held for ordering (DefaultSequencerMax).
	SequencerMax int
}

// NewStream prepares detection with model m.
func NewStream(m *Model, opts StreamOptions, h Handler) *Stream {
	opts.Detector.defaults()
	// The sequencer waits Reorder; the detector behind it gets flows in
	// start order and need not wait again (1 ns: no delay).
	dopts := opts.Detector
	dopts.Reorder = time.Nanosecond
	s := &Stream{det: NewDetector(m, dopts), inc: NewIncidents(opts.Incidents), h: h,
		seq: NewSequencer(opts.Detector.Reorder, opts.SequencerMax), reorder: opts.Detector.Reorder}
	s.closed = func(inc *Incident) {
		if s.h.Incident != nil {
			s.h.Incident(inc, IncidentClosed)
		}
	}
	s.observe = func(r *flow.Record) {
		s.report(s.det.Observe(r))
		s.sweep(s.det.Clock().Add(-s.reorder))
	}
	return s
}

// Observe takes one flow (copied when held).
func (s *Stream) Observe(r *flow.Record) { s.seq.Push(r, s.observe) }

// Drain releases the flows held for ordering and runs the order-dependent
// checks still waiting (no flow came for a while: nothing earlier will).
func (s *Stream) Drain() {
	s.seq.Drain(s.observe)
	s.report(s.det.Settle())
}

// Advance moves detection to now without a flow (Detector.Advance) and
// closes the incidents idle at now.
func (s *Stream) Advance(now time.Time) {
	s.report(s.det.Advance(now))
	s.inc.Advance(now, s.closed)
}

// Flush releases everything: the flows held, every open case with its
// end-of-case checks, every open incident (at the end of input).
func (s *Stream) Flush() {
	s.Drain()
	s.report(s.det.Flush())
	s.inc.Flush(s.closed)
}

// Cut releases the flows held and then cuts the open cases: the live
// capture stopped, they are not over (Detector.Cut). Flush after it
// closes them without end-of-case checks.
func (s *Stream) Cut() {
	s.Drain()
	s.det.Cut()
}

// Clock is the detector's clock (the latest flow start released).
func (s *Stream) Clock() time.Time { return s.det.Clock() }

// Detector returns the stream's detector (for its Stats).
func (s *Stream) Detector() *Detector { return s.det }

// Stats of the parts.
func (s *Stream) Stats() (DetectorStats, SequencerStats, IncidentStats) {
	return s.det.Stats(), s.seq.Stats(), s.inc.Stats()
}

func (s *Stream) report(alerts []Alert) {
	for i := range alerts {
		a := &alerts[i]
		if s.h.Alert != nil {
			s.h.Alert(a)
		}
		inc, change := s.inc.Add(a, s.closed)
		if s.h.Incident != nil {
			s.h.Incident(inc, change)
		}
	}
}

// sweep closes idle incidents once per second of flow time.
func (s *Stream) sweep(now time.Time) {
	if sec := now.Unix(); sec != s.swept {
		s.swept = sec
		s.inc.Advance(now, s.closed)
	}
}
