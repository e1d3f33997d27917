package ipfix

import (
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// RecordEncoder appends the fields of one data record, in template order,
// into a reusable buffer. Encoding a record does not allocate once the
// buffer has grown. Errors are sticky and reported by Bytes.
//
//	enc.Reset(tmpl)
//	enc.PutIP(src); enc.PutUint(port); enc.PutString(topic) ...
//	rec, err := enc.Bytes()
//	err = builder.Add(tmpl, rec)
type RecordEncoder struct {
	t   *Template
	buf []byte
	i   int
	err error
}

// NewRecordEncoder returns an encoder positioned at the start of a record
// of t.
func NewRecordEncoder(t *Template) *RecordEncoder {
	e := &RecordEncoder{}
	e.Reset(t)
	return e
}

// Reset starts a new record of t, keeping the buffer.
func (e *RecordEncoder) Reset(t *Template) {
	e.t, e.buf, e.i, e.err = t, e.buf[:0], 0, nil
}

// Bytes returns the encoded record (valid until the next Reset), or the
// first error; it fails if not every field was written.
func (e *RecordEncoder) Bytes() ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	if e.i != len(e.t.Fields) {
		return nil, fmt.Errorf("%w: %d of %d fields written", ErrFieldMismatch, e.i, len(e.t.Fields))
	}
	return e.buf, nil
}

// next returns the next field, or nil after recording an error.
func (e *RecordEncoder) next() *Field {
	if e.err != nil {
		return nil
	}
	if e.i >= len(e.t.Fields) {
		e.err = fmt.Errorf("%w: more values than the %d fields of template %d", ErrFieldMismatch, len(e.t.Fields), e.t.ID)
		return nil
	}
	f := &e.t.Fields[e.i]
	e.i++
	return f
}

func (e *RecordEncoder) fail(f *Field, what string) {
	e.err = fmt.Errorf("%w: field %d (%s, length %d): %s", ErrFieldMismatch, e.i-1, f.Element.Name, f.Length, what)
}

// PutUint writes an unsigned integer (also booleans-as-integers, counters,
// dateTimeSeconds/Milliseconds as raw counts) in the field's length, which
// may be reduced (RFC 7011 §6.2); the value must fit.
func (e *RecordEncoder) PutUint(v uint64) {
	f := e.next()
	if f == nil {
		return
	}
	n := int(f.Length)
	if f.Length == VarLen || n == 0 || n > 8 || !fitsUint(v, n) {
		e.fail(f, "unsigned value does not fit")
		return
	}
	e.buf = appendUint(e.buf, v, n)
}

// PutInt writes a signed integer in the field's length.
func (e *RecordEncoder) PutInt(v int64) {
	f := e.next()
	if f == nil {
		return
	}
	n := int(f.Length)
	if f.Length == VarLen || n == 0 || n > 8 || !fitsInt(v, n) {
		e.fail(f, "signed value does not fit")
		return
	}
	e.buf = appendUint(e.buf, uint64(v), n)
}

// PutFloat writes a float32 (4-byte field) or float64 (8-byte field).
func (e *RecordEncoder) PutFloat(v float64) {
	f := e.next()
	if f == nil {
		return
	}
	switch f.Length {
	case 4:
		e.buf = binary.BigEndian.AppendUint32(e.buf, math.Float32bits(float32(v)))
	case 8:
		e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(v))
	default:
		e.fail(f, "float needs 4 or 8 bytes")
	}
}

// PutBool writes a boolean (1 true, 2 false).
func (e *RecordEncoder) PutBool(v bool) {
	f := e.next()
	if f == nil {
		return
	}
	if f.Length != 1 {
		e.fail(f, "boolean needs 1 byte")
		return
	}
	if v {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 2)
	}
}

// PutString writes a string: with a length prefix in a variable-length
// field, NUL-padded in a fixed-length one (it must not be longer).
func (e *RecordEncoder) PutString(s string) {
	f := e.next()
	if f == nil {
		return
	}
	if f.Length == VarLen {
		if len(s) > 0xFFFF {
			e.fail(f, "string longer than 65535 bytes")
			return
		}
		e.buf = appendVarLenPrefix(e.buf, len(s))
		e.buf = append(e.buf, s...)
		return
	}
	if len(s) > int(f.Length) {
		e.fail(f, "string longer than the field")
		return
	}
	e.buf = append(e.buf, s...)
	e.pad(int(f.Length) - len(s))
}

