package bpf

import "fmt"

// parser is a recursive-descent parser for the pcap-filter subset described
// in doc.go. Like libpcap, "and" and "or" have the same precedence and
// associate to the left; "not" binds tighter.
type parser struct {
	expr  string
	toks  []token
	i     int
	shift int   // bytes added to link-layer payload offsets by "vlan" so far
	lastQ quals // qualifiers a bare id inherits
	// arithFail remembers where parseArith failed: a term starting with
	// '(' is tried as arithmetic first, and without this nested
	// parentheses would be re-parsed once per level.
	arithFail map[int]error
}

// relOps are the comparison operators of a relation.
var relOps = map[string]string{"=": "=", "==": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}

// namedConstants are libpcap's numeric keywords for byte comparisons.
var namedConstants = map[string]uint32{
	"tcpflags": 13, "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08,
	"tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,
	"icmptype": 0, "icmpcode": 1,
	"icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5,
	"icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
	"icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15,
	"icmp-ireqreply": 16, "icmp-maskreq": 17, "icmp-maskreply": 18,
	"icmp6type": 0, "icmp6code": 1,
	"icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
	"icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
	"icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
	"icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133, "icmp6-routeradvert": 134,
	"icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136, "icmp6-redirect": 137,
}

// unsupportedKeywords are pcap-filter keywords this compiler rejects.
var unsupportedKeywords = map[string]bool{
	"gateway": true, "decnet": true, "atalk": true, "aarp": true, "ipx": true, "iso": true,
	"stp": true, "netbeui": true, "lat": true, "sca": true, "moprc": true, "mopdl": true,
	"clnp": true, "esis": true, "isis": true, "l1": true, "l2": true, "iih": true, "lsp": true,
	"snp": true, "csnp": true, "psnp": true, "radio": true, "wlan": true, "type": true,
	"subtype": true, "dir": true, "llc": true, "ifname": true, "on": true, "rnr": true,
	"rulenum": true, "reason": true, "rset": true, "ruleset": true, "srnr": true,
	"subrulenum": true, "action": true, "pppoed": true, "pppoes": true, "geneve": true,
	"mpls": true, "broadcast": true, "multicast": true, "protochain": true, "inbound": true,
	"outbound": true, "ah": true, "esp": true, "pim": true, "vrrp": true, "carp": true,
	"igrp": true, "fddi": true, "tr": true, "ppp": true, "slip": true, "ra": true, "ta": true,
	"addr1": true, "addr2": true, "addr3": true, "addr4": true, "bcast": true, "hdlc": true,
	"lane": true, "metac": true, "bcc": true, "oam": true, "oamf4": true, "oamf4ec": true,
	"oamf4sc": true, "sc": true, "ilmic": true, "vpi": true, "vci": true, "connectmsg": true,
	"metaconnect": true, "fisu": true, "lssu": true, "msu": true, "hfisu": true, "hlssu": true,
	"hmsu": true, "sio": true, "opc": true, "dpc": true, "sls": true, "hsio": true, "hopc": true,
	"hdpc": true, "hsls": true, "ifindex": true, "vxlan": true,
}

// keywords are the words that can never be an id.
var keywords = map[string]bool{
	"src": true, "dst": true, "host": true, "net": true, "port": true, "portrange": true,
	"proto": true, "less": true, "greater": true, "len": true, "vlan": true, "not": true,
	"and": true, "or": true, "mask": true,
}

func isKeyword(w string) bool {
	_, pq := qualProtoNames[w]
	_, nc := namedConstants[w]
	return pq || nc || keywords[w] || unsupportedKeywords[w]
}

// parse parses expr; a nil node means "match everything".
func parse(expr string) (node, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{expr: expr, toks: toks}
	if p.peek().kind == tkEOF {
		return nil, nil
	}
	n, err := p.parseExpr()
	if err != nil {
		return nil, p.fill(err)
	}
	if t := p.peek(); t.kind != tkEOF {
		return nil, p.fill(p.errf(t, "unexpected %q after a complete expression", t.text))
	}
	return n, nil
}

