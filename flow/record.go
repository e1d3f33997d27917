// Package flow defines the flow record: one application transaction (an
// MQTT transaction on one TCP connection, a CoAP exchange), as the probe builds it, the collector decodes it and the store
// keeps it. It is the shared boundary between probe, collector and store,
// and owns both directions of its stored form: Record ↔ Document, and
// Document JSON lines (JSONLinesWriter, ReadJSONLines). It opens nothing
// itself: the JSON lines go through the io.Writer and io.Reader given.
//
// A Record's byte slices and strings are owned by the Record: producers copy
// them out of reassembly buffers before they hand a Record on.
package flow

import (
	"net/netip"
	"time"
)

// ControlType is an MQTT control packet type (MQTT 5.0 §2.1.2).
type ControlType uint8

// MQTT control packet types.
const (
	Connect     ControlType = 1
	ConnAck     ControlType = 2
	Publish     ControlType = 3
	PubAck      ControlType = 4
	PubRec      ControlType = 5
	PubRel      ControlType = 6
	PubComp     ControlType = 7
	Subscribe   ControlType = 8
	SubAck      ControlType = 9
	Unsubscribe ControlType = 10
	UnsubAck    ControlType = 11
	PingReq     ControlType = 12
	PingResp    ControlType = 13
	Disconnect  ControlType = 14
	Auth        ControlType = 15
)

var controlTypeNames = [16]string{
	"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH",
}

// String returns the control packet name as the MQTT specification spells it.
func (t ControlType) String() string {
	if int(t) < len(controlTypeNames) {
		return controlTypeNames[t]
	}
	return "UNKNOWN"
}

// EndReason is the IPFIX flowEndReason (IANA element 136) of a flow.
type EndReason uint8

// flowEndReason values (IANA "flowEndReason" sub-registry).
const (
	EndIdleTimeout     EndReason = 1 // the transaction saw no packet for the idle timeout
	EndActiveTimeout   EndReason = 2 // not used by the probe
	EndOfFlow          EndReason = 3 // the transaction completed (all its packets seen)
	EndForced          EndReason = 4 // shutdown of the probe, or the TCP connection closed
	EndLackOfResources EndReason = 5 // evicted because a table bound was hit
	// EndAnomaly: a one-packet flow made of a packet that starts no
	// transaction and belongs to none (a response without request, a
	// second CONNECT, a reserved type, a packet that does not decode):
	// its Anomalies say why (docs/anomalies.md). 6 is not assigned by
	// IANA; collectors that only know 1–5 see an unknown reason.
	EndAnomaly EndReason = 6
)

var endReasonNames = [7]string{"", "idle timeout", "active timeout", "end of flow", "forced end", "lack of resources", "anomaly"}

// String returns the IANA description of the end reason.
func (r EndReason) String() string {
	if int(r) < len(endReasonNames) && r != 0 {
		return endReasonNames[r]
	}
	return "unknown"
}

// CorrelationSource says where a flow's correlation id came from.
type CorrelationSource uint8

// Correlation sources.
const (
	CorrelationNone        CorrelationSource = 0
	CorrelationData        CorrelationSource = 1 // MQTT v5 Correlation Data property
	CorrelationTraceparent CorrelationSource = 2 // trace id of a W3C traceparent user property
	// CorrelationCoAPOption: the value of the CoAP option the probe was
	// told carries the case id (--coap-case-option), in the exchange's
	// request (a notification: in its registration).
	CorrelationCoAPOption CorrelationSource = 3
)

// String names the correlation source as stored in documents.
func (s CorrelationSource) String() string {
	switch s {
	case CorrelationData:
		return "correlationData"
	case CorrelationTraceparent:
		return "traceparent"
	case CorrelationCoAPOption:
		return "coapOption"
	default:
		return "none"
	}
}

// IdentitySource says where a flow's client id, user name and protocol
// level came from. The zero value, IdentityUnknown, is a flow whose
// exporter did not say (a probe that predates the field).
type IdentitySource uint8

