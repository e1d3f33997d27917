package mqttparse

import "strconv"

// Version is an MQTT protocol level as carried in CONNECT.
type Version byte

// Protocol versions. VersionUnknown asks Decode to choose (see Decode).
const (
	VersionUnknown Version = 0
	Version31      Version = 3 // MQIsdp 3.1
	Version311     Version = 4 // MQTT 3.1.1
	Version5       Version = 5 // MQTT 5.0
)

func (v Version) String() string {
	switch v {
	case VersionUnknown:
		return "unknown"
	case Version31:
		return "3.1"
	case Version311:
		return "3.1.1"
	case Version5:
		return "5.0"
	}
	return "level " + strconv.Itoa(int(v))
}

// Type is the MQTT control packet type (high nibble of the first byte).
type Type byte

// Control packet types.
const (
	Reserved    Type = 0
	Connect     Type = 1
	Connack     Type = 2
	Publish     Type = 3
	Puback      Type = 4
	Pubrec      Type = 5
	Pubrel      Type = 6
	Pubcomp     Type = 7
	Subscribe   Type = 8
	Suback      Type = 9
	Unsubscribe Type = 10
	Unsuback    Type = 11
	Pingreq     Type = 12
	Pingresp    Type = 13
	Disconnect  Type = 14
	Auth        Type = 15
)

var typeNames = [16]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string {
	if t < 16 {
		return typeNames[t]
	}
	return "type " + strconv.Itoa(int(t))
}

// HasPacketID reports whether packets of this type carry a packet identifier
// (PUBLISH only when QoS > 0).
func (t Type) HasPacketID(qos byte) bool {
	switch t {
	case Puback, Pubrec, Pubrel, Pubcomp, Subscribe, Suback, Unsubscribe, Unsuback:
		return true
	case Publish:
		return qos > 0
	}
	return false
}

// MaxRemainingLength is the largest value a 4-byte variable byte integer holds.
const MaxRemainingLength = 268_435_455

// FixedHeader is the first 2 to 5 bytes of every packet.
type FixedHeader struct {
	Type            Type
	Flags           byte // low nibble of the first byte, raw
	Dup             bool // PUBLISH only (bit 3)
	QoS             byte // PUBLISH only (bits 2-1); 3 is a violation
	Retain          bool // PUBLISH only (bit 0)
	RemainingLength int  // bytes after the fixed header
	HeaderLen       int  // bytes of the fixed header itself (2..5)
	NonMinimal      bool // remaining length not encoded in the fewest bytes [MQTT-1.5.5-1]
}

// Len is the total packet length: fixed header plus remaining length.
func (h FixedHeader) Len() int { return h.HeaderLen + h.RemainingLength }

// ParseFixedHeader reads the fixed header at the start of b. It returns
// ErrIncomplete when b ends inside the header, and ErrRemainingLength (an
// ErrMalformed) when the remaining length has a continuation bit on its 4th
// byte: MQTT allows at most 4 bytes, whatever follows. It does not look at
// the body, so b may hold just the first bytes of a packet.
func ParseFixedHeader(b []byte) (FixedHeader, error) {
	var h FixedHeader
	err := parseHeader(b, &h)
	return h, err
}

// parseHeader is ParseFixedHeader into a caller's struct (no copies on the
// fast path). h is unspecified on error.
func parseHeader(b []byte, h *FixedHeader) error {
	if len(b) < 2 {
		return ErrIncomplete
	}
	b0 := b[0]
	h.Type = Type(b0 >> 4)
	h.Flags = b0 & 0x0f
	h.Dup = h.Type == Publish && b0&0x08 != 0
	h.QoS = 0
	if h.Type == Publish {
		h.QoS = (b0 >> 1) & 0x03
	}
	h.Retain = h.Type == Publish && b0&0x01 != 0
	h.NonMinimal = false
	if b[1] < 0x80 { // one length byte: the common case
		h.RemainingLength = int(b[1])
		h.HeaderLen = 2
		return nil
	}
	var rl uint32
	for i := 0; i < 4; i++ {
		if 1+i >= len(b) {
			return ErrIncomplete
		}
		c := b[1+i]
		rl |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			h.RemainingLength = int(rl)
			h.HeaderLen = 2 + i
			h.NonMinimal = c == 0
			return nil
		}
	}
	return ErrRemainingLength
}

// flagsValid reports whether the fixed-header flags are the ones the spec
// requires for the type ([MQTT-2.1.3-1], [MQTT-3.3.1-4]).
func flagsValid(t Type, flags byte) bool {
	switch t {
	case Publish:
		return (flags>>1)&0x03 != 3
	case Pubrel, Subscribe, Unsubscribe:
		return flags == 0x02
	}
	return flags == 0
}
