package mqttparse

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// fixture is one annotated packet: bytes in, expected error/violations and
// field checks out.
type fixture struct {
	name  string
	ver   Version
	in    []byte
	err   error      // sentinel expected with errors.Is; nil for success
	viol  Violations // expected violation set (exact)
	check func(t *testing.T, p *Packet)
}

func str(b []byte) string { return string(b) }

var fixtures = []fixture{
	// ---------------------------------------------------------------- CONNECT
	{
		name: "connect 3.1 MQIsdp", ver: VersionUnknown,
		in: []byte{
			0x10, 18, // CONNECT, remaining length 18
			0, 6, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name
			3,     // protocol level 3 (3.1)
			0x02,  // flags: clean session
			0, 60, // keep alive 60
			0, 4, 'c', 'l', 'i', '1', // client id
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, Version31, p.Version)
			require.False(t, p.VersionGuessed)
			require.Equal(t, "MQIsdp", str(p.Connect.ProtocolName))
			require.True(t, p.Connect.CleanStart)
			require.Equal(t, uint16(60), p.Connect.KeepAlive)
			require.Equal(t, "cli1", str(p.Connect.ClientID))
		},
	},
	{
		name: "connect 3.1.1 will user password", ver: Version311,
		in: []byte{
			0x10, 38, // CONNECT, remaining length 38
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			4,     // level 4 (3.1.1)
			0xEC,  // flags: user, password, will retain, will QoS 1, will flag
			0, 10, // keep alive
			0, 1, 'c', // client id
			0, 3, 'w', '/', 't', // will topic
			0, 4, 'g', 'o', 'n', 'e', // will payload
			0, 4, 'u', 's', 'e', 'r', // user name
			0, 6, 's', 'e', 'c', 'r', 'e', 't', // password (length kept, value not)
		},
		check: func(t *testing.T, p *Packet) {
			c := p.Connect
			require.Equal(t, Version311, p.Version)
			require.True(t, c.WillFlag && c.WillRetain && c.UsernameFlag && c.PasswordFlag)
			require.False(t, c.CleanStart)
			require.Equal(t, byte(1), c.WillQoS)
			require.Equal(t, "w/t", str(c.WillTopic))
			require.Equal(t, "gone", str(c.WillPayload))
			require.Equal(t, "user", str(c.Username))
			require.Equal(t, 6, c.PasswordLen)
		},
	},
	{
		// MQTT 5.0 spec 3.1.2.11 example variable header, plus a client id.
		name: "connect 5.0 spec example with will properties", ver: Version311, // caller's version ignored for CONNECT
		in: []byte{
			0x10, 42, // CONNECT, remaining length 42
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			5,     // level 5
			0xCE,  // flags: user, password, will QoS 1, will flag, clean start
			0, 10, // keep alive 10
			5,                 // properties length 5
			0x11, 0, 0, 0, 10, // Session Expiry Interval 10
			0, 2, 'i', 'd', // client id
			7,                // will properties length 7
			0x18, 0, 0, 0, 5, // Will Delay Interval 5
			0x01, 1, // Payload Format Indicator 1
			0, 1, 't', // will topic
			0, 2, 'h', 'i', // will payload
			0, 1, 'u', // user name
			0, 2, 'p', 'w', // password
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, Version5, p.Version)
			require.True(t, p.Properties.Has(PropSessionExpiryInterval))
			require.Equal(t, uint32(10), p.Properties.SessionExpiryInterval)
			require.Equal(t, "id", str(p.Connect.ClientID))
			w := &p.Connect.WillProperties
			require.Equal(t, uint32(5), w.WillDelayInterval)
			require.True(t, w.Has(PropPayloadFormatIndicator))
			require.Equal(t, byte(1), w.PayloadFormatIndicator)
			require.Equal(t, "t", str(p.Connect.WillTopic))
			require.Equal(t, 2, p.Connect.PasswordLen)
		},
	},
	{
		name: "connect reserved flag and password without user (3.1.1)", ver: Version311,
		in: []byte{
			0x10, 15, // CONNECT
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			4,    // level
			0x41, // flags: password, reserved bit 0
			0, 0, // keep alive
			0, 0, // empty client id
			0, 1, 'p', // password
		},
		err: ErrViolation, viol: ViolationConnectFlags,
	},
	{
		name: "connect wrong protocol name for level", ver: Version311,
		in: []byte{
			0x10, 12, // CONNECT
			0, 4, 'M', 'Q', 'T', 'T', // protocol name MQTT…
			3,    // …with level 3
			0x02, // clean
			0, 0, // keep alive
			0, 0, // client id
		},
		err: ErrViolation, viol: ViolationProtocolName,
	},
	{
		name: "connect user flag but no user name", ver: Version311,
		in: []byte{
			0x10, 12, // CONNECT
			0, 4, 'M', 'Q', 'T', 'T', 4, // protocol
			0x82, // flags: user, clean
			0, 0, // keep alive
			0, 0, // client id; user name missing
		},
		err: ErrTruncated,
	},
	// ---------------------------------------------------------------- CONNACK
	{
		name: "connack 3.1.1 session present refused", ver: Version311,
		in: []byte{
			0x20, 2, // CONNACK
			0x01, // session present
			0x05, // return code 5 not authorized
		},
		check: func(t *testing.T, p *Packet) {
			require.True(t, p.SessionPresent)
			require.Equal(t, ReasonCode(5), p.ReasonCode)
			require.Equal(t, "not authorized", ConnectReturnCodeString(p.ReasonCode))
		},
	},
	{
		name: "connack 5.0 with properties", ver: Version5,
		in: []byte{
			0x20, 19, // CONNACK
			0x00,                      // flags
			0x00,                      // reason Success
			16,                        // properties length
			0x12, 0, 3, 'a', 'b', 'c', // Assigned Client Identifier
			0x21, 0, 20, // Receive Maximum 20
			0x24, 1, // Maximum QoS 1
			0x22, 0, 10, // Topic Alias Maximum 10
			0x2A, 0, // Shared Subscription Available 0
		},
		check: func(t *testing.T, p *Packet) {
			pr := &p.Properties
			require.Equal(t, "abc", str(pr.AssignedClientIdentifier))
			require.Equal(t, uint16(20), pr.ReceiveMaximum)
			require.Equal(t, byte(1), pr.MaximumQoS)
			require.Equal(t, uint16(10), pr.TopicAliasMaximum)
			require.True(t, pr.Has(PropSharedSubscriptionAvailable))
			require.Equal(t, 16, pr.Len)
		},
	},
	{
		name: "connack reserved ack flags and bad reason", ver: Version5,
		in: []byte{
			0x20, 3, // CONNACK
			0x02, // reserved flag bit
			0x10, // reason 0x10 not valid in CONNACK
			0,    // properties length 0
		},
		err: ErrViolation, viol: ViolationConnackFlags | ViolationReasonCode,
	},
	// ---------------------------------------------------------------- PUBLISH
	{
		name: "publish 3.1.1 qos0", ver: Version311,
		in: []byte{
			0x30, 7, // PUBLISH QoS 0
			0, 3, 'a', '/', 'b', // topic
			'h', 'i', // payload
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, "a/b", str(p.Topic))
			require.Equal(t, "hi", str(p.Payload))
			require.Equal(t, uint16(0), p.PacketID)
		},
	},
	{
		name: "publish 3.1.1 qos2 dup retain", ver: Version311,
		in: []byte{
			0x3D, 6, // PUBLISH DUP, QoS 2, RETAIN
			0, 1, 't', // topic
			0x12, 0x34, // packet id
			'x', // payload
		},
		check: func(t *testing.T, p *Packet) {
			require.True(t, p.Header.Dup && p.Header.Retain)
			require.Equal(t, byte(2), p.Header.QoS)
			require.Equal(t, uint16(0x1234), p.PacketID)
			require.Equal(t, "x", str(p.Payload))
		},
	},
	{
		name: "publish 5.0 qos1 all publish properties", ver: Version5,
		in: []byte{
			0x32, 60, // PUBLISH QoS 1
			0, 1, 't', // topic
			0, 7, // packet id
			52,      // properties length
			0x01, 1, // Payload Format Indicator 1
			0x02, 0, 0, 0, 60, // Message Expiry Interval 60
			0x03, 0, 2, 't', 'x', // Content Type
			0x08, 0, 1, 'r', // Response Topic
			0x09, 0, 3, 1, 2, 3, // Correlation Data (binary)
			0x0B, 0x80, 0x01, // Subscription Identifier 128
			0x0B, 5, // Subscription Identifier 5 (repeatable in PUBLISH)
			0x23, 0, 4, // Topic Alias 4
			0x26, 0, 1, 'k', 0, 1, '1', // User Property k=1
			0x26, 0, 1, 'k', 0, 1, '2', // User Property k=2 (repeated key, order kept)
			0x26, 0, 2, 't', 'p', 0, 1, 'z', // User Property tp=z
			'p', 'a', // payload
		},
		check: func(t *testing.T, p *Packet) {
			pr := &p.Properties
			require.Equal(t, uint16(7), p.PacketID)
			require.Equal(t, byte(1), pr.PayloadFormatIndicator)
			require.Equal(t, uint32(60), pr.MessageExpiryInterval)
			require.Equal(t, "tx", str(pr.ContentType))
			require.Equal(t, "r", str(pr.ResponseTopic))
			require.Equal(t, []byte{1, 2, 3}, pr.CorrelationData)
			require.Equal(t, []uint32{128, 5}, pr.SubscriptionIdentifiers)
			require.Equal(t, uint16(4), pr.TopicAlias)
			require.Len(t, pr.User, 3)
			require.Equal(t, "2", str(pr.User[1].Value))
			v, ok := pr.UserValue("tp")
			require.True(t, ok)
			require.Equal(t, "z", str(v))
			require.Equal(t, "pa", str(p.Payload))
		},
	},
	{
		name: "publish 5.0 empty topic with alias", ver: Version5,
		in: []byte{
			0x30, 7, // PUBLISH QoS 0
			0, 0, // empty topic
			3,          // properties length
			0x23, 0, 9, // Topic Alias 9
			'p', // payload
		},
		check: func(t *testing.T, p *Packet) { require.Equal(t, uint16(9), p.Properties.TopicAlias) },
	},
	{
		name: "publish qos3 and packet id 0", ver: Version311,
		in: []byte{
			0x36, 5, // PUBLISH QoS 3
			0, 1, 't', // topic
			0, 0, // packet id 0
		},
		err: ErrViolation, viol: ViolationHeaderFlags | ViolationPacketIDZero,
		check: func(t *testing.T, p *Packet) { require.Equal(t, byte(3), p.Header.QoS) },
	},
	{
		name: "publish dup with qos0, wildcard topic", ver: Version311,
		in: []byte{
			0x38, 3, // PUBLISH DUP QoS 0
			0, 1, '#', // wildcard topic
		},
		err: ErrViolation, viol: ViolationDupQoS0 | ViolationTopic,
	},
	{
		name: "publish 5.0 duplicate topic alias and not-allowed property", ver: Version5,
		in: []byte{
			0x30, 12, // PUBLISH QoS 0
			0, 1, 't', // topic
			8,          // properties length
			0x23, 0, 1, // Topic Alias 1
			0x23, 0, 2, // Topic Alias 2 again (may appear once)
			0x24, 1, // Maximum QoS: CONNACK only
		},
		err: ErrViolation, viol: ViolationDuplicateProperty | ViolationPropertyNotAllowed,
		check: func(t *testing.T, p *Packet) { require.Equal(t, uint16(2), p.Properties.TopicAlias) },
	},
	{
		name: "publish 5.0 topic alias 0 and invalid utf8 topic", ver: Version5,
		in: []byte{
			0x30, 7, // PUBLISH
			0, 1, 0xff, // topic: invalid UTF-8
			3,          // properties length
			0x23, 0, 0, // Topic Alias 0
		},
		err: ErrViolation, viol: ViolationPropertyValue | ViolationInvalidUTF8,
	},
	{
		// A bug of mochi-mqtt: it reads past a 1-byte property block and reports
		// TopicAlias=7. The 0x23 identifier has no room for its value inside
		// the declared length: malformed, never TopicAlias=7.
		name: "regression mochi properties past declared length", ver: Version5,
		in: []byte{
			0x30, 7, // PUBLISH QoS 0
			0, 1, 't', // topic
			1,    // properties length 1
			0x23, // Topic Alias id, value outside the block
			0, 7, // payload bytes (would be TopicAlias=7 in mochi)
		},
		err: ErrTruncated,
	},
	{
		name: "publish unknown property", ver: Version5,
		in: []byte{
			0x30, 6, // PUBLISH
			0, 1, 't', // topic
			2,       // properties length
			0x7f, 0, // unknown id 0x7f
		},
		err: ErrUnknownProperty,
	},
	{
		name: "publish property length beyond packet", ver: Version5,
		in: []byte{
			0x30, 5, // PUBLISH
			0, 1, 't', // topic
			9,    // properties length 9 > 1 byte left
			0x01, // …
		},
		err: ErrTruncated,
	},
	{
		name: "publish topic longer than packet", ver: Version311,
		in: []byte{
			0x30, 3, // PUBLISH
			0, 9, 't', // topic length 9, 1 byte present
		},
		err: ErrTruncated,
	},
	// ----------------------------------------------------- PUBACK … PUBCOMP
	{
		name: "puback 3.1.1", ver: Version311,
		in: []byte{0x40, 2, 0, 1}, // PUBACK, packet id 1
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, uint16(1), p.PacketID)
			require.Equal(t, Success, p.ReasonCode)
		},
	},
	{
		name: "puback 3.1.1 trailing byte", ver: Version311,
		in:  []byte{0x40, 3, 0, 1, 0x10}, // PUBACK, packet id 1, extra byte
		err: ErrViolation, viol: ViolationTrailingBytes,
	},
	{
		name: "pubrec 5.0 reason only", ver: Version5,
		in: []byte{
			0x50, 3, // PUBREC
			0, 2, // packet id 2
			0x10, // No matching subscribers
		},
		check: func(t *testing.T, p *Packet) { require.Equal(t, NoMatchingSubscribers, p.ReasonCode) },
	},
	{
		name: "pubrel 5.0 reason and reason string", ver: Version5,
		in: []byte{
			0x62, 8, // PUBREL (flags 0010)
			0, 3, // packet id
			0x92,            // Packet Identifier not found
			4,               // properties length
			0x1F, 0, 1, 'x', // Reason String
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, PacketIdentifierNotFound, p.ReasonCode)
			require.Equal(t, "x", str(p.Properties.ReasonString))
		},
	},
	{
		name: "pubrel wrong flags", ver: Version311,
		in:  []byte{0x60, 2, 0, 3}, // PUBREL with flags 0000
		err: ErrViolation, viol: ViolationHeaderFlags,
	},
	{
		name: "pubcomp 5.0 invalid reason", ver: Version5,
		in:  []byte{0x70, 3, 0, 4, 0x10}, // PUBCOMP id 4, reason 0x10 not allowed
		err: ErrViolation, viol: ViolationReasonCode,
	},
	// ---------------------------------------------------------- SUBSCRIBE …
	{
		name: "subscribe 3.1.1 two filters", ver: Version311,
		in: []byte{
			0x82, 14, // SUBSCRIBE
			0, 10, // packet id
			0, 3, 'a', '/', '+', // filter
			1,                   // QoS 1
			0, 3, 'b', '/', '#', // filter
			2, // QoS 2
		},
		check: func(t *testing.T, p *Packet) {
			require.Len(t, p.Filters, 2)
			require.Equal(t, "a/+", str(p.Filters[0].Filter))
			require.Equal(t, byte(2), p.Filters[1].QoS)
		},
	},
	{
		name: "subscribe 5.0 options and subscription identifier", ver: Version5,
		in: []byte{
			0x82, 9, // SUBSCRIBE
			0, 1, // packet id
			2,       // properties length
			0x0B, 7, // Subscription Identifier 7
			0, 1, 'f', // filter
			0x2E, // options: retain handling 2, RAP, NL, QoS 2
		},
		check: func(t *testing.T, p *Packet) {
			s := p.Filters[0]
			require.Equal(t, []uint32{7}, p.Properties.SubscriptionIdentifiers)
			require.Equal(t, byte(2), s.QoS)
			require.True(t, s.NoLocal && s.RetainAsPublished)
			require.Equal(t, byte(2), s.RetainHandling)
		},
	},
	{
		name: "subscribe 3.1.1 reserved option bits", ver: Version311,
		in:  []byte{0x82, 6, 0, 1, 0, 1, 'f', 0x04}, // SUBSCRIBE id 1, filter f, options 0x04 (5.0 bit)
		err: ErrViolation, viol: ViolationSubscriptionOptions,
	},
	{
		name: "subscribe without filters", ver: Version311,
		in:  []byte{0x82, 2, 0, 1}, // SUBSCRIBE id 1, no filters
		err: ErrViolation, viol: ViolationEmptyList,
	},
	{
		name: "subscribe 5.0 subscription identifier twice", ver: Version5,
		in: []byte{
			0x82, 11, // SUBSCRIBE
			0, 1, // packet id
			4,                // properties length
			0x0B, 1, 0x0B, 2, // two Subscription Identifiers: once only in SUBSCRIBE
			0, 1, 'f', 0, // filter f QoS 0
		},
		err: ErrViolation, viol: ViolationDuplicateProperty,
	},
	{
		name: "suback 3.1.1", ver: Version311,
		in: []byte{0x90, 5, 0, 10, 0, 1, 0x80}, // SUBACK id 10: QoS 0, QoS 1, failure
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, []ReasonCode{0, 1, 0x80}, p.ReasonCodes)
		},
	},
	{
		name: "suback 5.0 with reason string", ver: Version5,
		in: []byte{
			0x90, 8, // SUBACK
			0, 1, // packet id
			4,               // properties length
			0x1F, 0, 1, 'r', // Reason String
			0xA2, // Wildcard Subscriptions not supported
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, []ReasonCode{WildcardSubscriptionsNotSupported}, p.ReasonCodes)
			require.Equal(t, "Wildcard Subscriptions not supported", p.ReasonCodes[0].String())
		},
	},
	{
		name: "suback 3.1.1 5.0-only code", ver: Version311,
		in:  []byte{0x90, 3, 0, 1, 0x87}, // SUBACK id 1: 0x87 not a 3.1.1 return code
		err: ErrViolation, viol: ViolationReasonCode,
	},
	{
		name: "unsubscribe 3.1.1", ver: Version311,
		in: []byte{0xA2, 5, 0, 2, 0, 1, 'x'}, // UNSUBSCRIBE id 2, filter x
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, "x", str(p.Filters[0].Filter))
		},
	},
	{
		name: "unsubscribe 5.0 user property", ver: Version5,
		in: []byte{
			0xA2, 14, // UNSUBSCRIBE
			0, 2, // packet id
			7,                          // properties length
			0x26, 0, 1, 'a', 0, 1, 'b', // User Property a=b
			0, 2, 'x', 'y', // filter
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, "xy", str(p.Filters[0].Filter))
			require.Equal(t, "a", str(p.Properties.User[0].Key))
		},
	},
	{
		name: "unsuback 3.1.1", ver: Version311,
		in:    []byte{0xB0, 2, 0, 2}, // UNSUBACK id 2
		check: func(t *testing.T, p *Packet) { require.Empty(t, p.ReasonCodes) },
	},
	{
		name: "unsuback 5.0", ver: Version5,
		in: []byte{0xB0, 5, 0, 2, 0, 0x00, 0x11}, // UNSUBACK id 2, no properties, Success, No subscription existed
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, []ReasonCode{Success, NoSubscriptionExisted}, p.ReasonCodes)
		},
	},
	// ---------------------------------------------- PING, DISCONNECT, AUTH
	{name: "pingreq", ver: Version311, in: []byte{0xC0, 0}},
	{name: "pingresp", ver: Version5, in: []byte{0xD0, 0}},
	{name: "pingreq with body", ver: Version311, in: []byte{0xC0, 1, 0}, err: ErrViolation, viol: ViolationTrailingBytes},
	{name: "disconnect 3.1.1", ver: Version311, in: []byte{0xE0, 0}},
	{
		name: "disconnect 5.0 with reason and session expiry", ver: Version5,
		in: []byte{
			0xE0, 7, // DISCONNECT
			0x04,              // Disconnect with Will Message
			5,                 // properties length
			0x11, 0, 0, 0, 30, // Session Expiry Interval 30
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, DisconnectWithWillMessage, p.ReasonCode)
			require.Equal(t, uint32(30), p.Properties.SessionExpiryInterval)
		},
	},
	{
		name: "auth 5.0", ver: Version5,
		in: []byte{
			0xF0, 12, // AUTH
			0x18,                 // Continue authentication
			10,                   // properties length
			0x15, 0, 2, 'S', 'C', // Authentication Method
			0x16, 0, 2, 0xde, 0xad, // Authentication Data (binary)
		},
		check: func(t *testing.T, p *Packet) {
			require.Equal(t, ContinueAuthentication, p.ReasonCode)
			require.Equal(t, "SC", str(p.Properties.AuthenticationMethod))
			require.Equal(t, []byte{0xde, 0xad}, p.Properties.AuthenticationData)
		},
	},
	{name: "auth in 3.1.1 is reserved", ver: Version311, in: []byte{0xF0, 0}, err: ErrViolation, viol: ViolationReservedType},
	{name: "type 0 reserved", ver: Version5, in: []byte{0x00, 0}, err: ErrViolation, viol: ViolationReservedType},
	// ------------------------------------------------------- fixed header
	{name: "non-minimal remaining length", ver: Version311, in: []byte{0xC0, 0x80, 0x00}, err: ErrViolation, viol: ViolationNonMinimalLength},
	{
		// paho accepts 5 length bytes, mochi 6. At most 4 are legal.
		name: "regression remaining length 5 bytes", ver: Version311,
		in:  []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01},
		err: ErrRemainingLength,
	},
	{
		name: "regression remaining length 6 bytes", ver: Version311,
		in:  []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		err: ErrRemainingLength,
	},
	{name: "incomplete header", ver: Version311, in: []byte{0x30}, err: ErrIncomplete},
	{name: "incomplete length", ver: Version311, in: []byte{0x30, 0x80}, err: ErrIncomplete},
	{name: "incomplete body", ver: Version311, in: []byte{0x30, 5, 0, 1}, err: ErrIncomplete},
}

func TestDecodeFixtures(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			var p Packet
			n, err := Decode(f.in, f.ver, &p)
			if f.err == nil {
				require.NoError(t, err, "violations: %s", p.Violations)
			} else {
				require.ErrorIs(t, err, f.err)
			}
			switch {
			case f.err == nil || f.err == ErrViolation:
				require.Equal(t, len(f.in), n)
				require.Equal(t, f.viol, p.Violations, "got %s", p.Violations)
			case f.err == ErrIncomplete || f.err == ErrRemainingLength:
				require.Zero(t, n)
			default:
				require.Equal(t, len(f.in), n, "malformed body still reports the packet length")
				var de *DecodeError
				require.ErrorAs(t, err, &de)
			}
			if f.check != nil {
				f.check(t, &p)
			}
			// Decoding the same bytes into the used packet gives the same result.
			var q Packet
			_, _ = Decode(f.in, f.ver, &q)
			_, err2 := Decode(f.in, f.ver, &p)
			require.Equal(t, err == nil, err2 == nil)
			if err == nil || err == ErrViolation {
				require.Equal(t, q, p)
			}
		})
	}
}
