package mqttparse

import "strconv"

// PropertyID is an MQTT 5.0 property identifier.
type PropertyID byte

// The 27 MQTT 5.0 properties (section 2.2.2.2).
const (
	PropPayloadFormatIndicator          PropertyID = 0x01
	PropMessageExpiryInterval           PropertyID = 0x02
	PropContentType                     PropertyID = 0x03
	PropResponseTopic                   PropertyID = 0x08
	PropCorrelationData                 PropertyID = 0x09
	PropSubscriptionIdentifier          PropertyID = 0x0B
	PropSessionExpiryInterval           PropertyID = 0x11
	PropAssignedClientIdentifier        PropertyID = 0x12
	PropServerKeepAlive                 PropertyID = 0x13
	PropAuthenticationMethod            PropertyID = 0x15
	PropAuthenticationData              PropertyID = 0x16
	PropRequestProblemInformation       PropertyID = 0x17
	PropWillDelayInterval               PropertyID = 0x18
	PropRequestResponseInformation      PropertyID = 0x19
	PropResponseInformation             PropertyID = 0x1A
	PropServerReference                 PropertyID = 0x1C
	PropReasonString                    PropertyID = 0x1F
	PropReceiveMaximum                  PropertyID = 0x21
	PropTopicAliasMaximum               PropertyID = 0x22
	PropTopicAlias                      PropertyID = 0x23
	PropMaximumQoS                      PropertyID = 0x24
	PropRetainAvailable                 PropertyID = 0x25
	PropUserProperty                    PropertyID = 0x26
	PropMaximumPacketSize               PropertyID = 0x27
	PropWildcardSubscriptionAvailable   PropertyID = 0x28
	PropSubscriptionIdentifierAvailable PropertyID = 0x29
	PropSharedSubscriptionAvailable     PropertyID = 0x2A
)

// PropertyType is the wire type of a property value.
type PropertyType byte

// Property wire types (section 1.5).
const (
	TypeByte PropertyType = iota + 1
	TypeUint16
	TypeUint32
	TypeVarint
	TypeUTF8
	TypeBinary
	TypeUTF8Pair
)

// willKind is the pseudo packet kind for CONNECT will properties.
const willKind = 16

type propInfo struct {
	name    string
	typ     PropertyType
	allowed uint32 // bit per packet Type, bit willKind for will properties
}

