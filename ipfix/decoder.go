package ipfix

// Record is one decoded data record (or options data record). It is a view
// into the message and valid only during the callback that receives it.
type Record struct {
	Template *Template
	Header   MessageHeader // header of the message that carried the record
	reg      *Registry
	data     []byte
	spans    []span
}

// NumFields is the number of fields (len(Template.Fields)).
func (r Record) NumFields() int { return len(r.spans) }

// Field returns the template field i.
func (r Record) Field(i int) *Field { return &r.Template.Fields[i] }

// Value returns field i's value.
func (r Record) Value(i int) Value {
	s := r.spans[i]
	return Value{Field: &r.Template.Fields[i], Raw: r.data[s.off:s.end:s.end], reg: r.reg}
}

// Get returns the value of element (pen, id), if the template has it.
func (r Record) Get(pen uint32, id uint16) (Value, bool) {
	fs := r.Template.Fields
	for i := range fs {
		if fs[i].ID == id && fs[i].PEN == pen {
			return r.Value(i), true
		}
	}
	return Value{}, false
}

// Raw returns the record's encoded bytes.
func (r Record) Raw() []byte { return r.data }

// Map materialises the record as element name → value (see Value.Any).
// It allocates; use it off the hot path. A repeated element keeps its
// last value.
func (r Record) Map() map[string]any {
	m := make(map[string]any, len(r.spans))
	for i := range r.spans {
		v := r.Value(i)
		m[v.Field.Element.Name] = v.Any()
	}
	return m
}
