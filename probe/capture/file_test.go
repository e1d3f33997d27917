package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/stretchr/testify/require"
)

type testPacket struct {
	ts   time.Time
	data []byte
}

func samplePackets(t testing.TB) []testPacket {
	base := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	var out []testPacket
	for i := 0; i < 5; i++ {
		ip := ipv4("10.0.0.1", "10.0.0.2")
		tcp, pl := tcpLayer(40000, 1883, string(bytes.Repeat([]byte{byte('a' + i)}, 10*i+1)))
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
		out = append(out, testPacket{base.Add(time.Duration(i) * 1500 * time.Microsecond), append(ethHeader(layers.EthernetTypeIPv4), frame(t, ip, tcp, pl)...)})
	}
	return out
}

func writePcap(t *testing.T, path string, nanos bool, pkts []testPacket) {
	f, err := os.Create(path)
	require.NoError(t, err)
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if nanos {
		w = pcapgo.NewWriterNanos(f)
	}
	require.NoError(t, w.WriteFileHeader(65535, layers.LinkTypeEthernet))
	for _, p := range pkts {
		require.NoError(t, w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: len(p.data)}, p.data))
	}
}

func readAll(t *testing.T, path string) ([]testPacket, []LinkType) {
	src, err := OpenFile(path)
	require.NoError(t, err)
	defer src.Close()
	var out []testPacket
	var lts []LinkType
	for {
		var p Packet
		err := src.ReadPacket(&p)
		if err == io.EOF {
			return out, lts
		}
		require.NoError(t, err)
		out = append(out, testPacket{p.Timestamp, append([]byte(nil), p.Data...)})
		lts = append(lts, p.LinkType)
	}
}

// TestReadFileFormats reads the same packets as pcap (µs and ns) and as
// pcapng converted by Wireshark's editcap, an independent writer.
func TestReadFileFormats(t *testing.T) {
	editcap, err := exec.LookPath("editcap")
	require.NoError(t, err, "editcap is needed (apt-get install tshark)")
	dir := t.TempDir()
	pkts := samplePackets(t)
	nsPath := filepath.Join(dir, "ns.pcap")
	writePcap(t, nsPath, true, pkts)
	usPath := filepath.Join(dir, "us.pcap")
	writePcap(t, usPath, false, pkts)
	ngPath := filepath.Join(dir, "ng.pcapng")
	out, err := exec.Command(editcap, "-F", "pcapng", nsPath, ngPath).CombinedOutput()
	require.NoError(t, err, "%s", out)
	ngUsPath := filepath.Join(dir, "ngus.pcapng")
	out, err = exec.Command(editcap, "-F", "pcapng", usPath, ngUsPath).CombinedOutput()
	require.NoError(t, err, "%s", out)

	for _, tc := range []struct {
		path string
		res  time.Duration
	}{{nsPath, time.Nanosecond}, {usPath, time.Microsecond}, {ngPath, time.Nanosecond}, {ngUsPath, time.Microsecond}} {
		got, lts := readAll(t, tc.path)
		require.Len(t, got, len(pkts), tc.path)
		for i := range pkts {
			require.Equal(t, pkts[i].data, got[i].data, tc.path)
			require.True(t, pkts[i].ts.Truncate(tc.res).Equal(got[i].ts), "%s: %v != %v", tc.path, pkts[i].ts, got[i].ts)
			require.Equal(t, LinkEthernet, lts[i])
		}
	}
}

// TestReadSLL2 checks that link types above 255 survive (gopacket's readers
// truncate them to 8 bits).
func TestReadSLL2(t *testing.T) {
	var buf bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], uint32(LinkLinuxSLL2))
	buf.Write(hdr)
	data := []byte{0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0}
	rec := make([]byte, 16)
	binary.LittleEndian.PutUint32(rec[0:], 1700000000)
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(data)))
	buf.Write(rec)
	buf.Write(data)
	src, err := NewFileReader(&buf)
	require.NoError(t, err)
	var p Packet
	require.NoError(t, src.ReadPacket(&p))
	require.Equal(t, LinkLinuxSLL2, p.LinkType)
	require.Equal(t, data, p.Data)
	require.ErrorIs(t, src.ReadPacket(&p), io.EOF)
}

func TestReadCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pcap")
	writePcap(t, good, true, samplePackets(t))
	raw, err := os.ReadFile(good)
	require.NoError(t, err)

	_, err = NewFileReader(bytes.NewReader([]byte("hello world, not a capture")))
	require.ErrorIs(t, err, ErrBadFile)
	_, err = NewFileReader(bytes.NewReader(nil))
	require.ErrorIs(t, err, ErrBadFile)

	// A packet record declaring a huge captured length is refused, not allocated.
	huge := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(huge[24+8:], 1<<30)
	src, err := NewFileReader(bytes.NewReader(huge))
	require.NoError(t, err)
	var p Packet
	require.ErrorIs(t, src.ReadPacket(&p), ErrBadFile)

	// A file cut mid-packet ends with an error, not a short packet.
	src, err = NewFileReader(bytes.NewReader(raw[:len(raw)-3]))
	require.NoError(t, err)
	var n int
	for {
		err = src.ReadPacket(&p)
		if err != nil {
			break
		}
		n++
	}
	require.ErrorIs(t, err, ErrBadFile)
	require.Equal(t, 4, n)
}

