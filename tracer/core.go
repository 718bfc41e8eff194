package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/btfscan"
)

// CORETypes names the kernel types the BPF programs relocate against
// (CO-RE): the scan keeps a copy of them (btfscan.Options.CORETypes).
// TestCORE fails if a relocation needs another.
var CORETypes = []string{"sk_buff", "sock", "net_device", "net", "in6_addr", "kernel_cpustat"}

// Kfuncs names the kernel functions the BPF programs call.
var Kfuncs = []string{"bpf_rdonly_cast"}

// relocateCORE resolves, in every program of spec, the CO-RE relocations
// against the scan's copy of the kernel types and the kfunc calls with the
// scan's kfunc IDs, and removes both from the instructions' metadata. Left
// to cilium/ebpf, each would parse the kernel's whole BTF and every
// module's (a third of the start-up under emulation), and relocate every
// fentry clone anew. Without core it does nothing.
func relocateCORE(spec *ebpf.CollectionSpec, core *btfscan.CORE, target *btf.Spec) error {
	if core == nil || target == nil {
		return nil
	}
	for name, ps := range spec.Programs {
		if err := relocateProgram(ps.Instructions, core, target); err != nil {
			return fmt.Errorf("program %s: %w", name, err)
		}
	}
	return nil
}

func relocateProgram(insns asm.Instructions, core *btfscan.CORE, target *btf.Spec) error {
	var relos []*btf.CORERelocation
	var at []int
	for i := range insns {
		ins := &insns[i]
		if r := btf.CORERelocationMetadata(ins); r != nil {
			relos = append(relos, r)
			at = append(at, i)
		}
		if ins.IsKfuncCall() {
			name := ins.Reference()
			id, ok := core.Kfuncs[name]
			if !ok {
				return fmt.Errorf("kfunc %s: not in this kernel", name)
			}
			// A new instruction: without cilium/ebpf's kfunc metadata,
			// which would send it to the kernel's BTF again.
			call := asm.Instruction{OpCode: ins.OpCode, Src: asm.PseudoKfuncCall, Constant: int64(id)}
			*ins = call.WithSymbol(ins.Symbol())
		}
	}
	if len(relos) == 0 {
		return nil
	}
	fixups, err := btf.CORERelocate(relos, []*btf.Spec{target}, binary.LittleEndian, func(btf.Type) (btf.TypeID, error) {
		return 0, errors.New("local type IDs are not supported")
	})
	if err != nil {
		return err
	}
	for j, f := range fixups {
		ins := &insns[at[j]]
		if err := f.Apply(ins); err != nil {
			return fmt.Errorf("instruction %d: %w", at[j], err)
		}
		if strings.HasPrefix(relos[j].String(), "CORERelocation(target_type_id,") {
			kid, ok := core.KernelIDs[uint32(ins.Constant)]
			if !ok {
				return fmt.Errorf("instruction %d: no kernel ID for type %d", at[j], ins.Constant)
			}
			ins.Constant = int64(kid)
		}
		*ins = btf.WithCORERelocationMetadata(*ins, nil)
	}
	return nil
}
