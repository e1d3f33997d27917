// Package reassembly rebuilds the byte streams of TCP connections from
// captured segments, per direction, with bounded memory.
//
// It delivers in-order bytes to a Handler as soon as they are contiguous;
// segments that arrive early wait in a bounded out-of-order buffer;
// retransmissions and overlaps are trimmed (the first copy of a byte wins);
// a hole that can be proven lost (the peer acknowledged bytes the capture
// never saw, or a buffer bound was hit, or the connection ended) is reported
// as a gap and delivery continues after it. A connection picked up midstream
// starts at the first segment seen, flagged so the consumer can resynchronise.
//
// Time is the packets' capture time: Advance drives idle expiry, so replaying
// a file gives the same result as the live capture did.
//
// The Assembler is not safe for concurrent use; the probe runs one per
// capture goroutine.
package reassembly

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/mission-ids/mission/internal/lru"
)

// Direction of a byte stream within a connection.
type Direction uint8

// Directions.
const (
	ClientToServer Direction = 0
	ServerToClient Direction = 1
)

// Reverse returns the other direction.
func (d Direction) Reverse() Direction { return d ^ 1 }

func (d Direction) String() string {
	if d == ClientToServer {
		return "client→server"
	}
	return "server→client"
}

// CloseReason says why a connection's state was released.
type CloseReason uint8

// Close reasons.
const (
	CloseFIN      CloseReason = iota + 1 // both sides sent FIN and all data was delivered
	CloseRST                             // a RST was seen
	CloseIdle                            // no packet for the idle timeout
	CloseEvicted                         // the connection table was full; the least recently active was evicted
	CloseReused                          // a new SYN reused the 4-tuple
	CloseShutdown                        // FlushAll at the end of capture
)

func (r CloseReason) String() string {
	switch r {
	case CloseFIN:
		return "fin"
	case CloseRST:
		return "rst"
	case CloseIdle:
		return "idle"
	case CloseEvicted:
		return "evicted"
	case CloseReused:
		return "reused"
	case CloseShutdown:
		return "shutdown"
	}
	return "unknown"
}

// Chunk is contiguous stream data handed to the Handler.
type Chunk struct {
	// Data is valid only during the Handler call: it may point into the
	// capture buffer or into a reused out-of-order buffer. It is empty when
	// the chunk only announces a gap (Lost > 0) proven by the peer's ACK.
	Data []byte
	// Time is the capture time (Unix nanoseconds) of the packet that made
	// Data deliverable: the segment that filled the hole before it, or,
	// when that hole was declared lost, the segment's own capture time
	// (its bytes were complete then; only the proof of the loss came later).
	Time int64
	// Lost is the number of bytes known to be missing right before Data
	// (a gap): Data starts exactly Lost bytes after the last byte
	// delivered before it, even when part of the hole was announced by an
	// earlier chunk without Data. The consumer must resynchronise its
	// framing (or skip, when it knows the length of the packet cut).
	Lost int
	// Midstream is set on the first chunk of a direction whose start was
	// not seen (no SYN): Data may begin inside an application message.
	Midstream bool
}

// Handler consumes reassembled streams.
type Handler interface {
	// Open is called once per new connection before any Data; the handler
	// may keep its per-connection state in Conn.State.
	Open(c *Conn)
	// Data delivers in-order bytes of one direction.
	Data(c *Conn, dir Direction, chunk Chunk)
	// Close is called once when the connection's state is released; ts
	// is the capture time in Unix nanoseconds.
	Close(c *Conn, reason CloseReason, ts int64)
}

// Config bounds the assembler's memory. Zero values take the defaults.
type Config struct {
	MaxConnections int           // tracked at once; default 200,000
	MaxBufferedDir int           // out-of-order bytes per direction; default 256 KiB
	MaxBufferedAll int           // out-of-order bytes in total; default 64 MiB
	IdleTimeout    time.Duration // release a connection without packets for this long; default 10 min
	// ServerPort tells which side of a connection picked up midstream (no
	// SYN seen) is the server, e.g. the MQTT broker port. If nil or false
	// for both ports, the sender of the first segment is taken as client.
	ServerPort func(port uint16) bool
}

