package flow

import (
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
	pens  [2]uint32
	plans map[*ipfix.Template]*plan
}

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
)

type plan struct {
	uses []fieldUse
	mqtt bool // the template carries at least one MQTT element
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
}

func (d *Decoder) planFor(t *ipfix.Template) *plan {
	if p, ok := d.plans[t]; ok {
		return p
	}
	if len(d.plans) >= 4096 {
		clear(d.plans) // templates are replaced over time; stay bounded
	}
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
			}
		}
	}
	d.plans[t] = p
	return p
}

// IsMQTT reports whether records of t carry MQTT elements (a probe's
// flow) rather than only standard flow fields (a third-party exporter's).
func (d *Decoder) IsMQTT(t *ipfix.Template) bool { return d.planFor(t).mqtt }

// Decode fills r from rec. It returns false when the record carries no
// MQTT element (not an MQTT flow); r is then partly filled with the
// standard fields. Strings and slices in r are copies.
func (d *Decoder) Decode(rec ipfix.Record, r *Record) bool {
	return d.DecodeSince(rec, r, time.Time{})
}

// DecodeSince is Decode for exporters that time flows in milliseconds of
// system uptime (flowStart/EndSysUpTime, e.g. softflowd, NetFlow-style
// probes): sysInit is the exporter's systemInitTimeMilliseconds, learnt
// from its options records (see SystemInit). A record carrying that
// element itself needs no sysInit.
func (d *Decoder) DecodeSince(rec ipfix.Record, r *Record, sysInit time.Time) bool {
	p := d.planFor(rec.Template)
	*r = Record{}
	var durMicro int64 = -1
	corrText := []byte(nil)
	hasCorrRaw, hasCorrSource, hasReason := false, false, false
	var upStart, upEnd int64 = -1, -1
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
		case useSystemInit:
			sysInit = time.UnixMilli(int64(v.Uint())).UTC()
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
	if r.Protocol == 0 && p.mqtt {
		r.Protocol = 6
	}
	r.ObservationDomain = rec.Header.ObservationDomainID
	return p.mqtt
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
