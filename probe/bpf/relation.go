package bpf

// Lowering of comparisons "arith relop arith", less and greater.

func (c *lowerer) relation(n relNode) (pred, error) {
	var checks pred = pConst(true)
	l, err := c.arith(n.l, &checks)
	if err != nil {
		return nil, err
	}
	r, err := c.arith(n.r, &checks)
	if err != nil {
		return nil, err
	}
	var op uint16
	negate := false
	switch n.op {
	case "=":
		op = opJEQ
	case "!=":
		op, negate = opJEQ, true
	case ">":
		op = opJGT
	case ">=":
		op = opJGE
	case "<":
		op, negate = opJGE, true
	case "<=":
		op, negate = opJGT, true
	}
	var cmp pred
	lc, lConst := l.(vConst)
	rc, rConst := r.(vConst)
	switch {
	case lConst && rConst:
		var res bool
		switch op {
		case opJEQ:
			res = lc.k == rc.k
		case opJGT:
			res = lc.k > rc.k
		case opJGE:
			res = lc.k >= rc.k
		}
		cmp = pConst(res)
	case rConst:
		cmp = pCmp{v: l, op: op, k: rc.k}
	default:
		cmp = pCmp{v: l, op: op, rhs: r}
	}
	if negate {
		cmp = not(cmp)
	}
	// Like libpcap, the protocol checks of the loads guard the comparison:
	// "tcp[13] != 0" is false for a packet that is not TCP.
	return andP(checks, cmp), nil
}

var aluOps = map[string]uint16{
	"+": aluAdd, "-": aluSub, "*": aluMul, "/": aluDiv, "%": aluMod,
	"&": aluAnd, "|": aluOr, "^": aluXor, "<<": aluLsh, ">>": aluRsh,
}

func foldALU(op uint16, a, b uint32) uint32 {
	switch op {
	case aluAdd:
		return a + b
	case aluSub:
		return a - b
	case aluMul:
		return a * b
	case aluDiv:
		return a / b
	case aluMod:
		return a % b
	case aluAnd:
		return a & b
	case aluOr:
		return a | b
	case aluXor:
		return a ^ b
	case aluLsh:
		return a << b
	case aluRsh:
		return a >> b
	}
	return 0
}

// arith lowers an arithmetic expression; protocol checks needed by its loads
// are and-ed into *checks.
func (c *lowerer) arith(a arith, checks *pred) (val, error) {
	switch a := a.(type) {
	case numArith:
		return vConst{a.v}, nil
	case lenArith:
		return vLen{}, nil
	case negArith:
		x, err := c.arith(a.x, checks)
		if err != nil {
			return nil, err
		}
		if k, ok := x.(vConst); ok {
			return vConst{-k.k}, nil
		}
		return vALU{op: aluMul, l: x, r: vConst{0xffffffff}}, nil
	case binArith:
		l, err := c.arith(a.l, checks)
		if err != nil {
			return nil, err
		}
		r, err := c.arith(a.r, checks)
		if err != nil {
			return nil, err
		}
		op := aluOps[a.op]
		if k, ok := r.(vConst); ok {
			if (op == aluDiv || op == aluMod) && k.k == 0 {
				return nil, errNoTok(ErrInvalid, "division by zero")
			}
			if (op == aluLsh || op == aluRsh) && k.k > 31 {
				return nil, errNoTok(ErrInvalid, "shift by more than 31 bits")
			}
			if lk, ok := l.(vConst); ok {
				return vConst{foldALU(op, lk.k, k.k)}, nil
			}
		}
		return vALU{op: op, l: l, r: r}, nil
	case loadArith:
		return c.load(a, checks)
	}
	return nil, errNoTok(ErrSyntax, "internal: unknown arithmetic %T", a)
}

func (c *lowerer) load(a loadArith, checks *pred) (val, error) {
	idx, err := c.arith(a.idx, checks)
	if err != nil {
		return nil, err
	}
	pl := c.l.payload(a.shift)
	var v vLoad
	var check pred = pConst(true)
	switch a.proto {
	case qpLink:
		v = vLoad{off: 0}
	case qpIP:
		v, check = vLoad{off: pl}, c.l.linkTypeIs(etherTypeIPv4, a.shift)
	case qpIP6:
		v, check = vLoad{off: pl}, c.l.linkTypeIs(etherTypeIPv6, a.shift)
	case qpARP:
		v, check = vLoad{off: pl}, c.l.linkTypeIs(etherTypeARP, a.shift)
	case qpRARP:
		v, check = vLoad{off: pl}, c.l.linkTypeIs(etherTypeRARP, a.shift)
	case qpICMP6:
		v = vLoad{off: pl + 40}
		check = andP(c.l.linkTypeIs(etherTypeIPv6, a.shift), cmpK(load(pl+6, 1), opJEQ, 58))
	default: // tcp, udp, sctp, icmp, igmp: after the IPv4 header, first fragment
		v = vLoad{off: pl, trans4: true, ipOff: pl}
		check = andP(c.protoAbbrev(a.proto, a.shift), c.ipFirstFragment(a.shift))
	}
	v.size = a.size
	if k, ok := idx.(vConst); ok {
		v.off += k.k
	} else {
		v.idx = idx
	}
	*checks = andP(*checks, check)
	return v, nil
}
