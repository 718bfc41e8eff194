package btfscan

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// IDs are the BTF type IDs of attach targets, in vmlinux or in one
// module's split BTF (whose IDs continue the vmlinux ones).
type IDs struct {
	Funcs       map[string]btf.TypeID // the FUNC of each function
	Protos      map[string]btf.TypeID // the FUNC_PROTO of each function in Funcs
	Tracepoints map[string]btf.TypeID // the btf_trace_<name> TYPEDEF of each tracepoint
}

// AttachIDs returns the type IDs in the vmlinux BTF at path that programs
// name as their attach target: the FUNC of each name in funcs (fentry),
// with its FUNC_PROTO, and the btf_trace_<name> TYPEDEF of each name in
// tracepoints (tp_btf). Functions with the same FUNC_PROTO ID may share
// tracing programs by tail call (the kernel compares the prototypes). It
// reads the raw BTF and decodes no type: looking the targets up in a
// cilium/ebpf kernel spec inflates each function's whole type graph
// (struct sk_buff and everything it reaches), tens of MB for an --auto
// run. A name with no record, or with more than one of its kind (two
// static functions of one name, which cilium/ebpf refuses as well), is
// left out.
func AttachIDs(path string, funcs, tracepoints []string) (*IDs, error) {
	ids, _, err := KernelAttachIDs(path, "", Names{funcs, tracepoints}, nil)
	return ids, err
}

// Names are the functions and tracepoints of one BTF object to look up.
type Names struct {
	Funcs, Tracepoints []string
}

// KernelAttachIDs is AttachIDs for vmlinux and kernel modules at once, with
// one read of the vmlinux BTF: modules maps a module name to its targets'
// names, looked up in dir/<module> (split BTF on the vmlinux BTF at path).
// If the vmlinux BTF cannot be read, it returns only the error. A module
// whose BTF cannot be read (unloaded since the scan, say) is left out, and
// the first such error is returned alongside everything else's IDs.
func KernelAttachIDs(path, dir string, vmlinux Names, modules map[string]Names) (*IDs, map[string]*IDs, error) {
	base, err := loadRaw(path, nil)
	if err != nil {
		return nil, nil, err
	}
	ids := findIDs(base, vmlinux.Funcs, vmlinux.Tracepoints)
	if len(modules) == 0 {
		return ids, nil, nil
	}
	out := make(map[string]*IDs, len(modules))
	var first error
	for mod, names := range modules {
		s, err := loadRaw(filepath.Join(dir, mod), base)
		if err != nil {
			if first == nil {
				first = fmt.Errorf("module %s: %w", mod, err)
			}
			continue
		}
		out[mod] = findIDs(s, names.Funcs, names.Tracepoints)
	}
	return ids, out, first
}

// findIDs looks funcs and tracepoints up among the types of s itself (not
// its base).
func findIDs(s *rawSpec, funcs, tracepoints []string) *IDs {
	// Found by the name in the BTF, whose strings point into data: the
	// result is keyed by the callers' strings, so that it does not keep
	// the whole BTF (~5 MB) alive.
	type found struct {
		id, proto btf.TypeID
		n         int
	}
	wantFn := make(map[string]*found, len(funcs))
	for _, n := range funcs {
		wantFn[n] = &found{}
	}
	wantTp := make(map[string]*found, len(tracepoints))
	for _, n := range tracepoints {
		wantTp[n] = &found{}
	}
	for i, off := range s.offs {
		r := s.types[off:]
		id := btf.TypeID(s.firstID + uint32(i))
		switch le32(r[4:]) >> 24 & 0x1f {
		case kFunc:
			if f := wantFn[s.name(le32(r))]; f != nil {
				f.id, f.proto, f.n = id, btf.TypeID(le32(r[8:])), f.n+1 // btf_type.type
			}
		case kTypedef:
			if name, ok := strings.CutPrefix(s.name(le32(r)), tracepointPrefix); ok {
				if f := wantTp[name]; f != nil {
					f.id, f.n = id, f.n+1
				}
			}
		}
	}
	ids := &IDs{
		Funcs:       make(map[string]btf.TypeID, len(funcs)),
		Protos:      make(map[string]btf.TypeID, len(funcs)),
		Tracepoints: make(map[string]btf.TypeID, len(tracepoints)),
	}
	for _, n := range funcs {
		if f := wantFn[n]; f.n == 1 {
			ids.Funcs[n], ids.Protos[n] = f.id, f.proto
		}
	}
	for _, n := range tracepoints {
		if f := wantTp[n]; f.n == 1 {
			ids.Tracepoints[n] = f.id
		}
	}
	return ids
}
