package ipfix

import (
	"encoding/binary"
	"fmt"
)

// Set ids (RFC 7011 §3.3.2).
const (
	SetIDTemplate        uint16 = 2
	SetIDOptionsTemplate uint16 = 3
	MinDataSetID         uint16 = 256
)

// SetHeader is the header of a set.
type SetHeader struct {
	ID     uint16
	Length uint16 // including this header
}

// parseSetHeader reads the set header at b[off:] and checks that the set
// fits in b. It returns the header and the offset after the whole set.
func parseSetHeader(b []byte, off int) (SetHeader, int, error) {
	if len(b)-off < SetHeaderLen {
		return SetHeader{}, 0, malformed("truncated set header")
	}
	h := SetHeader{ID: binary.BigEndian.Uint16(b[off:]), Length: binary.BigEndian.Uint16(b[off+2:])}
	if h.Length < SetHeaderLen {
		return h, 0, fmt.Errorf("%w: set length %d", ErrMalformed, h.Length)
	}
	if int(h.Length) > len(b)-off {
		return h, 0, fmt.Errorf("%w: set length %d exceeds message", ErrMalformed, h.Length)
	}
	return h, off + int(h.Length), nil
}

// templateRecord is one parsed template record of a template set.
type templateRecord struct {
	id       uint16
	scope    uint16
	specs    []FieldSpec // nil for a withdrawal
	withdraw bool        // field count 0: withdraw id (id == set id: all)
}

// parseTemplateRecord reads one template record at b[off:] of a set with
// id setID. specs is scratch space, reused. maxFields bounds the number of
// specs kept; over the limit the record is parsed but tooMany is set.
func parseTemplateRecord(setID uint16, b []byte, off int, specs []FieldSpec, maxFields int) (rec templateRecord, next int, tooMany bool, err error) {
	if len(b)-off < 4 {
		return rec, 0, false, malformed("truncated template record header")
	}
	rec.id = binary.BigEndian.Uint16(b[off:])
	count := int(binary.BigEndian.Uint16(b[off+2:]))
	off += 4
	if count == 0 {
		rec.withdraw = true
		if rec.id != setID && rec.id < MinDataSetID {
			return rec, 0, false, fmt.Errorf("%w: withdrawal of template id %d", ErrMalformed, rec.id)
		}
		return rec, off, false, nil
	}
	if rec.id < MinDataSetID {
		return rec, 0, false, fmt.Errorf("%w: template id %d", ErrMalformed, rec.id)
	}
	if setID == SetIDOptionsTemplate {
		if len(b)-off < 2 {
			return rec, 0, false, malformed("truncated options template header")
		}
		rec.scope = binary.BigEndian.Uint16(b[off:])
		off += 2
		if rec.scope == 0 || int(rec.scope) > count {
			return rec, 0, false, fmt.Errorf("%w: scope field count %d of %d", ErrMalformed, rec.scope, count)
		}
	}
	specs = specs[:0]
	for i := 0; i < count; i++ {
		if len(b)-off < 4 {
			return rec, 0, false, malformed("truncated field specifier")
		}
		id := binary.BigEndian.Uint16(b[off:])
		s := FieldSpec{ID: id & 0x7FFF, Length: binary.BigEndian.Uint16(b[off+2:])}
		off += 4
		if id&0x8000 != 0 {
			if len(b)-off < 4 {
				return rec, 0, false, malformed("truncated enterprise number")
			}
			s.PEN = binary.BigEndian.Uint32(b[off:])
			off += 4
		}
		if i < maxFields {
			specs = append(specs, s)
		} else {
			tooMany = true
		}
	}
	rec.specs = specs
	return rec, off, tooMany, nil
}

// appendTemplateRecord appends t's template record.
func appendTemplateRecord(dst []byte, t *Template) []byte {
	dst = binary.BigEndian.AppendUint16(dst, t.ID)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(t.Fields)))
	if t.IsOptions() {
		dst = binary.BigEndian.AppendUint16(dst, t.ScopeFieldCount)
	}
	for i := range t.Fields {
		f := &t.Fields[i]
		id := f.ID
		if f.PEN != 0 {
			id |= 0x8000
		}
		dst = binary.BigEndian.AppendUint16(dst, id)
		dst = binary.BigEndian.AppendUint16(dst, f.Length)
		if f.PEN != 0 {
			dst = binary.BigEndian.AppendUint32(dst, f.PEN)
		}
	}
	return dst
}

// AppendTemplateSet appends a complete template set (or options template
// set) holding the given templates, which must all be of the same kind.
func AppendTemplateSet(dst []byte, ts ...*Template) []byte {
	if len(ts) == 0 {
		return dst
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, ts[0].setID())
	dst = append(dst, 0, 0)
	for _, t := range ts {
		dst = appendTemplateRecord(dst, t)
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16(len(dst)-start))
	return dst
}

// AppendWithdrawalSet appends a set withdrawing template id (RFC 7011 §8.1).
// options selects the options template set; id == 2 (or 3 with options)
// withdraws all templates (of that kind).
func AppendWithdrawalSet(dst []byte, options bool, ids ...uint16) []byte {
	setID := SetIDTemplate
	if options {
		setID = SetIDOptionsTemplate
	}
	dst = binary.BigEndian.AppendUint16(dst, setID)
	dst = binary.BigEndian.AppendUint16(dst, uint16(SetHeaderLen+4*len(ids)))
	for _, id := range ids {
		dst = binary.BigEndian.AppendUint16(dst, id)
		dst = append(dst, 0, 0)
	}
	return dst
}
