package collector

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/mission-ids/mission/ipfix"
)

// The journal keeps every IPFIX message the collector receives on disk
// until the store has taken (inserted or spooled) every document decoded
// from it, so that a crash of the process (SIGKILL, OOM kill) loses
// nothing received more than a flush interval earlier: at the next start
// the unfinished segments are decoded again before the collector listens,
// and the documents' deterministic _id makes what was stored already a
// duplicate the store ignores.
//
// It is a directory of append-only segment files:
//
//	jrn-<20-digit sequence>.ipfj
//
// A segment starts with the 8-byte magic "MJOURN1\n" and the 8-byte run id
// (random per process, little-endian), then records:
//
//	uint32 little-endian  length L of what follows the CRC
//	uint32 little-endian  CRC-32C (Castagnoli) of those L bytes
//	uint8                 kind: 1 a received message, 2 templates
//	uint8                 transport (ipfix.Transport)
//	uint16 big-endian     exporter port
//	uint64 little-endian  session: the TCP/TLS connection, 0 for UDP
//	[16]byte              exporter address (IPv4 as IPv4-mapped IPv6)
//	int64 little-endian   receive time, Unix nanoseconds
//	L−36 bytes            the IPFIX message, exactly as received
//
// The messages of a segment, taken out of their records, are an IPFIX
// file (RFC 5655) per exporter session. Templates records are IPFIX
// messages of template sets the journal writes itself: the first time a
// session writes to a segment, it first writes the templates the session
// holds, so that every segment decodes on its own and a segment can be
// deleted while the exporter session goes on in the next one.
//
// Group commit: records are appended to a buffer that one goroutine writes
// to the segment with a single write(2) every FlushInterval (or sooner
// when FlushBytes are buffered). A process crash loses what was not yet
// written: at most FlushInterval of received messages. The segment is
// fsynced every SyncInterval and when it is sealed (after RollInterval or
// SegmentBytes); a power loss can lose what was received since the last
// fsync, and a torn record ends the readable part of its segment (counted
// and logged at replay).
//
// A segment is deleted once it is sealed and every message written to it
// is settled: decoded, and its documents taken by the store
// (Sink.PutBatchAck's done; for a Sink without it, when PutBatch returns).
// All segments together are bounded by MaxBytes: when the journal is full
// (the store takes nothing: database down and spool full), TCP and TLS
// connections wait for room (back-pressure on the exporter), and UDP
// messages are dropped, counted and logged.
const (
	journalMagic   = "MJOURN1\n"
	journalHeader  = 16
	journalRecHead = 8
	journalMeta    = 36
	journalSuffix  = ".ipfj"
	journalPrefix  = "jrn-"
)

// Journal defaults; see JournalConfig.
const (
	DefaultJournalMaxBytes      = 1 << 30
	DefaultJournalFlushInterval = 50 * time.Millisecond
	DefaultJournalFlushBytes    = 256 << 10
	DefaultJournalSyncInterval  = time.Second
	DefaultJournalRollInterval  = 2 * time.Second
)

type journalKind uint8

const (
	journalMessage   journalKind = 1
	journalTemplates journalKind = 2
)

// Journal errors callers branch on.
var (
	// ErrJournalFull means the journal holds MaxBytes of messages the
	// store has not taken yet.
	ErrJournalFull = errors.New("collector: journal full")
	// ErrJournalClosed is returned after Close.
	ErrJournalClosed = errors.New("collector: journal closed")
	// ErrJournalInUse means another process journals into the directory.
	ErrJournalInUse = errors.New("collector: journal directory in use")
)

// JournalConfig configures a Journal. Zero values take the defaults.
type JournalConfig struct {
	Dir      string // required
	MaxBytes int64  // all segments together; default 1 GiB
	// SegmentBytes seals a segment this large; default MaxBytes/16 within
	// 1 to 64 MiB.
	SegmentBytes int64
	// FlushInterval is the group commit: the longest a received message
	// waits in memory before its write(2). FlushBytes buffered write
	// sooner.
	FlushInterval time.Duration
	FlushBytes    int
	SyncInterval  time.Duration // fsync of the open segment
	RollInterval  time.Duration // a segment is sealed at most this long after it opened
	Logger        zerolog.Logger
}