// Identity sources. On the wire (IPFIX mqttIdentitySource) each is its
// value minus one: 0 none, 1 connect, 2 restored, 3 collector, 4 inferred.
const (
	IdentityUnknown   IdentitySource = 0 // not reported
	IdentityNone      IdentitySource = 1 // no CONNECT seen and nothing restored: no client id
	IdentityConnect   IdentitySource = 2 // from the connection's CONNECT (or CONNACK's Assigned Client Identifier)
	IdentityRestored  IdentitySource = 3 // from the probe's state file (the CONNECT was seen by an earlier run)
	IdentityCollector IdentitySource = 4 // filled in by the collector
	IdentityInferred  IdentitySource = 5 // inferred from other flows
)

var identityNames = [...]string{"", "none", "connect", "restored", "collector", "inferred"}

// String names the identity source as stored in documents ("" when unknown).
func (s IdentitySource) String() string {
	if int(s) < len(identityNames) {
		return identityNames[s]
	}
	return ""
}

// ParseIdentitySource is the inverse of String; anything else is
// IdentityUnknown.
func ParseIdentitySource(s string) IdentitySource {
	for i, n := range identityNames {
		if i > 0 && n == s {
			return IdentitySource(i)
		}
	}
	return IdentityUnknown
}

// Wire returns the IPFIX value of s (IdentityUnknown is sent as none).
func (s IdentitySource) Wire() uint8 {
	if s == IdentityUnknown || int(s) >= len(identityNames) {
		return 0
	}
	return uint8(s) - 1
}

// IdentityFromWire maps an IPFIX mqttIdentitySource value back; values
// out of range are IdentityUnknown.
func IdentityFromWire(v uint64) IdentitySource {
	if v >= uint64(len(identityNames)-1) {
		return IdentityUnknown
	}
	return IdentitySource(v + 1)
}

// Record is one MQTT transaction (README.md, "What a flow is").
// The source is the initiator of the transaction.
type Record struct {
	// FlowID is unique per flow within an exporter's observation domain
	// (IANA flowId, 148); the collector derives the stored _id from it.
	FlowID uint64

	SrcAddr  netip.Addr
	DstAddr  netip.Addr
	SrcPort  uint16
	DstPort  uint16
	Protocol uint8 // IP protocol number; 6 (TCP) for MQTT

	Start     time.Time // capture timestamp of the first packet
	End       time.Time // capture timestamp of the last packet
	Packets   uint64    // MQTT control packets in the flow
	Octets    uint64    // MQTT bytes (fixed header included) in the flow
	EndReason EndReason

	ControlType     ControlType // initiating packet's type
	ProtocolVersion uint8       // 3 (3.1), 4 (3.1.1), 5 (5.0); 0 if unknown
	QoS             uint8
	PacketID        uint16
	Retain          bool
	Dup             bool
	// ReasonCode is the reason (v5) or return (v3) code of the acknowledgement.
	// HasReasonCode is false when the flow has no acknowledgement carrying one.
	ReasonCode    uint8
	HasReasonCode bool
	PayloadLength uint32

	Topic         string
	TopicFilters  []string // SUBSCRIBE / UNSUBSCRIBE topic filters, in packet order
	ResponseTopic string
	SrcClientID   string
	DstClientID   string
	Username      string
	// IdentitySource says where SrcClientID/DstClientID, Username and
	// ProtocolVersion came from.
	IdentitySource IdentitySource

	// CorrelationData is the flow's case id, exact bytes: MQTT v5
	// Correlation Data, a traceparent's trace id, or a CoAP flow's case
	// key (CorrelationCoAPOption).
	CorrelationData   []byte
	CorrelationSource CorrelationSource

	// Anomalies are the protocol anomalies of the flow's packets
	// (docs/anomalies.md); zero for a clean flow.
	Anomalies Anomaly
	// ApplicationProtocol says which protocol part the flow has: the MQTT
	// fields above (AppMQTT) or CoAP (AppCoAP). The common part (FlowID
	// through EndReason) is every protocol's.
	ApplicationProtocol AppProtocol
	// CoAP is the CoAP part of a CoAP flow, owned by the Record; nil for
	// every other flow.
	CoAP *CoAP

	// Set by the collector, not exported by the probe.
	Exporter          netip.AddrPort
	ObservationDomain uint32
	Received          time.Time
}

// Duration returns End − Start.
func (r *Record) Duration() time.Duration { return r.End.Sub(r.Start) }

// BrokerClientID is the original prototype's name for the side of a
// connection that has no client id, kept so existing analyses still match.
const BrokerClientID = "Unknown client, probably a broker."
