package flow

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/mission-ids/mission/coapparse"
)

// AppProtocol is the application protocol of a flow (document field
// applicationProtocol). The zero value, AppUnknown, is a flow whose
// exporter did not say: a third-party exporter's standard flow, or a
// document written before the field existed.
type AppProtocol uint8

// Application protocols.
const (
	AppUnknown AppProtocol = 0
	AppMQTT    AppProtocol = 1
	AppCoAP    AppProtocol = 2
)

var appNames = [...]string{"", "mqtt", "coap"}

// String returns the protocol's name as stored ("mqtt", "coap"; "" when
// unknown).
func (p AppProtocol) String() string {
	if int(p) < len(appNames) {
		return appNames[p]
	}
	return ""
}

// ParseAppProtocol is the inverse of String; anything else is AppUnknown.
func ParseAppProtocol(s string) AppProtocol {
	for i, n := range appNames {
		if i > 0 && n == s {
			return AppProtocol(i)
		}
	}
	return AppUnknown
}

// Block options a CoAP flow's block number comes from.
const (
	BlockNone uint8 = 0
	Block1    uint8 = 1 // RFC 7959 Block1 (request payload)
	Block2    uint8 = 2 // RFC 7959 Block2 (response payload)
)

// CoAP is the CoAP part of a Record (ApplicationProtocol AppCoAP): one
// request with its response, a ping, or one Observe notification
// (docs/coap.md, "Flows"). The Record's common part is the 5-tuple
// (source: the sender of the initiating message), times, counts (CoAP
// messages and their bytes, retransmissions included) and end reason.
type CoAP struct {
	Type      uint8  // of the initiating message: coapparse.Type (CON 0, NON 1, ACK 2, RST 3)
	Code      uint8  // of the initiating message: coapparse.Code (0.01 GET…, 2.05 for a notification)
	MessageID uint16 // of the initiating message
	Token     []byte // of the initiating message (a notification: the registration's)
	// Method is the request's method code (a notification: the
	// registration's; 0 for a ping).
	Method  uint8
	URIHost string
	URIPath string // "/a/b"; "" when the request has no Uri-Path
	// URIQuery is the Uri-Query options joined by "&".
	URIQuery         string
	ContentFormat    uint16
	HasContentFormat bool
	// ResponseCode is the response's code (coapparse.Code); 0 when the
	// flow has no response (0.00 is never a response code).
	ResponseCode uint8
	Observe      uint32 // Observe option: the request's (0 register, 1 deregister), a notification's sequence
	HasObserve   bool
	// Block is the Block1 or Block2 option value (BlockOption says which;
	// BlockNone: no block option).
	Block           uint32
	BlockOption     uint8
	Retransmissions uint32 // repeated initiating messages (same message id)
	PayloadLength   uint32 // payload bytes of the request and its response (retransmissions not counted)
}

// CoAPFields are the CoAP fields of a Document, all omitted from MQTT
// documents.
type CoAPFields struct {
	CoAPType            string  `bson:"coapType,omitempty" json:"coapType,omitempty"`
	CoAPCode            string  `bson:"coapCode,omitempty" json:"coapCode,omitempty"`
	CoAPMethod          string  `bson:"coapMethod,omitempty" json:"coapMethod,omitempty"`
	CoAPMessageID       *uint16 `bson:"coapMessageId,omitempty" json:"coapMessageId,omitempty"`
	CoAPToken           string  `bson:"coapToken,omitempty" json:"coapToken,omitempty"`
	CoAPURIHost         string  `bson:"coapUriHost,omitempty" json:"coapUriHost,omitempty"`
	CoAPURIPath         string  `bson:"coapUriPath,omitempty" json:"coapUriPath,omitempty"`
	CoAPURIQuery        string  `bson:"coapUriQuery,omitempty" json:"coapUriQuery,omitempty"`
	CoAPContentFormat   *uint16 `bson:"coapContentFormat,omitempty" json:"coapContentFormat,omitempty"`
	CoAPResponseCode    string  `bson:"coapResponseCode,omitempty" json:"coapResponseCode,omitempty"`
	CoAPObserve         *uint32 `bson:"coapObserve,omitempty" json:"coapObserve,omitempty"`
	CoAPBlock           string  `bson:"coapBlock,omitempty" json:"coapBlock,omitempty"`
	CoAPBlockOption     string  `bson:"coapBlockOption,omitempty" json:"coapBlockOption,omitempty"`
	CoAPRetransmissions *uint32 `bson:"coapRetransmissions,omitempty" json:"coapRetransmissions,omitempty"`
	CoAPPayloadLength   *uint32 `bson:"coapPayloadLength,omitempty" json:"coapPayloadLength,omitempty"`
}

