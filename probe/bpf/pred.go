package bpf

import "fmt"

// pred is the boolean intermediate form between the syntax tree and the
// instructions: and/or/not over comparisons of computed values.
type pred interface{ isPred() }

type pConst bool
type pAnd struct{ a, b pred }
type pOr struct{ a, b pred }
type pNot struct{ a pred }

// pCmp tests "v op k", or "v op rhs" when rhs is not nil. op is a classic
// BPF jump (JEQ, JGT, JGE, JSET).
type pCmp struct {
	v   val
	op  uint16
	k   uint32
	rhs val
}

func (pConst) isPred() {}
func (pAnd) isPred()   {}
func (pOr) isPred()    {}
func (pNot) isPred()   {}
func (pCmp) isPred()   {}

// val is a 32-bit value computed into the accumulator.
type val interface{ key() string }

type vConst struct{ k uint32 }
type vLen struct{}

// vLoad loads size bytes at off (+ idx, when idx is not nil). With trans4 the
// offset is relative to the end of the IPv4 header whose first byte is at
// ipOff (X = 4*(pkt[ipOff]&0xf), libpcap's ldxb).
type vLoad struct {
	off    uint32
	size   int
	idx    val
	trans4 bool
	ipOff  uint32
}

type vALU struct {
	op   uint16
	l, r val
}

func (v vConst) key() string { return fmt.Sprintf("#%d", v.k) }
func (vLen) key() string     { return "len" }
func (v vLoad) key() string {
	idx := ""
	if v.idx != nil {
		idx = v.idx.key() + "+"
	}
	if v.trans4 {
		return fmt.Sprintf("ld%d[%s4*([%d]&0xf)+%d]", v.size, idx, v.ipOff, v.off)
	}
	return fmt.Sprintf("ld%d[%s%d]", v.size, idx, v.off)
}
func (v vALU) key() string { return fmt.Sprintf("(%s %d %s)", v.l.key(), v.op, v.r.key()) }

// Constructors that simplify constants away.

func load(off uint32, size int) val { return vLoad{off: off, size: size} }

func and(v val, mask uint32) val { return vALU{op: aluAnd, l: v, r: vConst{mask}} }

func cmpK(v val, op uint16, k uint32) pred { return pCmp{v: v, op: op, k: k} }

func andP(a, b pred) pred {
	ca, aConst := a.(pConst)
	cb, bConst := b.(pConst)
	switch {
	case aConst && !bool(ca), bConst && !bool(cb):
		return pConst(false)
	case aConst:
		return b
	case bConst:
		return a
	}
	return pAnd{a, b}
}

func or(a, b pred) pred {
	ca, aConst := a.(pConst)
	cb, bConst := b.(pConst)
	switch {
	case aConst && bool(ca), bConst && bool(cb):
		return pConst(true)
	case aConst:
		return b
	case bConst:
		return a
	}
	return pOr{a, b}
}

func not(a pred) pred {
	switch a := a.(type) {
	case pConst:
		return !a
	case pNot:
		return a.a
	}
	return pNot{a}
}
