package ipfix

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Value is one field of a decoded record: its template field and its raw
// bytes, a view into the message valid only during the decode callback.
// Accessors interpret the bytes with the length on the wire (reduced-size
// encoding) and return the zero value when the bytes cannot be the asked
// type; they never panic.
type Value struct {
	Field *Field
	Raw   []byte
	reg   *Registry
}

// Uint returns an unsigned integer of 1–8 bytes (also dateTimeSeconds and
// dateTimeMilliseconds as their raw counts).
func (v Value) Uint() uint64 {
	x, _ := beUint(v.Raw)
	return x
}

// Int returns a signed integer of 1–8 bytes, sign extended.
func (v Value) Int() int64 {
	x, _ := beInt(v.Raw)
	return x
}

// Float returns a float32 or float64 value.
func (v Value) Float() float64 {
	x, _ := decodeFloat(v.Raw)
	return x
}

// Bool returns a boolean (RFC 7011 §6.1.5: 1 is true, 2 is false).
func (v Value) Bool() bool { return len(v.Raw) == 1 && v.Raw[0] == 1 }

// Bytes returns the raw bytes (a view).
func (v Value) Bytes() []byte { return v.Raw }

// Text returns the bytes with trailing NULs stripped (fixed-length,
// NUL-padded strings as sent by the original prototype). A view.
func (v Value) Text() []byte { return bytes.TrimRight(v.Raw, "\x00") }

// String returns Text as a string (a copy).
func (v Value) String() string { return string(v.Text()) }

// Time returns a dateTime* value (per the element's type) in UTC. Zero if
// the field is not a dateTime type or has the wrong length.
func (v Value) Time() time.Time {
	t, _ := decodeTime(v.Field.Element.Type, v.Raw)
	return t
}

// IP returns an ipv4Address (4 bytes) or ipv6Address (16 bytes); the zero
// Addr otherwise.
func (v Value) IP() netip.Addr {
	switch len(v.Raw) {
	case 4:
		return netip.AddrFrom4([4]byte(v.Raw))
	case 16:
		return netip.AddrFrom16([16]byte(v.Raw))
	}
	return netip.Addr{}
}

// MAC returns a macAddress (a view); nil if the length is not 6.
func (v Value) MAC() net.HardwareAddr {
	if len(v.Raw) != 6 {
		return nil
	}
	return net.HardwareAddr(v.Raw)
}

// BasicList parses an RFC 6313 basicList. The list is a view.
func (v Value) BasicList() (BasicList, error) {
	l, err := ParseBasicList(v.Raw)
	if err == nil {
		l.reg = v.reg
	}
	return l, err
}

// Any materialises the value according to the element's type, copying
// bytes: uint64, int64, float64, bool, string, []byte, time.Time,
// netip.Addr, net.HardwareAddr, or for a basicList a []any of its elements.
// Values whose length does not fit their type come back as []byte.
func (v Value) Any() any {
	t := v.Field.Element.Type
	switch {
	case t.IsInteger():
		if len(v.Raw) >= 1 && len(v.Raw) <= 8 {
			if t >= TypeSigned8 {
				return v.Int()
			}
			return v.Uint()
		}
	case t == TypeFloat32 || t == TypeFloat64:
		if x, ok := decodeFloat(v.Raw); ok {
			return x
		}
	case t == TypeBoolean:
		if len(v.Raw) == 1 && (v.Raw[0] == 1 || v.Raw[0] == 2) {
			return v.Raw[0] == 1
		}
	case t == TypeString:
		return v.String()
	case t >= TypeDateTimeSeconds && t <= TypeDateTimeNanoseconds:
		if x, ok := decodeTime(t, v.Raw); ok {
			return x
		}
	case t == TypeIPv4Address || t == TypeIPv6Address:
		if a := v.IP(); a.IsValid() {
			return a
		}
	case t == TypeMACAddress:
		if len(v.Raw) == 6 {
			return net.HardwareAddr(bytes.Clone(v.Raw))
		}
	case t == TypeBasicList:
		if l, err := v.BasicList(); err == nil {
			if items, err := l.Values(); err == nil {
				return items
			}
		}
	}
	return bytes.Clone(v.Raw)
}

