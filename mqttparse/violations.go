package mqttparse

import "strings"

// Violations is a set of specification MUSTs a decoded packet breaks. The
// packet is still filled; Decode returns ErrViolation when the set is not
// empty. An IDS should report them rather than drop the packet.
type Violations uint32

// Violation bits.
const (
	// ViolationReservedType: packet type 0, or 15 (AUTH) before MQTT 5.0.
	ViolationReservedType Violations = 1 << iota
	// ViolationHeaderFlags: fixed-header flags other than those the type
	// requires, or PUBLISH QoS 3 [MQTT-2.1.3-1], [MQTT-3.3.1-4].
	ViolationHeaderFlags
	// ViolationDupQoS0: PUBLISH with DUP set and QoS 0 [MQTT-3.3.1-2].
	ViolationDupQoS0
	// ViolationNonMinimalLength: a variable byte integer not in its shortest form [MQTT-1.5.5-1].
	ViolationNonMinimalLength
	// ViolationPacketIDZero: packet identifier 0 where one is required [MQTT-2.2.1-3].
	ViolationPacketIDZero
	// ViolationDuplicateProperty: a property that may appear once appears again.
	ViolationDuplicateProperty
	// ViolationPropertyNotAllowed: a property not allowed in this packet type.
	ViolationPropertyNotAllowed
	// ViolationPropertyValue: a property value out of range (e.g. Payload
	// Format 2, Topic Alias 0, Receive Maximum 0, Subscription Identifier 0).
	ViolationPropertyValue
	// ViolationInvalidUTF8: a UTF-8 string field is ill-formed or holds U+0000.
	ViolationInvalidUTF8
	// ViolationProtocolName: CONNECT protocol name and level do not match a known
	// pair (MQIsdp/3, MQTT/4, MQTT/5).
	ViolationProtocolName
	// ViolationConnectFlags: CONNECT reserved bit set, will QoS 3, will
	// QoS/retain without will flag, or (before 5.0) password without username.
	ViolationConnectFlags
	// ViolationConnackFlags: CONNACK acknowledge-flags reserved bits set.
	ViolationConnackFlags
	// ViolationReasonCode: a reason/return code not valid for the packet type.
	ViolationReasonCode
	// ViolationTopic: PUBLISH topic name with a wildcard, or empty without a topic alias.
	ViolationTopic
	// ViolationSubscriptionOptions: reserved option bits, QoS 3 or Retain Handling 3.
	ViolationSubscriptionOptions
	// ViolationEmptyList: SUBSCRIBE, UNSUBSCRIBE or SUBACK without any entry.
	ViolationEmptyList
	// ViolationTrailingBytes: bytes left over in a packet whose size is fixed
	// by the version (e.g. PINGREQ with a body, 3.1.1 PUBACK longer than 2).
	ViolationTrailingBytes
)

var violationNames = [...]string{"reserved-type", "header-flags", "dup-qos0", "non-minimal-length",
	"packet-id-zero", "duplicate-property", "property-not-allowed", "property-value", "invalid-utf8",
	"protocol-name", "connect-flags", "connack-flags", "reason-code", "topic", "subscription-options",
	"empty-list", "trailing-bytes"}

// Has reports whether all bits of w are in v.
func (v Violations) Has(w Violations) bool { return v&w == w }

// String lists the violations, comma separated ("" for none).
func (v Violations) String() string {
	var b strings.Builder
	for i, n := range violationNames {
		if v&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}
