package mqttparse

// Packet is a decoded MQTT control packet. It is caller-owned and meant to be
// reused: Decode resets it but keeps the capacity of its slices, so decoding
// into the same Packet allocates nothing once the slices have grown (they are
// capped, see MaxUserProperties and friends).
//
// Every []byte field is a view into the buffer passed to Decode and is valid
// only as long as that buffer is unchanged (for a Framer: until the next
// call to Next or Feed). Copy what must outlive it.
type Packet struct {
	Header  FixedHeader
	Version Version // version whose rules decoded the body
	// VersionGuessed is true when Decode was given VersionUnknown and chose
	// Version by the heuristic documented on Decode.
	VersionGuessed bool
	Violations     Violations // MUSTs broken; non-empty ⇔ Decode returned ErrViolation
	// Truncated is true when repeated entries beyond a cap (MaxUserProperties,
	// MaxSubscriptionIDs, MaxTopicFilters, MaxReasonCodes) were read but not kept.
	Truncated bool

	PacketID uint16 // PUBLISH (QoS > 0), PUBACK…PUBCOMP, SUBSCRIBE…UNSUBACK

	// PUBLISH
	Topic   []byte // topic name (may be empty in 5.0 when a Topic Alias is used)
	Payload []byte // application message

	// CONNACK, PUBACK…PUBCOMP, DISCONNECT, AUTH: the reason code (5.0) or the
	// CONNACK return code (3.x). Success when the packet omits it.
	ReasonCode     ReasonCode
	SessionPresent bool // CONNACK

	// SUBACK, UNSUBACK (5.0): one code per topic filter, in order.
	ReasonCodes []ReasonCode

	// SUBSCRIBE, UNSUBSCRIBE: topic filters in order (options zero for UNSUBSCRIBE).
	Filters []Subscription

	Connect ConnectFields // CONNECT only

	Properties Properties // 5.0 properties of the packet (not the will's)

	connectSet bool // Connect was filled by the last decode
}

// ConnectFields is the variable header and payload of a CONNECT. The
// password is deliberately not kept: only whether it is present and its
// length, so it cannot reach a flow record or a log.
type ConnectFields struct {
	ProtocolName   []byte
	ProtocolLevel  byte
	Flags          byte // raw connect flags
	CleanStart     bool // Clean Session in 3.x
	WillFlag       bool
	WillQoS        byte
	WillRetain     bool
	UsernameFlag   bool
	PasswordFlag   bool
	KeepAlive      uint16
	ClientID       []byte
	WillProperties Properties // 5.0, when WillFlag
	WillTopic      []byte
	WillPayload    []byte
	Username       []byte
	PasswordLen    int // length of the password when PasswordFlag
}

// Subscription is one topic filter of a SUBSCRIBE (with its options) or an
// UNSUBSCRIBE (options zero).
type Subscription struct {
	Filter            []byte
	Options           byte // raw options byte
	QoS               byte // maximum QoS (bits 1-0)
	NoLocal           bool // 5.0 (bit 2)
	RetainAsPublished bool // 5.0 (bit 3)
	RetainHandling    byte // 5.0 (bits 5-4)
}

// reset clears p for a new decode, keeping slice capacity. It touches only
// what a previous decode may have set, to keep the fast path short.
func (p *Packet) reset() {
	p.Version = VersionUnknown
	p.VersionGuessed = false
	p.Violations = 0
	p.Truncated = false
	p.PacketID = 0
	p.Topic = nil
	p.Payload = nil
	p.ReasonCode = Success
	p.SessionPresent = false
	p.ReasonCodes = p.ReasonCodes[:0]
	p.Filters = p.Filters[:0]
	if p.connectSet {
		will := &p.Connect.WillProperties
		will.reset()
		p.Connect = ConnectFields{WillProperties: *will}
		p.connectSet = false
	}
	p.Properties.reset()
}

// decoder carries the state of one Decode call. It lives on the stack.
type decoder struct {
	p         *Packet
	t         Type
	ver       Version
	hl        int // fixed header length, to report offsets within the packet
	v         Violations
	truncated bool
}

// fail wraps err with the field and its offset in the packet. It is only
// called on error, so the allocation is off the fast path.
func (d *decoder) fail(field string, off int, err error) error {
	return &DecodeError{Type: d.t, Version: d.ver, Field: field, Offset: d.hl + off, Err: err}
}

