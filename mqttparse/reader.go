package mqttparse

import (
	"bytes"
	"unicode/utf8"
)

// Bounds-checked readers. Each reads at off inside b and returns the value
// and the next offset. b is always the enclosing structure (packet body or
// property block), so a field can never be read past its container.

func readByte(b []byte, off int) (byte, int, error) {
	if off >= len(b) {
		return 0, off, ErrTruncated
	}
	return b[off], off + 1, nil
}

func readUint16(b []byte, off int) (uint16, int, error) {
	if off+2 > len(b) || off < 0 {
		return 0, off, ErrTruncated
	}
	return uint16(b[off])<<8 | uint16(b[off+1]), off + 2, nil
}

func readUint32(b []byte, off int) (uint32, int, error) {
	if off+4 > len(b) || off < 0 {
		return 0, off, ErrTruncated
	}
	return uint32(b[off])<<24 | uint32(b[off+1])<<16 | uint32(b[off+2])<<8 | uint32(b[off+3]), off + 4, nil
}

// readBinary reads a 2-byte length then that many bytes; the result is a
// view into b (no copy). A UTF-8 string has the same wire form.
func readBinary(b []byte, off int) ([]byte, int, error) {
	n, off, err := readUint16(b, off)
	if err != nil {
		return nil, off, err
	}
	end := off + int(n)
	if end > len(b) {
		return nil, off, ErrTruncated
	}
	return b[off:end:end], end, nil
}

// readVarint reads a variable byte integer of at most 4 bytes. nonMinimal is
// set when the value did not use the fewest bytes.
func readVarint(b []byte, off int) (v uint32, next int, nonMinimal bool, err error) {
	for i := 0; i < 4; i++ {
		if off+i >= len(b) {
			return 0, off, false, ErrTruncated
		}
		c := b[off+i]
		v |= uint32(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, off + i + 1, i > 0 && c == 0, nil
		}
	}
	return 0, off, false, ErrRemainingLength
}

// utf8Check reports whether s is a well-formed MQTT UTF-8 string: valid
// UTF-8 without U+0000 [MQTT-1.5.4-1], [MQTT-1.5.4-2]. It is a byte loop for
// ASCII and falls back to utf8.Valid only when it meets a high byte.
func utf8Check(s []byte) bool {
	for i, c := range s {
		if c == 0 {
			return false
		}
		if c >= 0x80 {
			return validUTF8NoNUL(s[i:])
		}
	}
	return true
}

func validUTF8NoNUL(s []byte) bool {
	return utf8.Valid(s) && bytes.IndexByte(s, 0) < 0
}
