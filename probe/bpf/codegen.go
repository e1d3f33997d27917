package bpf

// lowering of the syntax tree into predicates for one link type, following
// libpcap's gencode.c (gen_host, gen_port, gen_proto, gen_load, gen_vlan ...).

type lowerer struct {
	l linkLayer
}

func (c *lowerer) node(n node) (pred, error) {
	switch n := n.(type) {
	case andNode:
		a, err := c.node(n.l)
		if err != nil {
			return nil, err
		}
		b, err := c.node(n.r)
		if err != nil {
			return nil, err
		}
		return andP(a, b), nil
	case orNode:
		a, err := c.node(n.l)
		if err != nil {
			return nil, err
		}
		b, err := c.node(n.r)
		if err != nil {
			return nil, err
		}
		return or(a, b), nil
	case notNode:
		a, err := c.node(n.x)
		if err != nil {
			return nil, err
		}
		return not(a), nil
	case protoNode:
		return c.protoAbbrev(n.proto, n.shift), nil
	case linkProtoNode:
		return c.l.linkTypeIs(n.etherType, n.shift), nil
	case ipProtoNode:
		var p pred = pConst(false)
		if n.v4 {
			p = or(p, c.ipProto(n.proto, n.shift))
		}
		if n.v6 {
			p = or(p, c.ip6Proto(n.proto, n.shift))
		}
		return p, nil
	case host4Node:
		return c.host4(n), nil
	case host6Node:
		return c.host6(n), nil
	case etherHostNode:
		if c.l.kind != lkEthernet {
			return nil, errAt(ErrLinkType, n.tok, "ethernet addresses are supported only on Ethernet (EN10MB) captures")
		}
		return dirOp(n.dir, func(off uint32) pred {
			return andP(
				cmpK(load(off, 4), opJEQ, uint32(n.mac[0])<<24|uint32(n.mac[1])<<16|uint32(n.mac[2])<<8|uint32(n.mac[3])),
				cmpK(load(off+4, 2), opJEQ, uint32(n.mac[4])<<8|uint32(n.mac[5])))
		}, 6, 0), nil
	case portNode:
		return c.port(n), nil
	case vlanNode:
		if c.l.kind != lkEthernet {
			return nil, errAt(ErrLinkType, n.tok, "vlan is supported only on Ethernet (EN10MB) captures")
		}
		tpid := load(c.l.typeOff+uint32(n.shift), 2)
		p := or(or(cmpK(tpid, opJEQ, 0x8100), cmpK(tpid, opJEQ, 0x88a8)), cmpK(tpid, opJEQ, 0x9100))
		if n.hasID {
			p = andP(p, cmpK(and(load(c.l.payload(n.shift), 2), 0x0fff), opJEQ, n.id))
		}
		return p, nil
	case relNode:
		return c.relation(n)
	}
	return nil, errNoTok(ErrSyntax, "internal: unknown node %T", n)
}

// dirOp combines a per-offset test for a direction qualifier.
func dirOp(dir qualDir, test func(off uint32) pred, srcOff, dstOff uint32) pred {
	switch dir {
	case qdSrc:
		return test(srcOff)
	case qdDst:
		return test(dstOff)
	case qdAnd:
		return andP(test(srcOff), test(dstOff))
	}
	return or(test(srcOff), test(dstOff))
}

// ipProto is "ip proto p".
func (c *lowerer) ipProto(p uint32, shift int) pred {
	pl := c.l.payload(shift)
	return andP(c.l.linkTypeIs(etherTypeIPv4, shift), cmpK(load(pl+9, 1), opJEQ, p))
}

// ip6Proto is "ip6 proto p": the fixed next header, or the next header
// after a fragment header directly following the fixed header.
func (c *lowerer) ip6Proto(p uint32, shift int) pred {
	pl := c.l.payload(shift)
	nh := load(pl+6, 1)
	return andP(c.l.linkTypeIs(etherTypeIPv6, shift),
		or(cmpK(nh, opJEQ, p), andP(cmpK(nh, opJEQ, 44), cmpK(load(pl+40, 1), opJEQ, p))))
}

