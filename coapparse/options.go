package coapparse

import "strconv"

// OptionNumber identifies an option. Its low bits carry its properties
// (RFC 7252 §5.4.6): see Critical, Unsafe and NoCacheKey.
type OptionNumber uint16

// Options decoded and checked by this package. Numbers not listed here are
// kept as raw (number, value) pairs.
const (
	IfMatch       OptionNumber = 1   // opaque 0–8, repeatable; RFC 7252
	URIHost       OptionNumber = 3   // string 1–255; RFC 7252
	ETag          OptionNumber = 4   // opaque 1–8, repeatable in requests; RFC 7252
	IfNoneMatch   OptionNumber = 5   // empty; RFC 7252
	Observe       OptionNumber = 6   // uint 0–3; RFC 7641
	URIPort       OptionNumber = 7   // uint 0–2; RFC 7252
	LocationPath  OptionNumber = 8   // string 0–255, repeatable; RFC 7252
	OSCORE        OptionNumber = 9   // opaque 0–255; RFC 8613
	URIPath       OptionNumber = 11  // string 0–255, repeatable; RFC 7252
	ContentFormat OptionNumber = 12  // uint 0–2; RFC 7252
	MaxAge        OptionNumber = 14  // uint 0–4; RFC 7252
	URIQuery      OptionNumber = 15  // string 0–255, repeatable; RFC 7252
	HopLimit      OptionNumber = 16  // uint 1; RFC 8768
	Accept        OptionNumber = 17  // uint 0–2; RFC 7252
	LocationQuery OptionNumber = 20  // string 0–255, repeatable; RFC 7252
	Block2        OptionNumber = 23  // uint 0–3; RFC 7959
	Block1        OptionNumber = 27  // uint 0–3; RFC 7959
	Size2         OptionNumber = 28  // uint 0–4; RFC 7959
	ProxyURI      OptionNumber = 35  // string 1–1034; RFC 7252
	ProxyScheme   OptionNumber = 39  // string 1–255; RFC 7252
	Size1         OptionNumber = 60  // uint 0–4; RFC 7252
	Echo          OptionNumber = 252 // opaque 1–40; RFC 9175
	NoResponse    OptionNumber = 258 // uint 0–1; RFC 7967
	RequestTag    OptionNumber = 292 // opaque 0–8, repeatable; RFC 9175
)

// Critical reports an odd number: a receiver that does not recognise the
// option must reject the message.
func (n OptionNumber) Critical() bool { return n&1 != 0 }

// Unsafe reports bit 1: a proxy that does not recognise the option must not
// forward the message.
func (n OptionNumber) Unsafe() bool { return n&2 != 0 }

// NoCacheKey reports bits 2–4 all set (only meaningful when safe): the
// option is not part of the cache key.
func (n OptionNumber) NoCacheKey() bool { return n&0x1e == 0x1c }

// Format is the value format of a known option (RFC 7252 §3.2).
type Format uint8

// Value formats.
const (
	FormatUnknown Format = iota // unknown option: opaque as far as we know
	FormatEmpty                 // zero-length
	FormatOpaque                // bytes
	FormatUint                  // big-endian unsigned integer, 0–4 bytes
	FormatString                // UTF-8
)

// optInfo is the static description of a known option.
type optInfo struct {
	name       string
	min, max   uint16
	format     Format
	repeatable bool
	reqRepeat  bool // repeatable in requests only (ETag)
}

// optTable describes the known options below 64. Never modified.
var optTable = [64]optInfo{
	IfMatch:       {"If-Match", 0, 8, FormatOpaque, true, false},
	URIHost:       {"Uri-Host", 1, 255, FormatString, false, false},
	ETag:          {"ETag", 1, 8, FormatOpaque, false, true},
	IfNoneMatch:   {"If-None-Match", 0, 0, FormatEmpty, false, false},
	Observe:       {"Observe", 0, 3, FormatUint, false, false},
	URIPort:       {"Uri-Port", 0, 2, FormatUint, false, false},
	LocationPath:  {"Location-Path", 0, 255, FormatString, true, false},
	OSCORE:        {"OSCORE", 0, 255, FormatOpaque, false, false},
	URIPath:       {"Uri-Path", 0, 255, FormatString, true, false},
	ContentFormat: {"Content-Format", 0, 2, FormatUint, false, false},
	MaxAge:        {"Max-Age", 0, 4, FormatUint, false, false},
	URIQuery:      {"Uri-Query", 0, 255, FormatString, true, false},
	HopLimit:      {"Hop-Limit", 1, 1, FormatUint, false, false},
	Accept:        {"Accept", 0, 2, FormatUint, false, false},
	LocationQuery: {"Location-Query", 0, 255, FormatString, true, false},
	Block2:        {"Block2", 0, 3, FormatUint, false, false},
	Block1:        {"Block1", 0, 3, FormatUint, false, false},
	Size2:         {"Size2", 0, 4, FormatUint, false, false},
	ProxyURI:      {"Proxy-Uri", 1, 1034, FormatString, false, false},
	ProxyScheme:   {"Proxy-Scheme", 1, 255, FormatString, false, false},
	Size1:         {"Size1", 0, 4, FormatUint, false, false},
}

