package flow

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"time"
	"unicode"
	"unicode/utf8"
)

// Document is the stored form of a Record: one MongoDB document per flow,
// and one JSON object per line on the probe's --stdout. Field names of the
// original prototype are kept (sourceIPv4Address … mqttCorrelationData);
// the others are new. Timestamps are dates (millisecond precision in BSON)
// plus an integer nanoseconds-since-epoch twin that keeps full precision.
type Document struct {
	ID string `bson:"_id,omitempty" json:"_id,omitempty"`

	SourceIPv4Address        string `bson:"sourceIPv4Address,omitempty" json:"sourceIPv4Address,omitempty"`
	DestinationIPv4Address   string `bson:"destinationIPv4Address,omitempty" json:"destinationIPv4Address,omitempty"`
	SourceIPv6Address        string `bson:"sourceIPv6Address,omitempty" json:"sourceIPv6Address,omitempty"`
	DestinationIPv6Address   string `bson:"destinationIPv6Address,omitempty" json:"destinationIPv6Address,omitempty"`
	SourceTransportPort      uint16 `bson:"sourceTransportPort" json:"sourceTransportPort"`
	DestinationTransportPort uint16 `bson:"destinationTransportPort" json:"destinationTransportPort"`
	Protocol                 uint8  `bson:"protocol" json:"protocol"`

	FlowStart                time.Time `bson:"flowStartNanoseconds" json:"flowStartNanoseconds"`
	FlowEnd                  time.Time `bson:"flowEndNanoseconds" json:"flowEndNanoseconds"`
	FlowStartNs              int64     `bson:"flowStartNs" json:"flowStartNs"`
	FlowEndNs                int64     `bson:"flowEndNs" json:"flowEndNs"`
	FlowDurationMicroseconds int64     `bson:"flowDurationMicroseconds" json:"flowDurationMicroseconds"`
	PacketDeltaCount         uint64    `bson:"packetDeltaCount" json:"packetDeltaCount"`
	OctetDeltaCount          uint64    `bson:"octetDeltaCount" json:"octetDeltaCount"`
	FlowEndReason            string    `bson:"flowEndReason" json:"flowEndReason"`
	FlowID                   uint64    `bson:"flowId,omitempty" json:"flowId,omitempty"`
	// ApplicationProtocol is "mqtt" or "coap" ("" for a third-party
	// exporter's flow and documents written before the field existed).
	ApplicationProtocol string `bson:"applicationProtocol,omitempty" json:"applicationProtocol,omitempty"`

	MQTTTopic           string `bson:"mqttTopic" json:"mqttTopic"`
	MQTTPacketID        uint16 `bson:"mqttPacketId" json:"mqttPacketId"`
	MQTTQoS             uint8  `bson:"mqttQoS" json:"mqttQoS"`
	MQTTControlType     uint8  `bson:"mqttControlType" json:"mqttControlType"`
	MQTTControlTypeName string `bson:"mqttControlTypeName" json:"mqttControlTypeName"`
	MQTTSrcClientID     string `bson:"mqttSrcClientId" json:"mqttSrcClientId"`
	MQTTDstClientID     string `bson:"mqttDstClientId" json:"mqttDstClientId"`
	// MQTTCorrelationData is the text form: the bytes if they are valid
	// UTF-8, else their lowercase hex. MQTTCorrelationDataRaw keeps the bytes.
	MQTTCorrelationData    string   `bson:"mqttCorrelationData" json:"mqttCorrelationData"`
	MQTTCorrelationDataRaw []byte   `bson:"mqttCorrelationDataRaw,omitempty" json:"mqttCorrelationDataRaw,omitempty"`
	MQTTCorrelationSource  string   `bson:"mqttCorrelationSource" json:"mqttCorrelationSource"`
	MQTTProtocolVersion    uint8    `bson:"mqttProtocolVersion,omitempty" json:"mqttProtocolVersion,omitempty"`
	MQTTReasonCode         *uint8   `bson:"mqttReasonCode,omitempty" json:"mqttReasonCode,omitempty"`
	MQTTRetain             bool     `bson:"mqttRetain" json:"mqttRetain"`
	MQTTDup                bool     `bson:"mqttDup" json:"mqttDup"`
	MQTTPayloadLength      uint32   `bson:"mqttPayloadLength" json:"mqttPayloadLength"`
	MQTTTopicFilters       []string `bson:"mqttTopicFilters,omitempty" json:"mqttTopicFilters,omitempty"`
	MQTTResponseTopic      string   `bson:"mqttResponseTopic,omitempty" json:"mqttResponseTopic,omitempty"`
	MQTTUsername           string   `bson:"mqttUsername,omitempty" json:"mqttUsername,omitempty"`
	MQTTIdentitySource     string   `bson:"mqttIdentitySource,omitempty" json:"mqttIdentitySource,omitempty"`
	// MQTTAnomalies names the flow's protocol anomalies (docs/anomalies.md).
	MQTTAnomalies []string `bson:"mqttAnomalies,omitempty" json:"mqttAnomalies,omitempty"`

	// CoAPFields are set in CoAP documents only; a CoAP document has no
	// mqtt* field but the three mqttCorrelation* fields of a case key.
	CoAPFields `bson:",inline"`

	// IPFIXFields holds every field of a record that is not an MQTT flow
	// (a third-party exporter's standard flow), by element name.
	IPFIXFields map[string]any `bson:"ipfixFields,omitempty" json:"ipfixFields,omitempty"`

	ExporterAddress      string     `bson:"exporterAddress,omitempty" json:"exporterAddress,omitempty"`
	ObservationDomainID  uint32     `bson:"observationDomainId" json:"observationDomainId"`
	CollectorReceiveTime *time.Time `bson:"collectorReceiveTime,omitempty" json:"collectorReceiveTime,omitempty"`
}

