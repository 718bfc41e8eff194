package module

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
)

// The fill_data(skb, buf) subprogram of bpf/ipftrace.c: R1 is the skb, R2
// points to struct mod_buf on the caller's stack (DataSize bytes of data,
// then a u64 mask of the fields read). It returns 0 if a match condition
// fails, else 1.
//
// Registers: R6 skb, R7 buf, R8 skb_shinfo(skb) (0 if unknown), R9 the
// pointer being followed. The stack slots at R10-8 and R10-16 receive
// pointer loads.
const (
	rSkb    = asm.R6
	rBuf    = asm.R7
	rShinfo = asm.R8
	rPtr    = asm.R9

	validOff = DataSize // offset of the validity mask in struct mod_buf
)

// gen is a tiny assembler with forward jumps to labels.
type gen struct {
	insns  asm.Instructions
	labels map[string]int
	jumps  map[int]string // instruction index → label
}

func (g *gen) emit(ins ...asm.Instruction) { g.insns = append(g.insns, ins...) }

func (g *gen) label(name string) { g.labels[name] = len(g.insns) }

// jmpImm emits "if dst OP imm goto label" (asm.Ja: always).
func (g *gen) jmpImm(op asm.JumpOp, dst asm.Register, imm int32, label string) {
	g.jumps[len(g.insns)] = label
	g.emit(asm.Instruction{OpCode: op.Op(asm.ImmSource), Dst: dst, Constant: int64(imm)})
}

// jmpReg emits "if dst OP src goto label".
func (g *gen) jmpReg(op asm.JumpOp, dst, src asm.Register, label string) {
	g.jumps[len(g.insns)] = label
	g.emit(asm.Instruction{OpCode: op.Op(asm.RegSource), Dst: dst, Src: src})
}

// finish resolves the jumps.
func (g *gen) finish() (asm.Instructions, error) {
	raw := make([]int, len(g.insns)+1)
	for i, ins := range g.insns {
		raw[i+1] = raw[i] + int(ins.Size()/asm.InstructionSize)
	}
	for i, label := range g.jumps {
		target, ok := g.labels[label]
		if !ok {
			return nil, fmt.Errorf("codegen: undefined label %s", label)
		}
		d := raw[target] - raw[i] - 1
		if d < -1<<15 || d >= 1<<15 {
			return nil, fmt.Errorf("codegen: jump to %s out of range", label)
		}
		g.insns[i].Offset = int16(d)
	}
	return g.insns, nil
}

// probeRead emits bpf_probe_read_kernel(dst, size, src + off); dst must be
// in R1 already.
func (g *gen) probeRead(size uint32, src asm.Register, off uint32) {
	g.emit(
		asm.Mov.Imm(asm.R2, int32(size)),
		asm.Mov.Reg(asm.R3, src),
	)
	if off != 0 {
		g.emit(asm.Add.Imm(asm.R3, int32(off)))
	}
	g.emit(asm.FnProbeReadKernel.Call())
}

// stackPtr emits R1 = R10 + off.
func (g *gen) stackPtr(off int32) {
	g.emit(asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, off))
}

var sizes = map[uint32]asm.Size{1: asm.Byte, 2: asm.Half, 4: asm.Word, 8: asm.DWord}

