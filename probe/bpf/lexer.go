package bpf

import (
	"net/netip"
	"strings"
)

type tokKind int

const (
	tkEOF  tokKind = iota
	tkWord         // keyword, number, address or name
	tkName         // backslash-escaped name such as \tcp (never a keyword)
	tkOp           // punctuation and operators
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func (t token) is(ops ...string) bool {
	if t.kind != tkOp && t.kind != tkWord {
		return false
	}
	for _, o := range ops {
		if t.text == o {
			return true
		}
	}
	return false
}

// twoCharOps are tried before single-character operators.
var twoCharOps = []string{"!=", "==", "<=", ">=", "<<", ">>", "&&", "||"}

const oneCharOps = "()[]:!=<>&|+-*/%^"

func isWordStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func isWordChar(c byte) bool {
	return isWordStart(c) || c == '.' || c == '-' || c == ':'
}

// lex splits a filter expression into tokens. Like libpcap's lexer, words may
// contain '-', '.' and ':' (so "tcp-syn", "10.0.0.1", "fe80::1" and
// "00:11:22:33:44:55" are single words and "len-1" is a name, not an
// expression); a word with ':' that is neither an IPv6 nor a MAC address is cut
// at the colon so that "tcp[13:1]" works.
func lex(expr string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case isWordStart(c) || (c == ':' && i+1 < len(expr) && expr[i+1] == ':'):
			j := i
			for j < len(expr) && isWordChar(expr[j]) {
				j++
			}
			w := expr[i:j]
			for len(w) > 1 && (w[len(w)-1] == '-' || w[len(w)-1] == '.') {
				w = w[:len(w)-1]
			}
			if strings.Contains(w, ":") && !isMACWord(w) {
				if _, err := netip.ParseAddr(w); err != nil {
					w = w[:strings.IndexByte(w, ':')]
				}
			}
			if w == "" { // a lone "::" that is not an address
				toks = append(toks, token{kind: tkOp, text: ":", pos: i})
				i++
				continue
			}
			toks = append(toks, token{kind: tkWord, text: w, pos: i})
			i += len(w)
		case c == '\\':
			j := i + 1
			for j < len(expr) && isWordChar(expr[j]) {
				j++
			}
			if j == i+1 {
				return nil, &Error{Kind: ErrSyntax, Expr: expr, Pos: i, Token: `\`, Detail: "backslash must be followed by a name"}
			}
			toks = append(toks, token{kind: tkName, text: expr[i+1 : j], pos: i})
			i = j
		default:
			matched := false
			for _, op := range twoCharOps {
				if strings.HasPrefix(expr[i:], op) {
					toks = append(toks, token{kind: tkOp, text: op, pos: i})
					i += 2
					matched = true
					break
				}
			}
			if matched {
				continue
			}
			if strings.IndexByte(oneCharOps, c) >= 0 {
				toks = append(toks, token{kind: tkOp, text: string(c), pos: i})
				i++
				continue
			}
			return nil, &Error{Kind: ErrSyntax, Expr: expr, Pos: i, Token: string(c), Detail: "unexpected character"}
		}
	}
	toks = append(toks, token{kind: tkEOF, pos: len(expr)})
	return toks, nil
}

// isMACWord reports whether w looks like a MAC address written with colons.
func isMACWord(w string) bool {
	_, ok := parseMAC(w)
	return ok
}

// parseMAC accepts the forms libpcap accepts: six groups of one or two hex
// digits separated by ':', '-' or '.', or three groups of four hex digits
// separated by '.'.
func parseMAC(w string) ([6]byte, bool) {
	var mac [6]byte
	for _, sep := range []string{":", "-", "."} {
		parts := strings.Split(w, sep)
		if len(parts) == 6 {
			ok := true
			for i, p := range parts {
				v, good := parseHex(p, 2)
				if !good {
					ok = false
					break
				}
				mac[i] = byte(v)
			}
			if ok {
				return mac, true
			}
		}
	}
	parts := strings.Split(w, ".")
	if len(parts) == 3 {
		for i, p := range parts {
			if len(p) != 4 {
				return mac, false
			}
			v, good := parseHex(p, 4)
			if !good {
				return mac, false
			}
			mac[2*i], mac[2*i+1] = byte(v>>8), byte(v)
		}
		return mac, true
	}
	return mac, false
}

func parseHex(s string, maxDigits int) (uint32, bool) {
	if s == "" || len(s) > maxDigits {
		return 0, false
	}
	var v uint32
	for i := 0; i < len(s); i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			return 0, false
		}
		v = v<<4 | d
	}
	return v, true
}

func hexDigit(c byte) (uint32, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint32(c - '0'), true
	case c >= 'a' && c <= 'f':
		return uint32(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return uint32(c-'A') + 10, true
	}
	return 0, false
}

// parseNumber parses a libpcap number: decimal, 0x hexadecimal or 0-prefixed
// octal, at most 32 bits.
func parseNumber(s string) (uint32, bool) {
	if s == "" {
		return 0, false
	}
	base := uint64(10)
	digits := s
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		base, digits = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, digits = 8, s[1:]
	}
	var v uint64
	for i := 0; i < len(digits); i++ {
		d, ok := hexDigit(digits[i])
		if !ok || uint64(d) >= base {
			return 0, false
		}
		v = v*base + uint64(d)
		if v > 0xffffffff {
			return 0, false
		}
	}
	return uint32(v), true
}
