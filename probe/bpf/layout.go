package bpf

import (
	netbpf "golang.org/x/net/bpf"
)

// maxCondSkip is the largest offset of a conditional jump (8 bits).
const maxCondSkip = 255

// layout resolves labels into jump offsets. All jumps go forward. A
// conditional jump whose target is more than 255 instructions away gets an
// unconditional "ja" trampoline (32-bit offset) right after it; inserting
// trampolines moves code, so this repeats until nothing changes.
func (e *emitter) layout() ([]netbpf.RawInstruction, error) {
	n := len(e.insns)
	trampT := make([]bool, n)
	trampF := make([]bool, n)
	addr := make([]int, n+1)
	size := func(i int) int {
		s := 1
		if trampT[i] {
			s++
		}
		if trampF[i] {
			s++
		}
		return s
	}
	target := func(l label) int { return addr[e.labels[l]] }
	for {
		for i := 0; i < n; i++ {
			addr[i+1] = addr[i] + size(i)
		}
		if addr[n] > MaxInstructions {
			return nil, errNoTok(ErrTooLong, "program needs %d instructions, the kernel limit is %d; simplify the expression", addr[n], MaxInstructions)
		}
		changed := false
		for i, in := range e.insns {
			if !in.isCond {
				continue
			}
			next := addr[i] + 1
			if !trampT[i] && target(in.jt)-next > maxCondSkip {
				trampT[i], changed = true, true
			}
			if !trampF[i] && target(in.jf)-next > maxCondSkip {
				trampF[i], changed = true, true
			}
		}
		if !changed {
			break
		}
	}
	out := make([]netbpf.RawInstruction, 0, addr[n])
	for i, in := range e.insns {
		r := in.raw
		switch {
		case in.isJA:
			r.K = uint32(target(in.ja) - (addr[i] + 1))
			out = append(out, r)
		case in.isCond:
			next := addr[i] + 1
			slot := next // where the next trampoline goes
			var tramps []netbpf.RawInstruction
			if trampT[i] {
				r.Jt = uint8(slot - next)
				tramps = append(tramps, netbpf.RawInstruction{Op: clsJMP | opJA, K: uint32(target(in.jt) - (slot + 1))})
				slot++
			} else {
				r.Jt = uint8(target(in.jt) - next)
			}
			if trampF[i] {
				r.Jf = uint8(slot - next)
				tramps = append(tramps, netbpf.RawInstruction{Op: clsJMP | opJA, K: uint32(target(in.jf) - (slot + 1))})
			} else {
				r.Jf = uint8(target(in.jf) - next)
			}
			out = append(out, r)
			out = append(out, tramps...)
		default:
			out = append(out, r)
		}
	}
	return out, nil
}
