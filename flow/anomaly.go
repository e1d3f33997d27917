package flow

import "strings"

// Anomaly is a set of protocol anomalies seen in the packets of a flow
// (docs/anomalies.md): requests and responses that do not fit the session
// (a response without request, a second CONNECT, a message before CONNECT)
// and the specification MUSTs the packets break. Names follow Suricata's
// MQTT anomaly events where they overlap. It is sent as the IPFIX element
// mqttAnomalies (unsigned64) and stored as the array of names
// mqttAnomalies. The zero value is a clean flow.
type Anomaly uint64

// Anomaly bits. The values are on the wire: never renumber them.
const (
	// AnomalyMissingConnect: a CONNACK without an open CONNECT.
	AnomalyMissingConnect Anomaly = 1 << iota
	// AnomalyMissingPublish: a PUBACK, PUBREC, PUBREL or PUBCOMP without a
	// PUBLISH of its packet identifier and QoS.
	AnomalyMissingPublish
	// AnomalyMissingSubscribe: a SUBACK without a SUBSCRIBE.
	AnomalyMissingSubscribe
	// AnomalyMissingUnsubscribe: an UNSUBACK without an UNSUBSCRIBE.
	AnomalyMissingUnsubscribe
	// AnomalyDoubleConnect: a CONNECT after one already seen on the
	// connection [MQTT-3.1.0-2].
	AnomalyDoubleConnect
	// AnomalyUnintroducedMessage: a packet other than CONNECT on a
	// connection whose start was seen, before any CONNECT [MQTT-3.1.0-1].
	AnomalyUnintroducedMessage
	// AnomalyInvalidQoSLevel: a PUBLISH with QoS 3 [MQTT-3.3.1-4].
	AnomalyInvalidQoSLevel
	// AnomalyMissingMsgID: packet identifier 0 where one is required
	// [MQTT-2.2.1-3].
	AnomalyMissingMsgID
	// AnomalyUnassignedMsgType: packet type 0, or 15 (AUTH) before MQTT 5.0.
	AnomalyUnassignedMsgType
	// AnomalyTooManyTransactions: the transaction was opened when the
	// table of open transactions was full (the oldest was evicted).
	AnomalyTooManyTransactions
	// AnomalyMalformedTraffic: a packet whose body does not decode, or a
	// fixed header that breaks the framing of the stream.
	AnomalyMalformedTraffic
	// AnomalyMissingPingreq: a PINGRESP without a PINGREQ.
	AnomalyMissingPingreq
	// AnomalyPacketTooLarge: a packet longer than the probe's maximum
	// packet size (skipped by its length).
	AnomalyPacketTooLarge
	// AnomalyInvalidHeaderFlags: fixed-header flags other than those the
	// type requires [MQTT-2.1.3-1].
	AnomalyInvalidHeaderFlags
	// AnomalyDupQoS0: a PUBLISH with DUP set and QoS 0 [MQTT-3.3.1-2].
	AnomalyDupQoS0
	// AnomalyNonMinimalLength: a variable byte integer not in its shortest
	// form [MQTT-1.5.5-1].
	AnomalyNonMinimalLength
	// AnomalyDuplicateProperty: a property that may appear once appears again.
	AnomalyDuplicateProperty
	// AnomalyPropertyNotAllowed: a property not allowed in the packet type.
	AnomalyPropertyNotAllowed
	// AnomalyInvalidPropertyValue: a property value out of range.
	AnomalyInvalidPropertyValue
	// AnomalyInvalidUTF8: a UTF-8 string field is ill-formed or holds U+0000.
	AnomalyInvalidUTF8
	// AnomalyInvalidProtocolName: CONNECT protocol name and level do not
	// match a known pair.
	AnomalyInvalidProtocolName
	// AnomalyInvalidConnectFlags: CONNECT reserved flag, will QoS 3, will
	// QoS/retain without will, or (before 5.0) password without user name.
	AnomalyInvalidConnectFlags
	// AnomalyInvalidConnackFlags: CONNACK acknowledge-flags reserved bits set.
	AnomalyInvalidConnackFlags
	// AnomalyInvalidReasonCode: a reason or return code not valid for the
	// packet type.
	AnomalyInvalidReasonCode
	// AnomalyInvalidTopic: a PUBLISH topic name with a wildcard, or empty
	// without a topic alias.
	AnomalyInvalidTopic
	// AnomalyInvalidSubscriptionOptions: reserved option bits, QoS 3 or
	// Retain Handling 3.
	AnomalyInvalidSubscriptionOptions
	// AnomalyEmptyList: a SUBSCRIBE, UNSUBSCRIBE or SUBACK without entries.
	AnomalyEmptyList
	// AnomalyTrailingBytes: bytes left over in a packet whose size the
	// version fixes.
	AnomalyTrailingBytes

	numAnomalies = iota
)

var anomalyNames = [numAnomalies]string{
	"missing_connect", "missing_publish", "missing_subscribe", "missing_unsubscribe",
	"double_connect", "unintroduced_message", "invalid_qos_level", "missing_msg_id",
	"unassigned_msg_type", "too_many_transactions", "malformed_traffic",
	"missing_pingreq", "packet_too_large",
	"invalid_header_flags", "dup_qos0", "non_minimal_length", "duplicate_property",
	"property_not_allowed", "invalid_property_value", "invalid_utf8", "invalid_protocol_name",
	"invalid_connect_flags", "invalid_connack_flags", "invalid_reason_code", "invalid_topic",
	"invalid_subscription_options", "empty_list", "trailing_bytes",
}

// Has reports whether every bit of b is in a.
func (a Anomaly) Has(b Anomaly) bool { return a&b == b }

// Names lists the anomalies in bit order (nil for none). Unknown bits (a
// newer exporter's) are named "anomaly_<bit>".
func (a Anomaly) Names() []string {
	if a == 0 {
		return nil
	}
	var out []string
	for i := range 64 {
		if a&(1<<i) == 0 {
			continue
		}
		if i < numAnomalies {
			out = append(out, anomalyNames[i])
		} else {
			out = append(out, "anomaly_"+itoa(i))
		}
	}
	return out
}

// String lists the anomalies, comma separated ("" for none).
func (a Anomaly) String() string { return strings.Join(a.Names(), ",") }

// AllAnomalies lists every known anomaly bit, in bit order.
func AllAnomalies() []Anomaly {
	out := make([]Anomaly, numAnomalies)
	for i := range out {
		out[i] = 1 << i
	}
	return out
}

// ParseAnomalies is the inverse of Names: unknown names are ignored.
func ParseAnomalies(names []string) Anomaly {
	var a Anomaly
	for _, n := range names {
		a |= parseAnomaly(n)
	}
	return a
}

func parseAnomaly(n string) Anomaly {
	for i, s := range anomalyNames {
		if s == n {
			return 1 << i
		}
	}
	if rest, ok := strings.CutPrefix(n, "anomaly_"); ok && len(rest) > 0 && len(rest) <= 2 {
		i := 0
		for _, c := range rest {
			if c < '0' || c > '9' {
				return 0
			}
			i = i*10 + int(c-'0')
		}
		if i < 64 {
			return 1 << i
		}
	}
	return 0
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return string(rune('0'+i/10)) + string(rune('0'+i%10))
}
