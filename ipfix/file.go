package ipfix

import (
	"errors"
	"fmt"
	"io"
)

// FileWriter writes an IPFIX File (RFC 5655): the messages one after the
// other, with no file header. Its WriteMessage fits Builder's emit function.
type FileWriter struct {
	w io.Writer
}

// NewFileWriter returns a writer to w.
func NewFileWriter(w io.Writer) *FileWriter { return &FileWriter{w: w} }

// WriteMessage writes one message after checking its header.
func (f *FileWriter) WriteMessage(msg []byte) error {
	n, err := MessageLength(msg)
	if err != nil {
		return err
	}
	if n != len(msg) {
		return fmt.Errorf("%w: header says %d bytes, message has %d", ErrMalformed, n, len(msg))
	}
	_, err = f.w.Write(msg)
	return err
}

// FileReader reads the messages of an IPFIX File one at a time. It holds
// at most one message (≤ 65535 bytes) in memory.
type FileReader struct {
	r   io.Reader
	buf []byte
	off int64
}

// NewFileReader returns a streaming reader of r.
func NewFileReader(r io.Reader) *FileReader {
	return &FileReader{r: r, buf: make([]byte, 0, 4096)}
}

// Next returns the next message, valid until the following call. It
// returns io.EOF at a clean end of file, and an error wrapping
// ErrIncomplete if the file ends inside a message or ErrMalformed if the
// bytes are not a message.
func (f *FileReader) Next() ([]byte, error) {
	var hdr [4]byte
	n, err := io.ReadFull(f.r, hdr[:])
	if err == io.EOF {
		return nil, io.EOF
	}
	if err != nil {
		return nil, f.wrap(ErrIncomplete, err)
	}
	size, err := MessageLength(hdr[:n])
	if err != nil {
		return nil, f.wrap(err, nil)
	}
	if cap(f.buf) < size {
		f.buf = make([]byte, 0, size)
	}
	f.buf = append(f.buf[:0], hdr[:]...)
	f.buf = f.buf[:size]
	if _, err := io.ReadFull(f.r, f.buf[4:]); err != nil {
		return nil, f.wrap(ErrIncomplete, err)
	}
	f.off += int64(size)
	return f.buf, nil
}

func (f *FileReader) wrap(sentinel, cause error) error {
	if cause == nil || errors.Is(cause, io.ErrUnexpectedEOF) || errors.Is(cause, io.EOF) {
		return fmt.Errorf("ipfix file at offset %d: %w", f.off, sentinel)
	}
	return fmt.Errorf("ipfix file at offset %d: %w: %w", f.off, sentinel, cause)
}

// DecodeFile decodes every message of an IPFIX File in session s (use a
// session with Transport File), calling fn for each record. It stops at the
// first error from reading, from fn, or a malformed message; non-fatal
// decode errors (ErrTemplateNotFound, ErrInvalidTemplate) are counted in
// the session and skipped.
func DecodeFile(r io.Reader, s *Session, fn func(rec Record) error) error {
	fr := NewFileReader(r)
	for {
		msg, err := fr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Decode(msg, fn); err != nil &&
			!errors.Is(err, ErrTemplateNotFound) && !errors.Is(err, ErrInvalidTemplate) {
			return err
		}
	}
}
