package flow

import (
	"errors"
	"time"

	"github.com/mission-ids/mission/ipfix"
)

// Decoder turns IPFIX data records into Records. It understands the
// probe's templates, the original MISSION prototype's records (enterprise
// ids 1–7, fixed 255-byte NUL-padded strings, IANA IPv4 five-tuple and
// flowStart/EndNanoseconds, flowDurationMicroseconds), and any template
// that mixes these elements. Enterprise elements are MQTT elements when
// their PEN is the configured one or the original's 9999.
//
// It caches one decoding plan per template; not safe for concurrent use.
type Decoder struct {
	pens       [2]uint32
	plans      map[*ipfix.Template]*plan
	planFields int // fields of the templates in plans
}

// The plan cache holds at most maxPlans templates and maxPlanFields
// fields (≈ 80 B each with their template: ≈ 1.3 MiB per Decoder).
const (
	maxPlans      = 4096
	maxPlanFields = 16384
)

// NewDecoder returns a Decoder that takes enterprise elements of pen (and
// of ipfix.DefaultMQTTPEN) as MQTT elements.
func NewDecoder(pen uint32) *Decoder {
	return &Decoder{pens: [2]uint32{pen, ipfix.DefaultMQTTPEN}, plans: make(map[*ipfix.Template]*plan)}
}

// What a field of a template is for.
type fieldUse uint8

const (
	useNone fieldUse = iota
	useSrcAddr
	useDstAddr
	useSrcPort
	useDstPort
	useProto
	useStart
	useEnd
	useDurationMicro
	useDurationMilli
	usePackets
	useOctets
	useEndReason
	useFlowID
	useControlType
	useQoS
	usePacketID
	useTopic
	useSrcClient
	useDstClient
	useCorrText
	useVersion
	useReason
	useRetain
	useDup
	usePayloadLen
	useFilters
	useCorrRaw
	useCorrSource
	useUsername
	useResponseTopic
	useStartUptime
	useEndUptime
	useSystemInit
	useIdentitySource
	useAnomalies
	useCoAPType
	useCoAPCode
	useCoAPMID
	useCoAPToken
	useCoAPMethod
	useCoAPHost
	useCoAPPath
	useCoAPQuery
	useCoAPFormat
	useCoAPResponse
	useCoAPObserve
	useCoAPBlock
	useCoAPBlockOption
	useCoAPRetrans
	useCoAPPayload
)

type plan struct {
	uses []fieldUse
	mqtt bool // the template carries at least one MQTT element
	coap bool // the template carries at least one CoAP element
}

var coapUse = map[uint16]fieldUse{
	ipfix.CoAPType: useCoAPType, ipfix.CoAPCode: useCoAPCode, ipfix.CoAPMessageID: useCoAPMID,
	ipfix.CoAPToken: useCoAPToken, ipfix.CoAPMethod: useCoAPMethod, ipfix.CoAPURIHost: useCoAPHost,
	ipfix.CoAPURIPath: useCoAPPath, ipfix.CoAPURIQuery: useCoAPQuery, ipfix.CoAPContentFormat: useCoAPFormat,
	ipfix.CoAPResponseCode: useCoAPResponse, ipfix.CoAPObserve: useCoAPObserve, ipfix.CoAPBlock: useCoAPBlock,
	ipfix.CoAPBlockOption: useCoAPBlockOption, ipfix.CoAPRetransmissions: useCoAPRetrans,
	ipfix.CoAPPayloadLength: useCoAPPayload,
}

var ianaUse = map[uint16]fieldUse{
	ieSourceIPv4Address: useSrcAddr, ieSourceIPv6Address: useSrcAddr,
	ieDestinationIPv4Address: useDstAddr, ieDestinationIPv6Address: useDstAddr,
	ieSourceTransportPort: useSrcPort, ieDestinationTransportPort: useDstPort,
	ieProtocolIdentifier: useProto,
	ieFlowStartSeconds:   useStart, ieFlowStartMilliseconds: useStart, ieFlowStartMicroseconds: useStart, ieFlowStartNanoseconds: useStart,
	ieFlowEndSeconds: useEnd, ieFlowEndMilliseconds: useEnd, ieFlowEndMicroseconds: useEnd, ieFlowEndNanoseconds: useEnd,
	ieFlowDurationMicroseconds: useDurationMicro, ieFlowDurationMilliseconds: useDurationMilli,
	iePacketDeltaCount: usePackets, ieOctetDeltaCount: useOctets,
	ieFlowEndReason: useEndReason, ieFlowID: useFlowID,
	ieFlowStartSysUpTime: useStartUptime, ieFlowEndSysUpTime: useEndUptime, ieSystemInitTimeMilliseconds: useSystemInit,
}