// PutBytes writes octets like PutString.
func (e *RecordEncoder) PutBytes(b []byte) {
	f := e.next()
	if f == nil {
		return
	}
	if f.Length == VarLen {
		if len(b) > 0xFFFF {
			e.fail(f, "octets longer than 65535 bytes")
			return
		}
		e.buf = appendVarLenPrefix(e.buf, len(b))
		e.buf = append(e.buf, b...)
		return
	}
	if len(b) > int(f.Length) {
		e.fail(f, "octets longer than the field")
		return
	}
	e.buf = append(e.buf, b...)
	e.pad(int(f.Length) - len(b))
}

func (e *RecordEncoder) pad(n int) {
	for ; n > 0; n-- {
		e.buf = append(e.buf, 0)
	}
}

// PutIP writes an ipv4Address (4-byte field) or ipv6Address (16-byte
// field). An IPv4-mapped IPv6 address is accepted for a 4-byte field.
func (e *RecordEncoder) PutIP(a netip.Addr) {
	f := e.next()
	if f == nil {
		return
	}
	switch {
	case f.Length == 4 && a.Unmap().Is4():
		b := a.Unmap().As4()
		e.buf = append(e.buf, b[:]...)
	case f.Length == 16 && a.IsValid():
		b := a.As16()
		e.buf = append(e.buf, b[:]...)
	default:
		e.fail(f, "address does not match the field")
	}
}

// PutMAC writes a macAddress.
func (e *RecordEncoder) PutMAC(mac [6]byte) {
	f := e.next()
	if f == nil {
		return
	}
	if f.Length != 6 {
		e.fail(f, "macAddress needs 6 bytes")
		return
	}
	e.buf = append(e.buf, mac[:]...)
}

// PutTime writes t in the form of the field's dateTime type: seconds (4
// bytes), milliseconds (8 bytes), or the NTP form for micro- and
// nanoseconds (RFC 7011 §6.1.7–6.1.10).
func (e *RecordEncoder) PutTime(t time.Time) {
	f := e.next()
	if f == nil {
		return
	}
	switch {
	case f.Element.Type == TypeDateTimeSeconds && f.Length == 4:
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(t.Unix()))
	case f.Element.Type == TypeDateTimeMilliseconds && f.Length == 8:
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(t.UnixMilli()))
	case (f.Element.Type == TypeDateTimeMicroseconds || f.Element.Type == TypeDateTimeNanoseconds) && f.Length == 8:
		e.buf = binary.BigEndian.AppendUint64(e.buf, timeToNTP(t))
	default:
		e.fail(f, "not a dateTime field")
	}
}

// PutStringList writes a basicList of strings (RFC 6313) whose items are
// element (pen, id), in a variable-length field.
func (e *RecordEncoder) PutStringList(semantic uint8, pen uint32, id uint16, items []string) {
	f := e.next()
	if f == nil {
		return
	}
	if f.Length != VarLen {
		e.fail(f, "basicList needs a variable-length field")
		return
	}
	n := basicListLen(pen, items)
	if n > 0xFFFF {
		e.fail(f, "basicList too long")
		return
	}
	e.buf = appendVarLenPrefix(e.buf, n)
	e.buf = AppendBasicListStrings(e.buf, semantic, pen, id, items)
}

// PutRaw writes field content as given (a length prefix is added for a
// variable-length field; a fixed-length field must match exactly).
func (e *RecordEncoder) PutRaw(b []byte) {
	f := e.next()
	if f == nil {
		return
	}
	if f.Length == VarLen {
		if len(b) > 0xFFFF {
			e.fail(f, "raw value longer than 65535 bytes")
			return
		}
		e.buf = appendVarLenPrefix(e.buf, len(b))
	} else if len(b) != int(f.Length) {
		e.fail(f, "raw value length differs from the field")
		return
	}
	e.buf = append(e.buf, b...)
}
