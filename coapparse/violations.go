package coapparse

import "strings"

// Violations is a set of rules a decoded message breaks without being
// unparsable. The Message is still filled; Decode returns ErrViolation when
// the set is not empty. An IDS should report them rather than drop the
// message. Each bit has a stable kebab-case name (Names, String).
type Violations uint32

// Violation bits.
const (
	// ViolationReservedClass: code class 1, 6 or 7 (RFC 7252 §12.1; class 7
	// is signalling, defined only for CoAP over reliable transports).
	ViolationReservedClass Violations = 1 << iota
	// ViolationUnassignedCode: a method or response code in class 0, 2, 4 or
	// 5 that no specification assigns (e.g. 0.31, 2.06, 4.10).
	ViolationUnassignedCode
	// ViolationTypeCode: a type and code combination RFC 7252 §4.3 excludes:
	// a Non-confirmable Empty message, an Acknowledgement carrying a request,
	// a Reset that is not Empty.
	ViolationTypeCode
	// ViolationOptionLength: a known option whose value length is outside
	// the range its specification gives (e.g. Uri-Host of 0 bytes, ETag of 9,
	// If-None-Match with a value, Observe of 4 bytes).
	ViolationOptionLength
	// ViolationRepeatedOption: a non-repeatable option occurs more than once
	// (ETag is repeatable in requests only, RFC 7252 §5.10.6).
	ViolationRepeatedOption
	// ViolationUnknownCritical: an unrecognised critical (odd) option
	// number; a receiver must reject the message (RFC 7252 §5.4.1).
	ViolationUnknownCritical
	// ViolationReservedOption: option number 0, 128, 132, 136 or 140,
	// reserved by RFC 7252 §12.2.
	ViolationReservedOption
	// ViolationBlockSZX: Block1 or Block2 with SZX 7, reserved (RFC 7959 §2.2).
	ViolationBlockSZX
	// ViolationDotSegment: a Uri-Path value "." or ".." (RFC 7252 §5.10.1:
	// the URI must be resolved before it is split into options).
	ViolationDotSegment
	// ViolationProxyURIWithURI: Proxy-Uri together with Uri-Host, Uri-Port,
	// Uri-Path or Uri-Query (RFC 7252 §5.10.2).
	ViolationProxyURIWithURI
	// ViolationInvalidUTF8: a string-format option (Uri-Host, Uri-Path,
	// Uri-Query, Location-*, Proxy-*) that is not valid UTF-8 (RFC 7252 §3.2).
	ViolationInvalidUTF8
)

// violationNames is indexed by bit position. Never modified.
var violationNames = [...]string{"reserved-code-class", "unassigned-code", "type-code-mismatch",
	"option-length", "repeated-option", "unknown-critical-option", "reserved-option",
	"block-szx-reserved", "uri-path-dot-segment", "proxy-uri-with-uri", "invalid-utf8"}

// AllViolations is the set of every defined violation bit.
const AllViolations = Violations(1<<len(violationNames)) - 1

// Has reports whether all bits of w are in v.
func (v Violations) Has(w Violations) bool { return v&w == w }

// Names appends the name of each violation in v to dst, in bit order.
func (v Violations) Names(dst []string) []string {
	for i, n := range violationNames {
		if v&(1<<i) != 0 {
			dst = append(dst, n)
		}
	}
	return dst
}

// String lists the violations, comma separated ("" for none).
func (v Violations) String() string {
	var b strings.Builder
	for i, n := range violationNames {
		if v&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n)
		}
	}
	return b.String()
}
