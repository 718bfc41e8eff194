package module

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/cilium/ebpf/asm"
)

// kmem is fake kernel memory for the interpreter: regions by base address.
type kmem map[uint64][]byte

// read copies n bytes at addr, false if they are not all mapped.
func (m kmem) read(addr uint64, n int) ([]byte, bool) {
	for base, b := range m {
		if addr >= base && addr+uint64(n) <= base+uint64(len(b)) && addr+uint64(n) >= addr {
			return b[addr-base : addr-base+uint64(n)], true
		}
	}
	return nil, false
}

// Fake addresses: the program's stack and the caller's struct mod_buf.
const (
	stackBase = 0x7000_0000
	stackSize = 512
	bufBase   = 0x6000_0000
)

// run interprets fill_data on kernel memory m with R1 = skb: the subset of
// eBPF the code generator emits (ALU64, memory loads and stores, ld_imm64,
// jumps, bpf_probe_read_kernel, exit). It returns R0 and struct mod_buf.
func run(insns asm.Instructions, m kmem, skb uint64) (uint64, [DataSize + 8]byte, error) {
	var buf [DataSize + 8]byte
	stack := make([]byte, stackSize)
	var r [11]uint64
	r[1], r[2], r[10] = skb, bufBase, stackBase+stackSize
	// Writable memory: the stack and the buffer.
	mem := func(addr uint64, n int) ([]byte, error) {
		switch {
		case addr >= stackBase && addr+uint64(n) <= stackBase+stackSize:
			return stack[addr-stackBase : addr-stackBase+uint64(n)], nil
		case addr >= bufBase && addr+uint64(n) <= bufBase+uint64(len(buf)):
			return buf[addr-bufBase : addr-bufBase+uint64(n)], nil
		}
		return nil, fmt.Errorf("access %#x/%d outside stack and buffer", addr, n)
	}
	// Raw offsets of the instructions, for jumps.
	idx := map[int]int{}
	raw := 0
	for i, ins := range insns {
		idx[raw] = i
		raw += int(ins.Size() / asm.InstructionSize)
	}
	rawOf := make([]int, len(insns))
	raw = 0
	for i, ins := range insns {
		rawOf[i] = raw
		raw += int(ins.Size() / asm.InstructionSize)
	}
	le := binary.LittleEndian
	for pc, steps := 0, 0; ; steps++ {
		if steps > 100000 || pc < 0 || pc >= len(insns) {
			return 0, buf, fmt.Errorf("pc %d out of the program (or a loop)", pc)
		}
		ins := insns[pc]
		op := ins.OpCode
		src := uint64(ins.Constant)
		if op.Source() == asm.RegSource {
			src = r[ins.Src]
		}
		next := pc + 1
		switch {
		case op.IsDWordLoad():
			r[ins.Dst] = uint64(ins.Constant)
		case op.Class() == asm.ALU64Class:
			d := &r[ins.Dst]
			switch op.ALUOp() {
			case asm.Mov:
				*d = src
			case asm.Add:
				*d += src
			case asm.And:
				*d &= src
			case asm.Or:
				*d |= src
			case asm.RSh:
				*d >>= src & 63
			case asm.LSh:
				*d <<= src & 63
			case asm.ArSh:
				*d = uint64(int64(*d) >> (src & 63))
			default:
				return 0, buf, fmt.Errorf("insn %d: ALU op %v not interpreted", pc, op)
			}
		case op.Class() == asm.ALUClass && op.ALUOp() == asm.Swap:
			// HostTo(BE): swap the low Constant bits (little-endian host).
			v := r[ins.Dst]
			switch ins.Constant {
			case 16:
				v = uint64(bits.ReverseBytes16(uint16(v)))
			case 32:
				v = uint64(bits.ReverseBytes32(uint32(v)))
			case 64:
				v = bits.ReverseBytes64(v)
			}
			r[ins.Dst] = v
		case op.Class() == asm.LdXClass:
			n := op.Size().Sizeof()
			b, err := mem(r[ins.Src]+uint64(int64(ins.Offset)), n)
			if err != nil {
				return 0, buf, fmt.Errorf("insn %d: %w", pc, err)
			}
			r[ins.Dst] = readUint(b)
		case op.Class() == asm.StXClass:
			n := op.Size().Sizeof()
			b, err := mem(r[ins.Dst]+uint64(int64(ins.Offset)), n)
			if err != nil {
				return 0, buf, fmt.Errorf("insn %d: %w", pc, err)
			}
			var tmp [8]byte
			le.PutUint64(tmp[:], r[ins.Src])
			copy(b, tmp[:n])
		case op.JumpOp() == asm.Call:
			if asm.BuiltinFunc(ins.Constant) != asm.FnProbeReadKernel {
				return 0, buf, fmt.Errorf("insn %d: call %v not interpreted", pc, ins)
			}
			dst, err := mem(r[1], int(r[2]))
			if err != nil {
				return 0, buf, fmt.Errorf("insn %d: probe_read dst: %w", pc, err)
			}
			if b, ok := m.read(r[3], int(r[2])); ok {
				copy(dst, b)
				r[0] = 0
			} else {
				clear(dst)
				r[0] = uint64(1<<64 - 14) // -EFAULT
			}
			r[1], r[2], r[3], r[4], r[5] = 0xdead, 0xdead, 0xdead, 0xdead, 0xdead
		case op.JumpOp() == asm.Exit:
			return r[0], buf, nil
		case op.Class().IsJump():
			d := r[ins.Dst]
			var take bool
			switch op.JumpOp() {
			case asm.Ja:
				take = true
			case asm.JEq:
				take = d == src
			case asm.JNE:
				take = d != src
			case asm.JGT:
				take = d > src
			case asm.JGE:
				take = d >= src
			case asm.JLT:
				take = d < src
			case asm.JLE:
				take = d <= src
			case asm.JSGT:
				take = int64(d) > int64(src)
			case asm.JSGE:
				take = int64(d) >= int64(src)
			case asm.JSLT:
				take = int64(d) < int64(src)
			case asm.JSLE:
				take = int64(d) <= int64(src)
			default:
				return 0, buf, fmt.Errorf("insn %d: jump %v not interpreted", pc, op)
			}
			if take {
				target, ok := idx[rawOf[pc]+1+int(ins.Offset)]
				if !ok {
					return 0, buf, fmt.Errorf("insn %d: jump into the middle of an instruction", pc)
				}
				next = target
			}
		default:
			return 0, buf, fmt.Errorf("insn %d: %v not interpreted", pc, ins)
		}
		pc = next
	}
}
