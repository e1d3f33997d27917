// Package tracker turns reassembled MQTT streams into flow records: it
// frames and decodes each direction with mqttparse, keeps the MQTT session
// of each connection (protocol level, client id, topic aliases) and matches
// requests with their responses into transactions: one flow record per
// transaction, or per packet that opens none.
//
// It implements reassembly.Handler, so the probe wires it directly behind
// the TCP assembler. Time is always the capture time of packets; Advance
// drives the idle timeout, so a file replay yields the flows of the live run.
//
// Memory is bounded: open transactions (MaxTransactions, oldest evicted
// with flowEndReason "lack of resources"), topic aliases per direction and
// resynchronisation buffers. Every packet that does not become part of a
// flow is counted in Stats.
//
// Protocol anomalies (docs/anomalies.md) are flow.Anomaly bits on the flow
// of the packet that shows them; a packet that belongs to no transaction
// and starts none (a response without request, a second CONNECT, a
// reserved type, a body that does not decode, an oversized packet) is a
// one-packet flow of its own, emitted at once, with flowEndReason
// "anomaly".
//
// A Tracker is not safe for concurrent use.
package tracker

import (
	"crypto/rand"
	"encoding/binary"
	"time"

	"github.com/mission-ids/mission/flow"
	"github.com/mission-ids/mission/internal/lru"
	"github.com/mission-ids/mission/mqttparse"
	"github.com/mission-ids/mission/probe/reassembly"
)

// FlowHandler receives finished flows. The *Record is reused after Flow
// returns; its strings and slices are not, so a handler may keep a copy of
// the struct.
type FlowHandler interface {
	Flow(r *flow.Record)
}

// FlowFunc adapts a function to FlowHandler.
type FlowFunc func(r *flow.Record)

// Flow calls f.
func (f FlowFunc) Flow(r *flow.Record) { f(r) }

// Config bounds the tracker. Zero values take the defaults.
type Config struct {
	IdleTimeout     time.Duration // end a transaction without packets for this long; default 30 s
	MaxTransactions int           // open at once; default 1,000,000
	MaxPacketSize   int           // larger MQTT packets are skipped and counted; default 1 MiB
	MaxAliases      int           // topic aliases kept per direction; default 1024
	MaxResync       int           // bytes kept while looking for a packet boundary; default 64 KiB
	MaxRestore      int           // sessions kept from a state file (Restore); default 200,000
	// FlowIDs generates flow ids; default: a random 23-bit prefix per
	// tracker and a 40-bit counter.
	FlowIDs func() uint64
}

func (c *Config) defaults() {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 30 * time.Second
	}
	if c.MaxTransactions <= 0 {
		c.MaxTransactions = 1_000_000
	}
	if c.MaxPacketSize <= 0 {
		c.MaxPacketSize = mqttparse.DefaultMaxPacketSize
	}
	if c.MaxAliases <= 0 {
		c.MaxAliases = 1024
	}
	if c.MaxRestore <= 0 {
		c.MaxRestore = 200_000
	}
	if c.MaxResync <= 0 {
		c.MaxResync = 64 << 10
	}
	if c.FlowIDs == nil {
		var b [8]byte
		_, _ = rand.Read(b[:])
		prefix := binary.BigEndian.Uint64(b[:]) & 0x7fffff << 40 // below 2^63: BSON has no uint64
		var n uint64
		c.FlowIDs = func() uint64 { n++; return prefix | n&(1<<40-1) }
	}
}

// Stats are cumulative counters, plus current table sizes.
type Stats struct {
	Packets         [16]uint64 // MQTT control packets decoded, by type
	Bytes           uint64     // MQTT bytes decoded
	Malformed       uint64     // packets whose body did not decode (skipped)
	Violations      uint64     // packets that broke a MUST (still used)
	ViolationsByBit [32]uint64 // by mqttparse.Violations bit
	TooLarge        uint64     // packets over MaxPacketSize, skipped by length
	FramingErrors   uint64     // directions whose framing broke (resynchronised)
	Resyncs         uint64     // times a direction found a packet boundary again
	ResyncDropped   uint64     // bytes discarded while looking for a boundary
	HoldOverflows   uint64     // held connections that hit MaxResync or the chunk bound while resynchronising
	VersionGuessed  uint64     // packets decoded without a known protocol level
	Unmatched       [16]uint64 // responses without an open request, by type
	Superseded      uint64     // open transactions replaced by a new request with the same key
	GapEnded        uint64     // open transactions ended early because their connection lost bytes
	GapSkips        uint64     // gaps inside a packet of known length: skipped to the next packet exactly
	Flows           [16]uint64 // flows emitted, by initiating type
	FlowsByEnd      [7]uint64  // flows emitted, by flowEndReason
	// Anomalies counts packets by flow.Anomaly bit (a packet with two
	// anomalies counts under both).
	Anomalies [64]uint64
	// Excused counts responses without request (also in Unmatched) not
	// taken as anomalies: their request may have passed before a midstream
	// pickup, a gap or an early end of its transaction (docs/anomalies.md).
	Excused      uint64
	Restored     uint64 // connections picked up midstream whose session came from a state file
	RestoreStale uint64 // restored sessions not used: older than the connection timeout
	Sessions     int    // connections tracked now
	Open         int    // open transactions now
}

