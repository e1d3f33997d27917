package mqttparse

// SyncProof is the number of consecutive complete packets after which
// FindSync accepts a chain without walking to the end of the data.
const SyncProof = 16

// FindSync looks for the first offset in b (bytes after a TCP gap) at which
// a plausible chain of MQTT packets starts, and returns it with ok == true.
//
// Heuristic: from a candidate offset, read fixed headers back to back. Each
// must be plausible: a type from CONNECT to AUTH; the flags the type
// requires (PUBLISH: QoS 0–2, no DUP with QoS 0); a remaining length in its
// shortest encoding, at most maxPacketSize in total (<= 0 means
// DefaultMaxPacketSize), and at least the type's minimum body (PINGREQ,
// PINGRESP exactly 0; acks and PUBLISH at least 2; CONNECT at least 10;
// SUBSCRIBE at least 5; UNSUBSCRIBE at least 4; CONNACK at least 2). The
// candidate is accepted when at least minChain (values < 2 mean 2) complete
// packets chain and then either the chain ends exactly at the end of b, or
// what is left is the start of a packet whose header, as far as present, is
// plausible (a chunk may end inside a packet), or SyncProof complete packets
// have chained. Otherwise the next offset is tried. ok == false means no
// offset qualifies yet: keep the bytes and try again with more data.
//
// Cost is at most SyncProof header reads per offset, O(len(b)).
func FindSync(b []byte, minChain, maxPacketSize int) (off int, ok bool) {
	if minChain < 2 {
		minChain = 2
	}
	if maxPacketSize <= 0 {
		maxPacketSize = DefaultMaxPacketSize
	}
	for i := range b {
		if chainFrom(b[i:], minChain, maxPacketSize) {
			return i, true
		}
	}
	return 0, false
}

// chainFrom reports whether b starts with an accepted chain.
func chainFrom(b []byte, minChain, max int) bool {
	n := 0
	off := 0
	for {
		if off == len(b) {
			return n >= minChain
		}
		h, err := ParseFixedHeader(b[off:])
		if err == ErrIncomplete {
			return n >= minChain && plausibleTypeFlags(b[off])
		}
		if err != nil || !plausible(h, max) {
			return false
		}
		if off+h.Len() > len(b) {
			return n >= minChain
		}
		off += h.Len()
		n++
		if n >= SyncProof {
			return true
		}
	}
}

func plausibleTypeFlags(b0 byte) bool {
	t := Type(b0 >> 4)
	f := b0 & 0x0f
	if t == Reserved || !flagsValid(t, f) {
		return false
	}
	return t != Publish || f&0x0e != 0x08 // DUP with QoS 0
}

var minBody = [16]int{Connect: 10, Connack: 2, Publish: 2, Puback: 2, Pubrec: 2, Pubrel: 2, Pubcomp: 2,
	Subscribe: 5, Suback: 3, Unsubscribe: 4, Unsuback: 2}

func plausible(h FixedHeader, max int) bool {
	if h.NonMinimal || h.Len() > max || !plausibleTypeFlags(byte(h.Type)<<4|h.Flags) {
		return false
	}
	if h.RemainingLength < minBody[h.Type] {
		return false
	}
	if (h.Type == Pingreq || h.Type == Pingresp) && h.RemainingLength != 0 {
		return false
	}
	return true
}

// Plausible reports whether h could be the fixed header of a real packet
// of at most maxPacketSize bytes (<= 0 means DefaultMaxPacketSize), by the
// rules FindSync applies to each header of a chain.
func Plausible(h FixedHeader, maxPacketSize int) bool {
	if maxPacketSize <= 0 {
		maxPacketSize = DefaultMaxPacketSize
	}
	return plausible(h, maxPacketSize)
}

// PlausibleFirstByte reports whether b0 could be the first byte of a
// packet: a type from CONNECT to AUTH with the flags the type requires.
func PlausibleFirstByte(b0 byte) bool { return plausibleTypeFlags(b0) }

// ResponseTo returns the type that answers a packet of type t with QoS qos
// in the other direction of the connection (CONNECT → CONNACK, PUBLISH
// QoS 1 → PUBACK, QoS 2 → PUBREC, PUBREC → PUBREL, PUBREL → PUBCOMP,
// SUBSCRIBE → SUBACK, UNSUBSCRIBE → UNSUBACK, PINGREQ → PINGRESP), and
// false for a packet that has no answer. The answer carries the request's
// packet identifier when t.HasPacketID(qos).
func ResponseTo(t Type, qos byte) (Type, bool) {
	switch t {
	case Connect:
		return Connack, true
	case Publish:
		switch qos {
		case 1:
			return Puback, true
		case 2:
			return Pubrec, true
		}
	case Pubrec:
		return Pubrel, true
	case Pubrel:
		return Pubcomp, true
	case Subscribe:
		return Suback, true
	case Unsubscribe:
		return Unsuback, true
	case Pingreq:
		return Pingresp, true
	}
	return Reserved, false
}
