package bpf

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// A test corpus of network-layer packets, framed for each link type.

type l3 struct {
	name      string
	etherType uint16
	data      []byte // network-layer header onwards
	src, dst  net.HardwareAddr
	vlans     []uint32 // TPID<<16 | TCI, outermost first (Ethernet only)
	capLen    int      // >0: capture truncated to this many bytes of the frame
}

type frame struct {
	name    string
	data    []byte
	wireLen int
}

var (
	macA  = net.HardwareAddr{0x00, 0x11, 0x22, 0x33, 0x44, 0x55}
	macB  = net.HardwareAddr{0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb}
	macBC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func ip4(src, dst string, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, Id: 1,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ip6(src, dst string, nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: nh,
		SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// mqttConnect is the start of an MQTT CONNECT packet.
var mqttConnect = []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x04, 't', 'e', 's', 't'}

func tcpBytes(t testing.TB, sport, dport uint16, syn, ack, fin bool, payload []byte) []byte {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1, Window: 1000,
		SYN: syn, ACK: ack, FIN: fin, DataOffset: 5}
	return serialize(t, tcp, gopacket.Payload(payload))
}

func udpBytes(t testing.TB, sport, dport uint16, payload []byte) []byte {
	return serialize(t, &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, gopacket.Payload(payload))
}

func v4(t testing.TB, name, src, dst string, proto layers.IPProtocol, l4 []byte) l3 {
	return l3{name: name, etherType: 0x0800, data: serialize(t, ip4(src, dst, proto), gopacket.Payload(l4))}
}

func v6(t testing.TB, name, src, dst string, nh layers.IPProtocol, l4 []byte) l3 {
	return l3{name: name, etherType: 0x86dd, data: serialize(t, ip6(src, dst, nh), gopacket.Payload(l4))}
}

// corpus returns a varied set of packets (without link layer).
func corpus(t testing.TB) []l3 {
	var c []l3
	add := func(p l3) { c = append(c, p) }
	big := bytes.Repeat([]byte{0xab}, 1200)

	add(v4(t, "v4 tcp syn 10.0.0.1:50000>10.0.0.2:1883", "10.0.0.1", "10.0.0.2", 6, tcpBytes(t, 50000, 1883, true, false, false, nil)))
	add(v4(t, "v4 tcp synack 10.0.0.2:1883>10.0.0.1:50000", "10.0.0.2", "10.0.0.1", 6, tcpBytes(t, 1883, 50000, true, true, false, nil)))
	add(v4(t, "v4 tcp mqtt connect", "10.0.0.1", "10.0.0.2", 6, tcpBytes(t, 50000, 1883, false, true, false, mqttConnect)))
	add(v4(t, "v4 tcp fin 192.168.1.5:8883", "192.168.1.5", "10.0.0.2", 6, tcpBytes(t, 40000, 8883, false, true, true, nil)))
	add(v4(t, "v4 tcp big 172.16.0.9:1500>10.0.0.7:80", "172.16.0.9", "10.0.0.7", 6, tcpBytes(t, 1500, 80, false, true, false, big)))
	add(v4(t, "v4 udp dns", "10.0.0.3", "8.8.8.8", 17, udpBytes(t, 33333, 53, []byte("query"))))
	add(v4(t, "v4 udp 1883", "192.168.1.5", "192.168.1.6", 17, udpBytes(t, 1883, 9000, []byte("x"))))
	add(v4(t, "v4 icmp echo", "10.0.0.1", "10.0.0.9", 1, []byte{8, 0, 0, 0, 0, 1, 0, 1}))
	add(v4(t, "v4 icmp reply", "10.0.0.9", "10.0.0.1", 1, []byte{0, 0, 0, 0, 0, 1, 0, 1}))
	add(v4(t, "v4 igmp", "10.0.0.5", "224.0.0.1", 2, []byte{0x11, 0x64, 0, 0, 0, 0, 0, 0}))
	// SCTP common header: ports 1883 -> 5000.
	add(v4(t, "v4 sctp 1883", "10.0.0.1", "10.0.0.2", 132, []byte{0x07, 0x5b, 0x13, 0x88, 0, 0, 0, 1, 0, 0, 0, 0}))
	// IPv4 with options (IHL 6): ports must be found after the options.
	{
		ip := ip4("10.0.0.1", "10.0.0.2", 6)
		ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
		add(l3{name: "v4 options tcp 1883", etherType: 0x0800, data: serialize(t, ip, gopacket.Payload(tcpBytes(t, 50001, 1883, false, true, false, nil)))})
	}
	// Fragments: first fragment of UDP 1883, and a later fragment whose
	// payload looks like port 1883 (must not match port filters).
	{
		ip := ip4("10.0.0.1", "10.0.0.2", 17)
		ip.Flags = layers.IPv4MoreFragments
		add(l3{name: "v4 first fragment udp 1883", etherType: 0x0800, data: serialize(t, ip, gopacket.Payload(udpBytes(t, 1883, 1883, bytes.Repeat([]byte{1}, 32))))})
		ip2 := ip4("10.0.0.1", "10.0.0.2", 17)
		ip2.FragOffset = 5
		add(l3{name: "v4 later fragment", etherType: 0x0800, data: serialize(t, ip2, gopacket.Payload([]byte{0x07, 0x5b, 0x07, 0x5b, 0x12, 0x12, 0, 0}))})
	}
	add(v6(t, "v6 tcp syn 1883", "2001:db8::1", "2001:db8::2", 6, tcpBytes(t, 50000, 1883, true, false, false, nil)))
	add(v6(t, "v6 tcp mqtt connect", "2001:db8::1", "2001:db8::2", 6, tcpBytes(t, 50000, 1883, false, true, false, mqttConnect)))
	add(v6(t, "v6 udp 53", "2001:db8:0:1::5", "2001:db8::53", 17, udpBytes(t, 40000, 53, []byte("q"))))
	add(v6(t, "v6 udp 8883 fe80", "fe80::1", "fe80::2", 17, udpBytes(t, 8883, 8883, []byte("q"))))
	add(v6(t, "v6 icmp6 echo", "2001:db8::1", "2001:db8::2", 58, []byte{128, 0, 0, 0, 0, 1, 0, 1}))
	add(v6(t, "v6 icmp6 ns", "fe80::1", "ff02::1:ff00:2", 58, []byte{135, 0, 0, 0, 0, 0, 0, 0}))
	// IPv6 fragment header then TCP: "ip6 proto 6" matches, "port" does not.
	add(v6(t, "v6 frag tcp 1883", "2001:db8::1", "2001:db8::2", 44,
		append([]byte{6, 0, 0, 1, 0, 0, 0, 7}, tcpBytes(t, 50000, 1883, true, false, false, nil)...)))
	// IPv6 hop-by-hop then UDP 1883.
	add(v6(t, "v6 hbh udp 1883", "2001:db8::1", "2001:db8::2", 0,
		append([]byte{17, 0, 1, 4, 0, 0, 0, 0}, udpBytes(t, 1883, 1883, nil)...)))
	// ARP request and reply.
	arp := func(name string, op uint16, sha net.HardwareAddr, spa string, tpa string) l3 {
		a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: op, SourceHwAddress: sha, SourceProtAddress: net.ParseIP(spa).To4(),
			DstHwAddress: make([]byte, 6), DstProtAddress: net.ParseIP(tpa).To4()}
		return l3{name: name, etherType: 0x0806, data: serialize(t, a)}
	}
	add(arp("arp who-has 10.0.0.2 tell 10.0.0.1", 1, macA, "10.0.0.1", "10.0.0.2"))
	add(arp("arp reply 10.0.0.9", 2, macB, "10.0.0.9", "10.0.0.1"))
	// Non-IP Ethernet type (LLDP).
	add(l3{name: "lldp", etherType: 0x88cc, data: []byte{0x02, 0x07, 0x04, 0, 0x11, 0x22, 0x33, 0x44, 0x55}})
	// Truncated capture: headers of a big TCP packet only.
	{
		p := v4(t, "v4 tcp truncated 1883", "10.0.0.1", "10.0.0.2", 6, tcpBytes(t, 50000, 1883, false, true, false, big))
		p.capLen = 14 + 20 + 20
		add(p)
	}
	{
		p := v4(t, "v4 tcp truncated in ip header", "10.0.0.4", "10.0.0.2", 6, tcpBytes(t, 50000, 1883, false, true, false, nil))
		p.capLen = 14 + 10
		add(p)
	}
	// Packets seen with different MACs.
	for i := range c {
		c[i].src, c[i].dst = macA, macB
		if i%3 == 1 {
			c[i].src, c[i].dst = macB, macA
		}
	}
	c[len(c)-5].dst = macBC // ARP request is broadcast
	// VLAN-tagged: 802.1Q 100; QinQ 802.1ad 200 over 802.1Q 100; 802.1Q 200 IPv6.
	tagged := func(p l3, name string, tags ...uint32) l3 {
		p.name, p.vlans = name, tags
		return p
	}
	add(tagged(c[0], "vlan100 v4 tcp 1883", 0x81000000|100))
	add(tagged(c[5], "vlan100 v4 udp dns", 0x81000000|0x2000|100))
	add(tagged(c[6], "qinq 200/100 v4 udp 1883", 0x88a80000|200, 0x81000000|100))
	add(tagged(c[16], "vlan200 v6 udp 53", 0x81000000|200))
	add(tagged(c[22], "vlan300 arp", 0x81000000|300))
	add(tagged(c[2], "vlan 9100/5 mqtt", 0x91000000|5))
	return c
}