var (
	echoInfo       = optInfo{"Echo", 1, 40, FormatOpaque, false, false}
	noResponseInfo = optInfo{"No-Response", 0, 1, FormatUint, false, false}
	requestTagInfo = optInfo{"Request-Tag", 0, 8, FormatOpaque, true, false}
)

// info returns the description of n; format FormatUnknown when n is not known.
func info(n OptionNumber) *optInfo {
	if n < 64 {
		return &optTable[n]
	}
	switch n {
	case Echo:
		return &echoInfo
	case NoResponse:
		return &noResponseInfo
	case RequestTag:
		return &requestTagInfo
	}
	return &optTable[0] // number 0 is reserved: the zero description
}

// Known reports whether this package knows the option's format and rules.
func (n OptionNumber) Known() bool { return info(n).format != FormatUnknown }

// Format returns the value format of a known option, FormatUnknown otherwise.
func (n OptionNumber) Format() Format { return info(n).format }

// Repeatable reports whether a known option may occur more than once in a
// request (ETag: in requests only). False for unknown options.
func (n OptionNumber) Repeatable() bool {
	in := info(n)
	return in.repeatable || in.reqRepeat
}

// LengthRange returns the allowed value length of a known option (0, 0 and
// false for an unknown one).
func (n OptionNumber) LengthRange() (min, max int, known bool) {
	in := info(n)
	return int(in.min), int(in.max), in.format != FormatUnknown
}

// reservedOption reports the numbers RFC 7252 §12.2 reserves.
func reservedOption(n OptionNumber) bool {
	return n == 0 || n == 128 || n == 132 || n == 136 || n == 140
}

// String returns the option's registered name ("Uri-Path") or "Option(N)".
func (n OptionNumber) String() string {
	if in := info(n); in.name != "" {
		return in.name
	}
	return "Option(" + strconv.Itoa(int(n)) + ")"
}

// Option is one option as it appears on the wire. Value is a view into the
// decoded datagram (see Message).
type Option struct {
	Number OptionNumber
	Value  []byte
}

// Uint decodes the value as an unsigned integer. Leading zero bytes are
// allowed (RFC 7252 §3.2); ok is false when the value is longer than 4 bytes.
func (o Option) Uint() (v uint32, ok bool) { return DecodeUint(o.Value) }

// DecodeUint decodes a big-endian unsigned integer of 0–4 bytes (0 bytes is
// the value 0). ok is false for a longer value.
func DecodeUint(b []byte) (v uint32, ok bool) {
	if len(b) > 4 {
		return 0, false
	}
	for _, c := range b {
		v = v<<8 | uint32(c)
	}
	return v, true
}

// AppendUint appends v in the shortest form (0 is zero bytes).
func AppendUint(dst []byte, v uint32) []byte {
	switch {
	case v == 0:
		return dst
	case v < 1<<8:
		return append(dst, byte(v))
	case v < 1<<16:
		return append(dst, byte(v>>8), byte(v))
	case v < 1<<24:
		return append(dst, byte(v>>16), byte(v>>8), byte(v))
	}
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// Block is a decoded Block1 or Block2 option (RFC 7959 §2.2).
type Block struct {
	Num  uint32 // block number, 0 to 2^20-1
	More bool   // M: more blocks follow (Block2 response / Block1 request)
	SZX  uint8  // size exponent, 0–7
	Size int    // 2^(SZX+4) bytes: 16 to 1024; 0 for the reserved SZX 7
}

// ParseBlock decodes a Block option value of 0–3 bytes; ok is false for a
// longer one.
func ParseBlock(b []byte) (blk Block, ok bool) {
	v, ok := DecodeUint(b)
	if !ok || len(b) > 3 {
		return Block{}, false
	}
	blk = Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}
	if blk.SZX != 7 {
		blk.Size = 1 << (blk.SZX + 4)
	}
	return blk, true
}

// Uint returns the option value of b as an integer (for Message.AddUint).
// Num is cut to 20 bits and SZX to 3.
func (b Block) Uint() uint32 {
	v := (b.Num&0xfffff)<<4 | uint32(b.SZX&7)
	if b.More {
		v |= 8
	}
	return v
}
