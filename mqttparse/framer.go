package mqttparse

// DefaultMaxPacketSize is the Framer's default maximum total packet length.
const DefaultMaxPacketSize = 1 << 20

// FramerStats counts what a Framer has seen.
type FramerStats struct {
	Packets      uint64 // complete packets returned by Next
	Skipped      uint64 // packets skipped for exceeding the maximum
	SkippedBytes uint64 // bytes of the skipped packets
	Bytes        uint64 // bytes fed
}

// Framer cuts one direction of a reassembled TCP byte stream into MQTT
// packets. Feed it chunks of any size, then call Next until it returns a nil
// packet and a nil error; one chunk may hold many packets and one packet may
// span many chunks.
//
// Memory is bounded: only the unfinished tail of one packet is kept, and a
// packet longer than the maximum is not buffered but skipped by its declared
// length (Next returns a *TooLargeError, errors.Is ErrTooLarge) so the
// stream stays in sync. A malformed fixed header breaks the direction: Next
// returns a sticky *FramingError (errors.Is ErrMalformed) until Reset.
//
// Zero copy: a packet wholly inside the chunk is returned as a slice of the
// chunk; only a packet spanning chunks is copied into the framer's buffer.
// A returned packet is valid until the next call to Next or Feed, or until
// the caller changes its chunk, whichever comes first.
//
// A Framer is not safe for concurrent use; use one per direction.
type Framer struct {
	max     int
	cur     []byte // unread part of the current chunk (not owned)
	pend    []byte // owned prefix of one packet spanning chunks
	join    []byte // owned copy used when Feed is called with unread bytes
	release bool   // pend held a complete packet returned by Next
	skip    int    // bytes still to skip of an oversized packet
	off     int64  // stream offset of cur[0] (or of the end of pend)
	err     error  // sticky framing error
	stats   FramerStats
}

// NewFramer returns a Framer that skips packets longer than maxPacketSize
// bytes in total; maxPacketSize <= 0 means DefaultMaxPacketSize.
func NewFramer(maxPacketSize int) *Framer {
	if maxPacketSize <= 0 {
		maxPacketSize = DefaultMaxPacketSize
	}
	return &Framer{max: maxPacketSize}
}

// Feed adds the next chunk of the stream. The framer keeps a reference to
// chunk until Next has consumed it; if the previous chunk was not fully
// consumed, its rest is copied first.
func (f *Framer) Feed(chunk []byte) {
	f.stats.Bytes += uint64(len(chunk))
	if f.release {
		f.pend = f.pend[:0]
		f.release = false
	}
	if len(f.cur) == 0 {
		f.cur = chunk
		return
	}
	f.join = append(append(f.join[:0], f.cur...), chunk...)
	f.cur = f.join
}

// Reset drops all buffered state and the sticky error, e.g. to restart at
// an offset found by FindSync after a gap. Stats are kept; streamOffset is
// the offset of the next byte to be fed.
func (f *Framer) Reset(streamOffset int64) {
	f.cur, f.pend, f.release, f.skip, f.err = nil, f.pend[:0], false, 0, nil
	f.off = streamOffset
}

// Stats returns the counters.
func (f *Framer) Stats() FramerStats { return f.stats }

// Buffered returns the number of bytes held for an unfinished packet.
func (f *Framer) Buffered() int { return len(f.pend) + len(f.cur) }

// Remaining returns how many more bytes complete the packet the framer is
// in the middle of, when that is known: the framer has consumed everything
// fed (Next returned nil, nil) and holds the complete fixed header of an
// unfinished packet, or is skipping an oversized one. After a TCP gap of
// L bytes with L < Remaining, the stream resumes Remaining−L bytes before
// the next packet boundary, which saves a heuristic resynchronisation.
func (f *Framer) Remaining() (int, bool) {
	if f.err != nil || len(f.cur) > 0 {
		return 0, false
	}
	if f.skip > 0 {
		return f.skip, true
	}
	if len(f.pend) == 0 || f.release {
		return 0, false
	}
	h, err := ParseFixedHeader(f.pend)
	if err != nil {
		return 0, false
	}
	return h.Len() - len(f.pend), true
}

// Err returns the sticky framing error, if any.
func (f *Framer) Err() error { return f.err }

// Next returns the next complete packet (fixed header included). It returns
// (nil, nil) when it needs more bytes, (nil, *TooLargeError) for a skipped
// packet (call Next again), and (nil, *FramingError) once the stream is broken.
func (f *Framer) Next() ([]byte, error) {
	if f.err != nil {
		return nil, f.err
	}
	if f.release {
		f.pend = f.pend[:0]
		f.release = false
	}
	if f.skip > 0 {
		n := min(f.skip, len(f.cur))
		f.skip -= n
		f.cur = f.cur[n:]
		f.off += int64(n)
		if f.skip > 0 {
			return nil, nil
		}
	}
	if len(f.pend) > 0 {
		return f.continuePending()
	}
	if len(f.cur) == 0 {
		return nil, nil
	}
	h, err := ParseFixedHeader(f.cur)
	if err == ErrIncomplete {
		f.pend = append(f.pend, f.cur...)
		f.off += int64(len(f.cur))
		f.cur = nil
		return nil, nil
	}
	if err != nil {
		return nil, f.broken(f.off, err)
	}
	total := h.Len()
	if total > f.max {
		return nil, f.tooLarge(h, 0)
	}
	if total <= len(f.cur) {
		pkt := f.cur[:total:total]
		f.cur = f.cur[total:]
		f.off += int64(total)
		f.stats.Packets++
		return pkt, nil
	}
	f.pend = append(f.pend, f.cur...)
	f.off += int64(len(f.cur))
	f.cur = nil
	return nil, nil
}

// continuePending completes the packet whose prefix is in pend.
func (f *Framer) continuePending() ([]byte, error) {
	var h FixedHeader
	for {
		var err error
		h, err = ParseFixedHeader(f.pend)
		if err == nil {
			break
		}
		if err != ErrIncomplete {
			return nil, f.broken(f.off-int64(len(f.pend)), err)
		}
		if len(f.cur) == 0 {
			return nil, nil
		}
		f.pend = append(f.pend, f.cur[0])
		f.cur = f.cur[1:]
		f.off++
	}
	total := h.Len()
	if total > f.max {
		have := len(f.pend)
		f.pend = f.pend[:0]
		return nil, f.tooLarge(h, have)
	}
	take := min(total-len(f.pend), len(f.cur))
	f.pend = append(f.pend, f.cur[:take]...)
	f.cur = f.cur[take:]
	f.off += int64(take)
	if len(f.pend) < total {
		return nil, nil
	}
	f.release = true
	f.stats.Packets++
	return f.pend, nil
}

// tooLarge starts skipping an oversized packet of which have bytes were
// already consumed from pend (0 if it starts in cur).
func (f *Framer) tooLarge(h FixedHeader, have int) error {
	total := h.Len()
	start := f.off - int64(have)
	f.stats.Skipped++
	f.stats.SkippedBytes += uint64(total)
	f.skip = total - have
	n := min(f.skip, len(f.cur))
	f.skip -= n
	f.cur = f.cur[n:]
	f.off += int64(n)
	return &TooLargeError{Header: h, StreamOffset: start, Max: f.max}
}

func (f *Framer) broken(at int64, err error) error {
	f.err = &FramingError{StreamOffset: at, Err: err}
	f.cur = nil
	f.pend = f.pend[:0]
	return f.err
}