// CorrelationText returns the text form of correlation data: the bytes if
// they are valid UTF-8 made of printable characters, else their lowercase hex encoding.
func CorrelationText(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if printable(b) {
		return string(b)
	}
	return hex.EncodeToString(b)
}

// AppendCorrelationText appends the text form of b (see CorrelationText).
func AppendCorrelationText(dst, b []byte) []byte {
	if printable(b) {
		return append(dst, b...)
	}
	return hex.AppendEncode(dst, b)
}

// printable reports whether b is valid UTF-8 made of printable characters
// (unicode.IsPrint, space included). Printable ASCII, what correlation ids
// almost always are, is decided byte by byte; the first byte outside it
// hands the rest to the rune-by-rune check.
func printable(b []byte) bool {
	for i, c := range b {
		switch {
		case c >= utf8.RuneSelf:
			return printableUTF8(b[i:])
		case c < ' ' || c == 0x7f:
			return false
		}
	}
	return true
}

func printableUTF8(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range string(b) {
		if !unicode.IsPrint(c) && c != ' ' {
			return false
		}
	}
	return true
}

// ToDocument converts a Record to its stored form. The document's _id is
// left empty; the store sets it.
func (r *Record) ToDocument() Document {
	if r.ApplicationProtocol == AppCoAP {
		return r.coapDocument()
	}
	d := r.commonDocument()
	d.ApplicationProtocol = r.ApplicationProtocol.String()
	d.MQTTTopic = r.Topic
	d.MQTTPacketID = r.PacketID
	d.MQTTQoS = r.QoS
	d.MQTTControlType = uint8(r.ControlType)
	d.MQTTControlTypeName = r.ControlType.String()
	d.MQTTSrcClientID = r.SrcClientID
	d.MQTTDstClientID = r.DstClientID
	d.MQTTCorrelationData = CorrelationText(r.CorrelationData)
	d.MQTTCorrelationSource = r.CorrelationSource.String()
	d.MQTTProtocolVersion = r.ProtocolVersion
	d.MQTTRetain = r.Retain
	d.MQTTDup = r.Dup
	d.MQTTPayloadLength = r.PayloadLength
	d.MQTTTopicFilters = r.TopicFilters
	d.MQTTResponseTopic = r.ResponseTopic
	d.MQTTUsername = r.Username
	d.MQTTIdentitySource = r.IdentitySource.String()
	d.MQTTAnomalies = r.Anomalies.Names()
	if len(r.CorrelationData) > 0 {
		d.MQTTCorrelationDataRaw = r.CorrelationData
	}
	if r.HasReasonCode {
		rc := r.ReasonCode
		d.MQTTReasonCode = &rc
	}
	return d
}