// generate returns the body of fill_data for p's fields.
func (p *Program) generate() (asm.Instructions, error) {
	g := &gen{labels: map[string]int{}, jumps: map[int]string{}}
	g.emit(asm.Mov.Reg(rSkb, asm.R1), asm.Mov.Reg(rBuf, asm.R2))
	if l := p.shinfo; l != nil {
		// R8 = skb->head + skb->end (or skb->end), 0 if unreadable.
		g.emit(
			asm.Mov.Imm(rShinfo, 0),
			asm.StoreMem(asm.RFP, -8, rShinfo, asm.DWord),
			asm.StoreMem(asm.RFP, -16, rShinfo, asm.DWord),
		)
		g.stackPtr(-8)
		g.probeRead(8, rSkb, l.headOff)
		g.jmpImm(asm.JNE, asm.R0, 0, "shinfo_done")
		g.stackPtr(-16)
		g.probeRead(l.endSize, rSkb, l.endOff)
		g.jmpImm(asm.JNE, asm.R0, 0, "shinfo_done")
		g.emit(asm.LoadMem(asm.R1, asm.RFP, -8, asm.DWord))
		g.jmpImm(asm.JEq, asm.R1, 0, "shinfo_done")
		g.emit(asm.LoadMem(rShinfo, asm.RFP, -16, asm.DWord))
		if !l.endIsPtr {
			g.emit(asm.Add.Reg(rShinfo, asm.R1))
		}
		g.label("shinfo_done")
	}
	for i, s := range p.slots {
		fail := fmt.Sprintf("fail_%d", i)
		next := fmt.Sprintf("next_%d", i)
		if s.root == "shinfo" {
			g.jmpImm(asm.JEq, rShinfo, 0, fail)
			g.emit(asm.Mov.Reg(rPtr, rShinfo))
		} else {
			g.emit(asm.Mov.Reg(rPtr, rSkb))
		}
		for _, d := range s.derefs {
			g.stackPtr(-8)
			g.probeRead(8, rPtr, d)
			g.jmpImm(asm.JNE, asm.R0, 0, fail)
			g.emit(asm.LoadMem(rPtr, asm.RFP, -8, asm.DWord))
			g.jmpImm(asm.JEq, rPtr, 0, fail)
		}
		// The value, straight into the data area.
		g.emit(asm.Mov.Reg(asm.R1, rBuf), asm.Add.Imm(asm.R1, int32(s.dataOff)))
		g.probeRead(s.size, rPtr, s.off)
		g.jmpImm(asm.JNE, asm.R0, 0, fail)
		if !s.str {
			sz := sizes[s.size]
			off := int16(s.dataOff)
			switch {
			case s.nbits != 0:
				g.emit(asm.LoadMem(asm.R1, rBuf, off, sz))
				if s.shift != 0 {
					g.emit(asm.RSh.Imm(asm.R1, int32(s.shift)))
				}
				if s.nbits < 32 {
					g.emit(asm.And.Imm(asm.R1, int32(1)<<s.nbits-1))
				} else if s.nbits < 64 {
					g.emit(asm.LoadImm(asm.R2, int64(uint64(1)<<s.nbits-1), asm.DWord), asm.And.Reg(asm.R1, asm.R2))
				}
				g.emit(asm.StoreMem(rBuf, off, asm.R1, sz))
			case s.be:
				g.emit(
					asm.LoadMem(asm.R1, rBuf, off, sz),
					asm.HostTo(asm.BE, asm.R1, sz),
					asm.StoreMem(rBuf, off, asm.R1, sz),
				)
			}
		}
		// Mark the field valid.
		g.emit(
			asm.LoadMem(asm.R1, rBuf, validOff, asm.DWord),
			asm.Or.Imm(asm.R1, int32(1)<<i),
			asm.StoreMem(rBuf, validOff, asm.R1, asm.DWord),
		)
		if s.match != nil {
			g.genMatch(s, i)
		}
		g.jmpImm(asm.Ja, asm.R0, 0, next)
		g.label(fail)
		if s.match != nil {
			// A field that cannot be read does not match.
			g.emit(asm.Mov.Imm(asm.R0, 0), asm.Return())
		}
		g.label(next)
	}
	g.emit(asm.Mov.Imm(asm.R0, 1), asm.Return())
	return g.finish()
}

// genMatch emits the match condition of slot s (field i): on success it
// falls through, otherwise it returns 0.
func (g *gen) genMatch(s *slot, i int) {
	ok := fmt.Sprintf("match_ok_%d", i)
	no := fmt.Sprintf("match_no_%d", i)
	m := s.match
	if s.str {
		// Compare byte by byte; any difference jumps to differ.
		differ := fmt.Sprintf("differ_%d", i)
		for k, c := range m.str {
			g.emit(asm.LoadMem(asm.R1, rBuf, int16(s.dataOff)+int16(k), asm.Byte))
			g.jmpImm(asm.JNE, asm.R1, int32(c), differ)
		}
		if m.op == OpEq {
			g.jmpImm(asm.Ja, asm.R0, 0, ok)
			g.label(differ)
			g.jmpImm(asm.Ja, asm.R0, 0, no)
		} else {
			g.jmpImm(asm.Ja, asm.R0, 0, no)
			g.label(differ)
			g.jmpImm(asm.Ja, asm.R0, 0, ok)
		}
	} else {
		sz := sizes[s.size]
		g.emit(asm.LoadMem(asm.R1, rBuf, int16(s.dataOff), sz))
		if s.signed && s.size < 8 {
			sh := int32(64 - 8*s.size)
			g.emit(asm.LSh.Imm(asm.R1, sh), asm.ArSh.Imm(asm.R1, sh))
		}
		g.emit(asm.LoadImm(asm.R2, int64(m.value), asm.DWord))
		var op asm.JumpOp
		switch m.op {
		case OpEq:
			op = asm.JEq
		case OpNe:
			op = asm.JNE
		case OpLt:
			op = pick(s.signed, asm.JSLT, asm.JLT)
		case OpLe:
			op = pick(s.signed, asm.JSLE, asm.JLE)
		case OpGt:
			op = pick(s.signed, asm.JSGT, asm.JGT)
		case OpGe:
			op = pick(s.signed, asm.JSGE, asm.JGE)
		case OpAnd:
			g.emit(asm.And.Reg(asm.R1, asm.R2))
			g.jmpImm(asm.JNE, asm.R1, 0, ok)
			g.jmpImm(asm.Ja, asm.R0, 0, no)
		}
		if m.op != OpAnd {
			g.jmpReg(op, asm.R1, asm.R2, ok)
			g.jmpImm(asm.Ja, asm.R0, 0, no)
		}
	}
	g.label(no)
	g.emit(asm.Mov.Imm(asm.R0, 0), asm.Return())
	g.label(ok)
}

func pick(signed bool, s, u asm.JumpOp) asm.JumpOp {
	if signed {
		return s
	}
	return u
}
