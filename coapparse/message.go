package coapparse

import (
	"iter"
	"strings"
)

// MaxOptions is how many options a Message stores. Decode parses and checks
// every option of a datagram but stores only the first MaxOptions and counts
// the rest in Message.Dropped; real messages carry a handful.
const MaxOptions = 32

// Message is a decoded CoAP message. It is caller-owned and meant to be
// reused: Decode overwrites it without allocating. Options live in an inline
// array, in wire order (ascending number, repeats in order).
//
// Token, Payload and every option value are views into the datagram passed
// to Decode and are valid only as long as that buffer is unchanged. Copy
// what must outlive it.
type Message struct {
	Type      Type
	Code      Code
	MessageID uint16
	Token     []byte // nil when the token length is 0
	Payload   []byte // nil when there is no payload marker

	// Violations is the set of rules the message breaks (non-empty ⇔ Decode
	// returned ErrViolation).
	Violations Violations
	// Dropped counts options after the first MaxOptions: parsed and checked
	// (they count for Violations) but not stored, so accessors do not see them.
	Dropped int

	n    int
	opts [MaxOptions]Option
}

// Reset empties m for building a new message.
func (m *Message) Reset() {
	m.Type, m.Code, m.MessageID = 0, 0, 0
	m.Token, m.Payload = nil, nil
	m.Violations, m.Dropped, m.n = 0, 0, 0
}

// Options returns the stored options in wire order. The slice aliases m.
func (m *Message) Options() []Option { return m.opts[:m.n] }

// Get returns the value of the first option numbered n.
func (m *Message) Get(n OptionNumber) (value []byte, ok bool) {
	for i := range m.n {
		if m.opts[i].Number == n {
			return m.opts[i].Value, true
		}
		if m.opts[i].Number > n {
			break
		}
	}
	return nil, false
}

// Has reports whether an option numbered n is present.
func (m *Message) Has(n OptionNumber) bool {
	_, ok := m.Get(n)
	return ok
}

// Count returns how many options numbered n are stored.
func (m *Message) Count(n OptionNumber) int {
	c := 0
	for i := range m.n {
		if m.opts[i].Number == n {
			c++
		}
	}
	return c
}

// Values yields the value of every option numbered n, in order.
func (m *Message) Values(n OptionNumber) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for i := range m.n {
			if m.opts[i].Number == n && !yield(m.opts[i].Value) {
				return
			}
		}
	}
}

// Uint returns the first option numbered n as an unsigned integer; ok is
// false when it is absent or longer than 4 bytes.
func (m *Message) Uint(n OptionNumber) (uint32, bool) {
	v, ok := m.Get(n)
	if !ok {
		return 0, false
	}
	return DecodeUint(v)
}

// Observe returns the Observe option (RFC 7641): 0 register / 1 deregister
// in a request, a sequence number in a notification.
func (m *Message) Observe() (uint32, bool) { return m.Uint(Observe) }

// Block1 returns the Block1 option (RFC 7959).
func (m *Message) Block1() (Block, bool) { return m.block(Block1) }

// Block2 returns the Block2 option (RFC 7959).
func (m *Message) Block2() (Block, bool) { return m.block(Block2) }

func (m *Message) block(n OptionNumber) (Block, bool) {
	v, ok := m.Get(n)
	if !ok {
		return Block{}, false
	}
	return ParseBlock(v)
}

// join appends the values of options n, each preceded by sep (first: lead).
func (m *Message) join(dst []byte, n OptionNumber, lead, sep byte) []byte {
	first := true
	for i := range m.n {
		if m.opts[i].Number != n {
			continue
		}
		if first {
			if lead != 0 {
				dst = append(dst, lead)
			}
			first = false
		} else {
			dst = append(dst, sep)
		}
		dst = append(dst, m.opts[i].Value...)
	}
	return dst
}

// AppendURIPath appends the Uri-Path options joined as "/a/b" ("/" when there
// is none). Segments are not percent-encoded: a segment holding '/' is
// ambiguous in the result; iterate Values(URIPath) to tell.
func (m *Message) AppendURIPath(dst []byte) []byte {
	l := len(dst)
	dst = m.join(dst, URIPath, '/', '/')
	if len(dst) == l {
		dst = append(dst, '/')
	}
	return dst
}

// URIPath returns the Uri-Path options joined as "/a/b" ("/" when none).
func (m *Message) URIPath() string { return string(m.AppendURIPath(nil)) }

// AppendURIQuery appends the Uri-Query options joined as "a=1&b=2" (nothing
// when there is none; no leading '?').
func (m *Message) AppendURIQuery(dst []byte) []byte { return m.join(dst, URIQuery, 0, '&') }

// URIQuery returns the Uri-Query options joined as "a=1&b=2".
func (m *Message) URIQuery() string { return string(m.AppendURIQuery(nil)) }

// LocationPath returns the Location-Path options joined as "/a/b" ("" when none).
func (m *Message) LocationPath() string { return string(m.join(nil, LocationPath, '/', '/')) }

// LocationQuery returns the Location-Query options joined as "a=1&b=2".
func (m *Message) LocationQuery() string { return string(m.join(nil, LocationQuery, 0, '&')) }

// AddOption inserts an option after any stored option with a number ≤ n,
// keeping wire order. value is kept, not copied. It fails with
// ErrTooManyOptions when MaxOptions options are stored.
func (m *Message) AddOption(n OptionNumber, value []byte) error {
	if m.n == MaxOptions {
		return ErrTooManyOptions
	}
	i := m.n
	for i > 0 && m.opts[i-1].Number > n {
		m.opts[i] = m.opts[i-1]
		i--
	}
	m.opts[i] = Option{Number: n, Value: value}
	m.n++
	return nil
}

// AddUint adds an integer option in its shortest form.
func (m *Message) AddUint(n OptionNumber, v uint32) error {
	return m.AddOption(n, AppendUint(nil, v))
}

// AddURIPath adds one Uri-Path option per segment of p ("/a/b" or "a/b";
// a lone "/" adds none).
func (m *Message) AddURIPath(p string) error {
	return m.addSplit(URIPath, strings.TrimPrefix(p, "/"), "/")
}

// AddURIQuery adds one Uri-Query option per "&"-separated part of q.
func (m *Message) AddURIQuery(q string) error {
	return m.addSplit(URIQuery, strings.TrimPrefix(q, "?"), "&")
}

func (m *Message) addSplit(n OptionNumber, s, sep string) error {
	if s == "" {
		return nil
	}
	for part := range strings.SplitSeq(s, sep) {
		if err := m.AddOption(n, []byte(part)); err != nil {
			return err
		}
	}
	return nil
}
