package ipfix

import "strconv"

// InfoElement describes an information element (RFC 7012).
type InfoElement struct {
	Name string
	PEN  uint32 // private enterprise number, 0 for IANA elements
	ID   uint16 // element id without the enterprise bit
	Type DataType
}

// Spec returns a field specifier for e with the type's default length.
func (e InfoElement) Spec() FieldSpec {
	return FieldSpec{PEN: e.PEN, ID: e.ID, Length: e.Type.DefaultLength()}
}

// SpecLen returns a field specifier for e with an explicit length (reduced
// size, fixed-size string, or VarLen).
func (e InfoElement) SpecLen(n uint16) FieldSpec {
	return FieldSpec{PEN: e.PEN, ID: e.ID, Length: n}
}

// Registry resolves field specifiers to information elements: the read-only
// IANA table plus the MQTT enterprise elements under one configurable
// private enterprise number. A nil *Registry behaves as NewRegistry(DefaultMQTTPEN).
// A Registry is immutable and safe for concurrent use.
type Registry struct {
	mqttPEN uint32
}

// NewRegistry returns a registry whose MQTT elements live under mqttPEN.
func NewRegistry(mqttPEN uint32) *Registry {
	return &Registry{mqttPEN: mqttPEN}
}

// MQTTPEN returns the enterprise number of the MQTT elements.
func (r *Registry) MQTTPEN() uint32 {
	if r == nil {
		return DefaultMQTTPEN
	}
	return r.mqttPEN
}

// Lookup returns the element for (pen, id); ok is false if it is unknown.
func (r *Registry) Lookup(pen uint32, id uint16) (InfoElement, bool) {
	if pen == 0 {
		return lookupIANA(id)
	}
	if pen == r.MQTTPEN() {
		if e, ok := lookupMQTT(id); ok {
			e.PEN = pen
			return e, true
		}
		if e, ok := lookupCoAP(id); ok {
			e.PEN = pen
			return e, true
		}
	}
	return InfoElement{}, false
}

// Resolve returns the element for (pen, id), or for unknown elements an
// octetArray element with the stable name "f<id>" or "e<pen>_f<id>".
func (r *Registry) Resolve(pen uint32, id uint16) InfoElement {
	if e, ok := r.Lookup(pen, id); ok {
		return e
	}
	return InfoElement{Name: UnknownName(pen, id), PEN: pen, ID: id, Type: TypeOctetArray}
}

// ByName finds an element by name (IANA first, then MQTT). It scans the
// tables; use it at setup time, not per record.
func (r *Registry) ByName(name string) (InfoElement, bool) {
	for _, e := range ianaElements {
		if e.Name == name {
			return e, true
		}
	}
	for _, e := range mqttElements {
		if e.Name == name {
			e.PEN = r.MQTTPEN()
			return e, true
		}
	}
	for _, e := range coapElements {
		if e.Name == name {
			e.PEN = r.MQTTPEN()
			return e, true
		}
	}
	return InfoElement{}, false
}

// Elements returns a copy of every known element (IANA, then MQTT).
func (r *Registry) Elements() []InfoElement {
	out := make([]InfoElement, 0, len(ianaElements)+len(mqttElements)+len(coapElements))
	for _, e := range ianaElements {
		if e.Name != "" {
			out = append(out, e)
		}
	}
	for _, e := range mqttElements {
		if e.Name != "" {
			e.PEN = r.MQTTPEN()
			out = append(out, e)
		}
	}
	for _, e := range coapElements {
		e.PEN = r.MQTTPEN()
		out = append(out, e)
	}
	return out
}

// UnknownName is the stable name of an element missing from the registry:
// "f<id>" for IANA ids, "e<pen>_f<id>" for enterprise ones.
func UnknownName(pen uint32, id uint16) string {
	if pen == 0 {
		return "f" + strconv.Itoa(int(id))
	}
	return "e" + strconv.FormatUint(uint64(pen), 10) + "_f" + strconv.Itoa(int(id))
}

func lookupIANA(id uint16) (InfoElement, bool) {
	if int(id) < len(ianaElements) && ianaElements[id].Name != "" {
		return ianaElements[id], true
	}
	return InfoElement{}, false
}

func lookupMQTT(id uint16) (InfoElement, bool) {
	if int(id) < len(mqttElements) && mqttElements[id].Name != "" {
		return mqttElements[id], true
	}
	return InfoElement{}, false
}
