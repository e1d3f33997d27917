package bpf

import "fmt"

// LinkType is a pcap LINKTYPE_ value as stored in pcap and pcapng files.
// gopacket's layers.LinkType is a uint8 and cannot represent LINKTYPE_LINUX_SLL2
// (276); convert with LinkType(lt) for the others.
type LinkType uint32

// Supported link types.
const (
	LinkTypeNull      LinkType = 0   // BSD loopback, AF_ value in the writer's byte order
	LinkTypeEthernet  LinkType = 1   // DLT_EN10MB
	LinkTypeRawDLT12  LinkType = 12  // DLT_RAW on most systems
	LinkTypeRawDLT14  LinkType = 14  // DLT_RAW on OpenBSD
	LinkTypeRaw       LinkType = 101 // LINKTYPE_RAW: IPv4 or IPv6, version nibble decides
	LinkTypeLoop      LinkType = 108 // OpenBSD loopback, AF_ value in network byte order
	LinkTypeLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkTypeIPv4      LinkType = 228 // raw IPv4 only
	LinkTypeIPv6      LinkType = 229 // raw IPv6 only
	LinkTypeLinuxSLL2 LinkType = 276 // Linux cooked capture v2
)

func (lt LinkType) String() string {
	switch lt {
	case LinkTypeNull:
		return "NULL"
	case LinkTypeEthernet:
		return "EN10MB"
	case LinkTypeRawDLT12, LinkTypeRawDLT14, LinkTypeRaw:
		return "RAW"
	case LinkTypeLoop:
		return "LOOP"
	case LinkTypeLinuxSLL:
		return "LINUX_SLL"
	case LinkTypeIPv4:
		return "IPV4"
	case LinkTypeIPv6:
		return "IPV6"
	case LinkTypeLinuxSLL2:
		return "LINUX_SLL2"
	}
	return fmt.Sprintf("LinkType(%d)", uint32(lt))
}

type linkKind int

const (
	lkEthernet linkKind = iota
	lkSLL
	lkSLL2
	lkNull
	lkLoop
	lkRaw
	lkIPv4
	lkIPv6
)

// linkLayer describes where things are in a frame of one link type.
type linkLayer struct {
	kind       linkKind
	typeOff    uint32 // offset of the 16-bit protocol type, when there is one
	payloadOff uint32 // offset of the network-layer header
}

func linkLayerFor(lt LinkType) (linkLayer, error) {
	switch lt {
	case LinkTypeEthernet:
		return linkLayer{kind: lkEthernet, typeOff: 12, payloadOff: 14}, nil
	case LinkTypeLinuxSLL:
		return linkLayer{kind: lkSLL, typeOff: 14, payloadOff: 16}, nil
	case LinkTypeLinuxSLL2:
		return linkLayer{kind: lkSLL2, typeOff: 0, payloadOff: 20}, nil
	case LinkTypeNull:
		return linkLayer{kind: lkNull, payloadOff: 4}, nil
	case LinkTypeLoop:
		return linkLayer{kind: lkLoop, payloadOff: 4}, nil
	case LinkTypeRaw, LinkTypeRawDLT12, LinkTypeRawDLT14:
		return linkLayer{kind: lkRaw}, nil
	case LinkTypeIPv4:
		return linkLayer{kind: lkIPv4}, nil
	case LinkTypeIPv6:
		return linkLayer{kind: lkIPv6}, nil
	}
	return linkLayer{}, &Error{Kind: ErrLinkType, Pos: -1,
		Detail: fmt.Sprintf("link type %d is not supported (supported: Ethernet 1, Linux SLL 113, SLL2 276, NULL 0, LOOP 108, raw IP 12/14/101, IPv4 228, IPv6 229)", uint32(lt))}
}

const (
	etherTypeIPv4 = 0x0800
	etherTypeARP  = 0x0806
	etherTypeRARP = 0x8035
	etherTypeIPv6 = 0x86dd
)

// BSD AF_INET6 values found in NULL/LOOP headers (BSD, FreeBSD, Darwin), as
// libpcap checks them.
var afInet6Values = []uint32{24, 28, 30}

func bswap32(v uint32) uint32 {
	return v>>24 | (v>>8)&0xff00 | (v<<8)&0xff0000 | v<<24
}

// linkTypeIs is libpcap's gen_linktype: "the network layer is etherType".
// shift is the VLAN offset in effect (Ethernet only).
func (l linkLayer) linkTypeIs(etherType uint32, shift int) pred {
	switch l.kind {
	case lkEthernet, lkSLL, lkSLL2:
		return cmpK(load(l.typeOff+uint32(shift), 2), opJEQ, etherType)
	case lkNull, lkLoop:
		var afs []uint32
		switch etherType {
		case etherTypeIPv4:
			afs = []uint32{2}
		case etherTypeIPv6:
			afs = afInet6Values
		default:
			return pConst(false)
		}
		var p pred = pConst(false)
		for _, af := range afs {
			p = or(p, cmpK(load(0, 4), opJEQ, af))
			if l.kind == lkNull {
				// Host byte order of the machine that wrote the file:
				// accept both orders (libpcap uses the file's order).
				p = or(p, cmpK(load(0, 4), opJEQ, bswap32(af)))
			}
		}
		return p
	case lkRaw:
		switch etherType {
		case etherTypeIPv4:
			return cmpK(and(load(0, 1), 0xf0), opJEQ, 0x40)
		case etherTypeIPv6:
			return cmpK(and(load(0, 1), 0xf0), opJEQ, 0x60)
		}
		return pConst(false)
	case lkIPv4:
		return pConst(etherType == etherTypeIPv4)
	case lkIPv6:
		return pConst(etherType == etherTypeIPv6)
	}
	return pConst(false)
}

// payload is the offset of the network-layer header with VLAN shift applied.
func (l linkLayer) payload(shift int) uint32 {
	if l.kind == lkEthernet {
		return l.payloadOff + uint32(shift)
	}
	return l.payloadOff
}