func (p *parser) fill(err error) error {
	if e, ok := err.(*Error); ok {
		e.Expr = p.expr
	}
	return err
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) peekAt(k int) token {
	if p.i+k < len(p.toks) {
		return p.toks[p.i+k]
	}
	return p.toks[len(p.toks)-1]
}
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tkEOF {
		p.i++
	}
	return t
}

func (p *parser) errf(t token, format string, args ...any) *Error {
	if t.kind == tkEOF {
		return &Error{Kind: ErrSyntax, Pos: t.pos, Detail: "unexpected end of expression: " + fmt.Sprintf(format, args...)}
	}
	return errAt(ErrSyntax, t, format, args...)
}

func (p *parser) expect(op string) error {
	t := p.peek()
	if t.kind != tkOp || t.text != op {
		return p.errf(t, "expected %q", op)
	}
	p.next()
	return nil
}

func isAnd(t token) bool { return t.is("and", "&&") }
func isOr(t token) bool  { return t.is("or", "||") }
func isNot(t token) bool { return t.is("not", "!") }

func (p *parser) parseExpr() (node, error) {
	left, err := p.parseTerm(false)
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		and, or := isAnd(t), isOr(t)
		if !and && !or {
			return left, nil
		}
		p.next()
		right, err := p.parseTerm(true)
		if err != nil {
			return nil, err
		}
		if and {
			left = andNode{left, right}
		} else {
			left = orNode{left, right}
		}
	}
}

// parseTerm parses [not] term; allowID permits a bare id that inherits the
// previous qualifiers (only after and/or).
func (p *parser) parseTerm(allowID bool) (node, error) {
	if isNot(p.peek()) {
		p.next()
		x, err := p.parseTerm(allowID)
		if err != nil {
			return nil, err
		}
		return notNode{x}, nil
	}
	return p.parseRterm(allowID)
}

// startsArith reports whether a relation may start at the current token.
func (p *parser) startsArith() bool {
	t := p.peek()
	switch {
	case t.kind == tkOp:
		return t.text == "(" || t.text == "-"
	case t.kind != tkWord:
		return false
	}
	if _, ok := namedConstants[t.text]; ok || t.text == "len" {
		return true
	}
	if _, ok := parseNumber(t.text); ok {
		return true
	}
	_, pq := qualProtoNames[t.text]
	return pq && p.peekAt(1).is("[")
}

func (p *parser) parseRterm(allowID bool) (node, error) {
	var relErr *Error
	if p.startsArith() {
		save, saveShift, saveQ := p.i, p.shift, p.lastQ
		n, err := p.parseRelation()
		if err == nil {
			return n, nil
		}
		relErr, _ = err.(*Error)
		if relErr == nil || relErr.Kind != ErrSyntax {
			return nil, err
		}
		p.i, p.shift, p.lastQ = save, saveShift, saveQ
	}
	n, err := p.parseNonRelation(allowID)
	if err != nil {
		// Report whichever reading got further into the expression.
		if e, ok := err.(*Error); ok && relErr != nil && e.Kind == ErrSyntax && relErr.Pos > e.Pos {
			return nil, relErr
		}
		return nil, err
	}
	return n, nil
}

