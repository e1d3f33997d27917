package ipfix

import (
	"encoding/binary"
	"fmt"
)

// Message constants (RFC 7011 §3.1).
const (
	Version       = 10
	HeaderLen     = 16
	SetHeaderLen  = 4
	MaxMessageLen = 65535
)

// MessageHeader is the IPFIX message header (RFC 7011 §3.1).
type MessageHeader struct {
	Version             uint16
	Length              uint16 // total message length including this header
	ExportTime          uint32 // seconds since the Unix epoch
	SequenceNumber      uint32 // data records sent before this message, modulo 2^32
	ObservationDomainID uint32
}

// ParseHeader reads and validates the message header at the start of b.
// It returns ErrIncomplete when b is shorter than the header or the length it
// announces, and ErrMalformed for a wrong version or impossible length.
func ParseHeader(b []byte) (MessageHeader, error) {
	if len(b) < HeaderLen {
		return MessageHeader{}, ErrIncomplete
	}
	h := MessageHeader{
		Version:             binary.BigEndian.Uint16(b[0:]),
		Length:              binary.BigEndian.Uint16(b[2:]),
		ExportTime:          binary.BigEndian.Uint32(b[4:]),
		SequenceNumber:      binary.BigEndian.Uint32(b[8:]),
		ObservationDomainID: binary.BigEndian.Uint32(b[12:]),
	}
	if h.Version != Version {
		return h, fmt.Errorf("%w: version %d", ErrMalformed, h.Version)
	}
	if h.Length < HeaderLen {
		return h, fmt.Errorf("%w: message length %d", ErrMalformed, h.Length)
	}
	if int(h.Length) > len(b) {
		return h, ErrIncomplete
	}
	return h, nil
}

// MessageLength returns the length of the message starting at b, for framing
// a byte stream (TCP, files). It needs only the first 4 bytes.
func MessageLength(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, ErrIncomplete
	}
	if v := binary.BigEndian.Uint16(b); v != Version {
		return 0, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n < HeaderLen {
		return 0, fmt.Errorf("%w: message length %d", ErrMalformed, n)
	}
	return n, nil
}

// Append appends the header in wire format.
func (h MessageHeader) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.Version)
	dst = binary.BigEndian.AppendUint16(dst, h.Length)
	dst = binary.BigEndian.AppendUint32(dst, h.ExportTime)
	dst = binary.BigEndian.AppendUint32(dst, h.SequenceNumber)
	return binary.BigEndian.AppendUint32(dst, h.ObservationDomainID)
}
