package mqttparse

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package matches exactly one of
// them with errors.Is.
var (
	// ErrIncomplete means the input ends before the packet does: wait for more
	// bytes and call again. It is never wrapped, so comparing is cheap.
	ErrIncomplete = errors.New("mqttparse: incomplete packet")

	// ErrMalformed means the bytes cannot be an MQTT packet. From ParseFixedHeader
	// or a Framer it means the stream is out of sync (broken); from Decode with
	// n > 0 it means only this packet's body is broken and the stream is still in
	// sync, because its length came from a valid fixed header.
	ErrMalformed = errors.New("mqttparse: malformed packet")

	// ErrViolation means the packet decoded completely (the Packet is filled)
	// but breaks one or more MUSTs of the specification. Packet.Violations says
	// which. It is returned unwrapped so the fast path does not allocate.
	ErrViolation = errors.New("mqttparse: protocol violation")

	// ErrTooLarge is matched by *TooLargeError, returned by a Framer for a packet
	// longer than its maximum; the framer skips it and stays in sync.
	ErrTooLarge = errors.New("mqttparse: packet larger than the configured maximum")
)

// Detailed malformation causes; each wraps ErrMalformed. They are never
// modified after initialisation.
var (
	// ErrRemainingLength: a variable byte integer longer than 4 bytes.
	ErrRemainingLength = fmt.Errorf("%w: variable byte integer longer than 4 bytes", ErrMalformed)
	// ErrTruncated: a field runs past the end of its enclosing structure
	// (the packet body or a property block).
	ErrTruncated = fmt.Errorf("%w: field runs past its enclosing length", ErrMalformed)
	// ErrUnknownProperty: a property identifier that MQTT 5.0 does not define;
	// its length is unknown so the rest of the block cannot be read.
	ErrUnknownProperty = fmt.Errorf("%w: unknown property identifier", ErrMalformed)
)

// DecodeError says where decoding a packet body failed. It wraps one of the
// sentinels (ErrMalformed through ErrTruncated and friends).
type DecodeError struct {
	Type    Type    // packet type from the fixed header
	Version Version // version whose rules were applied
	Field   string  // field being read, e.g. "topic", "properties"
	Offset  int     // offset of the field inside the packet (fixed header included)
	Err     error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("mqttparse: %s (%s) %s at offset %d: %v", e.Type, e.Version, e.Field, e.Offset, e.Err)
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// FramingError is the sticky error of a broken Framer direction: the fixed
// header at StreamOffset was malformed, so packet boundaries are lost until
// the caller resynchronises (FindSync, then Framer.Reset).
type FramingError struct {
	StreamOffset int64 // offset of the bad fixed header in the direction's byte stream
	Err          error // wraps ErrMalformed
}

func (e *FramingError) Error() string {
	return fmt.Sprintf("mqttparse: stream broken at offset %d: %v", e.StreamOffset, e.Err)
}

// Unwrap returns the cause.
func (e *FramingError) Unwrap() error { return e.Err }

// TooLargeError reports a packet skipped by a Framer because its total length
// exceeds the maximum. It is not sticky: the stream stays in sync.
type TooLargeError struct {
	Header       FixedHeader
	StreamOffset int64 // offset of the packet's first byte in the stream
	Max          int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("mqttparse: %s of %d bytes at offset %d exceeds maximum %d, skipped",
		e.Header.Type, e.Header.Len(), e.StreamOffset, e.Max)
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }
