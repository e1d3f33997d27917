// Package bpf compiles tcpdump filter expressions (pcap-filter(7) syntax) to
// classic BPF without cgo or libpcap, and runs them in user space.
//
//	prog, err := bpf.Compile("tcp port 1883 and not host 10.0.0.1", bpf.LinkTypeEthernet, 0)
//	handle.SetBPF(prog.Raw())         // live: the kernel filters (pcapgo.EthernetHandle)
//	ok := prog.MatchLen(data, ci.Length) // files: the same program in user space
//
// The generated code follows libpcap's gencode.c, and a differential test
// checks it against tcpdump on every supported link type, so a filter selects
// the same packets here, in the kernel and in tcpdump.
//
// # Link types
//
// Ethernet (1), Linux cooked capture SLL (113) and SLL2 (276), BSD loopback
// NULL (0) and LOOP (108), raw IP (101, and DLT_RAW 12 and 14), raw IPv4
// (228) and raw IPv6 (229). A live AF_PACKET socket on Linux sees the
// interface's link layer: Ethernet on lo, veth and Ethernet NICs.
//
// # Grammar
//
//	expr      = term { ("and" | "&&" | "or" | "||") (term | id) }
//	term      = ("not" | "!") term | "(" expr ")" | primitive | relation
//	primitive = [proto] [dir] [type] id-or-list
//	          | proto                          ip ip6 arp rarp tcp udp sctp icmp icmp6 igmp
//	          | ["ip" | "ip6"] "proto" (N | \name)
//	          | ("ether" | "link") "proto" (N | \ip | \ip6 | \arp | \rarp)   N > 1500
//	          | ("ether" | "link") ["host" | "src" | "dst"] MAC
//	          | "vlan" [id] | "less" N | "greater" N
//	proto     = ether link ip ip6 arp rarp tcp udp sctp icmp icmp6 igmp
//	dir       = src | dst | src or dst | src and dst
//	type      = host | net | port | portrange
//	id        = IPv4 (a.b.c.d, or a.b / a.b.c prefixes) | IPv6 | number
//	          | net/len | net mask a.b.c.d | N-M (portrange) | MAC
//	id-list   = id | "(" id-list { ("and" | "or") id-list } ")"
//	relation  = arith ("=" | "==" | "!=" | ">" | ">=" | "<" | "<=") arith
//	arith     = number | len | named constant | proto "[" arith [":" 1|2|4] "]"
//	          | arith (+ - * / % & | ^ << >>) arith | "-" arith | "(" arith ")"
//
// As in libpcap, "and" and "or" have the same precedence and associate to the
// left ("a or b and c" is "(a or b) and c"); "not" binds tighter. A bare id
// after "and"/"or" inherits the qualifiers of the previous primitive
// ("host a or b", "tcp port 1883 or 8883", "host a and not b"). Numbers are
// decimal, 0x hexadecimal or 0-prefixed octal. Named constants: tcpflags,
// tcp-fin, tcp-syn, tcp-rst, tcp-push, tcp-ack, tcp-urg, tcp-ece, tcp-cwr,
// icmptype, icmpcode, icmp-echo, icmp-echoreply, ... icmp6type, icmp6code,
// icmp6-echo, icmp6-echoreply, ... . Protocol names after "proto" need a
// backslash, as in tcpdump (ip proto \tcp).
//
// # Semantics (those of libpcap)
//
//   - host/net without a protocol match IPv4, ARP and RARP addresses; an IPv6
//     address matches IPv6 only. net requires the host bits to be zero.
//   - port/portrange match TCP, UDP and SCTP over IPv4 and IPv6. For IPv4 the
//     ports are read after the variable-length header and only in the first
//     fragment (fragment offset 0). For IPv6 only the fixed header's next
//     header is examined: ports behind extension headers (hop-by-hop,
//     fragment, ...) do not match.
//   - tcp, udp, sctp, icmp6 and "ip6 proto N" also accept N behind an IPv6
//     fragment header that directly follows the fixed header.
//   - tcp[...], udp[...], sctp[...], icmp[...], igmp[...] are relative to the
//     end of the IPv4 header and are false for non-first fragments; icmp6[...]
//     is relative to the end of the fixed IPv6 header. A comparison is false
//     when its protocol does not match ("tcp[13] != 0" is false for UDP).
//   - vlan checks the TPIDs 0x8100, 0x88a8 and 0x9100 and moves every later
//     link-layer-payload offset in the expression by 4 bytes, in source order,
//     even across "or" ("vlan or ip" tests ip inside the tag), like libpcap.
//   - len, less and greater use the original packet length (MatchLen's
//     wireLen; the kernel uses the full skb length).
//   - A load past the captured bytes rejects the packet, as in the kernel.
//
// # Differences from libpcap
//
//   - Rejected with ErrUnsupported, naming the token: host and service names
//     (no DNS or /etc/services lookups; use addresses and port numbers),
//     gateway, decnet, atalk, ipx, iso, stp, netbeui, broadcast, multicast,
//     protochain, inbound/outbound, mpls, pppoe, geneve, 802.11 and pflog
//     keywords, llc and "ether proto N" with N <= 1500 (802.3 length field).
//   - vlan and ether host/src/dst exist on Ethernet only (ErrLinkType
//     otherwise), as in libpcap. For live capture, libpcap also checks the
//     VLAN tag the Linux kernel strips into packet metadata (SKF_AD_VLAN_TAG);
//     this package does not, so with VLAN offload "vlan" sees only tags still
//     in the frame, which is also what pcapgo.EthernetHandle returns.
//   - NULL (0) headers hold the AF_ value in the byte order of the machine
//     that wrote the file; both byte orders are accepted.
//   - A filter that can never match (arp on raw IP) compiles to a program
//     rejecting everything; tcpdump refuses it ("expression rejects all
//     packets").
//   - "proto N" with N > 255 is rejected (libpcap accepts it and never
//     matches).
//   - The code is not optimized like libpcap's (no global optimizer; only the
//     accumulator and X register are reused between tests), so programs are
//     longer; programs over MaxInstructions (4096) fail with ErrTooLong.
//     Conditional jumps farther than 255 instructions go through "ja"
//     trampolines.
package bpf
