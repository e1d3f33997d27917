package bpf

import (
	"fmt"
	"strings"

	netbpf "golang.org/x/net/bpf"
)

// DefaultSnaplen is the value a matching program returns when Compile is
// given a snaplen <= 0 (tcpdump's default).
const DefaultSnaplen = 262144

// Program is a compiled filter. The same instructions run in the kernel
// (Raw, for SO_ATTACH_FILTER) and in user space (Match), so live capture and
// file replay select the same packets. A Program is immutable and safe for
// concurrent use.
type Program struct {
	expr     string
	linkType LinkType
	snaplen  uint32
	raw      []netbpf.RawInstruction
}

// Compile translates a tcpdump (pcap-filter) expression for packets of the
// given link type. An empty expression matches every packet. A matching
// packet makes the program return snaplen (DefaultSnaplen if snaplen <= 0).
// Errors are *Error values; use errors.Is with ErrSyntax, ErrUnsupported,
// ErrInvalid, ErrLinkType or ErrTooLong.
func Compile(expr string, linkType LinkType, snaplen int) (*Program, error) {
	l, err := linkLayerFor(linkType)
	if err != nil {
		err.(*Error).Expr = expr
		return nil, err
	}
	sl := uint32(DefaultSnaplen)
	if snaplen > 0 && uint64(snaplen) <= 0xffffffff {
		sl = uint32(snaplen)
	}
	tree, err := parse(expr)
	if err != nil {
		return nil, err
	}
	var p pred = pConst(true)
	if tree != nil {
		c := &lowerer{l: l}
		if p, err = c.node(tree); err != nil {
			return nil, withExpr(err, expr)
		}
	}
	raw, err := generate(p, sl)
	if err != nil {
		return nil, withExpr(err, expr)
	}
	prog := &Program{expr: expr, linkType: linkType, snaplen: sl, raw: raw}
	if _, err := netbpf.NewVM(prog.Instructions()); err != nil {
		// A bug in this package, not in the expression.
		return nil, &Error{Kind: ErrInvalid, Expr: expr, Pos: -1, Detail: fmt.Sprintf("internal: generated program is invalid: %v", err)}
	}
	return prog, nil
}

func withExpr(err error, expr string) error {
	if e, ok := err.(*Error); ok {
		e.Expr = expr
	}
	return err
}

// Raw returns the program for the kernel (pcapgo.EthernetHandle.SetBPF,
// SO_ATTACH_FILTER). The caller may modify the returned slice.
func (p *Program) Raw() []netbpf.RawInstruction {
	return append([]netbpf.RawInstruction(nil), p.raw...)
}

// Instructions returns the program as x/net/bpf instructions (for
// bpf.NewVM or for printing).
func (p *Program) Instructions() []netbpf.Instruction {
	out := make([]netbpf.Instruction, len(p.raw))
	for i, r := range p.raw {
		out[i] = r.Disassemble()
	}
	return out
}

// Len is the number of instructions.
func (p *Program) Len() int { return len(p.raw) }

// Expr is the expression the program was compiled from.
func (p *Program) Expr() string { return p.expr }

// LinkType is the link type the program was compiled for.
func (p *Program) LinkType() LinkType { return p.linkType }

// Match reports whether the filter accepts a packet whose captured bytes are
// pkt, starting with the link-layer header. The packet is taken to be
// complete (len and less/greater use len(pkt)); for truncated captures use
// MatchLen. Match does not allocate.
func (p *Program) Match(pkt []byte) bool {
	return run(p.raw, pkt, uint32(len(pkt))) != 0
}

// MatchLen is Match for a capture truncated to pkt; wireLen is the original
// packet length (gopacket CaptureInfo.Length), which "len", less and greater
// use, as libpcap does for files.
func (p *Program) MatchLen(pkt []byte, wireLen int) bool {
	if wireLen < len(pkt) {
		wireLen = len(pkt)
	}
	return run(p.raw, pkt, uint32(wireLen)) != 0
}

// String lists the program one instruction per line, like tcpdump -d.
func (p *Program) String() string {
	var b strings.Builder
	for i, in := range p.Instructions() {
		fmt.Fprintf(&b, "(%03d) %v\n", i, in)
	}
	return b.String()
}
