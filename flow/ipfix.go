package flow

import (
	"fmt"

	"github.com/mission-ids/mission/ipfix"
)

// IPFIX template ids of the probe's flow records.
const (
	TemplateIPv4     uint16 = 256
	TemplateIPv6     uint16 = 257
	TemplateCoAPIPv4 uint16 = 258
	TemplateCoAPIPv6 uint16 = 259
)

// ReasonCodeAbsent is sent as mqttReasonCode when the flow has no
// acknowledgement carrying a reason code (0xFF is not an MQTT reason code).
const ReasonCodeAbsent = 0xFF

// IANA element ids used by the flow template.
const (
	ieOctetDeltaCount            = 1
	iePacketDeltaCount           = 2
	ieProtocolIdentifier         = 4
	ieSourceTransportPort        = 7
	ieSourceIPv4Address          = 8
	ieDestinationTransportPort   = 11
	ieDestinationIPv4Address     = 12
	ieSourceIPv6Address          = 27
	ieDestinationIPv6Address     = 28
	ieFlowEndSysUpTime           = 21
	ieFlowStartSysUpTime         = 22
	ieFlowEndReason              = 136
	ieFlowID                     = 148
	ieFlowStartSeconds           = 150
	ieFlowEndSeconds             = 151
	ieFlowStartMilliseconds      = 152
	ieFlowEndMilliseconds        = 153
	ieFlowStartMicroseconds      = 154
	ieFlowEndMicroseconds        = 155
	ieFlowStartNanoseconds       = 156
	ieFlowEndNanoseconds         = 157
	ieFlowDurationMilliseconds   = 161
	ieFlowDurationMicroseconds   = 162
	ieSystemInitTimeMilliseconds = 160
)

// templateSpecs lists the fields of the MQTT flow template, in order:
// the common fields, then MQTT's.
func templateSpecs(pen uint32, v6 bool) []ipfix.FieldSpec {
	v := ipfix.VarLen
	return append(commonSpecs(v6),
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTControlType, Length: 2},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTQoS, Length: 2},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTPacketID, Length: 2},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTProtocolVersion, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTReasonCode, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTRetain, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTDup, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTPayloadLength, Length: 4},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTCorrelationSource, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTTopic, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTSrcClientID, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTDstClientID, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTCorrelationData, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTCorrelationDataRaw, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTUsername, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTResponseTopic, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTTopicFilters, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTIdentitySource, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTAnomalies, Length: 8},
	)
}

// Encoder turns Records into IPFIX data records of the flow templates.
// It reuses its buffer: not safe for concurrent use.
type Encoder struct {
	pen        uint32
	tmpl4      *ipfix.Template
	tmpl6      *ipfix.Template
	coap4      *ipfix.Template
	coap6      *ipfix.Template
	enc        *ipfix.RecordEncoder
	corrBuf    []byte
	registered bool
}

// NewEncoder builds the templates under the MQTT private enterprise number
// pen (ipfix.DefaultMQTTPEN unless configured).
func NewEncoder(pen uint32) (*Encoder, error) {
	reg := ipfix.NewRegistry(pen)
	t4, err := ipfix.NewTemplate(reg, TemplateIPv4, templateSpecs(pen, false)...)
	if err != nil {
		return nil, fmt.Errorf("flow: IPv4 template: %w", err)
	}
	t6, err := ipfix.NewTemplate(reg, TemplateIPv6, templateSpecs(pen, true)...)
	if err != nil {
		return nil, fmt.Errorf("flow: IPv6 template: %w", err)
	}
	c4, err := ipfix.NewTemplate(reg, TemplateCoAPIPv4, coapTemplateSpecs(pen, false)...)
	if err != nil {
		return nil, fmt.Errorf("flow: CoAP IPv4 template: %w", err)
	}
	c6, err := ipfix.NewTemplate(reg, TemplateCoAPIPv6, coapTemplateSpecs(pen, true)...)
	if err != nil {
		return nil, fmt.Errorf("flow: CoAP IPv6 template: %w", err)
	}
	return &Encoder{pen: pen, tmpl4: t4, tmpl6: t6, coap4: c4, coap6: c6, enc: ipfix.NewRecordEncoder(t4)}, nil
}

// Templates returns the flow templates: MQTT IPv4 and IPv6, CoAP IPv4 and
// IPv6.
func (e *Encoder) Templates() []*ipfix.Template {
	return []*ipfix.Template{e.tmpl4, e.tmpl6, e.coap4, e.coap6}
}

// Encode returns the template and the data record for r. The record bytes
// are valid until the next call.
func (e *Encoder) Encode(r *Record) (*ipfix.Template, []byte, error) {
	v6 := r.SrcAddr.Is6() && !r.SrcAddr.Is4In6()
	if r.ApplicationProtocol == AppCoAP {
		return e.encodeCoAP(r, v6)
	}
	t := e.tmpl4
	if v6 {
		t = e.tmpl6
	}
	enc := e.enc
	enc.Reset(t)
	e.putCommon(r, v6)
	enc.PutUint(uint64(r.ControlType))
	enc.PutUint(uint64(r.QoS))
	enc.PutUint(uint64(r.PacketID))
	enc.PutUint(uint64(r.ProtocolVersion))
	if r.HasReasonCode {
		enc.PutUint(uint64(r.ReasonCode))
	} else {
		enc.PutUint(ReasonCodeAbsent)
	}
	enc.PutBool(r.Retain)
	enc.PutBool(r.Dup)
	enc.PutUint(uint64(r.PayloadLength))
	enc.PutUint(uint64(r.CorrelationSource))
	enc.PutString(r.Topic)
	enc.PutString(r.SrcClientID)
	enc.PutString(r.DstClientID)
	e.putCorrelationData(r)
	enc.PutString(r.Username)
	enc.PutString(r.ResponseTopic)
	enc.PutStringList(ipfix.SemanticOrdered, e.pen, ipfix.MQTTTopicFilter, r.TopicFilters)
	enc.PutUint(uint64(r.IdentitySource.Wire()))
	enc.PutUint(uint64(r.Anomalies))
	b, err := enc.Bytes()
	return t, b, err
}

