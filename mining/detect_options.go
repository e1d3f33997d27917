package mining

import "time"

// DetectorOptions tune a Detector. Zero values select the defaults.
type DetectorOptions struct {
	// BenignAnomalies are the protocol anomalies that raise no
	// protocol-anomaly alert (they stay on the flow and in EVE anomaly
	// events). Nil takes DefaultBenignAnomalies; an empty, non-nil slice
	// alarms every anomaly.
	BenignAnomalies []string
	// MaxOpenCases bounds the cases held open; at the bound the case seen
	// least recently is evicted without its end-of-case checks (default 10000).
	MaxOpenCases int
	// MaxCaseEvents bounds the events remembered per case (default 64);
	// later events are counted, and a case that long already raised a
	// skeleton alert unless the model allows such cases.
	MaxCaseEvents int
	// CaseTimeout closes a case that saw no event for this long (default 30 s).
	CaseTimeout time.Duration
	// RateFactor and RateSlack make the rate bound: a client may start
	// ceil(learned × RateFactor) + RateSlack flows of a type per window
	// (defaults 2 and 5).
	RateFactor float64
	RateSlack  int
	// Zeta and MinTemporalSlack make the temporal bound: a deviation from
	// the mean beyond max(Zeta × standard deviation, MinTemporalSlack)
	// alerts (defaults 6 and 1 s). Pairs seen fewer than MinTemporalCount
	// times in training are not checked (default 3).
	Zeta             float64
	MinTemporalSlack time.Duration
	MinTemporalCount int
	// Repeat suppresses repeats of the same per-client alert (check,
	// client, topic or filter) within this time (default 60 s).
	Repeat time.Duration
	// MaxTracked bounds the per-client rate counters and the suppression
	// table each (default 10000).
	MaxTracked int
	// Reorder is how late a flow may arrive compared with flows that
	// started after it (default 500 ms). A collector hands flows over when
	// they end, not when they start: on a real broker the delivery of a
	// QoS 2 PUBLISH to a subscriber often ends, and arrives, before the
	// publisher's own flow (which waits for PUBCOMP). A case keeps its
	// events in start order; the checks that depend on that order (start
	// activity, directly-follows, always-before, temporal) run for an event
	// once the detector's clock (the latest flow start seen, or Advance) is
	// Reorder past its start, so they are raised about Reorder after the
	// flow. Order-free checks are raised at once.
	Reorder time.Duration
	// MaxConnections bounds the connections without client id whose
	// identity is being inferred or was (identity.go; default 10000).
	MaxConnections int
	// InferWindow: a connection without client id still ambiguous this
	// long after its first flow is unidentified (default 30 s).
	InferWindow time.Duration
	// CutWindow: cases starting this soon after a connection was picked
	// up midstream are not checked (identity.go; default: the longest
	// learned step with its temporal bound, at least MinTemporalSlack, at
	// most CaseTimeout).
	CutWindow time.Duration
	// Names names endpoints without a name of their own (CoAP endpoints,
	// MQTT clients without client id); nil takes the model's (Model.Names,
	// the table it was mined with).
	Names *Names
}

// DefaultBenignAnomalies are specification violations that common, honest
// MQTT clients commit and that carry no attack by themselves: a remaining
// length not in its shortest form, bytes after the last field of a packet
// whose fields are all there, and the DUP flag on a QoS 0 PUBLISH.
var DefaultBenignAnomalies = []string{"non_minimal_length", "trailing_bytes", "dup_qos0"}

func (o *DetectorOptions) defaults() {
	if o.BenignAnomalies == nil {
		o.BenignAnomalies = DefaultBenignAnomalies
	}
	if o.MaxOpenCases <= 0 {
		o.MaxOpenCases = 10000
	}
	if o.MaxCaseEvents <= 0 {
		o.MaxCaseEvents = 64
	}
	if o.CaseTimeout <= 0 {
		o.CaseTimeout = 30 * time.Second
	}
	if o.RateFactor <= 0 {
		o.RateFactor = 2
	}
	if o.RateSlack <= 0 {
		o.RateSlack = 5
	}
	if o.Zeta <= 0 {
		o.Zeta = 6
	}
	if o.MinTemporalSlack <= 0 {
		o.MinTemporalSlack = time.Second
	}
	if o.MinTemporalCount <= 0 {
		o.MinTemporalCount = 3
	}
	if o.Repeat <= 0 {
		o.Repeat = time.Minute
	}
	if o.MaxTracked <= 0 {
		o.MaxTracked = 10000
	}
	if o.MaxConnections <= 0 {
		o.MaxConnections = 10000
	}
	if o.InferWindow <= 0 {
		o.InferWindow = 30 * time.Second
	}
	if o.Reorder <= 0 {
		o.Reorder = 500 * time.Millisecond
	}
}
