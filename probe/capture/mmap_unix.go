//go:build unix

package capture

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// mapFile maps a regular pcap file read-only, or returns nil (not pcap,
// not a regular file, empty, or too large for the address space).
func mapFile(f *os.File) ([]byte, func()) {
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() < 24 {
		return nil, nil
	}
	limit := int64(1) << 40
	if strconv.IntSize == 32 {
		limit = 1 << 30 // leave address space on 32-bit (arm/v6, arm/v7)
	}
	if fi.Size() > limit {
		return nil, nil
	}
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		return nil, nil
	}
	switch string(magic[:]) {
	case "\xd4\xc3\xb2\xa1", "\xa1\xb2\xc3\xd4", "\x4d\x3c\xb2\xa1", "\xa1\xb2\x3c\x4d":
	default:
		return nil, nil
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil
	}
	_ = unix.Madvise(mem, unix.MADV_SEQUENTIAL)
	return mem, func() { _ = unix.Munmap(mem) }
}
