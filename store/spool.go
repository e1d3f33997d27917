package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// The spool keeps documents that could not be written to the database yet,
// on disk, in a directory of append-only segment files:
//
//	seg-<20-digit sequence>.spool
//
// A segment starts with the 8-byte magic "MSPOOL1\n", then records:
//
//	uint32 little-endian  length of the BSON document
//	uint32 little-endian  CRC-32C (Castagnoli) of the BSON document
//	BSON document         (its own int32 length equals the length above)
//
// Records are appended with one write(2) per batch, so a crash of the
// process loses nothing that Append returned for; a torn or corrupt record
// (power loss, full disk) ends the readable part of its segment: it and what
// follows in that segment are skipped and counted. Segments are fsynced when
// they are sealed and at Close, not per record.
//
// A new process never appends to an old segment: all segments found at open
// are sealed. Replay reads the oldest sealed segment (sealing the active one
// when it is the only one left) and deletes it once all its records are
// stored; a crash during replay replays the segment again, which the
// deterministic _id makes harmless.
const (
	spoolMagic      = "MSPOOL1\n"
	spoolRecHeader  = 8
	spoolMinSegment = 64 << 10
	spoolMaxSegment = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type segment struct {
	seq     uint64
	path    string
	size    int64 // bytes on disk
	records int64 // readable records
}

type spool struct {
	dir    string
	max    int64 // bytes, all segments together
	segMax int64
	log    zerolog.Logger
	lock   *dirLock

	mu      sync.Mutex
	sealed  []*segment // oldest first
	active  *segment   // nil until the first append
	f       *os.File   // active segment's file
	nextSeq uint64
	bytes   int64 // sum of segment sizes
	records int64 // sum of readable records not yet removed
	torn    uint64
	closed  bool
}

// errSpoolClosed is returned by append after close.
var errSpoolClosed = errors.New("spool closed")

func openSpool(dir string, maxBytes int64, log zerolog.Logger) (*spool, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	lock, err := lockDir(dir, "spool")
	if err != nil {
		return nil, err
	}
	s := &spool{dir: dir, max: maxBytes, log: log, lock: lock, nextSeq: 1}
	s.segMax = min(max(maxBytes/4, spoolMinSegment), spoolMaxSegment)
	entries, err := os.ReadDir(dir)
	if err != nil {
		_ = lock.unlock()
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	for _, e := range entries {
		seq, ok := parseSegmentName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		seg := &segment{seq: seq, path: filepath.Join(dir, e.Name())}
		recs, size, torn, err := readSegment(seg.path)
		if err != nil {
			_ = lock.unlock()
			return nil, err
		}
		seg.size, seg.records = size, int64(len(recs))
		if torn > 0 {
			s.torn += uint64(torn)
			log.Error().Str("segment", seg.path).Int("torn", torn).
				Msg("spool: a torn or corrupt record ends this segment; it and what follows it in the segment are skipped")
		}
		s.sealed = append(s.sealed, seg)
		s.bytes += seg.size
		s.records += seg.records
		s.nextSeq = max(s.nextSeq, seq+1)
	}
	slices.SortFunc(s.sealed, func(a, b *segment) int { return compareUint64(a.seq, b.seq) })
	if s.records > 0 {
		log.Info().Int64("records", s.records).Int64("bytes", s.bytes).Int("segments", len(s.sealed)).
			Msg("spool: documents from an earlier run will be replayed")
	}
	return s, nil
}

func compareUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func segmentName(seq uint64) string { return fmt.Sprintf("seg-%020d.spool", seq) }

func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, "seg-")
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, ".spool")
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(digits, 10, 64)
	return seq, err == nil
}

// readSegment reads a whole segment and returns its readable records (slices
// of one buffer), its size on disk and how many torn records end it (0 or 1:
// nothing after the first bad record can be trusted to be framed right).
func readSegment(path string) (recs [][]byte, size int64, torn int, err error) {
	buf, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("spool: read segment %s: %w", path, err)
	}
	size = int64(len(buf))
	if !bytes.HasPrefix(buf, []byte(spoolMagic)) {
		if len(buf) == 0 || bytes.HasPrefix([]byte(spoolMagic), buf) {
			return nil, size, 0, nil // crashed while creating it: empty
		}
		return nil, size, 1, nil
	}
	rest := buf[len(spoolMagic):]
	for len(rest) > 0 {
		if len(rest) < spoolRecHeader {
			return recs, size, 1, nil
		}
		n := binary.LittleEndian.Uint32(rest[0:4])
		sum := binary.LittleEndian.Uint32(rest[4:8])
		if n < 5 || uint64(n) > uint64(len(rest)-spoolRecHeader) {
			return recs, size, 1, nil
		}
		doc := rest[spoolRecHeader : spoolRecHeader+int(n)]
		if crc32.Checksum(doc, castagnoli) != sum || binary.LittleEndian.Uint32(doc[0:4]) != n {
			return recs, size, 1, nil
		}
		recs = append(recs, doc)
		rest = rest[spoolRecHeader+int(n):]
	}
	return recs, size, 0, nil
}

