package bpf

import (
	"net/netip"
	"strings"
)

// ipProtoNames are the protocol names accepted after "proto" when escaped
// with a backslash (\tcp), and the link-layer names after "ether proto".
var ipProtoNames = map[string]uint32{
	"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "ipv6": 41, "gre": 47, "esp": 50, "ah": 51,
	"icmp6": 58, "sctp": 132,
}

var etherProtoNames = map[string]uint32{
	"ip": 0x0800, "arp": 0x0806, "rarp": 0x8035, "ip6": 0x86dd,
}

// parseID parses one id (address, number, network, port range, MAC) and
// builds the primitive for qualifiers q, following libpcap's gen_ncode,
// gen_mcode, gen_mcode6, gen_ecode and gen_scode.
func (p *parser) parseID(q quals) (node, error) {
	t := p.next()
	if t.kind == tkName {
		return p.namedID(q, t)
	}
	if t.kind != tkWord || isKeyword(t.text) {
		return nil, p.errf(t, "expected an address, number or name")
	}
	w := t.text
	switch {
	case q.addr == qaPortRange:
		return p.portRange(q, t)
	case q.addr == qaProto:
		v, ok := parseNumber(w)
		if !ok {
			return nil, unsupported(t, "protocol name")
		}
		return p.protoID(q, t, v)
	}
	if v, ok := parseNumber(w); ok {
		if p.peek().is("/") {
			return nil, p.errf(p.peek(), "a network with a mask length needs a dotted address (10.0.0.0/8)")
		}
		return p.numberID(q, t, v)
	}
	if v4, bits, ok := parseDotted(w); ok {
		return p.ipv4ID(q, t, v4, bits)
	}
	if a, err := netip.ParseAddr(w); err == nil && a.Is6() && a.Zone() == "" {
		return p.ipv6ID(q, t, a)
	}
	if mac, ok := parseMAC(w); ok {
		if q.proto != qpLink || (q.addr != qaHost && q.addr != qaDefault) {
			return nil, errAt(ErrInvalid, t, "ethernet address used in non-ether expression")
		}
		return etherHostNode{dir: q.dir, mac: mac, tok: t}, nil
	}
	if q.addr == qaPort {
		return nil, unsupported(t, "service name")
	}
	return nil, unsupported(t, "host name")
}

// namedID handles a backslash-escaped name: only protocol names after proto.
func (p *parser) namedID(q quals, t token) (node, error) {
	if q.addr != qaProto {
		return nil, unsupported(t, "name")
	}
	if q.proto == qpLink {
		v, ok := etherProtoNames[t.text]
		if !ok {
			return nil, unsupported(t, "link-layer protocol name")
		}
		return p.protoID(q, t, v)
	}
	v, ok := ipProtoNames[t.text]
	if !ok {
		return nil, unsupported(t, "protocol name")
	}
	return p.protoID(q, t, v)
}

func (p *parser) protoID(q quals, t token, v uint32) (node, error) {
	switch q.proto {
	case qpLink:
		if v <= 1500 {
			return nil, errAt(ErrUnsupported, t,
				"ether proto %d is an 802.3 length/LLC SAP value, which needs libpcap; use an Ethernet type above 1500 (such as 0x0800) or a supported primitive", v)
		}
		if v > 0xffff {
			return nil, errAt(ErrInvalid, t, "ethernet type %d greater than 65535", v)
		}
		return linkProtoNode{etherType: v, shift: p.shift, tok: t}, nil
	case qpDefault, qpIP, qpIP6:
		if v > 255 {
			return nil, errAt(ErrInvalid, t, "IP protocol number %d greater than 255", v)
		}
		return ipProtoNode{v4: q.proto != qpIP6, v6: q.proto != qpIP, proto: v, shift: p.shift}, nil
	}
	return nil, errAt(ErrInvalid, t, "'%s proto' is not valid", q.proto)
}

func (p *parser) numberID(q quals, t token, v uint32) (node, error) {
	switch q.addr {
	case qaPort:
		switch q.proto {
		case qpDefault, qpTCP, qpUDP, qpSCTP:
		default:
			return nil, errAt(ErrInvalid, t, "illegal qualifier of 'port': %s", q.proto)
		}
		if v > 65535 {
			return nil, errAt(ErrInvalid, t, "illegal port number %d > 65535", v)
		}
		return portNode{proto: transportProto(q.proto), dir: q.dir, lo: v, hi: v, shift: p.shift}, nil
	case qaNet:
		// libpcap promotes a short net number: "net 10" is 10.0.0.0/8.
		mask := uint32(0xffffffff)
		for v != 0 && v&0xff000000 == 0 {
			v <<= 8
			mask <<= 8
		}
		return p.host4(q, t, v, mask)
	}
	return p.host4(q, t, v, 0xffffffff)
}

func transportProto(q qualProto) uint32 {
	switch q {
	case qpTCP:
		return 6
	case qpUDP:
		return 17
	case qpSCTP:
		return 132
	}
	return 0
}

