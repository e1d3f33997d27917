package ipfix

import (
	"encoding/binary"
	"math"
	"time"
)

// DataType is an abstract data type of RFC 7012 §3.1 (values as in the IANA
// "IPFIX Information Element Data Types" registry) or RFC 6313.
type DataType uint8

// Abstract data types.
const (
	TypeOctetArray DataType = iota
	TypeUnsigned8
	TypeUnsigned16
	TypeUnsigned32
	TypeUnsigned64
	TypeSigned8
	TypeSigned16
	TypeSigned32
	TypeSigned64
	TypeFloat32
	TypeFloat64
	TypeBoolean
	TypeMACAddress
	TypeString
	TypeDateTimeSeconds
	TypeDateTimeMilliseconds
	TypeDateTimeMicroseconds
	TypeDateTimeNanoseconds
	TypeIPv4Address
	TypeIPv6Address
	TypeBasicList
	TypeSubTemplateList
	TypeSubTemplateMultiList
)

// VarLen is the field length that announces a variable-length field
// (RFC 7011 §7).
const VarLen uint16 = 0xFFFF

var typeNames = [...]string{
	"octetArray", "unsigned8", "unsigned16", "unsigned32", "unsigned64",
	"signed8", "signed16", "signed32", "signed64", "float32", "float64",
	"boolean", "macAddress", "string", "dateTimeSeconds",
	"dateTimeMilliseconds", "dateTimeMicroseconds", "dateTimeNanoseconds",
	"ipv4Address", "ipv6Address", "basicList", "subTemplateList",
	"subTemplateMultiList",
}

func (t DataType) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "unknown"
}

// DefaultLength is the length an encoder uses for the type when none is
// given: the full width for fixed types, VarLen for the others.
func (t DataType) DefaultLength() uint16 {
	switch t {
	case TypeUnsigned8, TypeSigned8, TypeBoolean:
		return 1
	case TypeUnsigned16, TypeSigned16:
		return 2
	case TypeUnsigned32, TypeSigned32, TypeFloat32, TypeDateTimeSeconds, TypeIPv4Address:
		return 4
	case TypeUnsigned64, TypeSigned64, TypeFloat64, TypeDateTimeMilliseconds,
		TypeDateTimeMicroseconds, TypeDateTimeNanoseconds:
		return 8
	case TypeMACAddress:
		return 6
	case TypeIPv6Address:
		return 16
	}
	return VarLen
}

// IsInteger reports whether reduced-size encoding (RFC 7011 §6.2) applies.
func (t DataType) IsInteger() bool {
	return t >= TypeUnsigned8 && t <= TypeSigned64
}

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP era 0) to
// 1970-01-01.
const ntpEpochOffset = 2208988800

// beUint reads a big-endian unsigned integer of 1..8 bytes (reduced-size
// encoding). Longer inputs return 0, false.
func beUint(b []byte) (uint64, bool) {
	switch len(b) {
	case 1:
		return uint64(b[0]), true
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), true
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), true
	case 8:
		return binary.BigEndian.Uint64(b), true
	case 3, 5, 6, 7:
		var x uint64
		for _, c := range b {
			x = x<<8 | uint64(c)
		}
		return x, true
	}
	return 0, false
}

// beInt reads a big-endian two's complement integer of 1..8 bytes and sign
// extends it.
func beInt(b []byte) (int64, bool) {
	u, ok := beUint(b)
	if !ok {
		return 0, false
	}
	shift := uint(64 - 8*len(b))
	return int64(u<<shift) >> shift, true
}

// appendUint appends v in n big-endian bytes (n in 1..8), truncating high
// bytes (reduced-size encoding).
func appendUint(dst []byte, v uint64, n int) []byte {
	switch n {
	case 1:
		return append(dst, byte(v))
	case 2:
		return binary.BigEndian.AppendUint16(dst, uint16(v))
	case 4:
		return binary.BigEndian.AppendUint32(dst, uint32(v))
	case 8:
		return binary.BigEndian.AppendUint64(dst, v)
	}
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*uint(i))))
	}
	return dst
}

// fitsUint reports whether v can be represented in n bytes.
func fitsUint(v uint64, n int) bool {
	return n >= 8 || v>>(8*uint(n)) == 0
}

// fitsInt reports whether v can be represented in n bytes two's complement.
func fitsInt(v int64, n int) bool {
	if n >= 8 {
		return true
	}
	shift := uint(64 - 8*n)
	return (v<<shift)>>shift == v
}

// ntpToTime converts an NTP 64-bit timestamp (RFC 7011 §6.1.9/§6.1.10).
func ntpToTime(v uint64, micro bool) time.Time {
	sec := int64(v>>32) - ntpEpochOffset
	frac := v & 0xFFFFFFFF
	if micro {
		frac &^= 0x7FF // the 11 low bits are not significant for microseconds
	}
	ns := (frac*1_000_000_000 + 1<<31) >> 32
	return time.Unix(sec, int64(ns)).UTC()
}

// timeToNTP converts t to an NTP 64-bit timestamp.
func timeToNTP(t time.Time) uint64 {
	sec := uint64(t.Unix() + ntpEpochOffset)
	ns := uint64(t.Nanosecond())
	frac := ((ns << 32) + 500_000_000) / 1_000_000_000
	if frac > 0xFFFFFFFF {
		frac = 0xFFFFFFFF
	}
	return sec<<32 | frac
}

// decodeTime converts raw bytes of a dateTime type.
func decodeTime(t DataType, b []byte) (time.Time, bool) {
	switch t {
	case TypeDateTimeSeconds:
		v, ok := beUint(b)
		if !ok || len(b) > 4 {
			return time.Time{}, false
		}
		return time.Unix(int64(v), 0).UTC(), true
	case TypeDateTimeMilliseconds:
		v, ok := beUint(b)
		if !ok {
			return time.Time{}, false
		}
		return time.UnixMilli(int64(v)).UTC(), true
	case TypeDateTimeMicroseconds, TypeDateTimeNanoseconds:
		if len(b) != 8 {
			return time.Time{}, false
		}
		return ntpToTime(binary.BigEndian.Uint64(b), t == TypeDateTimeMicroseconds), true
	}
	return time.Time{}, false
}

// decodeFloat reads float32 or float64 (a float64 may be sent in 4 bytes).
func decodeFloat(b []byte) (float64, bool) {
	switch len(b) {
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), true
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), true
	}
	return 0, false
}