func (c *Config) defaults() {
	if c.MaxConnections <= 0 {
		c.MaxConnections = 200_000
	}
	if c.MaxBufferedDir <= 0 {
		c.MaxBufferedDir = 256 << 10
	}
	if c.MaxBufferedAll <= 0 {
		c.MaxBufferedAll = 64 << 20
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Minute
	}
}

// Stats are cumulative counters; read them with Assembler.Stats.
type Stats struct {
	Segments          uint64 // segments given to Assemble
	PayloadBytes      uint64 // payload bytes seen (retransmissions included)
	DeliveredBytes    uint64 // bytes delivered in order
	RetransmitBytes   uint64 // duplicate bytes dropped (retransmissions, overlaps)
	OutOfOrder        uint64 // segments buffered because they came early
	Gaps              uint64 // holes reported to the handler
	LostBytes         uint64 // bytes in those holes
	BufferOverflows   uint64 // gaps forced by a buffer bound
	ConnectionsOpened uint64
	Midstream         uint64 // directions picked up without their SYN
	ClosedFIN         uint64
	ClosedRST         uint64
	ClosedIdle        uint64
	Evicted           uint64 // connections dropped because the table was full
	ClosedReused      uint64
	ClosedShutdown    uint64
	Connections       int // tracked now
	BufferedBytes     int // out-of-order bytes held now
}

// Conn is one tracked TCP connection.
type Conn struct {
	Client, Server netip.AddrPort
	// State is free for the Handler (set it in Open).
	State any

	key      connKey
	gone     bool // released
	half     [2]half
	lastSeen int64          // capture time, Unix ns
	lru      lru.Node[Conn] // in Assembler.lru, least recently active first
}

type half struct {
	seen      bool
	synSeen   bool
	midstream bool // next chunk is the first of a midstream pickup
	finSeen   bool
	finished  bool   // all data up to FIN delivered
	next      uint32 // next expected sequence number
	finSeq    uint32
	ackedTo   uint32 // highest ACK from the peer for this direction
	acked     bool
	ooo       []segment // sorted by seq
	oooBytes  int
	lost      int // bytes lost since the last delivery, reported with the next chunk
	// announced: a hole up to this sequence number was already reported
	// (proven by the peer's ACK before any later data of this direction).
	announced   uint32
	announcedOK bool
}

type segment struct {
	seq  uint32
	data []byte
	ts   int64 // capture time of the segment (Unix ns)
}

// connKey is a connection's two endpoints in canonical order (the lower
// first), each as its 128-bit address (IPv4 in its IPv4-mapped form), port
// and IP version. Plain words without padding: the connection table hashes
// and compares it in one pass on every segment.
type connKey struct {
	aHi, aLo, bHi, bLo uint64
	aPort, bPort       uint16
	aV4, bV4           uint16 // 1 for IPv4
}

func endpointOf(ap netip.AddrPort) (hi, lo uint64, port, v4 uint16) {
	a := ap.Addr()
	b := a.As16()
	hi, lo = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	if a.Is4() {
		v4 = 1
	}
	return hi, lo, ap.Port(), v4
}

func makeKey(x, y netip.AddrPort) connKey {
	xh, xl, xp, x4 := endpointOf(x)
	yh, yl, yp, y4 := endpointOf(y)
	less := xh < yh || xh == yh && (xl < yl || xl == yl && (xp < yp || xp == yp && x4 <= y4))
	if less {
		return connKey{xh, xl, yh, yl, xp, yp, x4, y4}
	}
	return connKey{yh, yl, xh, xl, yp, xp, y4, x4}
}

// seqDiff returns a − b in sequence space (RFC 1982 arithmetic).
func seqDiff(a, b uint32) int { return int(int32(a - b)) }