var mqttUse = map[uint16]fieldUse{
	ipfix.MQTTQoS: useQoS, ipfix.MQTTControlType: useControlType, ipfix.MQTTPacketID: usePacketID,
	ipfix.MQTTTopic: useTopic, ipfix.MQTTSrcClientID: useSrcClient, ipfix.MQTTDstClientID: useDstClient,
	ipfix.MQTTCorrelationData: useCorrText, ipfix.MQTTProtocolVersion: useVersion, ipfix.MQTTReasonCode: useReason,
	ipfix.MQTTRetain: useRetain, ipfix.MQTTDup: useDup, ipfix.MQTTPayloadLength: usePayloadLen,
	ipfix.MQTTTopicFilters: useFilters, ipfix.MQTTCorrelationDataRaw: useCorrRaw,
	ipfix.MQTTCorrelationSource: useCorrSource, ipfix.MQTTUsername: useUsername, ipfix.MQTTResponseTopic: useResponseTopic,
	ipfix.MQTTIdentitySource: useIdentitySource,
	ipfix.MQTTAnomalies:      useAnomalies,
}

func (d *Decoder) planFor(t *ipfix.Template) *plan {
	if p, ok := d.plans[t]; ok {
		return p
	}
	if len(d.plans) >= maxPlans || d.planFields+len(t.Fields) > maxPlanFields {
		// Templates are replaced and evicted over time: stay bounded, and
		// do not keep evicted templates alive through the keys.
		clear(d.plans)
		d.planFields = 0
	}
	d.planFields += len(t.Fields)
	p := &plan{uses: make([]fieldUse, len(t.Fields))}
	for i, f := range t.Fields {
		if i < int(t.ScopeFieldCount) {
			continue
		}
		switch f.PEN {
		case 0:
			p.uses[i] = ianaUse[f.ID]
		case d.pens[0], d.pens[1]:
			if u, ok := mqttUse[f.ID]; ok {
				p.uses[i] = u
				p.mqtt = true
			} else if u, ok := coapUse[f.ID]; ok {
				p.uses[i] = u
				p.coap = true
			}
		}
	}
	d.plans[t] = p
	return p
}

// IsMQTT reports whether records of t carry MQTT or CoAP elements (a
// probe's flow) rather than only standard flow fields (a third-party
// exporter's).
func (d *Decoder) IsMQTT(t *ipfix.Template) bool { p := d.planFor(t); return p.mqtt || p.coap }

// Decode fills r from rec. It returns true only for a valid MQTT flow:
// false when the record carries no MQTT element (not an MQTT flow; r is
// then partly filled with the standard fields) or lacks what a flow needs
// (see DecodeRecord). Strings and slices in r are copies.
func (d *Decoder) Decode(rec ipfix.Record, r *Record) bool {
	return d.DecodeSince(rec, r, time.Time{})
}

// DecodeSince is Decode for exporters that time flows in milliseconds of
// system uptime (flowStart/EndSysUpTime, e.g. softflowd, NetFlow-style
// probes): sysInit is the exporter's systemInitTimeMilliseconds, learnt
// from its options records (see SystemInit). A record carrying that
// element itself needs no sysInit.
func (d *Decoder) DecodeSince(rec ipfix.Record, r *Record, sysInit time.Time) bool {
	mqtt, err := d.DecodeRecord(rec, r, sysInit)
	return mqtt && err == nil
}

// ErrInvalidRecord means a data record lacks what a flow needs; the
// *InvalidRecordError wrapping it says what.
var ErrInvalidRecord = errors.New("flow: data record is not a valid flow")

// InvalidReason says why a data record is not a valid flow.
type InvalidReason uint8

// Reasons a record is rejected. Every flow needs a start time in a
// plausible range, an end not before it, and source and destination
// addresses; an MQTT flow (a template with MQTT elements) also needs a
// control packet type in 1–15, or 0 in an anomaly flow of a packet of the
// reserved type 0 (mqttAnomalies unassigned_msg_type).
const (
	ValidRecord          InvalidReason = iota
	InvalidNoStart                     // no flowStart* element (nor uptime with a known system init time)
	InvalidTime                        // start outside 1990–2200, or end before start
	InvalidNoSource                    // no or unparsable source address
	InvalidNoDestination               // no or unparsable destination address
	InvalidControlType                 // MQTT flow without a control packet type in 1–15
	numInvalidReasons
)

var invalidReasonNames = [numInvalidReasons]string{"", "no_start_time", "bad_time", "no_source_address", "no_destination_address", "bad_control_type"}

// String returns the reason as a metric label value.
func (r InvalidReason) String() string {
	if r < numInvalidReasons && r != ValidRecord {
		return invalidReasonNames[r]
	}
	return "valid"
}