// Tracker implements reassembly.Handler.
type Tracker struct {
	cfg   Config
	out   FlowHandler
	pkt   mqttparse.Packet
	rec   flow.Record
	txs   map[txKey]*tx
	lru   lru.List[tx] // open transactions, least recently active first
	free  []*tx
	names interner
	bytes byteChunks // emitted flows' correlation data
	// framerOnly turns off the in-place decoding of whole packets (tests
	// compare both paths).
	framerOnly bool
	stats      Stats
	lone       [2][]lone // scratch of agree
	sess       int
	live       map[*session]struct{} // every open session (Snapshot)
	restore    map[endpoints]ConnState
	restoreAge int64        // Unix ns
	lastTs     int64        // latest capture time seen
	nserial    uint64       // serial number of the last session opened
	an         flow.Anomaly // anomalies of the packet being handled
}

// New returns a tracker that hands finished flows to out.
func New(cfg Config, out FlowHandler) *Tracker {
	cfg.defaults()
	return &Tracker{cfg: cfg, out: out, txs: make(map[txKey]*tx), names: newInterner(1 << 16), live: make(map[*session]struct{})}
}

// Stats returns the counters.
func (t *Tracker) Stats() Stats {
	s := t.stats
	s.Open = len(t.txs)
	s.Sessions = t.sess
	return s
}

// Advance ends transactions idle since before now − IdleTimeout.
func (t *Tracker) Advance(now time.Time) { t.AdvanceAt(now.UnixNano()) }

// AdvanceAt is Advance with the time in Unix nanoseconds.
func (t *Tracker) AdvanceAt(now int64) {
	limit := now - int64(t.cfg.IdleTimeout)
	for x := t.lru.Front(); x != nil && x.last < limit; x = t.lru.Front() {
		t.end(x, flow.EndIdleTimeout)
	}
}

// FlushAll ends every open transaction (shutdown).
func (t *Tracker) FlushAll() {
	for x := t.lru.Front(); x != nil; x = t.lru.Front() {
		t.end(x, flow.EndForced)
	}
}

// session is the MQTT state of one TCP connection.
type session struct {
	conn      *reassembly.Conn
	serial    uint64            // in the keys of its transactions
	version   mqttparse.Version // from CONNECT; or the first guess on a packet with properties
	known     bool              // version learned from a CONNECT
	clientID  string
	username  string
	identity  flow.IdentitySource // where clientID, username and version came from
	assigned  string              // v5 Assigned Client Identifier
	keepAlive uint16
	last      int64 // capture time of the last data, Unix ns
	dirs      [2]dirState
	txs       lru.List[tx] // this session's open transactions, newest first
	// connected: a CONNECT was decoded (another is double_connect).
	// provable: the connection's start was seen, nothing was lost since
	// and no CONNECT was sent yet (decodable or not), so a packet now is
	// provably unintroduced.
	connected, provable bool
	// excuse: a response without request up to this capture time is not
	// an anomaly (its request may have passed unseen: midstream pickup,
	// gap, resynchronisation, or a transaction ended early).
	excuse int64
	// resuming is set while packets held back by a resynchronisation are
	// decoded after the other direction's later packets were (the hold
	// overflowed): answers to them may have been taken as unmatched.
	resuming bool
	// held: a direction is resynchronising, so both directions' bytes are
	// held, in capture order (order), until every boundary is proven.
	held  bool
	order []heldEvent
}

type dirState struct {
	framer  *mqttparse.Framer
	syncing bool // looking for a provable packet boundary (resync.go)
	skip    int  // bytes still to discard of a packet cut by a gap (its length was known)
	aliases map[uint16]string
	topic   string // the last topic named in this direction
	hold    holdState
}

// Open implements reassembly.Handler.
func (t *Tracker) Open(c *reassembly.Conn) {
	t.sess++
	t.nserial = (t.nserial + 1) & (1<<serialBits - 1)
	s := &session{conn: c, serial: t.nserial, identity: flow.IdentityNone, provable: true}
	c.State = s
	t.live[s] = struct{}{}
}

// Close implements reassembly.Handler: open transactions of the connection
// end with flowEndReason "forced end"; bytes still waiting for a packet
// boundary are given one last chance.
func (t *Tracker) Close(c *reassembly.Conn, reason reassembly.CloseReason, ts int64) {
	s, ok := c.State.(*session)
	if !ok {
		return
	}
	if s.held {
		// The last chance for a proof: a FIN is a packet boundary.
		t.prove(s, reason == reassembly.CloseFIN)
		t.flushHeld(s)
		t.dropHeld(s)
	}
	endReason := flow.EndForced
	if reason == reassembly.CloseEvicted {
		endReason = flow.EndLackOfResources
	}
	for x := s.txs.Front(); x != nil; x = s.txs.Front() {
		t.end(x, endReason)
	}
	c.State = nil
	delete(t.live, s)
	t.sess--
}