// frames frames the corpus for a link type; packets that cannot be carried
// on it are left out.
func frames(t testing.TB, lt LinkType) []frame {
	var out []frame
	for _, p := range corpus(t) {
		var hdr []byte
		switch lt {
		case LinkTypeEthernet:
			hdr = append(append([]byte{}, p.dst...), p.src...)
			for _, v := range p.vlans {
				hdr = binary.BigEndian.AppendUint32(hdr, v)
			}
			hdr = binary.BigEndian.AppendUint16(hdr, p.etherType)
		case LinkTypeLinuxSLL, LinkTypeLinuxSLL2:
			if len(p.vlans) > 0 {
				continue
			}
			if lt == LinkTypeLinuxSLL {
				hdr = []byte{0, 0, 0, 1, 0, 6}
				hdr = append(hdr, p.src...)
				hdr = append(hdr, 0, 0)
				hdr = binary.BigEndian.AppendUint16(hdr, p.etherType)
			} else {
				hdr = binary.BigEndian.AppendUint16(nil, p.etherType)
				hdr = append(hdr, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6)
				hdr = append(hdr, p.src...)
				hdr = append(hdr, 0, 0)
			}
		case LinkTypeNull, LinkTypeLoop:
			if len(p.vlans) > 0 || (p.etherType != 0x0800 && p.etherType != 0x86dd) {
				continue
			}
			af := uint32(2)
			if p.etherType == 0x86dd {
				af = []uint32{24, 28, 30, 10}[len(out)%4] // 10 is Linux's AF_INET6: libpcap ignores it
			}
			if lt == LinkTypeNull {
				hdr = binary.LittleEndian.AppendUint32(nil, af)
			} else {
				hdr = binary.BigEndian.AppendUint32(nil, af)
			}
		case LinkTypeRaw, LinkTypeRawDLT12:
			if len(p.vlans) > 0 || (p.etherType != 0x0800 && p.etherType != 0x86dd) {
				continue
			}
		case LinkTypeIPv4, LinkTypeIPv6:
			want := uint16(0x0800)
			if lt == LinkTypeIPv6 {
				want = 0x86dd
			}
			if len(p.vlans) > 0 || p.etherType != want {
				continue
			}
		default:
			t.Fatalf("no framing for %v", lt)
		}
		data := append(hdr, p.data...)
		wire := len(data)
		if p.capLen > 0 {
			// capLen counts an untagged Ethernet header; keep the same
			// network-layer bytes on every link type.
			n := p.capLen - 14 + len(hdr)
			data = data[:n]
		}
		out = append(out, frame{name: p.name, data: data, wireLen: wire})
	}
	return out
}

// writePcap writes frames with pcapgo. gopacket's LinkType is a uint8, so
// the link type field is patched for values above 255 (SLL2).
func writePcap(t testing.TB, lt LinkType, fs []frame) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if err := w.WriteFileHeader(65536, layers.LinkType(lt&0xff)); err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1700000000, 0)
	for i, f := range fs {
		ci := gopacket.CaptureInfo{Timestamp: ts.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(f.data), Length: f.wireLen}
		if err := w.WritePacket(ci, f.data); err != nil {
			t.Fatal(err)
		}
	}
	b := buf.Bytes()
	binary.LittleEndian.PutUint32(b[20:24], uint32(lt))
	return b
}
