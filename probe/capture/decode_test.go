package capture

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/stretchr/testify/require"
)

// frame serialises layers with gopacket, an encoder independent of ours.
func frame(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	require.NoError(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...))
	return append([]byte(nil), buf.Bytes()...)
}

func tcpLayer(sport, dport uint16, payload string) (*layers.TCP, gopacket.Payload) {
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, Ack: 2000, PSH: true, ACK: true, Window: 512}
	return tcp, gopacket.Payload(payload)
}

func ipv4(src, dst string) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
}

func ipv6(src, dst string) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst)}
}

// ethHeader is a bare Ethernet II header (gopacket pads a lone header to 60 bytes).
func ethHeader(typ layers.EthernetType) []byte {
	h := append(append([]byte(nil), macB...), macA...)
	return binary.BigEndian.AppendUint16(h, uint16(typ))
}

var (
	macA = net.HardwareAddr{0, 1, 2, 3, 4, 5}
	macB = net.HardwareAddr{0, 1, 2, 3, 4, 6}
)

func TestDecodeTCPLinkTypes(t *testing.T) {
	v4 := func() []byte {
		ip := ipv4("10.0.0.1", "10.0.0.2")
		tcp, pl := tcpLayer(40000, 1883, "\x30\x05\x00\x01ab")
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
		return frame(t, ip, tcp, pl)
	}()
	v6 := func() []byte {
		ip := ipv6("fd00::1", "fd00::2")
		tcp, pl := tcpLayer(40000, 1883, "\x30\x05\x00\x01ab")
		require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
		return frame(t, ip, tcp, pl)
	}()
	eth := func(typ layers.EthernetType, rest []byte) []byte { return append(ethHeader(typ), rest...) }
	vlan := func(typ layers.EthernetType, id uint16) []byte {
		b := make([]byte, 4)
		binary.BigEndian.PutUint16(b, id)
		binary.BigEndian.PutUint16(b[2:], uint16(typ))
		return b
	}
	sll := func(proto uint16, rest []byte) []byte {
		h := make([]byte, 16)
		binary.BigEndian.PutUint16(h[0:], 0) // to us
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		copy(h[6:], macA)
		binary.BigEndian.PutUint16(h[14:], proto)
		return append(h, rest...)
	}
	sll2 := func(proto uint16, rest []byte) []byte {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], proto)
		binary.BigEndian.PutUint32(h[4:], 2) // ifindex
		binary.BigEndian.PutUint16(h[8:], 1) // ARPHRD_ETHER
		h[11] = 6
		copy(h[12:], macA)
		return append(h, rest...)
	}
	null := func(family uint32, big bool, rest []byte) []byte {
		h := make([]byte, 4)
		if big {
			binary.BigEndian.PutUint32(h, family)
		} else {
			binary.LittleEndian.PutUint32(h, family)
		}
		return append(h, rest...)
	}
	qinq := append(eth(0x88a8, vlan(0x8100, 10)), append(vlan(layers.EthernetTypeIPv4, 20), v4...)...)

	for _, tc := range []struct {
		name  string
		lt    LinkType
		data  []byte
		v6    bool
		vlans uint8
	}{
		{"ethernet ipv4", LinkEthernet, eth(layers.EthernetTypeIPv4, v4), false, 0},
		{"ethernet ipv6", LinkEthernet, eth(layers.EthernetTypeIPv6, v6), true, 0},
		{"802.1Q", LinkEthernet, append(eth(layers.EthernetTypeDot1Q, vlan(layers.EthernetTypeIPv4, 7)), v4...), false, 1},
		{"QinQ", LinkEthernet, qinq, false, 2},
		{"sll ipv4", LinkLinuxSLL, sll(0x0800, v4), false, 0},
		{"sll2 ipv6", LinkLinuxSLL2, sll2(0x86dd, v6), true, 0},
		{"null ipv4", LinkNull, null(2, false, v4), false, 0},
		{"null ipv6 darwin", LinkNull, null(30, false, v6), true, 0},
		{"loop ipv6 linux", LinkLoop, null(10, true, v6), true, 0},
		{"raw ipv4", LinkRaw, v4, false, 0},
		{"raw ipv6", LinkRaw, v6, true, 0},
		{"ipv4 linktype", LinkIPv4, v4, false, 0},
		{"ipv6 linktype", LinkIPv6, v6, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seg Segment
			require.NoError(t, DecodeTCP(tc.lt, tc.data, &seg))
			require.Equal(t, uint16(40000), seg.SrcPort)
			require.Equal(t, uint16(1883), seg.DstPort)
			require.Equal(t, uint32(1000), seg.Seq)
			require.Equal(t, uint32(2000), seg.Ack)
			require.Equal(t, uint8(TCPPsh|TCPAck), seg.Flags)
			require.Equal(t, "\x30\x05\x00\x01ab", string(seg.Payload))
			require.Equal(t, tc.vlans, seg.VLANs)
			if tc.v6 {
				require.Equal(t, netip.MustParseAddr("fd00::1"), seg.Src)
				require.Equal(t, uint8(6), seg.IPVersion)
			} else {
				require.Equal(t, netip.MustParseAddr("10.0.0.1"), seg.Src)
				require.Equal(t, netip.MustParseAddr("10.0.0.2"), seg.Dst)
			}
		})
	}
}