// Decode decodes the packet at the start of b into p under version v and
// returns the packet's total length n (fixed header included); bytes after
// it are ignored.
//
// Results:
//   - err == nil: p is filled, n > 0.
//   - errors.Is(err, ErrViolation): p is filled and n > 0; p.Violations says
//     which MUSTs the packet breaks.
//   - errors.Is(err, ErrIncomplete): b ends before the packet; n == 0.
//   - errors.Is(err, ErrMalformed) and n == 0: the fixed header is broken;
//     the stream is out of sync.
//   - errors.Is(err, ErrMalformed) and n > 0: the body is broken (a
//     *DecodeError says where); the next packet starts at b[n:]. p is partly
//     filled and must not be trusted.
//
// Version: v is the protocol level of the connection's CONNECT; 3 and 4 use
// the same rules except for CONNECT's name and SUBACK's 0x80. A CONNECT is
// always decoded under its own protocol level whatever v says. With
// VersionUnknown (no CONNECT seen, midstream pickup), Decode tries 5.0 and
// keeps it if the body decodes with no malformation and no violation (the
// property block must be consistent: its length inside the packet, known
// identifiers allowed in that type, no duplicates, valid values); otherwise
// it decodes as 3.1.1, and if that fails too it returns the 5.0 result when
// 5.0 had only violations, else the 3.1.1 one. p.VersionGuessed is set. The
// guess can be wrong: a 3.1.1 PUBLISH whose payload starts with 0x00 reads as
// 5.0 with no properties and a payload one byte shorter, and packets with no
// version-dependent bytes (PINGREQ, 2-byte acks) read as 5.0. A caller should
// keep the first guess made on a packet that has properties and pass it
// explicitly afterwards.
func Decode(b []byte, v Version, p *Packet) (n int, err error) {
	h := &p.Header
	if err = parseHeader(b, h); err != nil {
		return 0, err
	}
	n = h.HeaderLen + h.RemainingLength
	if len(b) < n {
		return 0, ErrIncomplete
	}
	body := b[h.HeaderLen:n:n]
	if h.Type == Publish && (v == Version311 || v == Version31) && publishFast(body, v, p) {
		return n, nil
	}
	if v != VersionUnknown || h.Type == Connect {
		return n, decodeWith(body, v, p)
	}
	err = decodeWith(body, Version5, p)
	if err == nil {
		p.VersionGuessed = true
		return n, nil
	}
	err5 := err
	err = decodeWith(body, Version311, p)
	if err == nil || !(err5 == ErrViolation && err != ErrViolation) {
		p.VersionGuessed = true
		return n, err
	}
	err = decodeWith(body, Version5, p)
	p.VersionGuessed = true
	return n, err
}

// decodeWith decodes body under v into p, whose Header is already set.
func decodeWith(body []byte, v Version, p *Packet) error {
	p.reset()
	p.Version = v
	h := &p.Header
	d := decoder{p: p, t: h.Type, ver: v, hl: h.HeaderLen}
	if h.NonMinimal {
		d.v |= ViolationNonMinimalLength
	}
	if !flagsValid(h.Type, h.Flags) {
		d.v |= ViolationHeaderFlags
	}
	var err error
	switch h.Type {
	case Publish: // first: the hot path
		err = d.publish(body)
	case Connect:
		err = d.connect(body)
	case Connack:
		err = d.connack(body)
	case Puback, Pubrec, Pubrel, Pubcomp:
		err = d.pubAck(body)
	case Subscribe:
		err = d.subscribe(body)
	case Suback, Unsuback:
		err = d.subAck(body)
	case Unsubscribe:
		err = d.unsubscribe(body)
	case Pingreq, Pingresp:
		if len(body) != 0 {
			d.v |= ViolationTrailingBytes
		}
	case Disconnect:
		err = d.disconnect(body)
	case Auth:
		if d.ver != Version5 {
			d.v |= ViolationReservedType
			break
		}
		err = d.disconnect(body) // same layout: optional reason code, optional properties
	default: // Reserved
		d.v |= ViolationReservedType
	}
	p.Violations = d.v
	p.Truncated = d.truncated
	if err != nil {
		return err
	}
	if d.v != 0 {
		return ErrViolation
	}
	return nil
}

// packetID reads a packet identifier and flags 0 [MQTT-2.2.1-3].
func (d *decoder) packetID(b []byte, off int) (int, error) {
	id, next, err := readUint16(b, off)
	if err != nil {
		return off, d.fail("packet identifier", off, err)
	}
	if id == 0 {
		d.v |= ViolationPacketIDZero
	}
	d.p.PacketID = id
	return next, nil
}

// utf8 reads a UTF-8 string field and flags an ill-formed one.
func (d *decoder) utf8(b []byte, off int, field string) ([]byte, int, error) {
	s, next, err := readBinary(b, off)
	if err != nil {
		return nil, off, d.fail(field, off, err)
	}
	if !utf8Check(s) {
		d.v |= ViolationInvalidUTF8
	}
	return s, next, nil
}

// reason checks a reason code against the type's table.
func (d *decoder) reason(c ReasonCode) {
	if !ValidReasonCode(d.ver, d.t, c) {
		d.v |= ViolationReasonCode
	}
}