func (p *parser) parseNonRelation(allowID bool) (node, error) {
	t := p.peek()
	if t.is("(") && allowID && p.lastQ.valid {
		// "port 1 or (2 or 3)": a parenthesised list of ids inheriting
		// the qualifiers, if it parses as one.
		save, saveShift := p.i, p.shift
		if n, err := p.parseIDGroup(p.lastQ); err == nil {
			return n, nil
		}
		p.i, p.shift = save, saveShift
	}
	if t.is("(") {
		p.next()
		n, err := p.parseExpr()
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return n, nil
	}
	if t.kind == tkName {
		if allowID && p.lastQ.valid {
			return p.parseID(p.lastQ)
		}
		return nil, p.errf(t, "expected a primitive")
	}
	if t.kind != tkWord {
		return nil, p.errf(t, "expected a primitive")
	}
	w := t.text
	if pq, ok := qualProtoNames[w]; ok {
		p.next()
		return p.parseAfterProto(pq, t)
	}
	switch w {
	case "src", "dst", "host", "net", "port", "portrange", "proto":
		return p.parseHead(quals{proto: qpDefault})
	case "less", "greater":
		p.next()
		nt := p.next()
		v, ok := parseNumber(nt.text)
		if nt.kind != tkWord || !ok {
			return nil, p.errf(nt, "%s needs a number", w)
		}
		p.lastQ = quals{}
		if w == "less" {
			return relNode{op: "<=", l: lenArith{}, r: numArith{v}}, nil
		}
		return relNode{op: ">=", l: lenArith{}, r: numArith{v}}, nil
	case "vlan":
		p.next()
		n := vlanNode{shift: p.shift, tok: t}
		if nt := p.peek(); nt.kind == tkWord {
			if v, ok := parseNumber(nt.text); ok {
				p.next()
				if v > 4095 {
					return nil, errAt(ErrInvalid, nt, "VLAN id %d greater than maximum 4095", v)
				}
				n.id, n.hasID = v, true
			}
		}
		p.shift += 4
		p.lastQ = quals{}
		return n, nil
	}
	if unsupportedKeywords[w] {
		return nil, unsupported(t, "keyword")
	}
	if isKeyword(w) {
		return nil, p.errf(t, "unexpected keyword %q", w)
	}
	if allowID && p.lastQ.valid {
		return p.parseID(p.lastQ)
	}
	return nil, p.errf(t, "expected a primitive such as \"host %s\"", w)
}

// parseAfterProto continues after a protocol qualifier (ether, ip, tcp, ...).
func (p *parser) parseAfterProto(pq qualProto, pt token) (node, error) {
	t := p.peek()
	switch {
	case t.is("proto"):
		if pq != qpIP && pq != qpIP6 && pq != qpLink {
			return nil, errAt(ErrInvalid, t, "'%s proto' is not valid; use ip, ip6 or ether proto", pq)
		}
		return p.parseHead(quals{proto: pq})
	case t.is("src", "dst", "host", "net", "port", "portrange"):
		return p.parseHead(quals{proto: pq})
	case t.kind == tkWord && unsupportedKeywords[t.text]:
		return nil, unsupported(t, "keyword")
	}
	p.lastQ = quals{}
	return protoNode{proto: pq, shift: p.shift, tok: pt}, nil
}

// parseHead parses [dir] [type] id with the protocol already in q.
func (p *parser) parseHead(q quals) (node, error) {
	t := p.peek()
	if t.is("src", "dst") {
		p.next()
		q.dir = qdSrc
		if t.text == "dst" {
			q.dir = qdDst
		}
		// "src or dst" and "src and dst" are direction qualifiers.
		if c := p.peek(); (isOr(c) || isAnd(c)) && p.peekAt(1).is("src", "dst") && p.peekAt(1).text != t.text {
			p.next()
			p.next()
			q.dir = qdOr
			if isAnd(c) {
				q.dir = qdAnd
			}
		}
		t = p.peek()
	}
	switch {
	case t.is("host"):
		q.addr = qaHost
	case t.is("net"):
		q.addr = qaNet
	case t.is("port"):
		q.addr = qaPort
	case t.is("portrange"):
		q.addr = qaPortRange
	case t.is("proto"):
		if q.dir != qdDefault {
			return nil, errAt(ErrSyntax, t, "direction qualifier not allowed with proto")
		}
		q.addr = qaProto
	case t.kind == tkWord && unsupportedKeywords[t.text]:
		return nil, unsupported(t, "keyword")
	}
	if q.addr != qaDefault {
		p.next()
	}
	q.valid = true
	n, err := p.parseIDGroup(q)
	if err != nil {
		return nil, err
	}
	p.lastQ = q
	return n, nil
}

