package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxFrame bounds the bytes read for one packet or pcapng block; a file
// that declares more is malformed (262144 is libpcap's largest snaplen).
const MaxFrame = 256 * 1024

// ErrBadFile marks a capture file that is not pcap/pcapng or is corrupt.
// Every such error is a *FileError, which says where.
var ErrBadFile = errors.New("capture: malformed capture file")

// FileError locates what is wrong in a capture file. errors.Is(err,
// ErrBadFile) holds for it, and errors.Is/As reach its Err.
type FileError struct {
	Packet uint64 // number of the packet being read (1-based); 0 while reading the file header
	Offset int64  // byte offset of the record or block being read
	Reason string // what is wrong
	Err    error  // the cause (e.g. io.ErrUnexpectedEOF), or nil
}

func (e *FileError) Error() string {
	s := ErrBadFile.Error() + ": "
	if e.Packet > 0 {
		s += fmt.Sprintf("packet %d ", e.Packet)
	}
	s += fmt.Sprintf("at offset %d: %s", e.Offset, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Is makes every FileError match ErrBadFile.
func (e *FileError) Is(target error) bool { return target == ErrBadFile }

// Unwrap returns the cause.
func (e *FileError) Unwrap() error { return e.Err }

// badFile returns a *FileError.
func badFile(packet uint64, offset int64, cause error, format string, args ...any) error {
	return &FileError{Packet: packet, Offset: offset, Reason: fmt.Sprintf(format, args...), Err: cause}
}

// unexpectedEOF turns the end of file inside a record into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// OpenFile opens a pcap or pcapng file (the format is detected from its
// magic number). Packets are read as fast as the caller asks for them.
func OpenFile(path string) (Source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture file: %w", err) // *os.PathError: names the file
	}
	// Classic pcap files are mapped into memory where possible: packets
	// are then slices of the mapping, with no read call and no copy.
	if mem, unmap := mapFile(f); mem != nil {
		if p, err := newPcapMem(mem); err == nil {
			return &fileSource{reader: p, f: f, unmap: unmap}, nil
		}
		unmap()
	}
	src, err := NewFileReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("capture file %s: %w", path, err)
	}
	return &fileSource{reader: src, f: f}, nil
}

type fileSource struct {
	reader Source
	f      *os.File
	unmap  func()
}

func (s *fileSource) ReadPacket(p *Packet) error { return s.reader.ReadPacket(p) }
func (s *fileSource) Stats() (Stats, error)      { return s.reader.Stats() }

// Close releases the file; packets read from a mapped file are invalid
// afterwards.
func (s *fileSource) Close() error {
	if s.unmap != nil {
		s.unmap()
		s.unmap = nil
	}
	return s.f.Close()
}

// pcapMem reads a classic pcap file mapped in memory.
type pcapMem struct {
	hdr    pcapReader // byte order, resolution, link type
	little bool       // hdr.order is little-endian
	mem    []byte
	off    int
	n      uint64
}

func newPcapMem(mem []byte) (*pcapMem, error) {
	if len(mem) < 24 {
		return nil, badFile(0, 0, io.ErrUnexpectedEOF, "pcap header")
	}
	p := &pcapMem{mem: mem, off: 24}
	switch binary.LittleEndian.Uint32(mem[:4]) {
	case 0xa1b2c3d4:
		p.hdr.order = binary.LittleEndian
	case 0xa1b23c4d:
		p.hdr.order, p.hdr.nanos = binary.LittleEndian, true
	case 0xd4c3b2a1:
		p.hdr.order = binary.BigEndian
	case 0x4d3cb2a1:
		p.hdr.order, p.hdr.nanos = binary.BigEndian, true
	default:
		return nil, badFile(0, 0, nil, "not a pcap file")
	}
	p.hdr.linkType = LinkType(p.hdr.order.Uint32(mem[20:24]) & 0xffff)
	p.little = p.hdr.order == binary.LittleEndian
	return p, nil
}

