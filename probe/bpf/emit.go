package bpf

import (
	"fmt"

	netbpf "golang.org/x/net/bpf"
)

// Classic BPF opcodes (linux/filter.h).
const (
	clsLD   = 0x00
	clsLDX  = 0x01
	clsST   = 0x02
	clsALU  = 0x04
	clsJMP  = 0x05
	clsRET  = 0x06
	clsMISC = 0x07

	szW = 0x00
	szH = 0x08
	szB = 0x10

	mdIMM = 0x00
	mdABS = 0x20
	mdIND = 0x40
	mdMEM = 0x60
	mdLEN = 0x80
	mdMSH = 0xa0

	srcK = 0x00
	srcX = 0x08

	opJA   = 0x00
	opJEQ  = 0x10
	opJGT  = 0x20
	opJGE  = 0x30
	opJSET = 0x40

	aluAdd = 0x00
	aluSub = 0x10
	aluMul = 0x20
	aluDiv = 0x30
	aluOr  = 0x40
	aluAnd = 0x50
	aluLsh = 0x60
	aluRsh = 0x70
	aluMod = 0x90
	aluXor = 0xa0

	retK = 0x00

	miscTAX = 0x00
)

// MaxInstructions is the kernel's limit on classic BPF programs (BPF_MAXINSNS).
const MaxInstructions = 4096

// scratchSlots is the number of BPF scratch memory words.
const scratchSlots = 16

func sizeBits(size int) uint16 {
	switch size {
	case 4:
		return szW
	case 2:
		return szH
	}
	return szB
}

type label int

// insn is an instruction whose jump targets are still labels.
type insn struct {
	raw    netbpf.RawInstruction
	jt, jf label // conditional jumps
	ja     label // unconditional jumps
	isCond bool
	isJA   bool
}

// regState is what the A and X registers are known to hold ("" = unknown).
type regState struct{ a, x string }

type emitter struct {
	insns    []insn
	labels   []int // label -> instruction index, -1 while unbound
	incoming []*regState
	cur      regState
	scratch  int
}

func (e *emitter) newLabel() label {
	e.labels = append(e.labels, -1)
	e.incoming = append(e.incoming, nil)
	return label(len(e.labels) - 1)
}

// bind places l at the next instruction. Code is only ever reached through
// jumps, so the register state is what all the jumps to l agree on.
func (e *emitter) bind(l label) {
	e.labels[l] = len(e.insns)
	if s := e.incoming[l]; s != nil {
		e.cur = *s
	} else {
		e.cur = regState{}
	}
}

func (e *emitter) reach(l label) {
	if s := e.incoming[l]; s == nil {
		st := e.cur
		e.incoming[l] = &st
	} else {
		if s.a != e.cur.a {
			s.a = ""
		}
		if s.x != e.cur.x {
			s.x = ""
		}
	}
}

func (e *emitter) stmt(op uint16, k uint32) {
	e.insns = append(e.insns, insn{raw: netbpf.RawInstruction{Op: op, K: k}})
}

func (e *emitter) jump(op uint16, k uint32, t, f label) {
	e.insns = append(e.insns, insn{raw: netbpf.RawInstruction{Op: clsJMP | op, K: k}, jt: t, jf: f, isCond: true})
	e.reach(t)
	e.reach(f)
}

func (e *emitter) allocScratch() (uint32, error) {
	if e.scratch >= scratchSlots {
		return 0, errNoTok(ErrTooLong, "arithmetic expression needs more than %d scratch registers", scratchSlots)
	}
	e.scratch++
	return uint32(e.scratch - 1), nil
}

