package mining

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mission-ids/mission/flow"
)

// arrivalOrder returns the records as a collector hands them over on a
// real broker: when they end. A client's QoS 2 PUBLISH ends with PUBCOMP,
// after the broker has delivered the message (mosquitto forwards a QoS 2
// message on PUBLISH), so publisher flows here last lag and the delivery
// that follows arrives first.
func arrivalOrder(recs []flow.Record, lag time.Duration) []flow.Record {
	out := slices.Clone(recs)
	for i := range out {
		if out[i].ControlType == flow.Publish && out[i].SrcClientID != flow.BrokerClientID {
			out[i].End = out[i].Start.Add(lag)
		}
	}
	slices.SortStableFunc(out, func(a, b flow.Record) int { return a.End.Compare(b.End) })
	return out
}

// Regression: the detector checked a case's events in arrival order, so
// live on mosquitto about one case in 75 raised directly-follows and
// skeleton alerts on normal traffic ("broker → …/toggleState" directly
// after "broker → plant/sensors/…", "… without controller → …/toggleState
// before it"), while `mission detect` over the same stored flows, sorted
// by start, raised none.
func TestDetectorToleratesFlowsArrivingAtTheirEnd(t *testing.T) {
	m := trainedModel(t)
	recs := arrivalOrder(normalPlant(2, t0.Add(24*time.Hour), 600), 10*time.Millisecond)
	var late int
	var latest time.Time
	for _, r := range recs {
		if r.Start.Before(latest) {
			late++
		}
		latest = maxTime(latest, r.Start)
	}
	require.Positive(t, late, "the reordering must put flows out of start order")
	alerts := detect(NewDetector(m, DetectorOptions{}), recs)
	require.Empty(t, alerts, "%d flows out of start order", late)

	// Order-dependent checks still work on reordered flows: a toggle
	// injected with a fixed correlation id.
	s := newSim(5)
	at := s.rounds(s.startPlant(t0.Add(48*time.Hour)), 20)
	fixed := []byte("deadbeef-0000-4000-8000-00000000cafe")
	for i := range 5 {
		ti := at.Add(time.Duration(i) * 100 * time.Millisecond)
		s.up(controller, flow.Publish, ti, toggleTopic("led"), fixed)
		s.down("led", ti.Add(2*time.Millisecond), toggleTopic("led"), fixed)
		s.up("led", flow.Publish, ti.Add(6*time.Millisecond), stateTopic("led"), fixed)
		s.down(controller, ti.Add(8*time.Millisecond), stateTopic("led"), fixed)
	}
	s.rounds(at.Add(time.Second), 5)
	alerts = detect(NewDetector(m, DetectorOptions{}), arrivalOrder(s.sorted(), 10*time.Millisecond))
	checks := map[Check]int{}
	for _, a := range alerts {
		require.Equal(t, string(fixed), a.Case, "%+v", a)
		checks[a.Check]++
	}
	require.Positive(t, checks[CheckDirectlyFollows], "%v", alerts)
	require.Positive(t, checks[CheckSkeleton], "%v", alerts)
	// The case starts with the controller's toggle (its flow arrived after
	// the delivery it caused): the start alert names it, not the delivery.
	for _, a := range alerts {
		if a.Check == CheckDirectlyFollows && a.Message != "" && a.Client == controller {
			return
		}
	}
	t.Errorf("no directly-follows alert on the controller's injected toggle: %v", alerts)
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