func (p *pcapMem) ReadPacket(pkt *Packet) error {
	rest := len(p.mem) - p.off
	if rest == 0 {
		return io.EOF
	}
	if rest < 16 {
		return badFile(p.n+1, int64(p.off), io.ErrUnexpectedEOF, "packet header")
	}
	h := p.mem[p.off : p.off+16]
	var sec, frac, capLen, origLen uint32
	if p.little { // the common case, without the interface calls
		sec, frac = binary.LittleEndian.Uint32(h[0:4]), binary.LittleEndian.Uint32(h[4:8])
		capLen, origLen = binary.LittleEndian.Uint32(h[8:12]), binary.LittleEndian.Uint32(h[12:16])
	} else {
		sec, frac = binary.BigEndian.Uint32(h[0:4]), binary.BigEndian.Uint32(h[4:8])
		capLen, origLen = binary.BigEndian.Uint32(h[8:12]), binary.BigEndian.Uint32(h[12:16])
	}
	if capLen > MaxFrame {
		return badFile(p.n+1, int64(p.off), nil, "declares %d captured bytes (max %d)", capLen, MaxFrame)
	}
	if int(capLen) > rest-16 {
		return badFile(p.n+1, int64(p.off), io.ErrUnexpectedEOF, "packet truncated")
	}
	start := p.off + 16
	p.off = start + int(capLen)
	p.n++
	ns := int64(frac)
	if !p.hdr.nanos {
		ns *= 1000
	}
	pkt.Data = p.mem[start:p.off:p.off]
	pkt.Timestamp = time.Unix(int64(sec), ns)
	pkt.Length = int(origLen)
	pkt.LinkType = p.hdr.linkType
	return nil
}

func (p *pcapMem) Stats() (Stats, error) { return Stats{Received: p.n}, nil }
func (p *pcapMem) Close() error          { return nil }

// NewFileReader reads pcap or pcapng from r.
func NewFileReader(r io.Reader) (Source, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, badFile(0, 0, unexpectedEOF(err), "too short for a capture file header")
	}
	switch binary.LittleEndian.Uint32(magic) {
	case 0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1:
		return newPcapReader(br)
	case 0x0a0d0d0a:
		return newPcapngReader(br)
	}
	return nil, badFile(0, 0, nil, "unknown magic %x (want pcap or pcapng)", magic)
}

// pcapReader reads the classic libpcap format.
type pcapReader struct {
	r        *bufio.Reader
	order    binary.ByteOrder
	nanos    bool
	linkType LinkType
	n        uint64
	off      int64 // of the next record
}

func newPcapReader(r *bufio.Reader) (*pcapReader, error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, badFile(0, 0, unexpectedEOF(err), "pcap header")
	}
	p := &pcapReader{r: r, off: 24}
	switch binary.LittleEndian.Uint32(h[:4]) {
	case 0xa1b2c3d4:
		p.order = binary.LittleEndian
	case 0xa1b23c4d:
		p.order, p.nanos = binary.LittleEndian, true
	case 0xd4c3b2a1:
		p.order = binary.BigEndian
	case 0x4d3cb2a1:
		p.order, p.nanos = binary.BigEndian, true
	}
	// The low 16 bits are the link type; the upper bits carry FCS flags.
	p.linkType = LinkType(p.order.Uint32(h[20:24]) & 0xffff)
	return p, nil
}

// ReadPacket returns the packet in place in the read buffer (no copy): the
// buffer (1 MiB) is larger than MaxFrame, and the data stays valid until
// the next call, as the Source contract says.
func (p *pcapReader) ReadPacket(pkt *Packet) error {
	hdr, err := p.r.Peek(16)
	if err != nil {
		if err == io.EOF && len(hdr) == 0 {
			return io.EOF
		}
		return badFile(p.n+1, p.off, unexpectedEOF(err), "packet header")
	}
	sec := p.order.Uint32(hdr[0:4])
	frac := p.order.Uint32(hdr[4:8])
	capLen := p.order.Uint32(hdr[8:12])
	origLen := p.order.Uint32(hdr[12:16])
	if capLen > MaxFrame {
		return badFile(p.n+1, p.off, nil, "declares %d captured bytes (max %d)", capLen, MaxFrame)
	}
	_, _ = p.r.Discard(16)
	data, err := p.r.Peek(int(capLen))
	if err != nil {
		return badFile(p.n+1, p.off, unexpectedEOF(err), "packet truncated")
	}
	_, _ = p.r.Discard(int(capLen))
	p.n++
	p.off += 16 + int64(capLen)
	ns := int64(frac)
	if !p.nanos {
		ns *= 1000
	}
	pkt.Data = data[:capLen:capLen]
	pkt.Timestamp = time.Unix(int64(sec), ns)
	pkt.Length = int(origLen)
	pkt.LinkType = p.linkType
	return nil
}