// TestFileErrorSaysWhere checks that a malformed file's error names the
// packet and the byte offset of its record, and keeps the cause.
func TestFileErrorSaysWhere(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pcap")
	writePcap(t, good, true, samplePackets(t))
	raw, err := os.ReadFile(good)
	require.NoError(t, err)
	first := 16 + int(binary.LittleEndian.Uint32(raw[24+8:])) // size of the first record
	huge := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(huge[24+first+8:], 1<<30) // second record

	tests := []struct {
		name   string
		data   []byte
		packet uint64
		offset int64
		cause  error
	}{
		{"cut mid-packet", raw[:len(raw)-3], 5, -1, io.ErrUnexpectedEOF},
		{"huge second record", huge, 2, int64(24 + first), nil},
		{"short header", raw[:10], 0, 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, err := NewFileReader(bytes.NewReader(tt.data))
			var p Packet
			for err == nil {
				err = src.ReadPacket(&p)
			}
			require.ErrorIs(t, err, ErrBadFile)
			var fe *FileError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.packet, fe.Packet)
			if tt.offset >= 0 {
				require.Equal(t, tt.offset, fe.Offset)
			}
			require.Contains(t, err.Error(), fmt.Sprintf("at offset %d", fe.Offset))
			if tt.cause != nil {
				require.ErrorIs(t, err, tt.cause)
			}
		})
	}
}

func FuzzFileReader(f *testing.F) {
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	_ = w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for _, p := range samplePackets(f) {
		_ = w.WritePacket(gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: len(p.data), Length: len(p.data)}, p.data)
	}
	f.Add(buf.Bytes())
	if ng, err := os.ReadFile(filepath.Join("testdata", "sample.pcapng")); err == nil {
		f.Add(ng)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		src, err := NewFileReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		var p Packet
		for i := 0; i < 1000; i++ {
			if err := src.ReadPacket(&p); err != nil {
				return
			}
			var seg Segment
			_ = DecodeTCP(p.LinkType, p.Data, &seg)
		}
	})
}

// TestMappedPcapMatchesReader checks the memory-mapped pcap path (OpenFile)
// against the streaming reader, on a good, a truncated and a lying file.
func TestMappedPcapMatchesReader(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pcap")
	writePcap(t, good, true, samplePackets(t))
	raw, err := os.ReadFile(good)
	require.NoError(t, err)
	huge := append([]byte(nil), raw...)
	binary.LittleEndian.PutUint32(huge[24+8:], 1<<30)
	usPath := filepath.Join(dir, "us.pcap")
	writePcap(t, usPath, false, samplePackets(t))
	us, err := os.ReadFile(usPath)
	require.NoError(t, err)
	for name, data := range map[string][]byte{"good": raw, "truncated": raw[:len(raw)-3], "huge": huge, "header-only": raw[:24], "cut-header": raw[:30],
		"big-endian": bigEndianPcap(t, raw), "big-endian-us": bigEndianPcap(t, us)} {
		path := filepath.Join(dir, name+".pcap")
		require.NoError(t, os.WriteFile(path, data, 0o644))
		mapped, err := OpenFile(path)
		require.NoError(t, err, name)
		_, isMapped := mapped.(*fileSource).reader.(*pcapMem)
		require.True(t, isMapped, "%s: pcap files are mapped", name)
		stream, err := NewFileReader(bytes.NewReader(data))
		require.NoError(t, err, name)
		for i := 0; ; i++ {
			var a, b Packet
			errA, errB := mapped.ReadPacket(&a), stream.ReadPacket(&b)
			require.Equal(t, errB == nil, errA == nil, "%s packet %d: %v vs %v", name, i, errA, errB)
			if errB != nil {
				require.Equal(t, errors.Is(errB, io.EOF), errors.Is(errA, io.EOF), name)
				require.Equal(t, errors.Is(errB, ErrBadFile), errors.Is(errA, ErrBadFile), name)
				break
			}
			require.Equal(t, b.Data, a.Data)
			require.True(t, b.Timestamp.Equal(a.Timestamp))
			require.Equal(t, b.Length, a.Length)
			require.Equal(t, b.LinkType, a.LinkType)
		}
		require.NoError(t, mapped.Close())
	}
}

// bigEndianPcap rewrites a little-endian pcap file in big-endian byte order,
// as written on a big-endian host.
func bigEndianPcap(t *testing.T, le []byte) []byte {
	be := append([]byte(nil), le...)
	swap32 := func(off int) {
		binary.BigEndian.PutUint32(be[off:], binary.LittleEndian.Uint32(le[off:]))
	}
	swap16 := func(off int) {
		binary.BigEndian.PutUint16(be[off:], binary.LittleEndian.Uint16(le[off:]))
	}
	swap32(0) // magic
	swap16(4) // version
	swap16(6)
	for off := 8; off < 24; off += 4 { // zone, sigfigs, snaplen, link type
		swap32(off)
	}
	for off := 24; off < len(le); {
		require.LessOrEqual(t, off+16, len(le))
		capLen := int(binary.LittleEndian.Uint32(le[off+8:]))
		for i := 0; i < 16; i += 4 {
			swap32(off + i)
		}
		off += 16 + capLen
	}
	return be
}