func kinds(ts ...int) uint32 {
	var m uint32
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

// propTable is read-only, indexed by PropertyID; typ 0 means undefined.
var propTable = [256]propInfo{
	0x01: {"Payload Format Indicator", TypeByte, kinds(3, willKind)},
	0x02: {"Message Expiry Interval", TypeUint32, kinds(3, willKind)},
	0x03: {"Content Type", TypeUTF8, kinds(3, willKind)},
	0x08: {"Response Topic", TypeUTF8, kinds(3, willKind)},
	0x09: {"Correlation Data", TypeBinary, kinds(3, willKind)},
	0x0B: {"Subscription Identifier", TypeVarint, kinds(3, 8)},
	0x11: {"Session Expiry Interval", TypeUint32, kinds(1, 2, 14)},
	0x12: {"Assigned Client Identifier", TypeUTF8, kinds(2)},
	0x13: {"Server Keep Alive", TypeUint16, kinds(2)},
	0x15: {"Authentication Method", TypeUTF8, kinds(1, 2, 15)},
	0x16: {"Authentication Data", TypeBinary, kinds(1, 2, 15)},
	0x17: {"Request Problem Information", TypeByte, kinds(1)},
	0x18: {"Will Delay Interval", TypeUint32, kinds(willKind)},
	0x19: {"Request Response Information", TypeByte, kinds(1)},
	0x1A: {"Response Information", TypeUTF8, kinds(2)},
	0x1C: {"Server Reference", TypeUTF8, kinds(2, 14)},
	0x1F: {"Reason String", TypeUTF8, kinds(2, 4, 5, 6, 7, 9, 11, 14, 15)},
	0x21: {"Receive Maximum", TypeUint16, kinds(1, 2)},
	0x22: {"Topic Alias Maximum", TypeUint16, kinds(1, 2)},
	0x23: {"Topic Alias", TypeUint16, kinds(3)},
	0x24: {"Maximum QoS", TypeByte, kinds(2)},
	0x25: {"Retain Available", TypeByte, kinds(2)},
	0x26: {"User Property", TypeUTF8Pair, kinds(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, willKind)},
	0x27: {"Maximum Packet Size", TypeUint32, kinds(1, 2)},
	0x28: {"Wildcard Subscription Available", TypeByte, kinds(2)},
	0x29: {"Subscription Identifier Available", TypeByte, kinds(2)},
	0x2A: {"Shared Subscription Available", TypeByte, kinds(2)},
}

func (id PropertyID) String() string {
	if n := propTable[id].name; n != "" {
		return n
	}
	return "property 0x" + strconv.FormatUint(uint64(id), 16)
}

// Type returns the wire type of the property, 0 if undefined.
func (id PropertyID) Type() PropertyType { return propTable[id].typ }

// AllowedIn reports whether the property may appear in packets of type t
// (will properties: use AllowedInWill).
func (id PropertyID) AllowedIn(t Type) bool { return t < 16 && propTable[id].allowed&(1<<t) != 0 }

// AllowedInWill reports whether the property may appear in CONNECT will properties.
func (id PropertyID) AllowedInWill() bool { return propTable[id].allowed&(1<<willKind) != 0 }

// Caps on the repeated entries kept per packet. Entries beyond a cap are
// still read and validated, but not stored, and Packet.Truncated is set.
// They bound the memory a hostile peer can make a reused Packet hold.
const (
	MaxUserProperties  = 64
	MaxSubscriptionIDs = 32
	MaxTopicFilters    = 1024
	MaxReasonCodes     = 1024
)

// UserProperty is one User Property; Key and Value are views into the input.
type UserProperty struct {
	Key, Value []byte
}

// Properties holds MQTT 5.0 properties. Byte slices are views into the
// input. A property is present iff Has reports it (scalar zero values are
// legal values). Repeatable properties (User Property, Subscription
// Identifier in PUBLISH) keep wire order.
type Properties struct {
	present uint64 // bit per PropertyID (all ids are < 64)
	Len     int    // declared length of the property block (0 if absent)

	PayloadFormatIndicator          byte
	MessageExpiryInterval           uint32
	ContentType                     []byte
	ResponseTopic                   []byte
	CorrelationData                 []byte
	SubscriptionIdentifiers         []uint32
	SessionExpiryInterval           uint32
	AssignedClientIdentifier        []byte
	ServerKeepAlive                 uint16
	AuthenticationMethod            []byte
	AuthenticationData              []byte
	RequestProblemInformation       byte
	WillDelayInterval               uint32
	RequestResponseInformation      byte
	ResponseInformation             []byte
	ServerReference                 []byte
	ReasonString                    []byte
	ReceiveMaximum                  uint16
	TopicAliasMaximum               uint16
	TopicAlias                      uint16
	MaximumQoS                      byte
	RetainAvailable                 byte
	User                            []UserProperty
	MaximumPacketSize               uint32
	WildcardSubscriptionAvailable   byte
	SubscriptionIdentifierAvailable byte
	SharedSubscriptionAvailable     byte
}

// Has reports whether property id was present.
func (p *Properties) Has(id PropertyID) bool { return id < 64 && p.present&(1<<id) != 0 }

// UserValue returns the value of the first User Property named key.
func (p *Properties) UserValue(key string) ([]byte, bool) {
	for i := range p.User {
		if string(p.User[i].Key) == key {
			return p.User[i].Value, true
		}
	}
	return nil, false
}

// reset clears p and keeps the capacity of its slices.
func (p *Properties) reset() {
	if p.present == 0 && p.Len == 0 {
		return // nothing was set (appending to a slice sets a present bit first)
	}
	*p = Properties{User: p.User[:0], SubscriptionIdentifiers: p.SubscriptionIdentifiers[:0]}
}

// decodeProperties reads a property block (length, then properties) at off
// in b for packet kind (a Type or willKind). Properties are read only inside
// the declared length: b is re-sliced to the block's end before any property
// is read, so a short declared length cannot pull bytes from the payload.
func (d *decoder) decodeProperties(b []byte, off int, kind int, p *Properties) (int, error) {
	p.reset()
	plen, off, nonMin, err := readVarint(b, off)
	if err != nil {
		return off, d.fail("property length", off, err)
	}
	if nonMin {
		d.v |= ViolationNonMinimalLength
	}
	if int(plen) > len(b)-off {
		return off, d.fail("property length", off, ErrTruncated)
	}
	end := off + int(plen)
	blk := b[:end:end]
	p.Len = int(plen)
	for off < end {
		start := off
		id := PropertyID(blk[off])
		off++
		info := &propTable[id]
		if info.typ == 0 {
			return start, d.fail("property identifier", start, ErrUnknownProperty)
		}
		if info.allowed&(1<<kind) == 0 {
			d.v |= ViolationPropertyNotAllowed
		}
		bit := uint64(1) << (id & 63)
		if p.present&bit != 0 && id != PropUserProperty && (id != PropSubscriptionIdentifier || kind != int(Publish)) {
			d.v |= ViolationDuplicateProperty
		}
		p.present |= bit
		var bad bool // value out of range
		switch id {
		case PropPayloadFormatIndicator:
			p.PayloadFormatIndicator, off, err = readByte(blk, off)
			bad = p.PayloadFormatIndicator > 1
		case PropMessageExpiryInterval:
			p.MessageExpiryInterval, off, err = readUint32(blk, off)
		case PropContentType:
			p.ContentType, off, err = d.propUTF8(blk, off)
		case PropResponseTopic:
			p.ResponseTopic, off, err = d.propUTF8(blk, off)
		case PropCorrelationData:
			p.CorrelationData, off, err = readBinary(blk, off)
		case PropSubscriptionIdentifier:
			var v uint32
			var nm bool
			v, off, nm, err = readVarint(blk, off)
			if nm {
				d.v |= ViolationNonMinimalLength
			}
			bad = v == 0
			if err == nil {
				if len(p.SubscriptionIdentifiers) < MaxSubscriptionIDs {
					p.SubscriptionIdentifiers = append(p.SubscriptionIdentifiers, v)
				} else {
					d.truncated = true
				}
			}
		case PropSessionExpiryInterval:
			p.SessionExpiryInterval, off, err = readUint32(blk, off)
		case PropAssignedClientIdentifier:
			p.AssignedClientIdentifier, off, err = d.propUTF8(blk, off)
		case PropServerKeepAlive:
			p.ServerKeepAlive, off, err = readUint16(blk, off)
		case PropAuthenticationMethod:
			p.AuthenticationMethod, off, err = d.propUTF8(blk, off)
		case PropAuthenticationData:
			p.AuthenticationData, off, err = readBinary(blk, off)
		case PropRequestProblemInformation:
			p.RequestProblemInformation, off, err = readByte(blk, off)
			bad = p.RequestProblemInformation > 1
		case PropWillDelayInterval:
			p.WillDelayInterval, off, err = readUint32(blk, off)
		case PropRequestResponseInformation:
			p.RequestResponseInformation, off, err = readByte(blk, off)
			bad = p.RequestResponseInformation > 1
		case PropResponseInformation:
			p.ResponseInformation, off, err = d.propUTF8(blk, off)
		case PropServerReference:
			p.ServerReference, off, err = d.propUTF8(blk, off)
		case PropReasonString:
			p.ReasonString, off, err = d.propUTF8(blk, off)
		case PropReceiveMaximum:
			p.ReceiveMaximum, off, err = readUint16(blk, off)
			bad = p.ReceiveMaximum == 0
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum, off, err = readUint16(blk, off)
		case PropTopicAlias:
			p.TopicAlias, off, err = readUint16(blk, off)
			bad = p.TopicAlias == 0
		case PropMaximumQoS:
			p.MaximumQoS, off, err = readByte(blk, off)
			bad = p.MaximumQoS > 1
		case PropRetainAvailable:
			p.RetainAvailable, off, err = readByte(blk, off)
			bad = p.RetainAvailable > 1
		case PropUserProperty:
			var k, v []byte
			if k, off, err = d.propUTF8(blk, off); err == nil {
				v, off, err = d.propUTF8(blk, off)
			}
			if err == nil {
				if len(p.User) < MaxUserProperties {
					p.User = append(p.User, UserProperty{Key: k, Value: v})
				} else {
					d.truncated = true
				}
			}
		case PropMaximumPacketSize:
			p.MaximumPacketSize, off, err = readUint32(blk, off)
			bad = p.MaximumPacketSize == 0
		case PropWildcardSubscriptionAvailable:
			p.WildcardSubscriptionAvailable, off, err = readByte(blk, off)
			bad = p.WildcardSubscriptionAvailable > 1
		case PropSubscriptionIdentifierAvailable:
			p.SubscriptionIdentifierAvailable, off, err = readByte(blk, off)
			bad = p.SubscriptionIdentifierAvailable > 1
		case PropSharedSubscriptionAvailable:
			p.SharedSubscriptionAvailable, off, err = readByte(blk, off)
			bad = p.SharedSubscriptionAvailable > 1
		}
		if err != nil {
			return off, d.fail(info.name, start, err)
		}
		if bad {
			d.v |= ViolationPropertyValue
		}
	}
	return end, nil
}

// propUTF8 reads a UTF-8 string inside a property block.
func (d *decoder) propUTF8(b []byte, off int) ([]byte, int, error) {
	s, next, err := readBinary(b, off)
	if err == nil && !utf8Check(s) {
		d.v |= ViolationInvalidUTF8
	}
	return s, next, err
}
