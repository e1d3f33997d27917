package bpf

// The parser produces this tree; codegen.go lowers it for a link type.

// qualProto is a protocol qualifier (pcap-filter "proto" qualifier).
type qualProto int

const (
	qpDefault qualProto = iota
	qpLink              // ether, link
	qpIP
	qpIP6
	qpARP
	qpRARP
	qpTCP
	qpUDP
	qpSCTP
	qpICMP
	qpICMP6
	qpIGMP
)

var qualProtoNames = map[string]qualProto{
	"ether": qpLink, "link": qpLink, "ip": qpIP, "ip6": qpIP6, "arp": qpARP, "rarp": qpRARP,
	"tcp": qpTCP, "udp": qpUDP, "sctp": qpSCTP, "icmp": qpICMP, "icmp6": qpICMP6, "igmp": qpIGMP,
}

func (q qualProto) String() string {
	for k, v := range qualProtoNames {
		if v == q && k != "link" {
			return k
		}
	}
	return "default"
}

// qualDir is a direction qualifier.
type qualDir int

const (
	qdDefault qualDir = iota // src or dst
	qdSrc
	qdDst
	qdOr
	qdAnd
)

// qualAddr is a type qualifier.
type qualAddr int

const (
	qaDefault qualAddr = iota // host
	qaHost
	qaNet
	qaPort
	qaPortRange
	qaProto
)

// quals are the qualifiers in effect for an id; a bare id after and/or
// inherits the qualifiers of the previous primitive (valid=false when that
// previous term was not a qualified primitive, e.g. "tcp" or "len > 1").
type quals struct {
	proto qualProto
	dir   qualDir
	addr  qualAddr
	valid bool
}

type node interface{ isNode() }

type andNode struct{ l, r node }
type orNode struct{ l, r node }
type notNode struct{ x node }

// protoNode is a protocol abbreviation: ip, ip6, arp, rarp, tcp, udp, sctp,
// icmp, icmp6, igmp.
type protoNode struct {
	proto qualProto
	shift int
	tok   token
}

// linkProtoNode is "ether proto N": the link-layer protocol type.
type linkProtoNode struct {
	etherType uint32
	shift     int
	tok       token
}

// ipProtoNode is "[ip|ip6] proto N".
type ipProtoNode struct {
	v4, v6 bool
	proto  uint32
	shift  int
}

// host4Node is an IPv4 host or net.
type host4Node struct {
	proto      qualProto // qpDefault (ip, arp, rarp), qpIP, qpARP or qpRARP
	dir        qualDir
	addr, mask uint32
	shift      int
}

// host6Node is an IPv6 host or net.
type host6Node struct {
	dir        qualDir
	addr, mask [16]byte
	shift      int
}

// etherHostNode is "ether host|src|dst MAC".
type etherHostNode struct {
	dir qualDir
	mac [6]byte
	tok token
}

// portNode is port or portrange; proto is 0 for tcp, udp and sctp.
type portNode struct {
	proto  uint32
	dir    qualDir
	lo, hi uint32
	shift  int
}

// vlanNode is "vlan [id]"; shift is the VLAN offset before this keyword.
type vlanNode struct {
	id    uint32
	hasID bool
	shift int
	tok   token
}

// relNode is an arithmetic comparison, also used for less and greater.
type relNode struct {
	op   string // = != > >= < <=
	l, r arith
}

func (andNode) isNode()       {}
func (orNode) isNode()        {}
func (notNode) isNode()       {}
func (protoNode) isNode()     {}
func (linkProtoNode) isNode() {}
func (ipProtoNode) isNode()   {}
func (host4Node) isNode()     {}
func (host6Node) isNode()     {}
func (etherHostNode) isNode() {}
func (portNode) isNode()      {}
func (vlanNode) isNode()      {}
func (relNode) isNode()       {}

// arith is an arithmetic expression in a comparison.
type arith interface{ isArith() }

type numArith struct{ v uint32 }
type lenArith struct{}

// loadArith is proto[idx:size].
type loadArith struct {
	proto qualProto
	idx   arith
	size  int
	shift int
}

type binArith struct {
	op   string // + - * / % & | ^ << >>
	l, r arith
}

type negArith struct{ x arith }

func (numArith) isArith()  {}
func (lenArith) isArith()  {}
func (loadArith) isArith() {}
func (binArith) isArith()  {}
func (negArith) isArith()  {}