// BlockString renders a Block option value as "num/more/size", e.g.
// "3/1/64" (more is 0 or 1; size in bytes, 2^(SZX+4); SZX 7 shows 2048).
func BlockString(v uint32) string {
	b := coapparse.Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}
	more := "0"
	if b.More {
		more = "1"
	}
	return strconv.FormatUint(uint64(b.Num), 10) + "/" + more + "/" + strconv.Itoa(1<<(min(b.SZX, 7)+4))
}

// ParseBlockString is the inverse of BlockString.
func ParseBlockString(s string) (uint32, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return 0, false
	}
	num, err1 := strconv.ParseUint(parts[0], 10, 20)
	size, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil || (parts[1] != "0" && parts[1] != "1") {
		return 0, false
	}
	szx := -1
	for x := 0; x < 8; x++ {
		if 1<<(x+4) == size {
			szx = x
		}
	}
	if szx < 0 {
		return 0, false
	}
	v := uint32(num)<<4 | uint32(szx)
	if parts[1] == "1" {
		v |= 8
	}
	return v, true
}

var blockOptionNames = [...]string{"", "block1", "block2"}

func parseCode(s string) (uint8, bool) {
	if len(s) != 4 || s[1] != '.' || s[0] < '0' || s[0] > '7' {
		return 0, false
	}
	d, err := strconv.Atoi(s[2:])
	if err != nil || d < 0 || d > 31 {
		return 0, false
	}
	return uint8(coapparse.NewCode(s[0]-'0', uint8(d))), true
}

func parseType(s string) uint8 {
	for t := coapparse.Confirmable; t <= coapparse.Reset; t++ {
		if t.String() == s {
			return uint8(t)
		}
	}
	return 0
}

// coapFields fills the CoAP fields of a document.
func (c *CoAP) fields() CoAPFields {
	f := CoAPFields{
		CoAPType:            coapparse.Type(c.Type).String(),
		CoAPCode:            coapparse.Code(c.Code).String(),
		CoAPMessageID:       new(c.MessageID),
		CoAPToken:           hex.EncodeToString(c.Token),
		CoAPURIHost:         c.URIHost,
		CoAPURIPath:         c.URIPath,
		CoAPURIQuery:        c.URIQuery,
		CoAPRetransmissions: new(c.Retransmissions),
		CoAPPayloadLength:   new(c.PayloadLength),
	}
	if c.Method != 0 {
		f.CoAPMethod = coapparse.Code(c.Method).Name()
		if f.CoAPMethod == "" {
			f.CoAPMethod = coapparse.Code(c.Method).String()
		}
	}
	if c.HasContentFormat {
		f.CoAPContentFormat = new(c.ContentFormat)
	}
	if c.ResponseCode != 0 {
		f.CoAPResponseCode = coapparse.Code(c.ResponseCode).String()
	}
	if c.HasObserve {
		f.CoAPObserve = new(c.Observe)
	}
	if c.BlockOption != BlockNone && int(c.BlockOption) < len(blockOptionNames) {
		f.CoAPBlock = BlockString(c.Block)
		f.CoAPBlockOption = blockOptionNames[c.BlockOption]
	}
	return f
}