// putCorrelation encodes mqttCorrelationSource, mqttCorrelationData and
// mqttCorrelationDataRaw, in this order (the CoAP templates' case key).
func (e *Encoder) putCorrelation(r *Record) {
	e.enc.PutUint(uint64(r.CorrelationSource))
	e.putCorrelationData(r)
}

// putCorrelationData encodes mqttCorrelationData (the text form) and
// mqttCorrelationDataRaw.
func (e *Encoder) putCorrelationData(r *Record) {
	e.corrBuf = AppendCorrelationText(e.corrBuf[:0], r.CorrelationData)
	e.enc.PutBytes(e.corrBuf)
	e.enc.PutBytes(r.CorrelationData)
}

// putCommon encodes the fields every template starts with.
func (e *Encoder) putCommon(r *Record, v6 bool) {
	enc := e.enc
	enc.PutUint(r.FlowID)
	if v6 {
		enc.PutIP(r.SrcAddr)
		enc.PutIP(r.DstAddr)
	} else {
		enc.PutIP(r.SrcAddr.Unmap())
		enc.PutIP(r.DstAddr.Unmap())
	}
	enc.PutUint(uint64(r.SrcPort))
	enc.PutUint(uint64(r.DstPort))
	enc.PutUint(uint64(r.Protocol))
	enc.PutTime(r.Start)
	enc.PutTime(r.End)
	enc.PutUint(uint64(max(0, r.Duration().Microseconds())))
	enc.PutUint(r.Packets)
	enc.PutUint(r.Octets)
	enc.PutUint(uint64(r.EndReason))
}

// commonSpecs are the fields every template starts with.
func commonSpecs(v6 bool) []ipfix.FieldSpec {
	src, dst, alen := uint16(ieSourceIPv4Address), uint16(ieDestinationIPv4Address), uint16(4)
	if v6 {
		src, dst, alen = ieSourceIPv6Address, ieDestinationIPv6Address, 16
	}
	return []ipfix.FieldSpec{
		{ID: ieFlowID, Length: 8},
		{ID: src, Length: alen},
		{ID: dst, Length: alen},
		{ID: ieSourceTransportPort, Length: 2},
		{ID: ieDestinationTransportPort, Length: 2},
		{ID: ieProtocolIdentifier, Length: 1},
		{ID: ieFlowStartNanoseconds, Length: 8},
		{ID: ieFlowEndNanoseconds, Length: 8},
		{ID: ieFlowDurationMicroseconds, Length: 4},
		{ID: iePacketDeltaCount, Length: 8},
		{ID: ieOctetDeltaCount, Length: 8},
		{ID: ieFlowEndReason, Length: 1},
	}
}

// coapTemplateSpecs lists the fields of the CoAP flow template, in order.
func coapTemplateSpecs(pen uint32, v6 bool) []ipfix.FieldSpec {
	v := ipfix.VarLen
	return append(commonSpecs(v6),
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPType, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPCode, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPMessageID, Length: 2},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPMethod, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPContentFormat, Length: 4},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPResponseCode, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPObserve, Length: 4},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPBlock, Length: 4},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPBlockOption, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPRetransmissions, Length: 4},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPPayloadLength, Length: 4},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPToken, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPURIHost, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPURIPath, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.CoAPURIQuery, Length: v},
		// The case key, in the elements of MQTT's correlation data.
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTCorrelationSource, Length: 1},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTCorrelationData, Length: v},
		ipfix.FieldSpec{PEN: pen, ID: ipfix.MQTTCorrelationDataRaw, Length: v},
	)
}

func (e *Encoder) encodeCoAP(r *Record, v6 bool) (*ipfix.Template, []byte, error) {
	t := e.coap4
	if v6 {
		t = e.coap6
	}
	enc := e.enc
	enc.Reset(t)
	e.putCommon(r, v6)
	c := r.CoAP
	if c == nil {
		c = &CoAP{}
	}
	enc.PutUint(uint64(c.Type))
	enc.PutUint(uint64(c.Code))
	enc.PutUint(uint64(c.MessageID))
	enc.PutUint(uint64(c.Method))
	if c.HasContentFormat {
		enc.PutUint(uint64(c.ContentFormat))
	} else {
		enc.PutUint(uint64(ipfix.CoAPAbsent32))
	}
	enc.PutUint(uint64(c.ResponseCode))
	if c.HasObserve {
		enc.PutUint(uint64(c.Observe))
	} else {
		enc.PutUint(uint64(ipfix.CoAPAbsent32))
	}
	enc.PutUint(uint64(c.Block))
	enc.PutUint(uint64(c.BlockOption))
	enc.PutUint(uint64(c.Retransmissions))
	enc.PutUint(uint64(c.PayloadLength))
	enc.PutBytes(c.Token)
	enc.PutString(c.URIHost)
	enc.PutString(c.URIPath)
	enc.PutString(c.URIQuery)
	e.putCorrelation(r)
	b, err := enc.Bytes()
	return t, b, err
}
