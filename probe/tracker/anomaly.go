package tracker

import (
	"errors"
	"math/bits"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/mqttparse"
	"github.com/mission-ids/mission/probe/reassembly"
)

// Anomalies (docs/anomalies.md). Clean traffic pays for them with one
// store per packet (t.an = 0), one OR per flow update and one test of
// session.provable; everything else runs only when a packet is
// anomalous. Anomaly flows are emitted at once: a flood of anomalous
// packets costs one flow per packet and no state.

// violationAnomaly maps each mqttparse violation bit to its anomaly.
var violationAnomaly = func() (m [32]flow.Anomaly) {
	for _, e := range [...]struct {
		v mqttparse.Violations
		a flow.Anomaly
	}{
		{mqttparse.ViolationReservedType, flow.AnomalyUnassignedMsgType},
		{mqttparse.ViolationHeaderFlags, flow.AnomalyInvalidHeaderFlags},
		{mqttparse.ViolationDupQoS0, flow.AnomalyDupQoS0},
		{mqttparse.ViolationNonMinimalLength, flow.AnomalyNonMinimalLength},
		{mqttparse.ViolationPacketIDZero, flow.AnomalyMissingMsgID},
		{mqttparse.ViolationDuplicateProperty, flow.AnomalyDuplicateProperty},
		{mqttparse.ViolationPropertyNotAllowed, flow.AnomalyPropertyNotAllowed},
		{mqttparse.ViolationPropertyValue, flow.AnomalyInvalidPropertyValue},
		{mqttparse.ViolationInvalidUTF8, flow.AnomalyInvalidUTF8},
		{mqttparse.ViolationProtocolName, flow.AnomalyInvalidProtocolName},
		{mqttparse.ViolationConnectFlags, flow.AnomalyInvalidConnectFlags},
		{mqttparse.ViolationConnackFlags, flow.AnomalyInvalidConnackFlags},
		{mqttparse.ViolationReasonCode, flow.AnomalyInvalidReasonCode},
		{mqttparse.ViolationTopic, flow.AnomalyInvalidTopic},
		{mqttparse.ViolationSubscriptionOptions, flow.AnomalyInvalidSubscriptionOptions},
		{mqttparse.ViolationEmptyList, flow.AnomalyEmptyList},
		{mqttparse.ViolationTrailingBytes, flow.AnomalyTrailingBytes},
	} {
		m[bits.TrailingZeros32(uint32(e.v))] = e.a
	}
	return m
}()

// ViolationAnomalies returns the anomalies of a decoded packet's violations. The
// header-flags violation of a PUBLISH is its QoS 3: invalid_qos_level.
func ViolationAnomalies(v mqttparse.Violations, typ mqttparse.Type) flow.Anomaly {
	var a flow.Anomaly
	for w := uint32(v); w != 0; w &= w - 1 {
		a |= violationAnomaly[bits.TrailingZeros32(w)]
	}
	if typ == mqttparse.Publish && a.Has(flow.AnomalyInvalidHeaderFlags) {
		a = a&^flow.AnomalyInvalidHeaderFlags | flow.AnomalyInvalidQoSLevel
	}
	return a
}

// flag adds anomalies to the packet being handled and counts them; a
// bit already set is not counted again.
func (t *Tracker) flag(a flow.Anomaly) {
	a &^= t.an
	t.an |= a
	for w := uint64(a); w != 0; w &= w - 1 {
		t.stats.Anomalies[bits.TrailingZeros64(w)]++
	}
}

// unseen notes that packets of s may have passed unseen at capture time
// ts (a midstream pickup, a gap, a resynchronisation, a transaction ended
// early): responses without request are excused for an idle timeout, and
// a missing CONNECT is no longer provable.
func (t *Tracker) unseen(s *session, ts int64) {
	if e := ts + int64(t.cfg.IdleTimeout); e > s.excuse {
		s.excuse = e
	}
	s.provable = false
}

