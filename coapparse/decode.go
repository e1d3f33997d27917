package coapparse

import "unicode/utf8"

// uriOptionsMask has the bits of Uri-Host, Uri-Port, Uri-Path and Uri-Query.
const uriOptionsMask = 1<<URIHost | 1<<URIPort | 1<<URIPath | 1<<URIQuery

// Decode decodes the CoAP message that is the whole of the UDP payload b
// into m (RFC 7252 §3: the payload, if any, runs to the end of the datagram).
//
// Results:
//   - nil: m is filled.
//   - ErrViolation (unwrapped): m is filled; m.Violations says which rules
//     it breaks.
//   - an error matching ErrMalformed (a *DecodeError wrapping ErrTruncated,
//     ErrVersion, ErrTokenLength, ErrOptionReserved, ErrOptionNumber,
//     ErrEmptyPayload or ErrEmptyMessage): the datagram is not a valid CoAP
//     message. m is partly filled and must not be trusted.
//
// m keeps views into b (see Message). Decode does not allocate unless it
// returns a *DecodeError.
func Decode(b []byte, m *Message) error {
	if len(b) < 4 {
		return &DecodeError{Field: "header", Err: ErrTruncated}
	}
	b0 := b[0]
	if b0>>6 != 1 {
		return &DecodeError{Field: "header", Err: ErrVersion}
	}
	tkl := int(b0 & 0x0f)
	if tkl > 8 {
		return &DecodeError{Field: "header", Err: ErrTokenLength}
	}
	m.Type = Type(b0 >> 4 & 3)
	m.Code = Code(b[1])
	m.MessageID = uint16(b[2])<<8 | uint16(b[3])
	m.Token, m.Payload = nil, nil
	m.Violations, m.Dropped, m.n = 0, 0, 0
	off := 4 + tkl
	if len(b) < off {
		return &DecodeError{Field: "token", Offset: 4, Err: ErrTruncated}
	}
	if tkl > 0 {
		m.Token = b[4:off:off]
	}
	if m.Code == Empty {
		if len(b) > 4 {
			return &DecodeError{Field: "token", Offset: 4, Err: ErrEmptyMessage}
		}
		if m.Type == NonConfirmable {
			m.Violations = ViolationTypeCode
			return ErrViolation
		}
		return nil
	}

	var v Violations
	var present uint64 // bit n set: option n < 64 seen
	num, count := 0, 0
	for off < len(b) {
		h := b[off]
		if h == 0xff {
			if off+1 == len(b) {
				return &DecodeError{Field: "payload", Offset: off, Err: ErrEmptyPayload}
			}
			m.Payload = b[off+1:]
			break
		}
		start := off
		off++
		delta, length := int(h>>4), int(h&0x0f)
		if delta >= 13 {
			switch delta {
			case 13:
				if off >= len(b) {
					return optErr(start, num, ErrTruncated)
				}
				delta = int(b[off]) + 13
				off++
			case 14:
				if off+1 >= len(b) {
					return optErr(start, num, ErrTruncated)
				}
				delta = (int(b[off])<<8 | int(b[off+1])) + 269
				off += 2
			default:
				return optErr(start, num, ErrOptionReserved)
			}
		}
		if length >= 13 {
			switch length {
			case 13:
				if off >= len(b) {
					return optErr(start, num, ErrTruncated)
				}
				length = int(b[off]) + 13
				off++
			case 14:
				if off+1 >= len(b) {
					return optErr(start, num, ErrTruncated)
				}
				length = (int(b[off])<<8 | int(b[off+1])) + 269
				off += 2
			default:
				return optErr(start, num, ErrOptionReserved)
			}
		}
		if length > len(b)-off {
			return optErr(start, num, ErrTruncated)
		}
		num += delta
		if num > 0xffff {
			return optErr(start, num-delta, ErrOptionNumber)
		}
		n := OptionNumber(num)
		val := b[off : off+length : off+length]
		off += length
		// The checks of checkOption, inlined for the common case.
		in := info(n)
		if repeat := delta == 0 && count > 0; repeat || in.format == FormatUnknown {
			v |= checkOption(n, val, repeat, m.Code)
		} else {
			if length < int(in.min) || length > int(in.max) {
				v |= ViolationOptionLength
			}
			switch {
			case in.format == FormatString:
				if !validString(val) {
					v |= ViolationInvalidUTF8
				}
				if n == URIPath && length <= 2 && dotSegment(val) {
					v |= ViolationDotSegment
				}
			case (n == Block1 || n == Block2) && length > 0 && val[length-1]&7 == 7:
				v |= ViolationBlockSZX
			}
		}
		if n < 64 {
			present |= 1 << n
		}
		if m.n < MaxOptions {
			m.opts[m.n] = Option{Number: n, Value: val}
			m.n++
		} else {
			m.Dropped++
		}
		count++
	}

	switch cl := m.Code.Class(); {
	case cl == 1 || cl >= 6:
		v |= ViolationReservedClass
	case codeNames[m.Code] == "":
		v |= ViolationUnassignedCode
	}
	if m.Type == Reset || m.Type == Acknowledgement && m.Code.Class() == 0 {
		v |= ViolationTypeCode
	}
	if present&(1<<ProxyURI) != 0 && present&uriOptionsMask != 0 {
		v |= ViolationProxyURIWithURI
	}
	if v != 0 {
		m.Violations = v
		return ErrViolation
	}
	return nil
}

// optErr reports a broken option; prev is the number of the option before it.
func optErr(off, prev int, err error) error {
	return &DecodeError{Field: "option", Offset: off, Option: OptionNumber(prev), Err: err}
}

// checkOption returns the violations of one option. repeat is true when the
// previous option had the same number.
func checkOption(n OptionNumber, val []byte, repeat bool, code Code) Violations {
	in := info(n)
	var v Violations
	if in.format == FormatUnknown {
		if n.Critical() {
			v |= ViolationUnknownCritical
		}
		if reservedOption(n) {
			v |= ViolationReservedOption
		}
		return v
	}
	if l := len(val); l < int(in.min) || l > int(in.max) {
		v |= ViolationOptionLength
	}
	if repeat && !in.repeatable && !(in.reqRepeat && code.IsRequest()) {
		v |= ViolationRepeatedOption
	}
	switch in.format {
	case FormatString:
		if !validString(val) {
			v |= ViolationInvalidUTF8
		}
		if n == URIPath && dotSegment(val) {
			v |= ViolationDotSegment
		}
	case FormatUint:
		if (n == Block1 || n == Block2) && len(val) > 0 && val[len(val)-1]&7 == 7 {
			v |= ViolationBlockSZX
		}
	}
	return v
}

// validString is utf8.Valid with an inline ASCII loop for the short values
// options carry.
func validString(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return utf8.Valid(b)
		}
	}
	return true
}

// dotSegment reports "." or "..".
func dotSegment(b []byte) bool {
	return len(b) == 1 && b[0] == '.' || len(b) == 2 && b[0] == '.' && b[1] == '.'
}
