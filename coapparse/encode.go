package coapparse

// AppendMessage appends the wire form of m to dst: header (version 1),
// token, the stored options in order with delta/length extensions, and the
// payload after a 0xFF marker when it is not empty. Dropped options and
// Violations are not encoded; what it writes is exactly what it is given, so
// it can build messages that break rules (Decode then reports them). It
// refuses what cannot be written or would not decode: a Type over 3
// (ErrType), a token over 8 bytes (ErrTokenLength), an Empty code with a
// token, options or payload (ErrEmptyMessage), an option value over 65804
// bytes (ErrOptionLength). Options are always in order: only Decode and
// AddOption store them.
func AppendMessage(dst []byte, m *Message) ([]byte, error) {
	if m.Type > Reset {
		return dst, ErrType
	}
	if len(m.Token) > 8 {
		return dst, ErrTokenLength
	}
	if m.Code == Empty && (len(m.Token) > 0 || m.n > 0 || len(m.Payload) > 0) {
		return dst, ErrEmptyMessage
	}
	dst = append(dst, 0x40|byte(m.Type)<<4|byte(len(m.Token)), byte(m.Code), byte(m.MessageID>>8), byte(m.MessageID))
	dst = append(dst, m.Token...)
	prev := OptionNumber(0)
	for _, o := range m.opts[:m.n] {
		if len(o.Value) > 0xffff+269 {
			return dst, ErrOptionLength
		}
		delta, length := int(o.Number-prev), len(o.Value)
		dn, dext := nibble(delta)
		ln, lext := nibble(length)
		dst = append(dst, dn<<4|ln)
		dst = appendExt(dst, dn, dext)
		dst = appendExt(dst, ln, lext)
		dst = append(dst, o.Value...)
		prev = o.Number
	}
	if len(m.Payload) > 0 {
		dst = append(dst, 0xff)
		dst = append(dst, m.Payload...)
	}
	return dst, nil
}

// nibble returns the 4-bit field for x and the extension value.
func nibble(x int) (byte, int) {
	switch {
	case x < 13:
		return byte(x), 0
	case x < 269:
		return 13, x - 13
	}
	return 14, x - 269
}

func appendExt(dst []byte, n byte, ext int) []byte {
	switch n {
	case 13:
		return append(dst, byte(ext))
	case 14:
		return append(dst, byte(ext>>8), byte(ext))
	}
	return dst
}