func (c *lowerer) protoAbbrev(q qualProto, shift int) pred {
	switch q {
	case qpIP:
		return c.l.linkTypeIs(etherTypeIPv4, shift)
	case qpIP6:
		return c.l.linkTypeIs(etherTypeIPv6, shift)
	case qpARP:
		return c.l.linkTypeIs(etherTypeARP, shift)
	case qpRARP:
		return c.l.linkTypeIs(etherTypeRARP, shift)
	case qpTCP, qpUDP, qpSCTP:
		p := transportProto(q)
		return or(c.ipProto(p, shift), c.ip6Proto(p, shift))
	case qpICMP:
		return c.ipProto(1, shift)
	case qpIGMP:
		return c.ipProto(2, shift)
	case qpICMP6:
		return c.ip6Proto(58, shift)
	}
	return pConst(true) // qpLink: every packet has a link layer
}

func (c *lowerer) host4(n host4Node) pred {
	one := func(etherType, srcOff, dstOff uint32) pred {
		pl := c.l.payload(n.shift)
		test := func(off uint32) pred {
			v := load(pl+off, 4)
			if n.mask != 0xffffffff {
				v = and(v, n.mask)
			}
			return cmpK(v, opJEQ, n.addr)
		}
		return andP(c.l.linkTypeIs(etherType, n.shift), dirOp(n.dir, test, srcOff, dstOff))
	}
	switch n.proto {
	case qpIP:
		return one(etherTypeIPv4, 12, 16)
	case qpARP:
		return one(etherTypeARP, 14, 24)
	case qpRARP:
		return one(etherTypeRARP, 14, 24)
	}
	return or(or(one(etherTypeIPv4, 12, 16), one(etherTypeARP, 14, 24)), one(etherTypeRARP, 14, 24))
}

func (c *lowerer) host6(n host6Node) pred {
	pl := c.l.payload(n.shift)
	test := func(off uint32) pred {
		var p pred = pConst(true)
		for w := 0; w < 4; w++ {
			m := be32(n.mask[4*w:])
			if m == 0 {
				continue
			}
			v := load(pl+off+uint32(4*w), 4)
			if m != 0xffffffff {
				v = and(v, m)
			}
			p = andP(p, cmpK(v, opJEQ, be32(n.addr[4*w:])))
		}
		return p
	}
	return andP(c.l.linkTypeIs(etherTypeIPv6, n.shift), dirOp(n.dir, test, 8, 24))
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// ipFirstFragment is libpcap's gen_ipfrag: fragment offset zero.
func (c *lowerer) ipFirstFragment(shift int) pred {
	return not(cmpK(load(c.l.payload(shift)+6, 2), opJSET, 0x1fff))
}

func (c *lowerer) port(n portNode) pred {
	protos := []uint32{n.proto}
	if n.proto == 0 {
		protos = []uint32{6, 17, 132}
	}
	pl := c.l.payload(n.shift)
	inRange := func(v val) pred {
		if n.lo == n.hi {
			return cmpK(v, opJEQ, n.lo)
		}
		return andP(cmpK(v, opJGE, n.lo), not(cmpK(v, opJGT, n.hi)))
	}
	// IPv4: first fragment only, ports after the variable-length header.
	var v4 pred = pConst(false)
	for _, p := range protos {
		test := func(off uint32) pred {
			return inRange(vLoad{off: pl + off, size: 2, trans4: true, ipOff: pl})
		}
		v4 = or(v4, andP(andP(cmpK(load(pl+9, 1), opJEQ, p), c.ipFirstFragment(n.shift)), dirOp(n.dir, test, 0, 2)))
	}
	v4 = andP(c.l.linkTypeIs(etherTypeIPv4, n.shift), v4)
	// IPv6: only the fixed header's next header, ports right after it.
	var v6 pred = pConst(false)
	for _, p := range protos {
		test := func(off uint32) pred { return inRange(load(pl+40+off, 2)) }
		v6 = or(v6, andP(cmpK(load(pl+6, 1), opJEQ, p), dirOp(n.dir, test, 0, 2)))
	}
	v6 = andP(c.l.linkTypeIs(etherTypeIPv6, n.shift), v6)
	return or(v4, v6)
}