// coap converts the CoAP fields of a document back (nil when it has none).
func (f *CoAPFields) coap() *CoAP {
	if f.CoAPType == "" && f.CoAPCode == "" && f.CoAPMessageID == nil {
		return nil
	}
	c := &CoAP{Type: parseType(f.CoAPType), URIHost: f.CoAPURIHost, URIPath: f.CoAPURIPath, URIQuery: f.CoAPURIQuery}
	c.Code, _ = parseCode(f.CoAPCode)
	if f.CoAPMessageID != nil {
		c.MessageID = *f.CoAPMessageID
	}
	if f.CoAPToken != "" {
		c.Token, _ = hex.DecodeString(f.CoAPToken)
	}
	if f.CoAPMethod != "" {
		for code := coapparse.Code(1); code < 32; code++ {
			if code.Name() == f.CoAPMethod || code.String() == f.CoAPMethod {
				c.Method = uint8(code)
				break
			}
		}
	}
	if f.CoAPContentFormat != nil {
		c.ContentFormat, c.HasContentFormat = *f.CoAPContentFormat, true
	}
	c.ResponseCode, _ = parseCode(f.CoAPResponseCode)
	if f.CoAPObserve != nil {
		c.Observe, c.HasObserve = *f.CoAPObserve, true
	}
	if v, ok := ParseBlockString(f.CoAPBlock); ok {
		for i, n := range blockOptionNames {
			if i > 0 && n == f.CoAPBlockOption {
				c.Block, c.BlockOption = v, uint8(i)
			}
		}
	}
	if f.CoAPRetransmissions != nil {
		c.Retransmissions = *f.CoAPRetransmissions
	}
	if f.CoAPPayloadLength != nil {
		c.PayloadLength = *f.CoAPPayloadLength
	}
	return c
}

// CoAPDocument is the stored form of a CoAP flow without the mqtt*
// fields but the correlation fields of its case key: what JSON lines hold
// for it (Document.CoAPView) and, field for field, what the store writes;
// it reads back as a Document.
type CoAPDocument struct {
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
	ApplicationProtocol      string    `bson:"applicationProtocol,omitempty" json:"applicationProtocol,omitempty"`

	CoAPFields `bson:",inline"`

	// The case key (docs/coap.md, "Case key"), in MQTT's correlation
	// fields; all three are absent from a flow without one.
	MQTTCorrelationData    string `bson:"mqttCorrelationData,omitempty" json:"mqttCorrelationData,omitempty"`
	MQTTCorrelationDataRaw []byte `bson:"mqttCorrelationDataRaw,omitempty" json:"mqttCorrelationDataRaw,omitempty"`
	MQTTCorrelationSource  string `bson:"mqttCorrelationSource,omitempty" json:"mqttCorrelationSource,omitempty"`

	ExporterAddress      string     `bson:"exporterAddress,omitempty" json:"exporterAddress,omitempty"`
	ObservationDomainID  uint32     `bson:"observationDomainId" json:"observationDomainId"`
	CollectorReceiveTime *time.Time `bson:"collectorReceiveTime,omitempty" json:"collectorReceiveTime,omitempty"`
}

// CoAPView returns d without its mqtt* fields but the correlation fields.
func (d *Document) CoAPView() CoAPDocument {
	return CoAPDocument{
		ID: d.ID, SourceIPv4Address: d.SourceIPv4Address, DestinationIPv4Address: d.DestinationIPv4Address,
		SourceIPv6Address: d.SourceIPv6Address, DestinationIPv6Address: d.DestinationIPv6Address,
		SourceTransportPort: d.SourceTransportPort, DestinationTransportPort: d.DestinationTransportPort,
		Protocol: d.Protocol, FlowStart: d.FlowStart, FlowEnd: d.FlowEnd, FlowStartNs: d.FlowStartNs, FlowEndNs: d.FlowEndNs,
		FlowDurationMicroseconds: d.FlowDurationMicroseconds, PacketDeltaCount: d.PacketDeltaCount,
		OctetDeltaCount: d.OctetDeltaCount, FlowEndReason: d.FlowEndReason, FlowID: d.FlowID,
		ApplicationProtocol: d.ApplicationProtocol, CoAPFields: d.CoAPFields,
		MQTTCorrelationData: d.MQTTCorrelationData, MQTTCorrelationDataRaw: d.MQTTCorrelationDataRaw, MQTTCorrelationSource: d.MQTTCorrelationSource,
		ExporterAddress: d.ExporterAddress, ObservationDomainID: d.ObservationDomainID, CollectorReceiveTime: d.CollectorReceiveTime,
	}
}
