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
	const ambiguous = btf.TypeID(0)
	want := func(names []string) map[string]btf.TypeID {
		m := make(map[string]btf.TypeID, len(names))
		for _, n := range names {
			m[n] = ambiguous // until found once
		}
		return m
	}
	ids := &IDs{Funcs: want(funcs), Protos: make(map[string]btf.TypeID, len(funcs)), Tracepoints: want(tracepoints)}
	seenFn := make(map[string]int, len(funcs))
	seenTp := make(map[string]int, len(tracepoints))
	note := func(m map[string]btf.TypeID, seen map[string]int, name string, id uint32) bool {
		if _, ok := m[name]; !ok {
			return false
		}
		if seen[name]++; seen[name] == 1 {
			m[name] = btf.TypeID(id)
			return true
		}
		m[name] = ambiguous
		return false
	}
	for i, off := range s.offs {
		r := s.types[off:]
		id := s.firstID + uint32(i)
		switch le32(r[4:]) >> 24 & 0x1f {
		case kFunc:
			if name := s.name(le32(r)); note(ids.Funcs, seenFn, name, id) {
				ids.Protos[name] = btf.TypeID(le32(r[8:])) // btf_type.type
			}
		case kTypedef:
			if name, ok := strings.CutPrefix(s.name(le32(r)), tracepointPrefix); ok {
				note(ids.Tracepoints, seenTp, name, id)
			}
		}
	}
	for _, m := range []map[string]btf.TypeID{ids.Funcs, ids.Tracepoints} {
		for name, id := range m {
			if id == ambiguous {
				delete(m, name)
				delete(ids.Protos, name)
			}
		}
	}
	return ids, nil
}
