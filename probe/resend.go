package probe

import "github.com/mission-ids/mission/ipfix"

// resendWindow keeps the encoded data records last written on a TCP/TLS
// connection (or taken while it was failing), oldest first, bounded in
// bytes. TCP acknowledges bytes to the peer's kernel, not to the
// collector: a collector that closes its socket with unread data discards
// acknowledged bytes, and a write can "succeed" into a connection the
// collector has already closed. So after the connection is found dead the
// whole window is sent again, oldest first, on the next connection; the
// store's deterministic document ids (exporter address, observation
// domain, flow id) make the copies of flows that had arrived harmless.
// Records older than the window are assumed delivered.
type resendWindow struct {
	max   int // bytes of encoded records
	buf   []byte
	base  int // buf[:base] is free (its records left the window)
	ents  []windowEntry
	head  int // ents[:head] left the window
	bytes int
	// dirty: the connection that carried these records died; they are
	// not known delivered until resent.
	dirty bool
}

type windowEntry struct {
	t      *ipfix.Template
	off, n int
}

func newResendWindow(maxBytes int) *resendWindow {
	return &resendWindow{max: maxBytes}
}

// len is the number of records in the window.
func (w *resendWindow) len() int { return len(w.ents) - w.head }

// add copies an encoded record into the window and returns how many old
// records it pushed out.
func (w *resendWindow) add(t *ipfix.Template, rec []byte) (evicted int) {
	for w.len() > 0 && w.bytes+len(rec) > w.max {
		e := w.ents[w.head]
		w.ents[w.head] = windowEntry{}
		w.head++
		w.base = e.off + e.n
		w.bytes -= e.n
		evicted++
	}
	w.compact()
	w.ents = append(w.ents, windowEntry{t: t, off: len(w.buf), n: len(rec)})
	w.buf = append(w.buf, rec...)
	w.bytes += len(rec)
	return evicted
}

// compact moves the live records to the front once most of the buffers
// are free, so memory stays bounded by about twice the window.
func (w *resendWindow) compact() {
	if w.head < 1024 || w.head < len(w.ents)/2 {
		return
	}
	n := copy(w.ents, w.ents[w.head:])
	clear(w.ents[n:])
	w.ents = w.ents[:n]
	w.head = 0
	m := copy(w.buf, w.buf[w.base:])
	w.buf = w.buf[:m]
	for i := range w.ents {
		w.ents[i].off -= w.base
	}
	w.base = 0
}

// each calls fn for every record in the window, oldest first, and stops
// at the first error.
func (w *resendWindow) each(fn func(t *ipfix.Template, rec []byte) error) error {
	for _, e := range w.ents[w.head:] {
		if err := fn(e.t, w.buf[e.off:e.off+e.n]); err != nil {
			return err
		}
	}
	return nil
}

// reset empties the window.
func (w *resendWindow) reset() {
	clear(w.ents)
	w.ents, w.buf = w.ents[:0], w.buf[:0]
	w.head, w.base, w.bytes, w.dirty = 0, 0, 0, false
}

// peerState is what a non-blocking look at a TCP socket found.
type peerState int

const (
	peerQuiet  peerState = iota // nothing to read: the connection is up
	peerData                    // bytes to read
	peerClosed                  // FIN, RST or a socket error
)
