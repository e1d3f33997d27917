package ipfix

import (
	"fmt"
	"slices"
)

// FieldSpec is a field specifier of a template (RFC 7011 §3.2).
type FieldSpec struct {
	PEN    uint32 // private enterprise number; non-zero sets the enterprise bit
	ID     uint16 // element id, without the enterprise bit
	Length uint16 // field length on the wire, or VarLen
}

// Field is a template field resolved against a Registry.
type Field struct {
	FieldSpec
	Element InfoElement // resolved element (unknown ones: octetArray, "f<id>"/"e<pen>_f<id>")
}

// Template is a (options) template. It is immutable once built and may be
// shared between goroutines.
type Template struct {
	ID              uint16
	ScopeFieldCount uint16 // > 0 for options templates: the first fields are scope fields
	Fields          []Field

	minLen int    // minimum encoded length of a data record (varlen fields count 1)
	fixed  []span // field spans for templates without variable-length fields
}

// span is a field's position inside a data record.
type span struct{ off, end uint32 }

// NewTemplate builds a template from field specifiers.
func NewTemplate(reg *Registry, id uint16, specs ...FieldSpec) (*Template, error) {
	return newTemplate(reg, id, 0, specs)
}

// NewOptionsTemplate builds an options template; the first scopeCount specs
// are scope fields (at least one).
func NewOptionsTemplate(reg *Registry, id uint16, scopeCount int, specs ...FieldSpec) (*Template, error) {
	if scopeCount < 1 || scopeCount > len(specs) {
		return nil, fmt.Errorf("%w: scope field count %d of %d fields", ErrInvalidTemplate, scopeCount, len(specs))
	}
	return newTemplate(reg, id, uint16(scopeCount), specs)
}

func newTemplate(reg *Registry, id, scope uint16, specs []FieldSpec) (*Template, error) {
	if id < MinDataSetID {
		return nil, fmt.Errorf("%w: template id %d below 256", ErrInvalidTemplate, id)
	}
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: template %d has no fields", ErrInvalidTemplate, id)
	}
	if len(specs) > 0xFFFF {
		return nil, fmt.Errorf("%w: template %d has too many fields", ErrInvalidTemplate, id)
	}
	t := &Template{ID: id, ScopeFieldCount: scope, Fields: make([]Field, len(specs))}
	varlen := false
	for i, s := range specs {
		if s.ID > 0x7FFF {
			return nil, fmt.Errorf("%w: element id %d uses the enterprise bit", ErrInvalidTemplate, s.ID)
		}
		t.Fields[i] = Field{FieldSpec: s, Element: reg.Resolve(s.PEN, s.ID)}
		if s.Length == VarLen {
			varlen = true
			t.minLen++
		} else {
			t.minLen += int(s.Length)
		}
	}
	if t.minLen == 0 {
		return nil, fmt.Errorf("%w: template %d has zero record width", ErrInvalidTemplate, id)
	}
	if t.minLen > MaxMessageLen-HeaderLen-SetHeaderLen {
		return nil, fmt.Errorf("%w: template %d record width %d exceeds a message", ErrInvalidTemplate, id, t.minLen)
	}
	if !varlen {
		t.fixed = make([]span, len(specs))
		off := uint32(0)
		for i, s := range specs {
			t.fixed[i] = span{off, off + uint32(s.Length)}
			off += uint32(s.Length)
		}
	}
	return t, nil
}

// IsOptions reports whether t is an options template.
func (t *Template) IsOptions() bool { return t.ScopeFieldCount > 0 }

// MinRecordLength is the smallest encoded data record for t.
func (t *Template) MinRecordLength() int { return t.minLen }

// Index returns the position of element (pen, id) in t, or -1.
func (t *Template) Index(pen uint32, id uint16) int {
	for i := range t.Fields {
		if t.Fields[i].ID == id && t.Fields[i].PEN == pen {
			return i
		}
	}
	return -1
}

// Specs returns the field specifiers of t.
func (t *Template) Specs() []FieldSpec {
	out := make([]FieldSpec, len(t.Fields))
	for i := range t.Fields {
		out[i] = t.Fields[i].FieldSpec
	}
	return out
}

// sameDefinition reports whether t has exactly these scope count and specs.
func (t *Template) sameDefinition(scope uint16, specs []FieldSpec) bool {
	if t.ScopeFieldCount != scope || len(t.Fields) != len(specs) {
		return false
	}
	for i := range specs {
		if t.Fields[i].FieldSpec != specs[i] {
			return false
		}
	}
	return true
}

// Equal reports whether two templates have the same id and definition.
func (t *Template) Equal(o *Template) bool {
	return t.ID == o.ID && slices.Equal(t.Specs(), o.Specs()) && t.ScopeFieldCount == o.ScopeFieldCount
}

// encodedLen is the length of t's template record on the wire.
func (t *Template) encodedLen() int {
	n := 4
	if t.IsOptions() {
		n += 2
	}
	for i := range t.Fields {
		n += 4
		if t.Fields[i].PEN != 0 {
			n += 4
		}
	}
	return n
}

// setID is the set id that carries t's template record.
func (t *Template) setID() uint16 {
	if t.IsOptions() {
		return SetIDOptionsTemplate
	}
	return SetIDTemplate
}

// splitRecord computes the spans of the data record at the start of b. It
// returns the spans (spans may be reused scratch space) and the record length.
func (t *Template) splitRecord(b []byte, scratch []span) ([]span, int, error) {
	if t.fixed != nil {
		if len(b) < t.minLen {
			return nil, 0, ErrIncomplete
		}
		return t.fixed, t.minLen, nil
	}
	scratch = scratch[:0]
	off := 0
	for i := range t.Fields {
		n := int(t.Fields[i].Length)
		if n == int(VarLen) {
			if off >= len(b) {
				return nil, 0, ErrIncomplete
			}
			n = int(b[off])
			off++
			if n == 255 {
				if off+2 > len(b) {
					return nil, 0, ErrIncomplete
				}
				n = int(b[off])<<8 | int(b[off+1])
				off += 2
			}
		}
		if n > len(b)-off {
			return nil, 0, ErrIncomplete
		}
		scratch = append(scratch, span{uint32(off), uint32(off + n)})
		off += n
	}
	return scratch, off, nil
}
