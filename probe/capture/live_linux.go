//go:build linux

package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// LiveConfig configures a live AF_PACKET capture.
type LiveConfig struct {
	Interface   string
	SnapLen     int  // bytes kept per packet; default 262144
	Promiscuous bool // needs CAP_NET_ADMIN
	// RecvBuffer is the socket receive buffer (SO_RCVBUFFORCE when
	// permitted); default 32 MiB. A larger buffer absorbs bursts.
	RecvBuffer int
	// Filter, if set, is attached to the socket (SO_ATTACH_FILTER) so the
	// kernel drops what does not match before it is copied to user space.
	Filter []bpf.RawInstruction
	// PollTimeout bounds how long ReadPacket blocks, so a closed source
	// and timeouts are noticed; default 100 ms. On timeout ReadPacket
	// returns ErrTimeout.
	PollTimeout time.Duration
}

// ErrTimeout is returned by a live source's ReadPacket when no packet
// arrived within the poll timeout; callers use it to drive timers.
var ErrTimeout = errors.New("capture: no packet within poll timeout")

// ErrNoInterface is returned by OpenLive for an interface that does not
// exist.
var ErrNoInterface = errors.New("capture: no such interface")

// ErrKernelFilterOnAny is returned by OpenLive for a kernel filter on the
// "any" interface, whose cooked frames the kernel filters from the network
// header: filter them in user space instead.
var ErrKernelFilterOnAny = errors.New("capture: a kernel filter cannot be attached to a cooked capture on any")

// Live is an AF_PACKET capture on one interface. It needs CAP_NET_RAW.
type Live struct {
	name      string // the interface
	fd        int
	ifindex   int
	loopback  bool
	linkType  LinkType
	buf       []byte
	oob       []byte
	cooked    bool         // "any": SOCK_DGRAM, frames get an SLL header
	loopbacks map[int]bool // "any": loopback interfaces, whose outgoing copies are skipped
	closed    atomic.Bool
	reading   sync.Mutex // held by ReadPacket; Close waits for it before closing fd
	mu        sync.Mutex // guards stats accumulation
	stats     Stats
}

var (
	cmsgHdrLen = unix.CmsgSpace(0)
	auxLen     = unix.CmsgSpace(int(unsafe.Sizeof(unix.TpacketAuxdata{})))
	tsLen      = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// AnyInterface captures on every interface, like tcpdump -i any: packets
// come as Linux cooked frames (LinkLinuxSLL), and a Filter cannot be
// attached in the kernel (the kernel sees them from the network header);
// filter them in user space instead.
const AnyInterface = "any"

// OpenLive opens an AF_PACKET socket on cfg.Interface.
func OpenLive(cfg LiveConfig) (*Live, error) {
	var ifc *net.Interface
	sockType := unix.SOCK_RAW
	if cfg.Interface == AnyInterface {
		if len(cfg.Filter) > 0 {
			return nil, fmt.Errorf("capture on %q: %w; filter in user space", cfg.Interface, ErrKernelFilterOnAny)
		}
		ifc = &net.Interface{Index: 0, Name: AnyInterface}
		sockType = unix.SOCK_DGRAM
	} else {
		var err error
		ifc, err = net.InterfaceByName(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("capture on %q: %w: %w (list interfaces with `ip link`, or use any)", cfg.Interface, ErrNoInterface, err)
		}
	}
	if cfg.SnapLen <= 0 || cfg.SnapLen > MaxFrame {
		cfg.SnapLen = MaxFrame
	}
	if cfg.RecvBuffer <= 0 {
		cfg.RecvBuffer = 32 << 20
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 100 * time.Millisecond
	}
	// Protocol 0: the socket receives nothing until bind names the protocol
	// and the interface, after the filter and the socket options are set
	// (like libpcap). Created with ETH_P_ALL it would queue every packet of
	// every interface, unfiltered, until then.
	fd, err := unix.Socket(unix.AF_PACKET, sockType|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("capture on %q: open packet socket: %w (live capture needs root or CAP_NET_RAW)", cfg.Interface, err)
		}
		return nil, fmt.Errorf("capture on %q: open packet socket: %w", cfg.Interface, err)
	}
	l := &Live{name: cfg.Interface, fd: fd, ifindex: ifc.Index, loopback: ifc.Flags&net.FlagLoopback != 0, linkType: LinkEthernet}
	if cfg.Interface == AnyInterface {
		l.linkType, l.cooked = LinkLinuxSLL, true
		l.loopbacks = loopbackIndexes()
	}
	fail := func(what string, err error) (*Live, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("capture on %q: %s: %w", cfg.Interface, what, err)
	}
	if len(cfg.Filter) > 0 {
		if err := attachFilter(fd, cfg.Filter); err != nil {
			return fail("attach filter", err)
		}
	}
	if l.loopback {
		// On loopback every packet passes the tap twice (outgoing, then
		// incoming); libpcap drops the outgoing copy, and so do we.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
			return fail("ignore outgoing on loopback", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return fail("enable auxdata", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail("enable timestamps", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, cfg.RecvBuffer); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, cfg.RecvBuffer)
	}
	tv := unix.NsecToTimeval(cfg.PollTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fail("set receive timeout", err)
	}
	// From here on every packet queued is counted by the kernel
	// (PACKET_STATISTICS) and read by ReadPacket: Received ≥ packets read.
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		return fail("bind", err)
	}
	if cfg.Promiscuous {
		mreq := unix.PacketMreq{Ifindex: int32(ifc.Index), Type: unix.PACKET_MR_PROMISC}
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return fail("promiscuous mode (needs CAP_NET_ADMIN)", err)
		}
	}
	l.buf = make([]byte, cfg.SnapLen+sllHeaderLen)
	l.oob = make([]byte, auxLen+tsLen)
	return l, nil
}

