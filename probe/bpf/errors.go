package bpf

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by Compile is an *Error whose Kind is
// one of these, so callers can branch with errors.Is.
var (
	// ErrSyntax: the expression is not well-formed pcap-filter syntax.
	ErrSyntax = errors.New("syntax error")
	// ErrUnsupported: the expression is valid pcap-filter syntax but uses a
	// primitive, keyword or name this compiler cannot translate without
	// libpcap (hostnames, service names, gateway, decnet, ...).
	ErrUnsupported = errors.New("unsupported by the pure-Go filter compiler")
	// ErrInvalid: the expression is well-formed but meaningless, e.g. a port
	// above 65535, host bits set in a network, a division by zero.
	ErrInvalid = errors.New("invalid filter")
	// ErrLinkType: the link type is not supported, or the expression uses a
	// primitive that does not exist on this link type (ether host on raw IP).
	ErrLinkType = errors.New("unsupported link type")
	// ErrTooLong: the generated program exceeds the kernel limit of
	// MaxInstructions instructions.
	ErrTooLong = errors.New("filter program too long")
)

// Error describes why an expression could not be compiled.
type Error struct {
	Kind   error  // one of the sentinels above
	Expr   string // the whole expression
	Pos    int    // byte offset of Token in Expr, -1 when not tied to a token
	Token  string // the offending token, if any
	Detail string // human-readable explanation
}

func (e *Error) Error() string {
	msg := "filter"
	if e.Pos >= 0 {
		msg += fmt.Sprintf(" at offset %d", e.Pos)
	}
	if e.Token != "" {
		msg += fmt.Sprintf(" near %q", e.Token)
	}
	msg += ": " + e.Kind.Error()
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

// Unwrap returns the sentinel, for errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

func errAt(kind error, tok token, format string, args ...any) *Error {
	return &Error{Kind: kind, Pos: tok.pos, Token: tok.text, Detail: fmt.Sprintf(format, args...)}
}

func errNoTok(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Pos: -1, Detail: fmt.Sprintf(format, args...)}
}

// unsupported builds the error for a token that needs libpcap.
func unsupported(tok token, what string) *Error {
	return errAt(ErrUnsupported, tok,
		"%s %q cannot be compiled without libpcap; use a numeric address, port or protocol, or a supported primitive (host, net, port, portrange, proto, ip, ip6, tcp, udp, icmp, icmp6, arp, vlan, ether, less, greater, byte comparisons)",
		what, tok.text)
}
