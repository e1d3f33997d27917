package flow

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// JSON lines: one Document JSON object per line, with the field names of
// the stored documents. The probe writes it (--stdout); mining reads it.

// MaxJSONLine bounds one line read by ReadJSONLines, in bytes (a document
// with many topic filters is still far below it). Longer lines are an
// error wrapping ErrLineTooLong.
const MaxJSONLine = 4 << 20

// ErrLineTooLong means a JSON line is longer than MaxJSONLine.
var ErrLineTooLong = errors.New("flow: JSON line too long")

// LineError is an error in one line of a JSON-lines input.
type LineError struct {
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("flow: JSON line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// JSONLinesWriter writes records as JSON lines. It does not buffer: wrap
// the io.Writer in a bufio.Writer for many small writes.
type JSONLinesWriter struct {
	enc *json.Encoder
}

// NewJSONLinesWriter writes to w.
func NewJSONLinesWriter(w io.Writer) *JSONLinesWriter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSONLinesWriter{enc: enc}
}

// Write writes r's Document as one line.
func (w *JSONLinesWriter) Write(r *Record) error {
	d := r.ToDocument()
	var v any = d
	if d.IsCoAP() {
		v = d.CoAPView()
	}
	if err := w.enc.Encode(v); err != nil {
		return fmt.Errorf("flow: write JSON line: %w", err)
	}
	return nil
}

// ReadJSONLines reads Document JSON objects, one per line, as written by
// JSONLinesWriter, and calls fn with the Record of each (Document.Record),
// in input order. Each call gets a new Record, which fn may keep. Empty
// lines are skipped. A malformed line, one whose document does not convert,
// or one longer than MaxJSONLine stops reading with a *LineError; an error
// from fn stops reading and is returned as is.
func ReadJSONLines(r io.Reader, fn func(*Record) error) error {
	return readJSONLines(r, MaxJSONLine, fn)
}

func readJSONLines(r io.Reader, maxLine int, fn func(*Record) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, min(64<<10, maxLine)), maxLine)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var d Document
		if err := json.Unmarshal(b, &d); err != nil {
			return &LineError{Line: line, Err: err}
		}
		rec, err := d.Record()
		if err != nil {
			return &LineError{Line: line, Err: err}
		}
		if err := fn(&rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("%w (more than %d bytes)", ErrLineTooLong, maxLine)
		}
		return &LineError{Line: line + 1, Err: err}
	}
	return nil
}