func TestDecodeIPv6ExtensionHeaders(t *testing.T) {
	ip := ipv6("fd00::1", "fd00::2")
	ip.NextHeader = layers.IPProtocolIPv6HopByHop
	hop := &layers.IPv6HopByHop{}
	hop.NextHeader = layers.IPProtocolIPv6Destination
	hop.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	dst := &layers.IPv6Destination{}
	dst.NextHeader = layers.IPProtocolTCP
	dst.Options = []*layers.IPv6DestinationOption{{OptionType: 1, OptionLength: 4, OptionData: []byte{0, 0, 0, 0}}}
	tcp, pl := tcpLayer(1883, 5555, "\xd0\x00")
	require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
	data := frame(t, ip, hop, dst, tcp, pl)
	var seg Segment
	require.NoError(t, DecodeTCP(LinkRaw, data, &seg))
	require.Equal(t, "\xd0\x00", string(seg.Payload))
	require.Equal(t, uint16(5555), seg.DstPort)

	// A non-first fragment is not TCP we can use.
	ip = ipv6("fd00::1", "fd00::2")
	ip.NextHeader = layers.IPProtocolIPv6Fragment
	frag := []byte{6, 0, 0x00, 0x09, 0, 0, 0, 1} // next TCP, offset 1, M set
	data = append(frame(t, ip), frag...)
	binary.BigEndian.PutUint16(data[4:6], 8)
	require.ErrorIs(t, DecodeTCP(LinkRaw, data, &seg), ErrFragment)
}

func TestDecodeRejectsBadInput(t *testing.T) {
	ip := ipv4("10.0.0.1", "10.0.0.2")
	tcp, pl := tcpLayer(1, 2, "x")
	require.NoError(t, tcp.SetNetworkLayerForChecksum(ip))
	good := frame(t, ip, tcp, pl)
	var seg Segment

	udp := ipv4("10.0.0.1", "10.0.0.2")
	udp.Protocol = layers.IPProtocolUDP
	u := &layers.UDP{SrcPort: 1, DstPort: 2}
	require.NoError(t, u.SetNetworkLayerForChecksum(udp))
	require.ErrorIs(t, DecodeTCP(LinkRaw, frame(t, udp, u), &seg), ErrNotTCP)

	frag := append([]byte(nil), good...)
	frag[6] = 0x20 // MF
	require.ErrorIs(t, DecodeTCP(LinkRaw, frag, &seg), ErrFragment)

	badIHL := append([]byte(nil), good...)
	badIHL[0] = 0x44
	require.ErrorIs(t, DecodeTCP(LinkRaw, badIHL, &seg), ErrMalformed)

	badOff := append([]byte(nil), good...)
	badOff[20+12] = 0x20 // data offset 8 bytes
	require.ErrorIs(t, DecodeTCP(LinkRaw, badOff, &seg), ErrMalformed)

	for i := 0; i < len(good)-1; i++ {
		err := DecodeTCP(LinkRaw, good[:i], &seg)
		if i < 40 {
			require.ErrorIs(t, err, ErrTruncated, "cut at %d", i)
		}
	}
	// Snap length shorter than the IP total length: decoded, flagged.
	require.NoError(t, DecodeTCP(LinkRaw, good[:len(good)-1], &seg))
	require.True(t, seg.Truncated)
	require.Empty(t, seg.Payload)

	// Ethernet padding beyond the IP total length is not payload.
	padded := append(ethHeader(layers.EthernetTypeIPv4), good...)
	padded = append(padded, 0, 0, 0, 0, 0, 0)
	require.NoError(t, DecodeTCP(LinkEthernet, padded, &seg))
	require.Equal(t, "x", string(seg.Payload))

	require.ErrorIs(t, DecodeTCP(LinkType(147), good, &seg), ErrUnsupported)
	deep := ethHeader(layers.EthernetTypeDot1Q)
	for i := 0; i < 9; i++ {
		deep = append(deep, 0, 1, 0x81, 0x00)
	}
	require.ErrorIs(t, DecodeTCP(LinkEthernet, deep, &seg), ErrMalformed)
}

func FuzzDecodeTCP(f *testing.F) {
	ip := ipv4("10.0.0.1", "10.0.0.2")
	tcp, pl := tcpLayer(1, 1883, "\x30\x03\x00\x01a")
	_ = tcp.SetNetworkLayerForChecksum(ip)
	f.Add(uint16(LinkRaw), frame(f, ip, tcp, pl))
	f.Add(uint16(LinkEthernet), append(ethHeader(layers.EthernetTypeIPv4), frame(f, ip, tcp, pl)...))
	f.Fuzz(func(t *testing.T, lt uint16, data []byte) {
		var seg Segment
		if err := DecodeTCP(LinkType(lt), data, &seg); err == nil {
			// The payload is a sub-slice of the input.
			if len(seg.Payload) > len(data) {
				t.Fatalf("payload longer than packet")
			}
		}
	})
}

func BenchmarkDecodeTCPEthernetIPv4(b *testing.B) {
	ip := ipv4("10.0.0.1", "10.0.0.2")
	tcp, pl := tcpLayer(40000, 1883, string(make([]byte, 120)))
	_ = tcp.SetNetworkLayerForChecksum(ip)
	data := append(ethHeader(layers.EthernetTypeIPv4), frame(b, ip, tcp, pl)...)
	var seg Segment
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if err := DecodeTCP(LinkEthernet, data, &seg); err != nil {
			b.Fatal(err)
		}
	}
}