func (p *parser) portRange(q quals, t token) (node, error) {
	switch q.proto {
	case qpDefault, qpTCP, qpUDP, qpSCTP:
	default:
		return nil, errAt(ErrInvalid, t, "illegal qualifier of 'portrange': %s", q.proto)
	}
	lo, hi, found := strings.Cut(t.text, "-")
	a, okA := parseNumber(lo)
	b, okB := parseNumber(hi)
	if !found || !okA || !okB {
		if _, isNum := parseNumber(t.text); isNum {
			return nil, p.errf(t, "port range must be N-M")
		}
		return nil, unsupported(t, "service name")
	}
	if a > 65535 || b > 65535 {
		return nil, errAt(ErrInvalid, t, "illegal port number > 65535 in %q", t.text)
	}
	if a > b {
		a, b = b, a
	}
	return portNode{proto: transportProto(q.proto), dir: q.dir, lo: a, hi: b, shift: p.shift}, nil
}

// parseDotted parses a 2-4 part dotted IPv4 address; bits is 8 per part.
func parseDotted(w string) (uint32, int, bool) {
	parts := strings.Split(w, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return 0, 0, false
	}
	var v uint32
	for _, s := range parts {
		if s == "" || len(s) > 3 {
			return 0, 0, false
		}
		n := uint32(0)
		for i := 0; i < len(s); i++ {
			if s[i] < '0' || s[i] > '9' {
				return 0, 0, false
			}
			n = n*10 + uint32(s[i]-'0')
		}
		if n > 255 {
			return 0, 0, false
		}
		v = v<<8 | n
	}
	return v, 8 * len(parts), true
}

func (p *parser) ipv4ID(q quals, t token, v uint32, bits int) (node, error) {
	v <<= 32 - bits
	mask := uint32(0xffffffff) << (32 - bits)
	switch nt := p.peek(); {
	case nt.is("/"):
		p.next()
		lt := p.next()
		n, ok := parseNumber(lt.text)
		if lt.kind != tkWord || !ok {
			return nil, p.errf(lt, "expected a mask length")
		}
		if n > 32 {
			return nil, errAt(ErrInvalid, lt, "mask length must be <= 32")
		}
		mask = 0
		if n > 0 {
			mask = 0xffffffff << (32 - n)
		}
		return p.maskedNet(q, t, v, mask)
	case nt.is("mask"):
		p.next()
		mt := p.next()
		m, mbits, ok := parseDotted(mt.text)
		if mt.kind != tkWord || !ok {
			return nil, p.errf(mt, "expected a dotted netmask")
		}
		return p.maskedNet(q, t, v, m<<(32-mbits))
	}
	return p.host4(q, t, v, mask)
}

func (p *parser) maskedNet(q quals, t token, v, mask uint32) (node, error) {
	if v&^mask != 0 {
		return nil, errAt(ErrInvalid, t, "non-network bits set in %q", t.text)
	}
	if q.addr != qaNet {
		return nil, errAt(ErrInvalid, t, "mask syntax for networks only")
	}
	return p.host4(q, t, v, mask)
}

func (p *parser) host4(q quals, t token, v, mask uint32) (node, error) {
	switch q.addr {
	case qaDefault, qaHost, qaNet:
	default:
		return nil, errAt(ErrInvalid, t, "an address is not valid here")
	}
	switch q.proto {
	case qpDefault, qpIP, qpARP, qpRARP:
		return host4Node{proto: q.proto, dir: q.dir, addr: v, mask: mask, shift: p.shift}, nil
	case qpLink:
		return nil, errAt(ErrInvalid, t, "illegal link layer address")
	}
	return nil, errAt(ErrInvalid, t, "'%s' modifier applied to host", q.proto)
}

func (p *parser) ipv6ID(q quals, t token, a netip.Addr) (node, error) {
	bits := 128
	if p.peek().is("/") {
		p.next()
		lt := p.next()
		n, ok := parseNumber(lt.text)
		if lt.kind != tkWord || !ok {
			return nil, p.errf(lt, "expected a mask length")
		}
		if n > 128 {
			return nil, errAt(ErrInvalid, lt, "mask length must be <= 128")
		}
		bits = int(n)
	}
	pfx, err := a.Prefix(bits)
	if err != nil || pfx.Addr() != a {
		return nil, errAt(ErrInvalid, t, "non-network bits set in \"%s/%d\"", t.text, bits)
	}
	switch q.addr {
	case qaDefault, qaHost:
		if bits != 128 {
			return nil, errAt(ErrInvalid, t, "mask syntax for networks only")
		}
	case qaNet:
	default:
		return nil, errAt(ErrInvalid, t, "an address is not valid here")
	}
	switch q.proto {
	case qpDefault, qpIP6:
	case qpLink:
		return nil, errAt(ErrInvalid, t, "link-layer modifier applied to ip6 host")
	default:
		return nil, errAt(ErrInvalid, t, "'%s' modifier applied to ip6 host", q.proto)
	}
	n := host6Node{dir: q.dir, addr: a.As16(), shift: p.shift}
	for i := 0; i < bits; i++ {
		n.mask[i/8] |= 0x80 >> (i % 8)
	}
	return n, nil
}