func (c *JournalConfig) defaults() {
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultJournalMaxBytes
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = min(max(c.MaxBytes/16, 1<<20), 64<<20)
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultJournalFlushInterval
	}
	if c.FlushBytes <= 0 {
		c.FlushBytes = DefaultJournalFlushBytes
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = DefaultJournalSyncInterval
	}
	if c.RollInterval <= 0 {
		c.RollInterval = DefaultJournalRollInterval
	}
}

// JournalStats are the journal's counters and gauges.
type JournalStats struct {
	Bytes       int64 // on disk and buffered, all segments
	Segments    int
	MaxBytes    int64
	Messages    uint64 // received messages journaled
	Preambles   uint64 // templates records written
	FullDropped uint64 // UDP messages dropped: journal full
	FullWaits   uint64 // TCP/TLS messages that waited for room
	Unjournaled uint64 // messages decoded without a journal record (full at shutdown, or the journal failed)
	WriteErrors uint64
	Removed     uint64 // segments deleted, all settled
	Replayed    uint64 // messages decoded again at start
	ReplayedSeg uint64 // segments of an earlier run replayed
	Torn        uint64 // records unreadable at replay (torn or corrupt), ending their segment
}

// Journal is the collector's write-ahead journal of received messages; see
// the format above. It is safe for concurrent use.
type Journal struct {
	cfg  JournalConfig
	log  zerolog.Logger
	warn zerolog.Logger // rate-limited
	run  uint64
	lock *os.File

	mu      sync.Mutex
	cur     *jseg // nil until the next append
	segs    []*jseg
	buf     []byte // records not yet written, all of cur
	bytes   int64
	nextSeq uint64
	closed  bool
	freed   chan struct{} // closed (and replaced) when a segment is removed
	old     []*jseg       // segments of an earlier run, until replayed

	spare   []byte // flusher only
	kick    chan struct{}
	closing chan struct{}
	done    chan struct{}

	messages, preambles, fullDropped, fullWaits, unjournaled, writeErrors, removed, replayed, replayedSeg, torn atomic.Uint64
}

// jseg is one segment file.
type jseg struct {
	j      *Journal
	seq    uint64
	run    uint64 // of the process that wrote it
	path   string
	size   int64 // bytes appended, header included; guarded by j.mu
	opened time.Time
	f      *os.File // written by the flusher (and by openSegLocked)
	// refs is 1 while the segment is open (or, from an earlier run, not
	// yet replayed) plus 1 per message not yet settled.
	refs    atomic.Int64
	removed atomic.Bool
}

var journalCRC = crc32.MakeTable(crc32.Castagnoli)

// OpenJournal opens (creating it if needed) the journal directory and
// takes its lock; segments found there are from an earlier run, for
// Collector.Run to replay.
func OpenJournal(cfg JournalConfig) (*Journal, error) {
	cfg.defaults()
	if cfg.Dir == "" {
		return nil, errors.New("collector: journal directory not set")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("collector: create journal directory: %w", err)
	}
	lockPath := filepath.Join(cfg.Dir, "LOCK")
	lf, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return nil, fmt.Errorf("collector: journal lock: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrJournalInUse, cfg.Dir)
		}
		return nil, fmt.Errorf("collector: journal lock %s: %w", lockPath, err)
	}
	var rb [8]byte
	_, _ = rand.Read(rb[:])
	j := &Journal{cfg: cfg, log: cfg.Logger.With().Str("component", "journal").Logger(), run: binary.LittleEndian.Uint64(rb[:]),
		lock: lf, nextSeq: 1, freed: make(chan struct{}), kick: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{})}
	j.warn = j.log.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second})
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		lf.Close()
		return nil, fmt.Errorf("collector: list journal: %w", err)
	}
	for _, e := range entries {
		seq, ok := parseJournalName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		s := &jseg{j: j, seq: seq, path: filepath.Join(cfg.Dir, e.Name()), size: info.Size()}
		s.refs.Store(1)
		j.old = append(j.old, s)
		j.segs = append(j.segs, s)
		j.bytes += s.size
		j.nextSeq = max(j.nextSeq, seq+1)
	}
	slices.SortFunc(j.old, func(a, b *jseg) int { return cmpUint64(a.seq, b.seq) })
	if len(j.old) > 0 {
		j.log.Info().Int("segments", len(j.old)).Int64("bytes", j.bytes).
			Msg("journal: messages of an earlier run not known stored; they are decoded again before listening")
	}
	go j.flusher()
	return j, nil
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func journalName(seq uint64) string {
	return fmt.Sprintf("%s%020d%s", journalPrefix, seq, journalSuffix)
}

func parseJournalName(name string) (uint64, bool) {
	if !strings.HasPrefix(name, journalPrefix) || !strings.HasSuffix(name, journalSuffix) {
		return 0, false
	}
	seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, journalPrefix), journalSuffix), 10, 64)
	return seq, err == nil
}

// journalEntry describes a received message.
type journalEntry struct {
	transport ipfix.Transport
	session   uint64
	from      netip.AddrPort
	received  time.Time
}

// append journals msg. When sess (may be nil) writes to this segment for
// the first time (*last is not its sequence), its templates go first.
// It returns the segment, which the caller must release once the message
// is settled, and the record's offset in it.
func (j *Journal) append(e journalEntry, msg []byte, sess *ipfix.Session, last *uint64) (*jseg, int64, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, 0, ErrJournalClosed
	}
	need := int64(journalRecHead + journalMeta + len(msg))
	if j.bytes+need > j.cfg.MaxBytes {
		return nil, 0, ErrJournalFull
	}
	if j.cur == nil {
		if err := j.openSegLocked(); err != nil {
			return nil, 0, err
		}
	}
	seg := j.cur
	if sess != nil && *last != seg.seq {
		for _, pre := range templateMessages(sess.Templates(), uint32(e.received.Unix())) {
			if j.bytes+need+int64(journalRecHead+journalMeta+len(pre)) > j.cfg.MaxBytes {
				return nil, 0, ErrJournalFull
			}
			j.appendLocked(journalTemplates, e, pre)
			j.preambles.Add(1)
		}
		*last = seg.seq
	}
	off := seg.size
	j.appendLocked(journalMessage, e, msg)
	seg.refs.Add(1)
	j.messages.Add(1)
	if len(j.buf) >= j.cfg.FlushBytes {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	return seg, off, nil
}

func (j *Journal) appendLocked(kind journalKind, e journalEntry, msg []byte) {
	n := journalMeta + len(msg)
	b := binary.LittleEndian.AppendUint32(j.buf, uint32(n))
	b = binary.LittleEndian.AppendUint32(b, 0) // CRC below
	start := len(b)
	b = append(b, byte(kind), byte(e.transport))
	b = binary.BigEndian.AppendUint16(b, e.from.Port())
	b = binary.LittleEndian.AppendUint64(b, e.session)
	a16 := e.from.Addr().As16()
	b = append(b, a16[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(e.received.UnixNano()))
	b = append(b, msg...)
	binary.LittleEndian.PutUint32(b[start-4:], crc32.Checksum(b[start:], journalCRC))
	j.buf = b
	j.bytes += int64(journalRecHead + n)
	j.cur.size += int64(journalRecHead + n)
}

// openSegLocked creates the next segment with its header.
func (j *Journal) openSegLocked() error {
	s := &jseg{j: j, seq: j.nextSeq, run: j.run, opened: time.Now()}
	s.path = filepath.Join(j.cfg.Dir, journalName(s.seq))
	f, err := os.OpenFile(s.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		j.writeErrors.Add(1)
		return fmt.Errorf("collector: create journal segment: %w", err)
	}
	hdr := binary.LittleEndian.AppendUint64([]byte(journalMagic), j.run)
	if _, err := f.Write(hdr); err != nil {
		f.Close()
		os.Remove(s.path)
		j.writeErrors.Add(1)
		return fmt.Errorf("collector: write journal segment: %w", err)
	}
	j.nextSeq++
	s.f, s.size = f, journalHeader
	s.refs.Store(1)
	j.cur = s
	j.segs = append(j.segs, s)
	j.bytes += journalHeader
	return nil
}

// templateMessages encodes templates as IPFIX messages of template sets,
// one observation domain per message, each under the maximum length.
func templateMessages(ts []ipfix.DomainTemplate, exportTime uint32) [][]byte {
	var out [][]byte
	var msg []byte
	var domain uint32
	end := func() {
		if len(msg) > ipfix.HeaderLen {
			binary.BigEndian.PutUint16(msg[2:], uint16(len(msg)))
			out = append(out, msg)
		}
		msg = nil
	}
	for _, dt := range ts {
		set := ipfix.AppendTemplateSet(nil, dt.Template)
		if msg != nil && (dt.Domain != domain || len(msg)+len(set) > ipfix.MaxMessageLen) {
			end()
		}
		if msg == nil {
			domain = dt.Domain
			msg = ipfix.MessageHeader{Version: ipfix.Version, ExportTime: exportTime, ObservationDomainID: domain}.Append(nil)
		}
		msg = append(msg, set...)
	}
	end()
	return out
}

// release settles one message of s (or, the last time, its open
// reference); a segment with nothing left is deleted.
func (s *jseg) release() {
	if s.refs.Add(-1) == 0 {
		s.j.remove(s)
	}
}

func (j *Journal) remove(s *jseg) {
	if !s.removed.CompareAndSwap(false, true) {
		return
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		j.writeErrors.Add(1)
		j.warn.Error().Err(err).Str("segment", s.path).Msg("journal: cannot delete a settled segment")
	}
	j.mu.Lock()
	j.bytes -= s.size
	if i := slices.Index(j.segs, s); i >= 0 {
		j.segs = slices.Delete(j.segs, i, i+1)
	}
	close(j.freed)
	j.freed = make(chan struct{})
	j.mu.Unlock()
	j.removed.Add(1)
}

// space returns a channel closed when a segment is next removed.
func (j *Journal) space() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.freed
}

