package btfscan

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// IDs are the vmlinux BTF type IDs of attach targets.
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
	data, err := readBTF(path)
	if err != nil {
		return nil, fmt.Errorf("read BTF %s: %w", path, err)
	}
	s, err := parseRaw(data, nil)
	if err != nil {
		return nil, fmt.Errorf("BTF %s: %w", path, err)
	}
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
	return ids, nil
}