// append writes as many of docs as fit under the size bound, in order, and
// returns how many it wrote; the caller drops (and counts) the rest. An
// error means a write failed; the documents not written are not on disk.
func (s *spool) append(docs [][]byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errSpoolClosed
	}
	written := 0
	for written < len(docs) {
		if s.active == nil || s.active.size >= s.segMax {
			if err := s.rotateLocked(); err != nil {
				return written, err
			}
			if s.active == nil || s.active.size >= s.segMax {
				return written, nil // full: not even room for a new segment
			}
		}
		// Frame as many records as fit into this segment and under the bound.
		var buf []byte
		var n int64
		end := written
		for end < len(docs) && s.active.size+int64(len(buf)) < s.segMax {
			rec := int64(spoolRecHeader + len(docs[end]))
			if s.bytes+int64(len(buf))+rec > s.max {
				break
			}
			buf = binary.LittleEndian.AppendUint32(buf, uint32(len(docs[end])))
			buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(docs[end], castagnoli))
			buf = append(buf, docs[end]...)
			end++
			n++
		}
		if end == written {
			return written, nil // full
		}
		if _, err := s.f.Write(buf); err != nil {
			// Cut a partial write off so the segment stays readable.
			if terr := s.f.Truncate(s.active.size); terr != nil {
				s.log.Error().Err(terr).Str("segment", s.active.path).Msg("spool: cannot truncate a failed write; the segment will end in a torn record")
				s.sealActiveLocked()
			}
			return written, fmt.Errorf("spool: write %s: %w", s.active.path, err)
		}
		s.active.size += int64(len(buf))
		s.active.records += n
		s.bytes += int64(len(buf))
		s.records += n
		written = end
	}
	return written, nil
}

// rotateLocked seals the active segment (if any) and creates a new one.
func (s *spool) rotateLocked() error {
	if int64(len(spoolMagic))+s.bytes > s.max {
		return nil // no room for even a header; append sees no active room
	}
	s.sealActiveLocked()
	seg := &segment{seq: s.nextSeq, path: filepath.Join(s.dir, segmentName(s.nextSeq))}
	f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("spool: create segment: %w", err)
	}
	if _, err := f.WriteString(spoolMagic); err != nil {
		_ = f.Close()
		_ = os.Remove(seg.path)
		return fmt.Errorf("spool: write segment header %s: %w", seg.path, err)
	}
	s.nextSeq++
	seg.size = int64(len(spoolMagic))
	s.bytes += seg.size
	s.active, s.f = seg, f
	return nil
}

func (s *spool) sealActiveLocked() {
	if s.active == nil {
		return
	}
	if err := s.f.Sync(); err != nil {
		s.log.Warn().Err(err).Str("segment", s.active.path).Msg("spool: fsync failed")
	}
	if err := s.f.Close(); err != nil {
		s.log.Warn().Err(err).Str("segment", s.active.path).Msg("spool: close failed")
	}
	s.sealed = append(s.sealed, s.active)
	s.active, s.f = nil, nil
}

// oldest returns the oldest segment holding records, sealing the active one
// when only it is left, or nil when the spool is empty. Empty segments found
// on the way are removed.
func (s *spool) oldest() (*segment, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if len(s.sealed) == 0 {
			if s.active == nil || s.active.records == 0 {
				return nil, nil
			}
			s.sealActiveLocked()
		}
		seg := s.sealed[0]
		if seg.records > 0 {
			return seg, nil
		}
		if err := s.removeLocked(seg); err != nil {
			return nil, err
		}
	}
}

// remove deletes a replayed segment.
func (s *spool) remove(seg *segment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeLocked(seg)
}

func (s *spool) removeLocked(seg *segment) error {
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: remove replayed segment %s: %w", seg.path, err)
	}
	i := slices.Index(s.sealed, seg)
	if i >= 0 {
		s.sealed = slices.Delete(s.sealed, i, i+1)
	}
	s.bytes -= seg.size
	s.records -= seg.records
	return nil
}

// replayed records that n records of seg are stored (for the gauges); the
// segment's bytes stay counted until it is removed.
func (s *spool) replayed(seg *segment, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg.records -= n
	s.records -= n
}

type spoolStats struct {
	bytes, records int64
	segments       int
	torn           uint64
}

func (s *spool) stats() spoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.sealed)
	if s.active != nil {
		n++
	}
	return spoolStats{bytes: s.bytes, records: s.records, segments: n, torn: s.torn}
}

// close syncs and closes the active segment and releases the directory.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.sealActiveLocked()
	return s.lock.unlock()
}

// segmentReader is the replay cursor over one sealed segment.
type segmentReader struct {
	seg  *segment
	recs [][]byte
	pos  int
}

func openSegmentReader(seg *segment) (*segmentReader, error) {
	recs, _, _, err := readSegment(seg.path)
	if err != nil {
		return nil, err
	}
	if int64(len(recs)) > seg.records {
		// Some were replayed already in this run before a failure; skip them.
		recs = recs[int64(len(recs))-seg.records:]
	}
	return &segmentReader{seg: seg, recs: recs}, nil
}

// next returns up to n records without consuming them.
func (r *segmentReader) next(n int) [][]byte {
	end := min(r.pos+n, len(r.recs))
	return r.recs[r.pos:end]
}

func (r *segmentReader) advance(n int) { r.pos += n }

func (r *segmentReader) done() bool { return r.pos >= len(r.recs) }
