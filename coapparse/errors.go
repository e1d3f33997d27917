package coapparse

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by Decode matches ErrMalformed or is
// ErrViolation; the detailed causes below wrap ErrMalformed. Use errors.Is;
// messages are not API.
var (
	// ErrMalformed means the datagram is not a CoAP message (a message format
	// error of RFC 7252 §3 or §4.1): the Message must not be trusted. A
	// receiver would reject a Confirmable one with a Reset or silently drop it.
	ErrMalformed = errors.New("coapparse: malformed message")

	// ErrViolation means the message decoded completely (the Message is
	// filled) but breaks a rule of the specification that does not make it
	// unparsable; Message.Violations says which. It is returned unwrapped so
	// the fast path does not allocate.
	ErrViolation = errors.New("coapparse: protocol violation")

	// ErrTooManyOptions is returned by Message.AddOption when the message
	// already holds MaxOptions options. Decode never returns it: it counts the
	// surplus in Message.Dropped.
	ErrTooManyOptions = errors.New("coapparse: too many options")
)

// Detailed malformation causes; each wraps ErrMalformed. They are never
// modified after initialisation.
var (
	// ErrTruncated: the datagram ends inside the 4-byte header, the token,
	// an option's extended delta or length, or an option value.
	ErrTruncated = fmt.Errorf("%w: datagram ends inside a field", ErrMalformed)
	// ErrVersion: the version field is not 1.
	ErrVersion = fmt.Errorf("%w: version is not 1", ErrMalformed)
	// ErrTokenLength: token length 9 to 15, reserved by RFC 7252 §3.
	ErrTokenLength = fmt.Errorf("%w: token length over 8", ErrMalformed)
	// ErrOptionReserved: option delta 15 in a byte that is not the payload
	// marker 0xFF, or option length 15 (RFC 7252 §3.1).
	ErrOptionReserved = fmt.Errorf("%w: reserved option delta or length 15", ErrMalformed)
	// ErrOptionNumber: the option deltas add up past 65535.
	ErrOptionNumber = fmt.Errorf("%w: option number over 65535", ErrMalformed)
	// ErrEmptyPayload: a payload marker followed by no payload (RFC 7252 §3).
	ErrEmptyPayload = fmt.Errorf("%w: payload marker without payload", ErrMalformed)
	// ErrEmptyMessage: code 0.00 with a token, options or payload (RFC 7252 §4.1).
	ErrEmptyMessage = fmt.Errorf("%w: empty message with bytes after the message id", ErrMalformed)
	// ErrType: AppendMessage was given a Type over 3. Decode never returns it.
	ErrType = fmt.Errorf("%w: message type over 3", ErrMalformed)
	// ErrOptionLength: AppendMessage was given an option value longer than
	// the 65804 bytes an option length can express. Decode never returns it.
	ErrOptionLength = fmt.Errorf("%w: option value longer than 65804 bytes", ErrMalformed)
)

// DecodeError says where decoding failed. It wraps one of the detailed
// causes above (and so ErrMalformed). It is only built on the error path.
type DecodeError struct {
	Field  string // field being read: "header", "token", "option", "payload"
	Offset int    // offset of the field in the datagram
	Option OptionNumber
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Field == "option" {
		return fmt.Sprintf("coapparse: %s after option %s at offset %d: %v", e.Field, e.Option, e.Offset, e.Err)
	}
	return fmt.Sprintf("coapparse: %s at offset %d: %v", e.Field, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }
