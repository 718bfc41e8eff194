package tracer

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/bpf"
)

// The parsed BPF objects and the kernel's BTF, shared by every load of a
// process (the tracepoint backend creates its objects twice) until the run
// has attached and forgets both (forgetShared). Each program group is
// parsed on first use only: a kprobe-multi run never parses the fentry
// programs. Parsing in the background while scanning was tried: no faster
// start-up under emulation, and a higher peak RSS (both BTF parses live at
// once).

// shared holds what every load of the process shares, until forgetShared.
var shared struct {
	mu    sync.Mutex
	specs map[bpf.Group]*ebpf.CollectionSpec // each program group's object, parsed on first use
	btf   *btf.Cache                         // the kernel's BTF, parsed by the first load that needs it
}

// sharedBTF returns the process's cache of the kernel's BTF (with the
// scan's CO-RE types, only fentry and tp_btf loads parse it), a new one
// after forgetShared.
func sharedBTF() *btf.Cache {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.btf == nil {
		shared.btf = btf.NewCache()
	}
	return shared.btf
}

// firstGroup returns the group of the programs a run with the given
// --backend loads first, whose object the maps and globals are then
// created from: every group has the same maps and globals (sameLayout), so
// a run parses no object only for them. auto probes kprobe-multi first.
func firstGroup(backend string) bpf.Group {
	switch backend {
	case BackendFentry:
		return bpf.Fentry
	case BackendKprobe:
		return bpf.Kprobe
	case BackendTracepoint:
		return bpf.Tracepoint
	}
	return bpf.KprobeMulti
}

// groupSpec returns a copy of group g's parsed object, which callers may
// change (constants, instructions): the parse stays pristine. A copy costs
// about 1/20 of a parse.
func groupSpec(g bpf.Group) (*ebpf.CollectionSpec, error) {
	if !slices.Contains(bpf.Groups, g) {
		return nil, fmt.Errorf("no BPF program group %v", g)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	spec := shared.specs[g]
	if spec == nil {
		var err error
		if spec, err = bpf.Load(g); err != nil {
			return nil, fmt.Errorf("load BPF object (%v programs): %w", g, err)
		}
		if shared.specs == nil {
			shared.specs = make(map[bpf.Group]*ebpf.CollectionSpec, len(bpf.Groups))
		}
		shared.specs[g] = spec
	}
	return spec.Copy(), nil
}

// forgetShared drops the parsed objects and the kernel's BTF. A run calls
// it once it has loaded all its programs: in a 6.1 VM (fentry --auto) the
// kernel's BTF was ~11 MB of live heap during the whole trace (its raw
// bytes, read where the kernel cannot map the file, and the types the
// loads decoded), the fentry object ~3 MB; and the garbage collector lets
// the heap grow to twice what is live. Later loads parse both again.
func forgetShared() {
	shared.mu.Lock()
	shared.specs = nil
	shared.btf = nil
	shared.mu.Unlock()
}

// templateGroup returns the group of the program template name.
func templateGroup(name string) bpf.Group {
	switch {
	case strings.HasPrefix(name, "fentry_"), strings.HasPrefix(name, "fexit_"):
		return bpf.Fentry
	case strings.HasPrefix(name, "kprobe_multi_"), strings.HasPrefix(name, "kretprobe_multi_"):
		return bpf.KprobeMulti
	case strings.HasPrefix(name, "kprobe_"), strings.HasPrefix(name, "kretprobe_"):
		return bpf.Kprobe
	}
	return bpf.Tracepoint
}

// sameLayout checks that the programs of spec can use the maps created from
// base: the same maps, the same sizes, and every global at the same offset
// of the same section. The groups are one source file compiled with
// different defines, so this fails only if a global moved into an #ifdef.
func sameLayout(base, spec *ebpf.CollectionSpec) error {
	for name, m := range spec.Maps {
		if name == ".rodata" {
			continue
		}
		bm, ok := base.Maps[name]
		if !ok {
			return fmt.Errorf("map %s is not in the maps' object", name)
		}
		if m.Type != bm.Type || m.KeySize != bm.KeySize || m.ValueSize != bm.ValueSize || m.MaxEntries != bm.MaxEntries {
			return fmt.Errorf("map %s differs from the maps' object", name)
		}
	}
	for name, v := range spec.Variables {
		if v.SectionName == ".rodata" {
			continue
		}
		bv, ok := base.Variables[name]
		if !ok || bv.SectionName != v.SectionName || bv.Offset != v.Offset || bv.Size() != v.Size() {
			return fmt.Errorf("global %s differs from the maps' object", name)
		}
	}
	return nil
}