// InvalidReasons lists every reason a record is rejected.
func InvalidReasons() []InvalidReason {
	out := make([]InvalidReason, 0, numInvalidReasons-1)
	for r := InvalidNoStart; r < numInvalidReasons; r++ {
		out = append(out, r)
	}
	return out
}

// InvalidRecordError is the error of a rejected record. It unwraps to
// ErrInvalidRecord.
type InvalidRecordError struct{ Reason InvalidReason }

func (e *InvalidRecordError) Error() string { return "flow: invalid record: " + e.Reason.String() }

func (e *InvalidRecordError) Unwrap() error { return ErrInvalidRecord }

// invalidErrors are the errors DecodeRecord returns, one per reason, so a
// flood of invalid records allocates nothing. Never modified.
var invalidErrors = func() (e [numInvalidReasons]*InvalidRecordError) {
	for r := range e {
		e[r] = &InvalidRecordError{Reason: InvalidReason(r)}
	}
	return e
}()

// Plausible flow start times: anything else is garbage (a zero field, a
// hostile template, a wrong unit).
var (
	minStart = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	maxStart = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Validate checks that r has what a flow needs (mqtt: it is an MQTT
// flow) and returns why not, or ValidRecord.
func Validate(r *Record, mqtt bool) InvalidReason {
	switch {
	case r.Start.IsZero():
		return InvalidNoStart
	case r.Start.Before(minStart) || r.Start.After(maxStart) || !r.End.IsZero() && r.End.Before(r.Start):
		return InvalidTime
	case !r.SrcAddr.IsValid():
		return InvalidNoSource
	case !r.DstAddr.IsValid():
		return InvalidNoDestination
	case mqtt && r.ApplicationProtocol != AppCoAP && r.ControlType > Auth,
		mqtt && r.ApplicationProtocol != AppCoAP && r.ControlType < Connect && !r.Anomalies.Has(AnomalyUnassignedMsgType):
		return InvalidControlType
	}
	return ValidRecord
}

// DecodeRecord fills r from rec and validates it (see Validate). It
// returns whether the record is a probe's flow (its template carries MQTT
// elements, or CoAP elements: r.ApplicationProtocol says which) and, if it is not a valid flow, an *InvalidRecordError
// wrapping ErrInvalidRecord: never store such an r. Strings and slices in
// r are copies; sysInit is as for DecodeSince.
func (d *Decoder) DecodeRecord(rec ipfix.Record, r *Record, sysInit time.Time) (mqtt bool, err error) {
	mqtt = d.decode(rec, r, sysInit)
	if reason := Validate(r, mqtt); reason != ValidRecord {
		return mqtt, invalidErrors[reason]
	}
	return mqtt, nil
}

func (d *Decoder) decode(rec ipfix.Record, r *Record, sysInit time.Time) bool {
	p := d.planFor(rec.Template)
	*r = Record{}
	var durMicro int64 = -1
	corrText := []byte(nil)
	hasCorrRaw, hasCorrSource, hasReason := false, false, false
	var upStart, upEnd int64 = -1, -1
	var c *CoAP
	if p.coap {
		c = &CoAP{}
		r.CoAP = c
	}
	for i, use := range p.uses {
		if use == useNone {
			continue
		}
		v := rec.Value(i)
		switch use {
		case useSrcAddr:
			r.SrcAddr = v.IP()
		case useDstAddr:
			r.DstAddr = v.IP()
		case useSrcPort:
			r.SrcPort = uint16(v.Uint())
		case useDstPort:
			r.DstPort = uint16(v.Uint())
		case useProto:
			r.Protocol = uint8(v.Uint())
		case useStart:
			r.Start = v.Time()
		case useEnd:
			r.End = v.Time()
		case useDurationMicro:
			durMicro = int64(v.Uint())
		case useDurationMilli:
			durMicro = int64(v.Uint()) * 1000
		case usePackets:
			r.Packets = v.Uint()
		case useOctets:
			r.Octets = v.Uint()
		case useEndReason:
			r.EndReason = EndReason(v.Uint())
		case useFlowID:
			r.FlowID = v.Uint()
		case useControlType:
			r.ControlType = ControlType(v.Uint())
		case useQoS:
			r.QoS = uint8(v.Uint())
		case usePacketID:
			r.PacketID = uint16(v.Uint())
		case useTopic:
			r.Topic = v.String()
		case useSrcClient:
			r.SrcClientID = v.String()
		case useDstClient:
			r.DstClientID = v.String()
		case useCorrText:
			corrText = v.Text()
		case useVersion:
			r.ProtocolVersion = uint8(v.Uint())
		case useReason:
			if rc := v.Uint(); rc != ReasonCodeAbsent {
				r.ReasonCode, hasReason = uint8(rc), true
			}
		case useRetain:
			r.Retain = v.Bool()
		case useDup:
			r.Dup = v.Bool()
		case usePayloadLen:
			r.PayloadLength = uint32(v.Uint())
		case useFilters:
			if bl, err := v.BasicList(); err == nil {
				r.TopicFilters = bl.Strings()
			}
		case useCorrRaw:
			if len(v.Raw) > 0 {
				r.CorrelationData = append([]byte(nil), v.Raw...)
				hasCorrRaw = true
			}
		case useCorrSource:
			r.CorrelationSource = CorrelationSource(v.Uint())
			hasCorrSource = true
		case useUsername:
			r.Username = v.String()
		case useResponseTopic:
			r.ResponseTopic = v.String()
		case useStartUptime:
			upStart = int64(v.Uint())
		case useEndUptime:
			upEnd = int64(v.Uint())
		case useIdentitySource:
			r.IdentitySource = IdentityFromWire(v.Uint())
		case useAnomalies:
			r.Anomalies = Anomaly(v.Uint())
		case useSystemInit:
			sysInit = time.UnixMilli(int64(v.Uint())).UTC()
		default:
			if c != nil {
				decodeCoAP(c, use, v)
			}
		}
	}
	r.HasReasonCode = hasReason
	if !hasCorrRaw && len(corrText) > 0 {
		// The original prototype sent only the text form.
		r.CorrelationData = append([]byte(nil), corrText...)
	}
	if !hasCorrSource && len(r.CorrelationData) > 0 {
		r.CorrelationSource = CorrelationData
	}
	if !sysInit.IsZero() {
		if r.Start.IsZero() && upStart >= 0 {
			r.Start = sysInit.Add(time.Duration(upStart) * time.Millisecond)
		}
		if r.End.IsZero() && upEnd >= 0 {
			r.End = sysInit.Add(time.Duration(upEnd) * time.Millisecond)
		}
	}
	if r.End.IsZero() && !r.Start.IsZero() && durMicro >= 0 {
		r.End = r.Start.Add(time.Duration(durMicro) * time.Microsecond)
	}
	if r.Start.IsZero() && !r.End.IsZero() && durMicro >= 0 {
		r.Start = r.End.Add(-time.Duration(durMicro) * time.Microsecond)
	}
	switch {
	case p.coap:
		r.ApplicationProtocol = AppCoAP
		if r.Protocol == 0 {
			r.Protocol = 17
		}
	case p.mqtt:
		r.ApplicationProtocol = AppMQTT
		if r.Protocol == 0 {
			r.Protocol = 6
		}
	}
	r.ObservationDomain = rec.Header.ObservationDomainID
	return p.mqtt || p.coap
}

func decodeCoAP(c *CoAP, use fieldUse, v ipfix.Value) {
	switch use {
	case useCoAPType:
		c.Type = uint8(v.Uint() & 3)
	case useCoAPCode:
		c.Code = uint8(v.Uint())
	case useCoAPMID:
		c.MessageID = uint16(v.Uint())
	case useCoAPToken:
		if len(v.Raw) > 0 {
			c.Token = append([]byte(nil), v.Raw...)
		}
	case useCoAPMethod:
		c.Method = uint8(v.Uint())
	case useCoAPHost:
		c.URIHost = v.String()
	case useCoAPPath:
		c.URIPath = v.String()
	case useCoAPQuery:
		c.URIQuery = v.String()
	case useCoAPFormat:
		if x := v.Uint(); x != uint64(ipfix.CoAPAbsent32) && x <= 0xffff {
			c.ContentFormat, c.HasContentFormat = uint16(x), true
		}
	case useCoAPResponse:
		c.ResponseCode = uint8(v.Uint())
	case useCoAPObserve:
		if x := v.Uint(); x != uint64(ipfix.CoAPAbsent32) {
			c.Observe, c.HasObserve = uint32(x), true
		}
	case useCoAPBlock:
		c.Block = uint32(v.Uint())
	case useCoAPBlockOption:
		if x := v.Uint(); x <= uint64(Block2) {
			c.BlockOption = uint8(x)
		}
	case useCoAPRetrans:
		c.Retransmissions = uint32(v.Uint())
	case useCoAPPayload:
		c.PayloadLength = uint32(v.Uint())
	}
}

// SystemInit returns the systemInitTimeMilliseconds of an options (or
// data) record, if it has one.
func SystemInit(rec ipfix.Record) (time.Time, bool) {
	v, ok := rec.Get(0, ieSystemInitTimeMilliseconds)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(v.Uint())).UTC(), true
}