// flusher is the group commit: it writes the buffered records and seals
// segments. fsync is the syncer's: on a busy disk it can take seconds,
// which must not hold back the writes that protect against a crash.
func (j *Journal) flusher() {
	defer close(j.done)
	sealed := make(chan *jseg, 256)
	syncerDone := make(chan struct{})
	go j.syncer(sealed, syncerDone)
	defer func() {
		close(sealed)
		<-syncerDone
	}()
	tick := time.NewTicker(j.cfg.FlushInterval)
	defer tick.Stop()
	for {
		final := false
		select {
		case <-tick.C:
		case <-j.kick:
		case <-j.closing:
			final = true
		}
		j.flush(final, sealed)
		if final {
			return
		}
	}
}

func (j *Journal) flush(final bool, sealed chan<- *jseg) {
	j.mu.Lock()
	buf := j.buf
	j.buf = j.spare[:0]
	seg := j.cur
	roll := seg != nil && (final || seg.size >= j.cfg.SegmentBytes || time.Since(seg.opened) >= j.cfg.RollInterval)
	if roll {
		j.cur = nil
	}
	j.mu.Unlock()
	defer func() { j.spare = buf[:0] }()
	if seg == nil {
		return
	}
	if len(buf) > 0 {
		if _, err := seg.f.Write(buf); err != nil {
			j.writeErrors.Add(1)
			j.warn.Error().Err(err).Str("segment", seg.path).Msg("journal: write failed; these messages are not protected against a crash")
		}
	}
	if roll {
		sealed <- seg // fsync and close
		seg.release()
	}
}

// syncer fsyncs the open segment every SyncInterval, and each sealed
// segment not deleted meanwhile, then closes it.
func (j *Journal) syncer(sealed <-chan *jseg, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(j.cfg.SyncInterval)
	defer tick.Stop()
	sync := func(s *jseg) {
		if s.removed.Load() {
			return
		}
		if err := s.f.Sync(); err != nil {
			j.writeErrors.Add(1)
			j.warn.Error().Err(err).Str("segment", s.path).Msg("journal: fsync failed")
		}
	}
	for {
		select {
		case s, ok := <-sealed:
			if !ok {
				return
			}
			sync(s)
			s.f.Close()
		case <-tick.C:
			j.mu.Lock()
			s := j.cur
			j.mu.Unlock()
			if s != nil {
				sync(s) // it is closed only after it went through sealed
			}
		}
	}
}

