// Package capture reads packets from the network or from capture files and
// decodes their link, network and transport headers down to TCP. It owns the
// probe's packet input: AF_PACKET sockets for live capture (pure Go, no
// libpcap, so the binary stays static), pcap and pcapng readers for files,
// and a zero-allocation L2–L4 decoder.
//
// Every packet comes from the network, so every length is checked before it
// is used; malformed packets yield typed errors, never panics.
package capture

import (
	"errors"
	"time"
)

// LinkType is a pcap LINKTYPE_ value (https://www.tcpdump.org/linktypes.html).
// It is wider than gopacket's layers.LinkType, which cannot hold SLL2 (276).
type LinkType uint16

// Link types the decoder understands.
const (
	LinkNull      LinkType = 0   // BSD loopback: 4-byte address family, host byte order
	LinkEthernet  LinkType = 1   // Ethernet II, with any number of 802.1Q/802.1ad tags
	LinkRaw       LinkType = 101 // raw IPv4 or IPv6
	LinkLoop      LinkType = 108 // OpenBSD loopback: 4-byte address family, network byte order
	LinkLinuxSLL  LinkType = 113 // Linux cooked capture v1 (tcpdump -i any, libpcap < 1.10)
	LinkIPv4      LinkType = 228 // raw IPv4
	LinkIPv6      LinkType = 229 // raw IPv6
	LinkLinuxSLL2 LinkType = 276 // Linux cooked capture v2 (tcpdump -i any, libpcap >= 1.10)
	linkRawAlt    LinkType = 12  // DLT_RAW on some BSDs, written by old tools
	linkRawAlt14  LinkType = 14  // DLT_RAW on OpenBSD
)

// String names the link type like tcpdump does.
func (l LinkType) String() string {
	switch l {
	case LinkNull:
		return "NULL"
	case LinkEthernet:
		return "EN10MB"
	case LinkRaw, linkRawAlt, linkRawAlt14:
		return "RAW"
	case LinkLoop:
		return "LOOP"
	case LinkLinuxSLL:
		return "LINUX_SLL"
	case LinkLinuxSLL2:
		return "LINUX_SLL2"
	case LinkIPv4:
		return "IPV4"
	case LinkIPv6:
		return "IPV6"
	}
	return "unknown"
}

// Supported reports whether the decoder handles this link type.
func (l LinkType) Supported() bool { return l.String() != "unknown" }

// Packet is one captured frame. Data points into the source's buffer and is
// valid only until the next call to ReadPacket.
type Packet struct {
	Data      []byte
	Timestamp time.Time
	Length    int // original length on the wire (Data may be shorter: snaplen)
	LinkType  LinkType
}

// Stats are a source's counters. For live capture, Received and Dropped
// are the kernel's (PACKET_STATISTICS), cumulative since the source opened.
type Stats struct {
	Received uint64
	Dropped  uint64
}

// Source is where packets come from: a live interface or a file.
type Source interface {
	// ReadPacket fills p with the next packet. It returns io.EOF at the end
	// of a file and ErrClosed after Close on a live source.
	ReadPacket(p *Packet) error
	Stats() (Stats, error)
	Close() error
}

// ErrClosed is returned by ReadPacket on a source that was closed.
var ErrClosed = errors.New("capture: source closed")
