package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Decode errors. ErrNotTCP and ErrFragment are not faults: the packet is
// simply of no interest to an MQTT probe; callers count them separately.
var (
	ErrTruncated   = errors.New("capture: packet truncated")
	ErrMalformed   = errors.New("capture: malformed header")
	ErrNotIP       = errors.New("capture: not IPv4/IPv6")
	ErrNotTCP      = errors.New("capture: not TCP")
	ErrNotUDP      = errors.New("capture: not TCP nor UDP")
	ErrFragment    = errors.New("capture: IP fragment")
	ErrUnsupported = errors.New("capture: unsupported link type")
)

// TCP flags.
const (
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// maxVLANTags bounds stacked 802.1Q/802.1ad tags (QinQ rarely exceeds 2).
const maxVLANTags = 8

// maxIPv6ExtHeaders bounds the IPv6 extension header chain.
const maxIPv6ExtHeaders = 16

// IP protocol numbers of Segment.Proto.
const (
	ProtoTCP = 6
	ProtoUDP = 17
)

// Segment is the decoded view of one TCP packet (or, from DecodeL4, one
// UDP datagram: Proto 17, no Seq, Ack, Flags or Window). Payload points
// into the packet data and is valid as long as the packet is.
type Segment struct {
	Proto            uint8 // ProtoTCP or ProtoUDP
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	IPVersion        uint8
	VLANs            uint8 // number of VLAN tags stripped
	Payload          []byte
	// Truncated is set when the capture's snap length cut the payload
	// short of what the IP header declares.
	Truncated bool
}

// DecodeTCP decodes the link, network and transport headers of data and
// fills seg. It allocates nothing. Anything but TCP is ErrNotTCP (a UDP
// fragment too).
func DecodeTCP(lt LinkType, data []byte, seg *Segment) error {
	return decode(lt, data, seg, false)
}

// DecodeL4 is DecodeTCP for TCP and UDP: seg.Proto says which. Any other
// transport is ErrNotUDP (which wraps nothing: count it like ErrNotTCP);
// a fragment of a TCP or UDP packet is ErrFragment.
func DecodeL4(lt LinkType, data []byte, seg *Segment) error {
	return decode(lt, data, seg, true)
}

func decode(lt LinkType, data []byte, seg *Segment, udp bool) error {
	var ethType uint16
	var l3 []byte
	switch lt {
	case LinkEthernet:
		if len(data) < 14 {
			return fmt.Errorf("%w: ethernet header", ErrTruncated)
		}
		ethType = binary.BigEndian.Uint16(data[12:14])
		l3 = data[14:]
	case LinkLinuxSLL:
		if len(data) < 16 {
			return fmt.Errorf("%w: SLL header", ErrTruncated)
		}
		ethType = binary.BigEndian.Uint16(data[14:16])
		l3 = data[16:]
	case LinkLinuxSLL2:
		if len(data) < 20 {
			return fmt.Errorf("%w: SLL2 header", ErrTruncated)
		}
		ethType = binary.BigEndian.Uint16(data[0:2])
		l3 = data[20:]
	case LinkNull, LinkLoop:
		if len(data) < 4 {
			return fmt.Errorf("%w: loopback header", ErrTruncated)
		}
		family := binary.LittleEndian.Uint32(data[:4])
		if lt == LinkLoop || family > 0xffff {
			family = binary.BigEndian.Uint32(data[:4])
		}
		switch family {
		case 2:
			ethType = 0x0800
		case 10, 24, 28, 30: // AF_INET6 on Linux, BSDs, FreeBSD, Darwin
			ethType = 0x86dd
		default:
			return ErrNotIP
		}
		l3 = data[4:]
	case LinkRaw, linkRawAlt, linkRawAlt14, LinkIPv4, LinkIPv6:
		if len(data) < 1 {
			return fmt.Errorf("%w: raw IP", ErrTruncated)
		}
		switch data[0] >> 4 {
		case 4:
			ethType = 0x0800
		case 6:
			ethType = 0x86dd
		default:
			return ErrNotIP
		}
		l3 = data
	default:
		return fmt.Errorf("%w: %d", ErrUnsupported, lt)
	}
	seg.VLANs = 0
	for ethType == 0x8100 || ethType == 0x88a8 || ethType == 0x9100 {
		if seg.VLANs == maxVLANTags {
			return fmt.Errorf("%w: more than %d VLAN tags", ErrMalformed, maxVLANTags)
		}
		if len(l3) < 4 {
			return fmt.Errorf("%w: VLAN tag", ErrTruncated)
		}
		ethType = binary.BigEndian.Uint16(l3[2:4])
		l3 = l3[4:]
		seg.VLANs++
	}
	switch ethType {
	case 0x0800:
		return decodeIPv4(l3, seg, udp)
	case 0x86dd:
		return decodeIPv6(l3, seg, udp)
	}
	return ErrNotIP
}

func decodeIPv4(b []byte, seg *Segment, udp bool) error {
	if len(b) < 20 {
		return fmt.Errorf("%w: IPv4 header", ErrTruncated)
	}
	if b[0]>>4 != 4 {
		return fmt.Errorf("%w: IPv4 version %d", ErrMalformed, b[0]>>4)
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total < ihl {
		return fmt.Errorf("%w: IPv4 header length %d, total %d", ErrMalformed, ihl, total)
	}
	if len(b) < ihl {
		return fmt.Errorf("%w: IPv4 options", ErrTruncated)
	}
	seg.IPVersion = 4
	seg.Src = netip.AddrFrom4([4]byte(b[12:16]))
	seg.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	proto := b[9]
	switch {
	case proto == ProtoTCP:
	case udp && proto == ProtoUDP:
	case udp:
		return ErrNotUDP
	default:
		return ErrNotTCP
	}
	if frag := binary.BigEndian.Uint16(b[6:8]); frag&0x3fff != 0 { // MF or offset
		return ErrFragment
	}
	// Ethernet pads short frames: trust the IP total length, not the frame.
	truncated := false
	if len(b) >= total {
		b = b[:total]
	} else {
		truncated = true
	}
	if proto == ProtoUDP {
		return decodeUDP(b[ihl:], seg, truncated)
	}
	return decodeTCP(b[ihl:], seg, truncated)
}

func decodeIPv6(b []byte, seg *Segment, udp bool) error {
	if len(b) < 40 {
		return fmt.Errorf("%w: IPv6 header", ErrTruncated)
	}
	if b[0]>>4 != 6 {
		return fmt.Errorf("%w: IPv6 version %d", ErrMalformed, b[0]>>4)
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	next := b[6]
	seg.IPVersion = 6
	seg.Src = netip.AddrFrom16([16]byte(b[8:24]))
	seg.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	b = b[40:]
	truncated := false
	if plen == 0 {
		// Jumbogram (hop-by-hop option) or bogus: use what was captured.
	} else if len(b) >= plen {
		b = b[:plen]
	} else {
		truncated = true
	}
	for i := 0; ; i++ {
		if i == maxIPv6ExtHeaders {
			return fmt.Errorf("%w: more than %d IPv6 extension headers", ErrMalformed, maxIPv6ExtHeaders)
		}
		switch next {
		case 6:
			return decodeTCP(b, seg, truncated)
		case ProtoUDP:
			if !udp {
				return ErrNotTCP
			}
			return decodeUDP(b, seg, truncated)
		case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination, mobility, HIP, shim6
			if len(b) < 8 {
				return fmt.Errorf("%w: IPv6 extension header", ErrTruncated)
			}
			n := (int(b[1]) + 1) * 8
			if len(b) < n {
				return fmt.Errorf("%w: IPv6 extension header", ErrTruncated)
			}
			next = b[0]
			b = b[n:]
		case 51: // AH: length in 4-octet units minus 2
			if len(b) < 8 {
				return fmt.Errorf("%w: IPv6 AH", ErrTruncated)
			}
			n := (int(b[1]) + 2) * 4
			if len(b) < n {
				return fmt.Errorf("%w: IPv6 AH", ErrTruncated)
			}
			next = b[0]
			b = b[n:]
		case 44: // fragment
			if len(b) < 8 {
				return fmt.Errorf("%w: IPv6 fragment header", ErrTruncated)
			}
			if off := binary.BigEndian.Uint16(b[2:4]); off&0xfff9 != 0 { // offset or M flag
				return ErrFragment
			}
			// An atomic fragment (offset 0, no M flag) carries a whole packet.
			next = b[0]
			b = b[8:]
		default:
			if udp {
				return ErrNotUDP
			}
			return ErrNotTCP
		}
	}
}

func decodeTCP(b []byte, seg *Segment, truncated bool) error {
	if len(b) < 20 {
		return fmt.Errorf("%w: TCP header", ErrTruncated)
	}
	off := int(b[12]>>4) * 4
	if off < 20 {
		return fmt.Errorf("%w: TCP data offset %d", ErrMalformed, off)
	}
	if len(b) < off {
		return fmt.Errorf("%w: TCP options", ErrTruncated)
	}
	seg.SrcPort = binary.BigEndian.Uint16(b[0:2])
	seg.DstPort = binary.BigEndian.Uint16(b[2:4])
	seg.Seq = binary.BigEndian.Uint32(b[4:8])
	seg.Ack = binary.BigEndian.Uint32(b[8:12])
	seg.Flags = b[13]
	seg.Window = binary.BigEndian.Uint16(b[14:16])
	seg.Proto = ProtoTCP
	seg.Payload = b[off:]
	seg.Truncated = truncated
	return nil
}

// decodeUDP decodes the UDP header; the payload is what the UDP length
// declares (or what was captured of it).
func decodeUDP(b []byte, seg *Segment, truncated bool) error {
	if len(b) < 8 {
		return fmt.Errorf("%w: UDP header", ErrTruncated)
	}
	ulen := int(binary.BigEndian.Uint16(b[4:6]))
	switch {
	case ulen == 0 && seg.IPVersion == 6:
		// Jumbogram: the IP layer bounds the datagram.
	case ulen < 8:
		return fmt.Errorf("%w: UDP length %d", ErrMalformed, ulen)
	case ulen <= len(b):
		b = b[:ulen]
	default:
		truncated = true
	}
	seg.Proto = ProtoUDP
	seg.SrcPort = binary.BigEndian.Uint16(b[0:2])
	seg.DstPort = binary.BigEndian.Uint16(b[2:4])
	seg.Seq, seg.Ack, seg.Flags, seg.Window = 0, 0, 0, 0
	seg.Payload = b[8:]
	seg.Truncated = truncated
	return nil
}
