package bpf

import netbpf "golang.org/x/net/bpf"

// run interprets a classic BPF program the way the Linux kernel does: a load
// outside the captured bytes or a division by zero ends the program with 0
// (reject). wireLen is the packet's original length, used by "len" (less,
// greater), which may exceed len(pkt) for truncated captures. It returns the
// program's return value (0 = drop).
func run(prog []netbpf.RawInstruction, pkt []byte, wireLen uint32) uint32 {
	var a, x uint32
	var mem [scratchSlots]uint32
	n := uint64(len(pkt))
	loadAt := func(off uint64, size uint64) (uint32, bool) {
		if off+size > n {
			return 0, false
		}
		switch size {
		case 4:
			return uint32(pkt[off])<<24 | uint32(pkt[off+1])<<16 | uint32(pkt[off+2])<<8 | uint32(pkt[off+3]), true
		case 2:
			return uint32(pkt[off])<<8 | uint32(pkt[off+1]), true
		}
		return uint32(pkt[off]), true
	}
	for pc := 0; pc < len(prog); pc++ {
		ins := prog[pc]
		k := ins.K
		switch ins.Op & 0x07 {
		case clsLD, clsLDX:
			var v uint32
			var ok = true
			size := uint64(4)
			switch ins.Op & 0x18 {
			case szH:
				size = 2
			case szB:
				size = 1
			}
			switch ins.Op & 0xe0 {
			case mdIMM:
				v = k
			case mdABS:
				v, ok = loadAt(uint64(k), size)
			case mdIND:
				v, ok = loadAt(uint64(k)+uint64(x), size)
			case mdMEM:
				if k >= scratchSlots {
					return 0
				}
				v = mem[k]
			case mdLEN:
				v = wireLen
			case mdMSH:
				v, ok = loadAt(uint64(k), 1)
				v = (v & 0x0f) * 4
			default:
				return 0
			}
			if !ok {
				return 0
			}
			if ins.Op&0x07 == clsLD {
				a = v
			} else {
				x = v
			}
		case clsST, clsST + 1: // ST, STX
			if k >= scratchSlots {
				return 0
			}
			if ins.Op&0x07 == clsST {
				mem[k] = a
			} else {
				mem[k] = x
			}
		case clsALU:
			operand := k
			if ins.Op&srcX != 0 {
				operand = x
			}
			op := ins.Op & 0xf0
			switch op {
			case 0x80: // NEG
				a = -a
				continue
			case aluDiv, aluMod:
				if operand == 0 {
					return 0
				}
			}
			a = foldALU(op, a, operand)
		case clsJMP:
			op := ins.Op & 0xf0
			if op == opJA {
				pc += int(k)
				continue
			}
			operand := k
			if ins.Op&srcX != 0 {
				operand = x
			}
			var cond bool
			switch op {
			case opJEQ:
				cond = a == operand
			case opJGT:
				cond = a > operand
			case opJGE:
				cond = a >= operand
			case opJSET:
				cond = a&operand != 0
			default:
				return 0
			}
			if cond {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case clsRET:
			switch ins.Op & 0x18 {
			case 0x10: // A
				return a
			case 0x00: // K
				return k
			}
			return 0
		case clsMISC:
			if ins.Op&0xf8 == 0x80 { // TXA
				a = x
			} else { // TAX
				x = a
			}
		}
	}
	return 0
}
