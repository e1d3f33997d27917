package ipfix

import (
	"encoding/hex"
	"unicode/utf8"
)

// DefaultMQTTPEN is the private enterprise number of the MQTT elements by
// default: 9999, the number the original MISSION prototype used so that old
// and new probes and collectors interoperate. IANA has assigned 9999 to
// another organisation, so deployments that mix with other enterprise data
// should configure their own number (NewRegistry). The original collector
// matched element ids and ignored the number; this package matches both, so
// probe and collector must agree on the number.
const DefaultMQTTPEN uint32 = 9999

// MQTT element ids (enterprise-specific, under the configured PEN). Ids 1–7
// are those of the original prototype, with the same names and meanings.
const (
	MQTTQoS                uint16 = 1
	MQTTControlType        uint16 = 2
	MQTTPacketID           uint16 = 3
	MQTTTopic              uint16 = 4
	MQTTSrcClientID        uint16 = 5
	MQTTDstClientID        uint16 = 6
	MQTTCorrelationData    uint16 = 7
	MQTTProtocolVersion    uint16 = 8
	MQTTReasonCode         uint16 = 9
	MQTTRetain             uint16 = 10
	MQTTDup                uint16 = 11
	MQTTPayloadLength      uint16 = 12
	MQTTTopicFilters       uint16 = 13
	MQTTCorrelationDataRaw uint16 = 14
	MQTTCorrelationSource  uint16 = 15
	MQTTUsername           uint16 = 16
	MQTTResponseTopic      uint16 = 17
	// MQTTTopicFilter is the element of the mqttTopicFilters basicList: one
	// SUBSCRIBE/UNSUBSCRIBE topic filter.
	MQTTTopicFilter uint16 = 18
	// MQTTIdentitySource says where the flow's client id came from: 0 none,
	// 1 connect, 2 restored, 3 collector, 4 inferred.
	MQTTIdentitySource uint16 = 19
	// MQTTAnomalies is the bitmask of the flow's protocol anomalies
	// (docs/anomalies.md: bit i is the i-th name of the table).
	MQTTAnomalies uint16 = 20
)

// OriginalStringLength is the fixed length the original prototype used for
// its string fields (mqttTopic, mqttSrcClientId, mqttDstClientId,
// mqttCorrelationData), NUL-padded. Decoding strips trailing NULs.
const OriginalStringLength = 255

// mqttElements is indexed by element id; PEN is filled in by the Registry.
var mqttElements = [...]InfoElement{
	MQTTQoS:                {Name: "mqttQoS", ID: MQTTQoS, Type: TypeUnsigned16},
	MQTTControlType:        {Name: "mqttControlType", ID: MQTTControlType, Type: TypeUnsigned16},
	MQTTPacketID:           {Name: "mqttPacketId", ID: MQTTPacketID, Type: TypeUnsigned16},
	MQTTTopic:              {Name: "mqttTopic", ID: MQTTTopic, Type: TypeString},
	MQTTSrcClientID:        {Name: "mqttSrcClientId", ID: MQTTSrcClientID, Type: TypeString},
	MQTTDstClientID:        {Name: "mqttDstClientId", ID: MQTTDstClientID, Type: TypeString},
	MQTTCorrelationData:    {Name: "mqttCorrelationData", ID: MQTTCorrelationData, Type: TypeString},
	MQTTProtocolVersion:    {Name: "mqttProtocolVersion", ID: MQTTProtocolVersion, Type: TypeUnsigned8},
	MQTTReasonCode:         {Name: "mqttReasonCode", ID: MQTTReasonCode, Type: TypeUnsigned8},
	MQTTRetain:             {Name: "mqttRetain", ID: MQTTRetain, Type: TypeBoolean},
	MQTTDup:                {Name: "mqttDup", ID: MQTTDup, Type: TypeBoolean},
	MQTTPayloadLength:      {Name: "mqttPayloadLength", ID: MQTTPayloadLength, Type: TypeUnsigned32},
	MQTTTopicFilters:       {Name: "mqttTopicFilters", ID: MQTTTopicFilters, Type: TypeBasicList},
	MQTTCorrelationDataRaw: {Name: "mqttCorrelationDataRaw", ID: MQTTCorrelationDataRaw, Type: TypeOctetArray},
	MQTTCorrelationSource:  {Name: "mqttCorrelationSource", ID: MQTTCorrelationSource, Type: TypeUnsigned8},
	MQTTUsername:           {Name: "mqttUsername", ID: MQTTUsername, Type: TypeString},
	MQTTResponseTopic:      {Name: "mqttResponseTopic", ID: MQTTResponseTopic, Type: TypeString},
	MQTTTopicFilter:        {Name: "mqttTopicFilter", ID: MQTTTopicFilter, Type: TypeString},
	MQTTIdentitySource:     {Name: "mqttIdentitySource", ID: MQTTIdentitySource, Type: TypeUnsigned8},
	MQTTAnomalies:          {Name: "mqttAnomalies", ID: MQTTAnomalies, Type: TypeUnsigned64},
}

// Values of mqttCorrelationSource.
const (
	CorrelationNone        uint8 = 0
	CorrelationData        uint8 = 1 // MQTT v5 Correlation Data property
	CorrelationTraceparent uint8 = 2 // trace id of a W3C traceparent user property
	CorrelationCoAPOption  uint8 = 3 // value of the CoAP case-key option (CoAP templates)
)

// AppendCorrelationText appends the text form of MQTT correlation data used
// by mqttCorrelationData: the bytes themselves if they are valid UTF-8,
// otherwise their lowercase hex encoding.
func AppendCorrelationText(dst, data []byte) []byte {
	if utf8.Valid(data) {
		return append(dst, data...)
	}
	return hex.AppendEncode(dst, data)
}