// parseIDGroup parses id | '(' id {and|or id} ')', all ids with qualifiers q
// (libpcap's "host (a or b)").
func (p *parser) parseIDGroup(q quals) (node, error) {
	if !p.peek().is("(") {
		return p.parseID(q)
	}
	p.next()
	left, err := p.parseIDGroup(q)
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.is(")") {
			p.next()
			return left, nil
		}
		if !isAnd(t) && !isOr(t) {
			return nil, p.errf(t, "expected and, or or ')' in id list")
		}
		p.next()
		right, err := p.parseIDGroup(q)
		if err != nil {
			return nil, err
		}
		if isAnd(t) {
			left = andNode{left, right}
		} else {
			left = orNode{left, right}
		}
	}
}

func (p *parser) parseRelation() (node, error) {
	l, err := p.parseArith()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	op, ok := relOps[t.text]
	if t.kind != tkOp || !ok {
		return nil, p.errf(t, "expected a comparison operator")
	}
	p.next()
	r, err := p.parseArith()
	if err != nil {
		return nil, err
	}
	p.lastQ = quals{}
	return relNode{op: op, l: l, r: r}, nil
}

// arithLevels lists binary operators from lowest to highest precedence.
var arithLevels = [][]string{{"|", "^"}, {"&"}, {"<<", ">>"}, {"+", "-"}, {"*", "/", "%"}}

func (p *parser) parseArith() (arith, error) {
	start := p.i
	if err, ok := p.arithFail[start]; ok {
		return nil, err
	}
	a, err := p.parseArithLevel(0)
	if err != nil {
		if p.arithFail == nil {
			p.arithFail = map[int]error{}
		}
		p.arithFail[start] = err
	}
	return a, err
}

func (p *parser) parseArithLevel(level int) (arith, error) {
	if level == len(arithLevels) {
		return p.parseUnary()
	}
	left, err := p.parseArithLevel(level + 1)
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tkOp || !t.is(arithLevels[level]...) {
			return left, nil
		}
		p.next()
		right, err := p.parseArithLevel(level + 1)
		if err != nil {
			return nil, err
		}
		left = binArith{op: t.text, l: left, r: right}
	}
}

func (p *parser) parseUnary() (arith, error) {
	t := p.peek()
	if t.kind == tkOp && t.text == "-" {
		p.next()
		x, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		return negArith{x}, nil
	}
	if t.kind == tkOp && t.text == "(" {
		p.next()
		x, err := p.parseArith()
		if err != nil {
			return nil, err
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		return x, nil
	}
	if t.kind != tkWord {
		return nil, p.errf(t, "expected a number, len or proto[offset]")
	}
	if v, ok := parseNumber(t.text); ok {
		p.next()
		return numArith{v}, nil
	}
	if v, ok := namedConstants[t.text]; ok {
		p.next()
		return numArith{v}, nil
	}
	if t.text == "len" {
		p.next()
		return lenArith{}, nil
	}
	pq, ok := qualProtoNames[t.text]
	if !ok || !p.peekAt(1).is("[") {
		return nil, p.errf(t, "expected a number, len or proto[offset]")
	}
	p.next()
	p.next()
	idx, err := p.parseArith()
	if err != nil {
		return nil, err
	}
	size := 1
	if p.peek().is(":") {
		p.next()
		st := p.next()
		v, ok := parseNumber(st.text)
		if st.kind != tkWord || !ok {
			return nil, p.errf(st, "expected a size after ':'")
		}
		if v != 1 && v != 2 && v != 4 {
			return nil, errAt(ErrInvalid, st, "data size must be 1, 2, or 4")
		}
		size = int(v)
	}
	if err := p.expect("]"); err != nil {
		return nil, err
	}
	return loadArith{proto: pq, idx: idx, size: size, shift: p.shift}, nil
}