// Data implements reassembly.Handler.
func (t *Tracker) Data(c *reassembly.Conn, dir reassembly.Direction, ch reassembly.Chunk) {
	s, ok := c.State.(*session)
	if !ok {
		return
	}
	d := &s.dirs[dir]
	if d.framer == nil {
		d.framer = mqttparse.NewFramer(t.cfg.MaxPacketSize)
	}
	s.last = ch.Time
	if ch.Time > t.lastTs {
		t.lastTs = ch.Time
	}
	if ch.Midstream || ch.Lost > 0 {
		t.unseen(s, ch.Time)
	}
	if ch.Midstream {
		t.restoreSession(s, ch.Time)
	}
	if ch.Lost > 0 {
		if s.held {
			// What is proven so far is decoded before the hole.
			t.flushHeld(s)
		}
		t.endOpen(s)
	}
	data := ch.Data
	switch {
	case ch.Lost > 0 && len(data) == 0:
		// A gap announced before any later data of this direction: the
		// next chunk says where the stream resumes (late bytes after all,
		// or data after the hole with its own Lost).
		return
	case ch.Midstream:
		t.startSync(s, dir)
	case ch.Lost > 0 && d.skip > 0 && ch.Lost < d.skip:
		// The gap fell inside the packet being discarded.
		d.skip -= ch.Lost
	case ch.Lost > 0 && !d.syncing:
		if need, ok := d.framer.Remaining(); ok && ch.Lost < need {
			// The lost bytes were inside the unfinished packet, whose
			// length is known: the next packet starts need−Lost bytes
			// into the new data. That packet is lost; nothing is guessed.
			t.stats.ResyncDropped += uint64(d.framer.Buffered())
			t.stats.GapSkips++
			d.framer.Reset(0)
			d.skip = need - ch.Lost
		} else {
			t.startSync(s, dir)
		}
	case ch.Lost > 0:
		t.startSync(s, dir) // already looking for a boundary: start over after the new hole
	}
	if d.skip > 0 {
		n := min(d.skip, len(data))
		d.skip -= n
		t.stats.ResyncDropped += uint64(n)
		data = data[n:]
		if len(data) == 0 {
			return
		}
	}
	if s.held {
		t.hold(s, dir, data, ch.Time)
		return
	}
	t.feed(s, dir, data, ch.Time)
}

// feed frames and decodes in-sync bytes of a direction captured at ts.
func (t *Tracker) feed(s *session, dir reassembly.Direction, data []byte, ts int64) {
	d := &s.dirs[dir]
	if data = t.whole(s, dir, data, ts); len(data) == 0 {
		return
	}
	d.framer.Feed(data)
	t.drainFramer(s, dir, ts)
}

// whole decodes the complete packets at the start of data in place when the
// framer holds nothing of the direction (no unfinished packet, none being
// skipped, no error), which is what the framer would do with them too, and
// returns the rest for the framer: an unfinished or oversized packet, or a
// broken header.
func (t *Tracker) whole(s *session, dir reassembly.Direction, data []byte, ts int64) []byte {
	f := s.dirs[dir].framer
	if t.framerOnly || f.Buffered() != 0 || f.Err() != nil {
		return data
	}
	if _, skipping := f.Remaining(); skipping {
		return data
	}
	for len(data) > 0 {
		h, err := mqttparse.ParseFixedHeader(data)
		if err != nil {
			return data
		}
		n := h.Len()
		if n > len(data) || n > t.cfg.MaxPacketSize {
			return data
		}
		t.packet(s, dir, data[:n:n], ts)
		data = data[n:]
	}
	return data
}

// endOpen ends the session's open transactions because packets of theirs
// may have been lost (a TCP gap, or bytes skipped while resynchronising):
// they end now as they are (flowEndReason "forced end", an honest prefix)
// rather than complete later with a packet missing; their later packets
// count as unmatched.
func (t *Tracker) endOpen(s *session) {
	for x := s.txs.Front(); x != nil; x = s.txs.Front() {
		t.stats.GapEnded++
		t.end(x, flow.EndForced)
	}
}

func (t *Tracker) drainFramer(s *session, dir reassembly.Direction, ts int64) {
	d := &s.dirs[dir]
	for {
		raw, err := d.framer.Next()
		if err != nil {
			if isTooLarge(err) {
				t.stats.TooLarge++
				t.tooLarge(s, dir, err, ts)
				continue
			}
			// Broken framing: look for a boundary in what comes next.
			t.stats.FramingErrors++
			t.startSync(s, dir)
			return
		}
		if raw == nil {
			return
		}
		t.packet(s, dir, raw, ts)
	}
}