// commonDocument is a Document with the fields every protocol's flow has
// (endpoints, times, counters, end reason, flow id, collector fields).
func (r *Record) commonDocument() Document {
	d := Document{
		SourceTransportPort:      r.SrcPort,
		DestinationTransportPort: r.DstPort,
		Protocol:                 r.Protocol,
		FlowStart:                r.Start.UTC(),
		FlowEnd:                  r.End.UTC(),
		FlowStartNs:              unixNano(r.Start),
		FlowEndNs:                unixNano(r.End),
		FlowDurationMicroseconds: r.Duration().Microseconds(),
		PacketDeltaCount:         r.Packets,
		OctetDeltaCount:          r.Octets,
		FlowEndReason:            r.EndReason.String(),
		FlowID:                   r.FlowID,
		ObservationDomainID:      r.ObservationDomain,
	}
	setAddr(r.SrcAddr, &d.SourceIPv4Address, &d.SourceIPv6Address)
	setAddr(r.DstAddr, &d.DestinationIPv4Address, &d.DestinationIPv6Address)
	if r.Exporter.IsValid() {
		d.ExporterAddress = r.Exporter.String()
	}
	if !r.Received.IsZero() {
		t := r.Received.UTC()
		d.CollectorReceiveTime = &t
	}
	return d
}

// Record converts a stored document back to a Record: the inverse of
// ToDocument for every field a Record has. Times come from the nanosecond
// twins (flowStartNs, flowEndNs) when set, else from the dates; the
// correlation data from mqttCorrelationDataRaw, else from the text form
// (the original prototype stored only that). Fields a Record has no room
// for are ignored: _id, the derived flowDurationMicroseconds and
// mqttControlTypeName, and a third-party flow's ipfixFields, whose standard
// fields (addresses, ports, times, counters) the collector also stores in
// the document's own fields. An end reason or correlation source that is
// not one of the names ToDocument writes reads back as zero. A malformed
// address is an error.
func (d *Document) Record() (Record, error) {
	r := Record{
		FlowID:            d.FlowID,
		SrcPort:           d.SourceTransportPort,
		DstPort:           d.DestinationTransportPort,
		Protocol:          d.Protocol,
		Start:             docTime(d.FlowStartNs, d.FlowStart),
		End:               docTime(d.FlowEndNs, d.FlowEnd),
		Packets:           d.PacketDeltaCount,
		Octets:            d.OctetDeltaCount,
		EndReason:         parseEndReason(d.FlowEndReason),
		ControlType:       ControlType(d.MQTTControlType),
		ProtocolVersion:   d.MQTTProtocolVersion,
		QoS:               d.MQTTQoS,
		PacketID:          d.MQTTPacketID,
		Retain:            d.MQTTRetain,
		Dup:               d.MQTTDup,
		PayloadLength:     d.MQTTPayloadLength,
		Topic:             d.MQTTTopic,
		TopicFilters:      d.MQTTTopicFilters,
		ResponseTopic:     d.MQTTResponseTopic,
		SrcClientID:       d.MQTTSrcClientID,
		DstClientID:       d.MQTTDstClientID,
		Username:          d.MQTTUsername,
		IdentitySource:    ParseIdentitySource(d.MQTTIdentitySource),
		Anomalies:         ParseAnomalies(d.MQTTAnomalies),
		CorrelationSource: parseCorrelationSource(d.MQTTCorrelationSource),
		ObservationDomain: d.ObservationDomainID,
	}
	r.ApplicationProtocol = ParseAppProtocol(d.ApplicationProtocol)
	if r.ApplicationProtocol == AppCoAP {
		// The correlation fields are the only mqtt* fields a CoAP
		// document has (its case key, see coapDocument).
		r.ControlType, r.IdentitySource = 0, IdentityUnknown
		r.CoAP = d.CoAPFields.coap()
		if r.CoAP == nil {
			r.CoAP = &CoAP{}
		}
	}
	if d.MQTTReasonCode != nil {
		r.ReasonCode, r.HasReasonCode = *d.MQTTReasonCode, true
	}
	switch {
	case len(d.MQTTCorrelationDataRaw) > 0:
		r.CorrelationData = d.MQTTCorrelationDataRaw
	case d.MQTTCorrelationData != "":
		// Only the text form was stored; its text form is itself (unless
		// it happens to be non-printable, which the writer never stores).
		r.CorrelationData = []byte(d.MQTTCorrelationData)
	}
	if d.CollectorReceiveTime != nil {
		r.Received = d.CollectorReceiveTime.UTC()
	}
	var err error
	if r.SrcAddr, err = docAddr(d.SourceIPv4Address, d.SourceIPv6Address); err != nil {
		return r, err
	}
	if r.DstAddr, err = docAddr(d.DestinationIPv4Address, d.DestinationIPv6Address); err != nil {
		return r, err
	}
	if d.ExporterAddress != "" {
		if r.Exporter, err = netip.ParseAddrPort(d.ExporterAddress); err != nil {
			return r, fmt.Errorf("flow: exporter address %q: %w", d.ExporterAddress, err)
		}
	}
	return r, nil
}