// takeOld hands the segments of an earlier run to the replay, oldest first.
func (j *Journal) takeOld() []*jseg {
	j.mu.Lock()
	defer j.mu.Unlock()
	old := j.old
	j.old = nil
	return old
}

// Stats returns the journal's counters.
func (j *Journal) Stats() JournalStats {
	j.mu.Lock()
	bytes, segs := j.bytes, len(j.segs)
	j.mu.Unlock()
	return JournalStats{Bytes: bytes, Segments: segs, MaxBytes: j.cfg.MaxBytes, Messages: j.messages.Load(), Preambles: j.preambles.Load(),
		FullDropped: j.fullDropped.Load(), FullWaits: j.fullWaits.Load(), Unjournaled: j.unjournaled.Load(), WriteErrors: j.writeErrors.Load(),
		Removed: j.removed.Load(), Replayed: j.replayed.Load(), ReplayedSeg: j.replayedSeg.Load(), Torn: j.torn.Load()}
}

// Close writes and seals the open segment and releases the directory.
// Segments with messages not yet settled stay for the next run (call Close
// after the store is closed, so that everything it took is settled).
func (j *Journal) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	close(j.closing)
	<-j.done
	st := j.Stats()
	if st.Segments > 0 {
		j.log.Info().Int("segments", st.Segments).Int64("bytes", st.Bytes).
			Msg("journal: messages not known stored stay on disk; the next start decodes them again")
	}
	if err := j.lock.Close(); err != nil {
		return fmt.Errorf("collector: journal unlock: %w", err)
	}
	return nil
}

// replayKey names an exporter session within a segment.
type replayKey struct {
	transport ipfix.Transport
	session   uint64
	from      netip.AddrPort
}

// replayJournal decodes the segments of an earlier run, oldest first,
// through the normal path; each is deleted once its documents are taken.
func (c *Collector) replayJournal(ctx context.Context) error {
	j := c.cfg.Journal
	segs := j.takeOld()
	if len(segs) == 0 {
		return nil
	}
	start := time.Now()
	before := j.replayed.Load()
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return err // segs[i:] stay for the next start
		}
		err := c.replaySegment(ctx, s)
		j.replayedSeg.Add(1)
		s.release()
		if err != nil {
			return err
		}
	}
	j.log.Info().Uint64("messages", j.replayed.Load()-before).Int("segments", len(segs)).Dur("took", time.Since(start)).
		Msg("journal: messages of the earlier run decoded again; now listening")
	return nil
}

// replaySegment decodes one segment; a torn or corrupt record ends it.
func (c *Collector) replaySegment(ctx context.Context, s *jseg) error {
	j := c.cfg.Journal
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("collector: open journal segment: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 256<<10)
	hdr := make([]byte, journalHeader)
	if _, err := io.ReadFull(r, hdr); err != nil || string(hdr[:8]) != journalMagic {
		j.torn.Add(1)
		j.log.Error().Str("segment", s.path).Msg("journal: segment without a valid header; skipped")
		return nil
	}
	s.run = binary.LittleEndian.Uint64(hdr[8:])
	sessions := map[replayKey]*ipfix.Session{}
	defer func() {
		for _, sess := range sessions {
			sess.Close()
		}
	}()
	h := c.newHandler()
	off := int64(journalHeader)
	body := make([]byte, 0, 65536+journalMeta)
	var head [journalRecHead]byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, head[:]); err != nil {
			if !errors.Is(err, io.EOF) {
				c.tornRecord(s, off, "record header cut short")
			}
			return nil
		}
		n := int(binary.LittleEndian.Uint32(head[:4]))
		if n < journalMeta+ipfix.HeaderLen || n > journalMeta+ipfix.MaxMessageLen {
			c.tornRecord(s, off, "record length out of range")
			return nil
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			c.tornRecord(s, off, "record cut short")
			return nil
		}
		if crc32.Checksum(body, journalCRC) != binary.LittleEndian.Uint32(head[4:]) {
			c.tornRecord(s, off, "CRC mismatch")
			return nil
		}
		var a16 [16]byte
		copy(a16[:], body[12:28])
		key := replayKey{transport: ipfix.Transport(body[1]), session: binary.LittleEndian.Uint64(body[4:12]),
			from: unmap(netip.AddrPortFrom(netip.AddrFrom16(a16), binary.BigEndian.Uint16(body[2:4])))}
		received := time.Unix(0, int64(binary.LittleEndian.Uint64(body[28:36])))
		msg := body[journalMeta:]
		sess := sessions[key]
		if sess == nil {
			sess = ipfix.NewSession(c.cfg.IPFIX, ipfix.SessionKey{Exporter: key.from, Transport: key.transport})
			sess.IgnoreSequence() // the journal holds what was not stored, not every message
			sessions[key] = sess
		}
		switch journalKind(body[0]) {
		case journalTemplates:
			_ = sess.Decode(msg, func(ipfix.Record) error { return nil })
		case journalMessage:
			s.refs.Add(1)
			h.from, h.received, h.jseg, h.joff = key.from, received, s, off
			_ = h.message(sess, msg)
			j.replayed.Add(1)
		}
		off += int64(journalRecHead + n)
	}
}