// pred emits code that jumps to t when p holds and to f otherwise.
func (e *emitter) pred(p pred, t, f label) error {
	switch p := p.(type) {
	case pAnd:
		mid := e.newLabel()
		if err := e.pred(p.a, mid, f); err != nil {
			return err
		}
		e.bind(mid)
		return e.pred(p.b, t, f)
	case pOr:
		mid := e.newLabel()
		if err := e.pred(p.a, t, mid); err != nil {
			return err
		}
		e.bind(mid)
		return e.pred(p.b, t, f)
	case pNot:
		return e.pred(p.a, f, t)
	case pCmp:
		if p.rhs == nil {
			if err := e.val(p.v); err != nil {
				return err
			}
			e.jump(p.op|srcK, p.k, t, f)
			return nil
		}
		m, err := e.valToScratch(p.rhs)
		if err != nil {
			return err
		}
		if err := e.val(p.v); err != nil {
			return err
		}
		e.stmt(clsLDX|szW|mdMEM, m)
		e.cur.x = ""
		e.scratch--
		e.jump(p.op|srcX, 0, t, f)
		return nil
	}
	return errNoTok(ErrSyntax, "internal: constant predicate %v inside program", p)
}

func (e *emitter) valToScratch(v val) (uint32, error) {
	if err := e.val(v); err != nil {
		return 0, err
	}
	m, err := e.allocScratch()
	if err != nil {
		return 0, err
	}
	e.stmt(clsST, m)
	return m, nil
}

// val emits code leaving v in A, reusing A when it already holds v.
func (e *emitter) val(v val) error {
	key := v.key()
	if e.cur.a == key {
		return nil
	}
	switch v := v.(type) {
	case vConst:
		e.stmt(clsLD|szW|mdIMM, v.k)
	case vLen:
		e.stmt(clsLD|szW|mdLEN, 0)
	case vLoad:
		if err := e.load(v); err != nil {
			return err
		}
	case vALU:
		if k, ok := v.r.(vConst); ok {
			if err := e.val(v.l); err != nil {
				return err
			}
			e.stmt(clsALU|v.op|srcK, k.k)
			break
		}
		m, err := e.valToScratch(v.r)
		if err != nil {
			return err
		}
		if err := e.val(v.l); err != nil {
			return err
		}
		e.stmt(clsLDX|szW|mdMEM, m)
		e.cur.x = ""
		e.scratch--
		e.stmt(clsALU|v.op|srcX, 0)
	default:
		return errNoTok(ErrSyntax, "internal: unknown value %T", v)
	}
	e.cur.a = key
	return nil
}

func (e *emitter) load(v vLoad) error {
	size := sizeBits(v.size)
	mshKey := fmt.Sprintf("msh[%d]", v.ipOff)
	switch {
	case v.idx == nil && !v.trans4:
		e.stmt(clsLD|size|mdABS, v.off)
	case v.idx == nil:
		if e.cur.x != mshKey {
			e.stmt(clsLDX|szB|mdMSH, v.ipOff)
			e.cur.x = mshKey
		}
		e.stmt(clsLD|size|mdIND, v.off)
	case !v.trans4:
		if err := e.val(v.idx); err != nil {
			return err
		}
		e.stmt(clsMISC|miscTAX, 0)
		e.cur.x = "A=" + v.idx.key()
		e.stmt(clsLD|size|mdIND, v.off)
	default:
		m, err := e.valToScratch(v.idx)
		if err != nil {
			return err
		}
		e.stmt(clsLDX|szB|mdMSH, v.ipOff)
		e.stmt(clsLD|szW|mdMEM, m)
		e.scratch--
		e.stmt(clsALU|aluAdd|srcX, 0)
		e.stmt(clsMISC|miscTAX, 0)
		e.cur.x = ""
		e.stmt(clsLD|size|mdIND, v.off)
	}
	return nil
}

// generate turns a predicate into a program returning snaplen on a match.
func generate(p pred, snaplen uint32) ([]netbpf.RawInstruction, error) {
	if c, ok := p.(pConst); ok {
		if c {
			return []netbpf.RawInstruction{{Op: clsRET | retK, K: snaplen}}, nil
		}
		return []netbpf.RawInstruction{{Op: clsRET | retK, K: 0}}, nil
	}
	e := &emitter{}
	t, f := e.newLabel(), e.newLabel()
	if err := e.pred(p, t, f); err != nil {
		return nil, err
	}
	e.bind(t)
	e.stmt(clsRET|retK, snaplen)
	e.bind(f)
	e.stmt(clsRET|retK, 0)
	return e.layout()
}
