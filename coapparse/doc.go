// Package coapparse is a pure CoAP codec for a passive observer: bytes in,
// values out. It decodes the messages of RFC 7252 carried over UDP (one
// message per datagram), with the options of RFC 7252, Observe (RFC 7641),
// Block1/Block2/Size2 (RFC 7959), No-Response (RFC 7967), OSCORE (RFC 8613),
// Hop-Limit (RFC 8768) and Echo/Request-Tag (RFC 9175); any other option is
// kept as a raw (number, value) pair whose critical, unsafe and no-cache-key
// properties follow from its number. It does no I/O, starts no goroutines,
// logs nothing, has no mutable globals and does not panic on any input.
//
// # Use
//
// Decode fills a caller-owned, reusable Message from one UDP payload:
//
//	var m coapparse.Message
//	err := coapparse.Decode(udpPayload, &m)
//	switch {
//	case err == nil:
//	case errors.Is(err, coapparse.ErrViolation):
//		// m is filled; m.Violations.Names(nil) lists the broken rules
//	default: // errors.Is(err, coapparse.ErrMalformed)
//		// not a CoAP message; errors.Is(err, coapparse.ErrTruncated)… says why
//	}
//	path := m.AppendURIPath(buf[:0]) // "/a/b"; m.URIQuery() "a=1&b=2"
//	blk, ok := m.Block2()            // {Num, More, SZX, Size}
//
// Codes, types and option numbers have names (Code.Name "Content",
// Code.String "2.05", Type.String "CON", OptionNumber.String "Uri-Path").
// AppendMessage and the Message.Add* builders encode, for tests and
// fixtures; decoding what AppendMessage wrote gives back the same values.
//
// # Lifetimes (zero copy)
//
// Message.Token, Message.Payload and every option value are views into the
// buffer given to Decode: valid while that buffer is unchanged (a capture
// ring slot, a read buffer), overwritten by the next Decode into the same
// Message. Copy what must outlive it. Options are stored in an inline array
// of MaxOptions (32) entries, so decoding allocates nothing: no per-message
// allocation, whatever the input, except the *DecodeError of a malformed
// datagram. Accessors that build strings (URIPath, URIQuery…) allocate; their
// Append forms do not.
//
// # Errors and violations
//
// ErrMalformed: a message format error (RFC 7252 §3, §4.1) — version not 1,
// token length 9–15, a datagram that ends inside a field, option delta or
// length 15, option numbers past 65535, a payload marker with no payload, an
// Empty (0.00) message with any byte after the message id. A receiver would
// reject such a message; for an IDS it is not CoAP, or an attack on parsers.
// Each cause is its own sentinel wrapping ErrMalformed, inside a
// *DecodeError that says which field and offset.
//
// ErrViolation: the message parses but breaks a rule — reserved code class,
// unassigned code, type/code mismatch, option length out of range, repeated
// non-repeatable option, unknown critical option, reserved option number,
// Block SZX 7, "." or ".." path segment, Proxy-Uri with Uri-* options,
// invalid UTF-8 in a string option. The Message is filled and
// Message.Violations holds the set (names from Violations.Names/String);
// several can be set at once. It is returned unwrapped, compare with == or
// errors.Is.
//
// # Limits
//
// At most MaxOptions options are stored; the rest are still parsed and
// checked (they count for Violations) and counted in Message.Dropped. Option
// values are not interpreted beyond their format: Content-Format numbers,
// Proxy-Uri and OSCORE contents are left to the caller. CoAP over TCP or
// WebSockets (RFC 8323) frames messages differently and is not decoded.
package coapparse
