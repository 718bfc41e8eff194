package tracer

import (
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// readOnlyHelpers are the BPF helpers ipftrace's programs may call: they
// read kernel memory, time and context, or use ipftrace's own maps and ring
// buffer. None writes to packets, to user or kernel memory, overrides a
// return value or sends a signal. A new helper must be added here on
// purpose, after checking that it changes nothing outside ipftrace's maps.
var readOnlyHelpers = []asm.BuiltinFunc{
	asm.FnMapLookupElem, asm.FnMapUpdateElem, asm.FnMapDeleteElem, // ipftrace's own maps
	asm.FnRingbufReserve, asm.FnRingbufSubmit, asm.FnRingbufDiscard, asm.FnRingbufOutput, asm.FnRingbufQuery,
	asm.FnProbeRead, asm.FnProbeReadStr, asm.FnProbeReadKernel, asm.FnProbeReadKernelStr,
	asm.FnKtimeGetNs, asm.FnKtimeGetBootNs, asm.FnGetSmpProcessorId,
	asm.FnGetFuncArg, asm.FnGetFuncArgCnt, asm.FnGetFuncRet, asm.FnGetFuncIp, asm.FnGetAttachCookie,
	asm.FnGetCurrentPidTgid, asm.FnGetCurrentComm, asm.FnGetCurrentTask, asm.FnGetCurrentTaskBtf,
	asm.FnLoop,
}

// readOnlyKfuncs are the kfuncs ipftrace's programs may call. bpf_rdonly_cast
// only retypes a pointer for reading (its result is read-only to the
// verifier).
var readOnlyKfuncs = []string{"bpf_rdonly_cast"}

// TestProgramsOnlyRead: every BPF program ipftrace loads is a tracing
// program (fentry, fexit, tp_btf, kprobe, kprobe-multi: none can change a packet
// or a return value, unlike XDP, tc, fmod_ret or LSM programs) that calls
// only read-only helpers and kfuncs, and uses only its own maps.
func TestProgramsOnlyRead(t *testing.T) {
	spec, err := loadSpecForTest()
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Programs) == 0 {
		t.Fatal("no programs")
	}
	for name, ps := range spec.Programs {
		switch {
		case ps.Type == ebpf.Tracing && (ps.AttachType == ebpf.AttachTraceFEntry || ps.AttachType == ebpf.AttachTraceFExit ||
			ps.AttachType == ebpf.AttachTraceRawTp):
		case ps.Type == ebpf.Kprobe && (ps.AttachType == ebpf.AttachNone || ps.AttachType == ebpf.AttachTraceKprobeMulti):
		default:
			t.Errorf("%s: program type %v, attach type %v: not a read-only tracing program", name, ps.Type, ps.AttachType)
		}
		calls := 0
		for _, ins := range ps.Instructions {
			switch {
			case ins.IsKfuncCall():
				if !slices.Contains(readOnlyKfuncs, ins.Reference()) {
					t.Errorf("%s: calls kfunc %s, not in the read-only list (%v)", name, ins.Reference(), ins)
				}
			case ins.IsBuiltinCall():
				calls++
				if fn := asm.BuiltinFunc(ins.Constant); !slices.Contains(readOnlyHelpers, fn) {
					t.Errorf("%s: calls helper %v, not in the read-only list", name, fn)
				}
			}
			if ref := ins.Reference(); ins.IsLoadFromMap() && ref != "" {
				if _, ok := spec.Maps[ref]; !ok {
					t.Errorf("%s: references map %s, not one of ipftrace's", name, ref)
				}
			}
		}
		if calls == 0 {
			t.Errorf("%s: calls no helper at all (cannot emit events?)", name)
		}
	}
}