// sllHeaderLen is the Linux cooked (v1) header put in front of frames of
// an "any" capture.
const sllHeaderLen = 16

func loopbackIndexes() map[int]bool {
	m := map[int]bool{}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			m[i.Index] = true
		}
	}
	return m
}

func attachFilter(fd int, prog []bpf.RawInstruction) error {
	f := make([]unix.SockFilter, len(prog))
	for i, ins := range prog {
		f[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(f)), Filter: &f[0]})
}

// LinkType is the link type of the packets this source yields.
func (l *Live) LinkType() LinkType { return l.linkType }

// ReadPacket reads the next packet; it allocates nothing. VLAN tags that
// the kernel stripped into auxiliary data are not re-inserted: the decoder
// only needs the layers above.
func (l *Live) ReadPacket(p *Packet) error {
	l.reading.Lock()
	defer l.reading.Unlock()
	for {
		if l.closed.Load() {
			return ErrClosed
		}
		var msg unix.Msghdr
		var iov unix.Iovec
		var sa unix.RawSockaddrLinklayer
		data := l.buf
		if l.cooked {
			data = l.buf[sllHeaderLen:]
			msg.Name = (*byte)(unsafe.Pointer(&sa))
			msg.Namelen = uint32(unsafe.Sizeof(sa))
		}
		iov.Base = &data[0]
		iov.SetLen(len(data))
		msg.Iov = &iov
		msg.Iovlen = 1
		msg.Control = &l.oob[0]
		msg.SetControllen(len(l.oob))
		n, _, errno := unix.Syscall(unix.SYS_RECVMSG, uintptr(l.fd), uintptr(unsafe.Pointer(&msg)), uintptr(unix.MSG_TRUNC))
		if errno != 0 {
			switch errno {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return ErrTimeout
			case unix.EBADF:
				return ErrClosed
			}
			if l.closed.Load() {
				return ErrClosed
			}
			return fmt.Errorf("capture on %q: recvmsg: %w", l.name, errno)
		}
		if l.cooked && sa.Pkttype == unix.PACKET_OUTGOING && l.loopbacks[int(sa.Ifindex)] {
			continue // the incoming copy of this loopback packet follows
		}
		p.Length = int(n)
		capLen := int(n)
		if capLen > len(data) {
			capLen = len(data)
		}
		p.Timestamp = time.Time{}
		oob := l.oob[:msg.Controllen]
		for len(oob) >= cmsgHdrLen {
			hdr := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
			if int(hdr.Len) < cmsgHdrLen || int(hdr.Len) > len(oob) {
				break
			}
			switch {
			case hdr.Level == unix.SOL_PACKET && hdr.Type == unix.PACKET_AUXDATA && len(oob) >= auxLen:
				aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&oob[cmsgHdrLen]))
				p.Length = int(aux.Len)
			case hdr.Level == unix.SOL_SOCKET && hdr.Type == unix.SO_TIMESTAMPNS && len(oob) >= tsLen:
				ts := (*unix.Timespec)(unsafe.Pointer(&oob[cmsgHdrLen]))
				p.Timestamp = time.Unix(int64(ts.Sec), int64(ts.Nsec))
			}
			adv := unix.CmsgSpace(int(hdr.Len) - cmsgHdrLen)
			if adv <= 0 || adv > len(oob) {
				break
			}
			oob = oob[adv:]
		}
		if p.Timestamp.IsZero() {
			p.Timestamp = time.Now()
		}
		if l.cooked {
			// Linux cooked header v1: packet type, ARPHRD type, address
			// length, 8 address bytes, protocol (all big endian).
			h := l.buf[:sllHeaderLen]
			binary.BigEndian.PutUint16(h[0:2], uint16(sa.Pkttype))
			binary.BigEndian.PutUint16(h[2:4], sa.Hatype)
			binary.BigEndian.PutUint16(h[4:6], uint16(sa.Halen))
			copy(h[6:14], sa.Addr[:])
			binary.BigEndian.PutUint16(h[14:16], htons(sa.Protocol))
			p.Length += sllHeaderLen
			capLen += sllHeaderLen
		}
		p.Data = l.buf[:capLen]
		p.LinkType = l.linkType
		return nil
	}
}

// Stats returns the kernel's counters, cumulative since the source opened.
// (PACKET_STATISTICS resets on every read, so they are accumulated here.)
func (l *Live) Stats() (Stats, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return l.stats, nil
	}
	st, err := unix.GetsockoptTpacketStats(l.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return l.stats, fmt.Errorf("capture on %q: read kernel statistics: %w", l.name, err)
	}
	// tp_packets counts every packet the socket received, dropped ones included.
	l.stats.Received += uint64(st.Packets)
	l.stats.Dropped += uint64(st.Drops)
	return l.stats, nil
}

// Close stops the capture; a ReadPacket in progress returns ErrClosed
// within the poll timeout.
func (l *Live) Close() error {
	_, _ = l.Stats()
	if l.closed.Swap(true) {
		return nil
	}
	// A blocked recvmsg returns within the poll timeout and sees closed.
	l.reading.Lock()
	defer l.reading.Unlock()
	return unix.Close(l.fd)
}