// List semantics (RFC 6313 §4.4).
const (
	SemanticNoneOf        uint8 = 0
	SemanticExactlyOneOf  uint8 = 1
	SemanticOneOrMoreOf   uint8 = 2
	SemanticAllOf         uint8 = 3
	SemanticOrdered       uint8 = 4
	SemanticUndefinedList uint8 = 0xFF
)

// BasicList is a parsed RFC 6313 basicList: a list of values of one
// element. Items are views into the message.
type BasicList struct {
	Semantic uint8
	Element  FieldSpec // element id, PEN and element length (VarLen for variable)
	data     []byte    // the encoded elements
	reg      *Registry
}

// ParseBasicList parses the content of a basicList field.
func ParseBasicList(b []byte) (BasicList, error) {
	if len(b) < 5 {
		return BasicList{}, malformed("basicList header")
	}
	l := BasicList{Semantic: b[0]}
	id := binary.BigEndian.Uint16(b[1:])
	l.Element = FieldSpec{ID: id & 0x7FFF, Length: binary.BigEndian.Uint16(b[3:])}
	off := 5
	if id&0x8000 != 0 {
		if len(b) < 9 {
			return BasicList{}, malformed("basicList enterprise number")
		}
		l.Element.PEN = binary.BigEndian.Uint32(b[5:])
		off = 9
	}
	if l.Element.Length == 0 {
		return BasicList{}, malformed("basicList element length 0")
	}
	l.data = b[off:]
	return l, l.Each(func([]byte) bool { return true })
}

// Each calls fn with each element's bytes until fn returns false. It fails
// with ErrMalformed if an element overruns the list.
func (l BasicList) Each(fn func(item []byte) bool) error {
	b := l.data
	for off := 0; off < len(b); {
		n := int(l.Element.Length)
		if l.Element.Length == VarLen {
			n = int(b[off])
			off++
			if n == 255 {
				if off+2 > len(b) {
					return malformed("basicList item length")
				}
				n = int(binary.BigEndian.Uint16(b[off:]))
				off += 2
			}
		}
		if n > len(b)-off {
			return malformed("basicList item overruns list")
		}
		if !fn(b[off : off+n]) {
			return nil
		}
		off += n
	}
	return nil
}

// Len counts the elements.
func (l BasicList) Len() int {
	n := 0
	_ = l.Each(func([]byte) bool { n++; return true })
	return n
}

// Strings returns the elements as strings with trailing NULs stripped.
func (l BasicList) Strings() []string {
	var out []string
	_ = l.Each(func(b []byte) bool {
		out = append(out, string(bytes.TrimRight(b, "\x00")))
		return true
	})
	return out
}

// Values materialises the elements per their element's type (see Value.Any).
func (l BasicList) Values() ([]any, error) {
	f := &Field{FieldSpec: l.Element, Element: l.reg.Resolve(l.Element.PEN, l.Element.ID)}
	out := []any{}
	err := l.Each(func(b []byte) bool {
		out = append(out, Value{Field: f, Raw: b, reg: l.reg}.Any())
		return true
	})
	return out, err
}

// AppendBasicListStrings appends the content of a basicList of strings
// (variable-length items) with the given semantic and element.
func AppendBasicListStrings(dst []byte, semantic uint8, pen uint32, id uint16, items []string) []byte {
	dst = append(dst, semantic)
	if pen != 0 {
		dst = binary.BigEndian.AppendUint16(dst, id|0x8000)
	} else {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	dst = binary.BigEndian.AppendUint16(dst, VarLen)
	if pen != 0 {
		dst = binary.BigEndian.AppendUint32(dst, pen)
	}
	for _, s := range items {
		dst = appendVarLenPrefix(dst, len(s))
		dst = append(dst, s...)
	}
	return dst
}

// appendVarLenPrefix appends the RFC 7011 §7 length prefix.
func appendVarLenPrefix(dst []byte, n int) []byte {
	if n < 255 {
		return append(dst, byte(n))
	}
	return append(dst, 255, byte(n>>8), byte(n))
}

// basicListLen is the encoded length of AppendBasicListStrings' output.
func basicListLen(pen uint32, items []string) int {
	n := 5
	if pen != 0 {
		n += 4
	}
	for _, s := range items {
		n += len(s) + 1
		if len(s) >= 255 {
			n += 2
		}
	}
	return n
}

func (l BasicList) String() string {
	return fmt.Sprintf("basicList(semantic %d, element %d/%d, %d items)", l.Semantic, l.Element.PEN, l.Element.ID, l.Len())
}
