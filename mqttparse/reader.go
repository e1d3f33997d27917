package mqttparse

import (
	"bytes"
	"encoding/binary"
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

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// hasZeroByte is non-zero iff some byte of x is 0.
func hasZeroByte(x uint64) uint64 { return (x - lsb) &^ x & msb }

// asciiNoNUL reports whether s is ASCII without NUL, 8 bytes at a time.
// For a word x, (x | (x - lsb)) & msb is non-zero if a byte has its high bit
// set or is zero (the lowest zero byte always shows; borrows only add false
// positives). false only means the exact checks must run.
func asciiNoNUL(s []byte) bool {
	for len(s) >= 8 {
		x := binary.LittleEndian.Uint64(s)
		if (x|(x-lsb))&msb != 0 {
			return false
		}
		s = s[8:]
	}
	for _, c := range s {
		if c-1 >= 0x7f { // c == 0 or c >= 0x80
			return false
		}
	}
	return true
}

// plainTopic is asciiNoNUL that also rejects the wildcards '+' and '#'.
// Words are OR-ed into one accumulator and tested once, 16 bytes per round.
func plainTopic(s []byte) bool {
	var acc uint64
	for len(s) >= 16 {
		x := binary.LittleEndian.Uint64(s)
		y := binary.LittleEndian.Uint64(s[8:])
		acc |= x | (x - lsb) | hasZeroByte(x^(lsb*'+')) | hasZeroByte(x^(lsb*'#')) |
			y | (y - lsb) | hasZeroByte(y^(lsb*'+')) | hasZeroByte(y^(lsb*'#'))
		s = s[16:]
	}
	if len(s) >= 8 {
		x := binary.LittleEndian.Uint64(s)
		acc |= x | (x - lsb) | hasZeroByte(x^(lsb*'+')) | hasZeroByte(x^(lsb*'#'))
		s = s[8:]
	}
	if acc&msb != 0 {
		return false
	}
	for _, c := range s {
		if c-1 >= 0x7f || c == '+' || c == '#' {
			return false
		}
	}
	return true
}

// utf8Check reports whether s is a well-formed MQTT UTF-8 string: valid
// UTF-8 without U+0000 [MQTT-1.5.4-1], [MQTT-1.5.4-2].
func utf8Check(s []byte) bool {
	return asciiNoNUL(s) || validUTF8NoNUL(s)
}

func validUTF8NoNUL(s []byte) bool {
	return utf8.Valid(s) && bytes.IndexByte(s, 0) < 0
}