func (p *pcapReader) Stats() (Stats, error) { return Stats{Received: p.n}, nil }
func (p *pcapReader) Close() error          { return nil }

// pcapngReader reads pcapng (draft-ietf-opsawg-pcapng): section header,
// interface description, enhanced/simple/obsolete packet blocks; every other
// block is skipped. Each interface keeps its own link type and timestamp
// resolution.
type pcapngReader struct {
	r      *bufio.Reader
	order  binary.ByteOrder
	ifaces []ngIface
	buf    []byte
	n      uint64
	off    int64 // of the next block
	block  int64 // offset of the block last read
	begun  bool  // past the first section header: errors name a packet
}

type ngIface struct {
	linkType LinkType
	snaplen  uint32
	// timestamp units per second and offset in seconds
	unitsPerSec uint64
	offset      int64
}

const (
	ngSectionHeader = 0x0a0d0d0a
	ngInterface     = 0x00000001
	ngPacketObs     = 0x00000002
	ngSimplePacket  = 0x00000003
	ngEnhanced      = 0x00000006
	ngMaxInterfaces = 1024
)

func newPcapngReader(r *bufio.Reader) (*pcapngReader, error) {
	p := &pcapngReader{r: r, buf: make([]byte, 0, 65536)}
	typ, body, err := p.readBlock()
	if err != nil {
		return nil, err
	}
	if typ != ngSectionHeader {
		return nil, badFile(0, 0, nil, "pcapng does not start with a section header")
	}
	_ = body
	p.begun = true
	return p, nil
}

// readBlock reads one block and returns its type and body (without the
// type, lengths); a section header resets byte order and interfaces.
func (p *pcapngReader) readBlock() (uint32, []byte, error) {
	var h [12]byte
	p.block = p.off
	if _, err := io.ReadFull(p.r, h[:8]); err != nil {
		if err == io.EOF {
			return 0, nil, io.EOF
		}
		return 0, nil, p.bad(err, "pcapng block header")
	}
	if binary.LittleEndian.Uint32(h[:4]) == ngSectionHeader {
		// The byte-order magic follows the length; read it to learn the order.
		if _, err := io.ReadFull(p.r, h[8:12]); err != nil {
			return 0, nil, p.bad(unexpectedEOF(err), "pcapng section header")
		}
		switch binary.LittleEndian.Uint32(h[8:12]) {
		case 0x1a2b3c4d:
			p.order = binary.LittleEndian
		case 0x4d3c2b1a:
			p.order = binary.BigEndian
		default:
			return 0, nil, p.bad(nil, "pcapng byte-order magic %x", h[8:12])
		}
		p.ifaces = p.ifaces[:0]
		total := p.order.Uint32(h[4:8])
		if total < 28 || total > MaxFrame || total%4 != 0 {
			return 0, nil, p.bad(nil, "pcapng section header length %d", total)
		}
		body, err := p.readBody(int(total) - 12)
		if err != nil {
			return 0, nil, err
		}
		p.off += int64(total)
		return ngSectionHeader, body[:len(body)-4], nil
	}
	if p.order == nil {
		return 0, nil, p.bad(nil, "pcapng block before section header")
	}
	typ := p.order.Uint32(h[:4])
	total := p.order.Uint32(h[4:8])
	if total < 12 || total > MaxFrame || total%4 != 0 {
		return 0, nil, p.bad(nil, "pcapng block length %d", total)
	}
	body, err := p.readBody(int(total) - 8)
	if err != nil {
		return 0, nil, err
	}
	if trailer := p.order.Uint32(body[len(body)-4:]); trailer != total {
		return 0, nil, p.bad(nil, "pcapng block trailer %d != length %d", trailer, total)
	}
	p.off += int64(total)
	return typ, body[:len(body)-4], nil
}

// bad returns a *FileError at the block being read.
func (p *pcapngReader) bad(cause error, format string, args ...any) error {
	var packet uint64
	if p.begun {
		packet = p.n + 1
	}
	return badFile(packet, p.block, cause, format, args...)
}

func (p *pcapngReader) readBody(n int) ([]byte, error) {
	if cap(p.buf) < n {
		p.buf = make([]byte, n)
	}
	p.buf = p.buf[:n]
	if _, err := io.ReadFull(p.r, p.buf); err != nil {
		return nil, p.bad(unexpectedEOF(err), "pcapng block truncated")
	}
	return p.buf, nil
}