// orphan handles a response of type typ without its request: an anomaly
// flow (a), unless its request may have passed unseen.
func (t *Tracker) orphan(s *session, dir reassembly.Direction, typ mqttparse.Type, a flow.Anomaly, ts int64, n uint64) {
	t.stats.Unmatched[typ&15]++
	if s.resuming || ts <= s.excuse {
		t.stats.Excused++
		if t.an == 0 {
			return
		}
	} else {
		t.flag(a)
	}
	t.anomalyFlow(s, dir, ts, n, t.fillResponse)
}

// fillResponse copies what an answer carries into its anomaly flow.
func (t *Tracker) fillResponse(r *flow.Record) {
	p := &t.pkt
	switch p.Header.Type {
	case mqttparse.Connack, mqttparse.Puback, mqttparse.Pubrec, mqttparse.Pubrel, mqttparse.Pubcomp:
		r.ReasonCode, r.HasReasonCode = byte(p.ReasonCode), true
	case mqttparse.Suback, mqttparse.Unsuback:
		if len(p.ReasonCodes) > 0 {
			r.ReasonCode, r.HasReasonCode = byte(p.ReasonCodes[0]), true
		}
	}
}

// anomalyFlow emits the packet being handled as a one-packet flow with
// flowEndReason "anomaly": its type, packet identifier and what fill
// adds, the connection's client, and its anomalies.
func (t *Tracker) anomalyFlow(s *session, dir reassembly.Direction, ts int64, n uint64, fill func(*flow.Record)) {
	r := &t.rec
	*r = flow.Record{}
	t.base(r, s, dir)
	r.Start = captureTime(ts)
	r.End = r.Start
	r.Packets, r.Octets = 1, n
	r.PacketID = t.pkt.PacketID
	if fill != nil {
		fill(r)
	}
	r.Anomalies = t.an
	r.EndReason = flow.EndAnomaly
	t.emit(r)
}

// malformed handles a packet the framer delimited but whose body does not
// decode: an anomaly flow with its type and what the decoder read before
// the error (packet identifier, topic).
func (t *Tracker) malformed(s *session, dir reassembly.Direction, ts int64, n uint64) {
	p := &t.pkt
	typ := p.Header.Type
	t.flag(flow.AnomalyMalformedTraffic)
	if typ == mqttparse.Reserved {
		t.flag(flow.AnomalyUnassignedMsgType)
	}
	t.introduce(s, typ)
	t.anomalyFlow(s, dir, ts, n, func(r *flow.Record) {
		if typ == mqttparse.Publish {
			r.Topic = t.names.get(p.Topic)
			r.QoS = p.Header.QoS
		}
	})
}

// tooLarge makes a packet over MaxPacketSize, skipped by its length, an
// anomaly flow with its type.
func (t *Tracker) tooLarge(s *session, dir reassembly.Direction, err error, ts int64) {
	var tl *mqttparse.TooLargeError
	if !errors.As(err, &tl) {
		return
	}
	t.an = 0
	typ := tl.Header.Type
	t.flag(flow.AnomalyPacketTooLarge)
	if typ == mqttparse.Reserved {
		t.flag(flow.AnomalyUnassignedMsgType)
	}
	t.introduce(s, typ)
	t.pkt.Header = tl.Header
	t.pkt.PacketID = 0
	t.anomalyFlow(s, dir, ts, uint64(tl.Header.Len()), func(r *flow.Record) {
		if typ == mqttparse.Publish {
			r.QoS = tl.Header.QoS
			r.Retain, r.Dup = tl.Header.Retain, tl.Header.Dup
		}
	})
}

// introduce applies the unintroduced_message rule to a packet of type typ
// (decoded or not): a CONNECT attempt introduces the connection; any
// other packet before one, while that is provable, is unintroduced.
func (t *Tracker) introduce(s *session, typ mqttparse.Type) {
	switch {
	case !s.provable:
	case typ == mqttparse.Connect:
		s.provable = false
	default:
		t.flag(flow.AnomalyUnintroducedMessage)
	}
}