// coapDocument is ToDocument of a CoAP flow: the common fields and the
// CoAP fields; of the mqtt* fields only the correlation fields
// (mqttCorrelationData, mqttCorrelationDataRaw, mqttCorrelationSource),
// and only when the flow has a case key (the encoders omit the others,
// see IsCoAP).
func (r *Record) coapDocument() Document {
	d := r.commonDocument()
	d.ApplicationProtocol = AppCoAP.String()
	c := r.CoAP
	if c == nil {
		c = &CoAP{}
	}
	d.CoAPFields = c.fields()
	if len(r.CorrelationData) > 0 {
		// The case key (--coap-case-option) in the fields MQTT's
		// correlation data uses, so mining and the index find it there.
		d.MQTTCorrelationData = CorrelationText(r.CorrelationData)
		d.MQTTCorrelationDataRaw = r.CorrelationData
		d.MQTTCorrelationSource = r.CorrelationSource.String()
	}
	return d
}

// IsCoAP reports a CoAP document: its stored forms (BSON, JSON lines)
// leave out the mqtt* fields but the correlation fields of a case key.
func (d *Document) IsCoAP() bool { return d.ApplicationProtocol == "coap" }

// docTime is the nanosecond twin when set, else the date.
func docTime(ns int64, date time.Time) time.Time {
	if ns != 0 {
		return time.Unix(0, ns).UTC()
	}
	if date.IsZero() {
		return time.Time{}
	}
	return date.UTC()
}

func docAddr(v4, v6 string) (netip.Addr, error) {
	s := v4
	if s == "" {
		s = v6
	}
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("flow: address %q: %w", s, err)
	}
	return a, nil
}

func parseEndReason(s string) EndReason {
	for i, n := range endReasonNames {
		if i > 0 && n == s {
			return EndReason(i)
		}
	}
	return 0
}

func parseCorrelationSource(s string) CorrelationSource {
	for _, c := range [...]CorrelationSource{CorrelationData, CorrelationTraceparent, CorrelationCoAPOption} {
		if c.String() == s {
			return c
		}
	}
	return CorrelationNone
}

func setAddr(a netip.Addr, v4, v6 *string) {
	switch {
	case !a.IsValid():
	case a.Is4() || a.Is4In6():
		*v4 = a.Unmap().String()
	default:
		*v6 = a.String()
	}
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