func (p *pcapngReader) addInterface(body []byte) error {
	if len(body) < 8 {
		return p.bad(nil, "pcapng interface block too short")
	}
	if len(p.ifaces) >= ngMaxInterfaces {
		return p.bad(nil, "more than %d interfaces in a section", ngMaxInterfaces)
	}
	ifc := ngIface{
		linkType:    LinkType(p.order.Uint16(body[0:2])),
		snaplen:     p.order.Uint32(body[4:8]),
		unitsPerSec: 1_000_000,
	}
	opts := body[8:]
	for len(opts) >= 4 {
		code := p.order.Uint16(opts[0:2])
		olen := int(p.order.Uint16(opts[2:4]))
		if 4+olen > len(opts) {
			break
		}
		val := opts[4 : 4+olen]
		switch {
		case code == 0: // opt_endofopt
			opts = nil
			continue
		case code == 9 && olen >= 1: // if_tsresol
			res := val[0]
			exp := uint64(res & 0x7f)
			var units uint64 = 1
			base := uint64(10)
			if res&0x80 != 0 {
				base = 2
			}
			for i := uint64(0); i < exp && units < 1e18/base; i++ {
				units *= base
			}
			ifc.unitsPerSec = units
		case code == 14 && olen >= 8: // if_tsoffset
			ifc.offset = int64(p.order.Uint64(val))
		}
		pad := (olen + 3) &^ 3
		if 4+pad > len(opts) {
			break
		}
		opts = opts[4+pad:]
	}
	p.ifaces = append(p.ifaces, ifc)
	return nil
}

func (p *pcapngReader) ReadPacket(pkt *Packet) error {
	for {
		typ, body, err := p.readBlock()
		if err != nil {
			return err
		}
		switch typ {
		case ngInterface:
			if err := p.addInterface(body); err != nil {
				return err
			}
		case ngEnhanced, ngPacketObs:
			if len(body) < 20 {
				return p.bad(nil, "pcapng packet block too short")
			}
			var ifID uint32
			if typ == ngEnhanced {
				ifID = p.order.Uint32(body[0:4])
			} else {
				ifID = uint32(p.order.Uint16(body[0:2]))
			}
			if int(ifID) >= len(p.ifaces) {
				return p.bad(nil, "packet references interface %d of %d", ifID, len(p.ifaces))
			}
			ifc := &p.ifaces[ifID]
			ts := uint64(p.order.Uint32(body[4:8]))<<32 | uint64(p.order.Uint32(body[8:12]))
			capLen := p.order.Uint32(body[12:16])
			origLen := p.order.Uint32(body[16:20])
			if int(capLen) > len(body)-20 {
				return p.bad(nil, "packet captured length %d exceeds its block", capLen)
			}
			p.n++
			pkt.Data = body[20 : 20+capLen]
			pkt.Length = int(origLen)
			pkt.LinkType = ifc.linkType
			pkt.Timestamp = ngTime(ts, ifc)
			return nil
		case ngSimplePacket:
			if len(body) < 4 || len(p.ifaces) == 0 {
				return p.bad(nil, "pcapng simple packet block without interface")
			}
			origLen := p.order.Uint32(body[0:4])
			data := body[4:]
			if int(origLen) < len(data) {
				data = data[:origLen]
			}
			p.n++
			pkt.Data = data
			pkt.Length = int(origLen)
			pkt.LinkType = p.ifaces[0].linkType
			pkt.Timestamp = time.Time{}
			return nil
		}
	}
}

func ngTime(ts uint64, ifc *ngIface) time.Time {
	sec := ts / ifc.unitsPerSec
	rem := ts % ifc.unitsPerSec
	var ns uint64
	if ifc.unitsPerSec > 1_000_000_000 {
		ns = rem / (ifc.unitsPerSec / 1_000_000_000)
	} else {
		ns = rem * (1_000_000_000 / ifc.unitsPerSec) // exact for decimal resolutions up to ns
	}
	return time.Unix(int64(sec)+ifc.offset, int64(ns))
}

func (p *pcapngReader) Stats() (Stats, error) { return Stats{Received: p.n}, nil }
func (p *pcapngReader) Close() error          { return nil }