func (c *Collector) tornRecord(s *jseg, off int64, why string) {
	c.cfg.Journal.torn.Add(1)
	c.cfg.Journal.log.Error().Str("segment", s.path).Int64("offset", off).Str("problem", why).
		Msg("journal: unreadable record (torn by a power loss or corrupt); the rest of this segment is skipped")
}

// journalDocID is the _id of a document without a flow id decoded from a
// journaled message: the same at every replay of that message.
func journalDocID(s *jseg, off int64, idx uint32) string {
	var b [8 + 8 + 8 + 4]byte
	binary.LittleEndian.PutUint64(b[0:], s.run)
	binary.LittleEndian.PutUint64(b[8:], s.seq)
	binary.LittleEndian.PutUint64(b[16:], uint64(off))
	binary.LittleEndian.PutUint32(b[24:], idx)
	sum := sha256.Sum256(b[:])
	return hex.EncodeToString(sum[:16])
}

// journal writes a received message to the journal before h decodes it,
// and tells h its record. When the journal is full, a UDP message is
// dropped (false: counted and logged); a TCP message waits for room, which
// holds back the exporter, unless the connection is draining at shutdown
// (stopping, non-nil and true), when it is decoded without a record. A
// journal that fails (or is closed) lets messages through unjournaled,
// counted.
func (c *Collector) journal(h *handler, transport ipfix.Transport, session uint64, sess *ipfix.Session, last *uint64, msg []byte, stopping *atomic.Bool) bool {
	j := c.cfg.Journal
	waited := false
	for {
		now := time.Now()
		seg, off, err := j.append(journalEntry{transport: transport, session: session, from: h.from, received: now}, msg, sess, last)
		switch {
		case err == nil:
			h.jseg, h.joff, h.received = seg, off, now
			return true
		case errors.Is(err, ErrJournalFull) && transport == ipfix.UDP:
			j.fullDropped.Add(1)
			c.mu.Lock()
			c.exporter(h.from.Addr()).JournalFull++
			c.mu.Unlock()
			j.warn.Error().Str("exporter", h.from.String()).Int64("journal_max_bytes", j.cfg.MaxBytes).
				Msg("journal full (the store takes nothing: database down and spool full?); UDP message dropped")
			return false
		case errors.Is(err, ErrJournalFull) && (stopping == nil || !stopping.Load()):
			if !waited {
				waited = true
				j.fullWaits.Add(1)
				j.warn.Warn().Str("exporter", h.from.String()).Int64("journal_max_bytes", j.cfg.MaxBytes).
					Msg("journal full (the store takes nothing: database down and spool full?); holding back a TCP exporter until there is room")
			}
			select {
			case <-j.space():
			case <-time.After(100 * time.Millisecond):
			}
		default:
			j.unjournaled.Add(1)
			if !errors.Is(err, ErrJournalClosed) {
				j.warn.Error().Err(err).Str("exporter", h.from.String()).Msg("journal: message decoded without a record; a crash now would lose it")
			}
			h.received = time.Time{}
			return true
		}
	}
}
