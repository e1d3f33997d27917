package ipfix

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrIncomplete means more bytes are needed (e.g. a TCP stream or a file
	// holds only part of a message).
	ErrIncomplete = errors.New("ipfix: incomplete message")
	// ErrMalformed means the bytes violate RFC 7011; the stream carrying them
	// should be considered broken.
	ErrMalformed = errors.New("ipfix: malformed")
	// ErrTemplateNotFound means a data set referenced a template the session
	// does not know and the set could not be buffered. Not fatal.
	ErrTemplateNotFound = errors.New("ipfix: template not found")
	// ErrInvalidTemplate means a template definition was rejected (no fields,
	// zero record width, bad scope count, bad id).
	ErrInvalidTemplate = errors.New("ipfix: invalid template")
	// ErrLimit means a configured limit against hostile exporters was hit.
	ErrLimit = errors.New("ipfix: limit exceeded")
	// ErrRecordTooLarge means a record does not fit in an empty message.
	ErrRecordTooLarge = errors.New("ipfix: record too large for message")
	// ErrFieldMismatch means an encoder call does not fit the template field.
	ErrFieldMismatch = errors.New("ipfix: value does not match template field")
)

// DecodeError carries the context of a decoding failure. It unwraps to one of
// the sentinels above.
type DecodeError struct {
	ObsDomainID uint32
	TemplateID  uint16 // template id (for set-level problems the set id), 0 if not known
	Offset      int    // byte offset in the message where the problem was found
	Err         error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("ipfix: domain %d template %d offset %d: %v", e.ObsDomainID, e.TemplateID, e.Offset, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// malformed builds an error wrapping ErrMalformed with a short reason.
func malformed(reason string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, reason)
}
