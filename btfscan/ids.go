package btfscan

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// AttachIDs returns the type IDs in the vmlinux BTF at path that programs
// name as their attach target: the FUNC of each name in funcs (fentry) and
// the btf_trace_<name> TYPEDEF of each name in tracepoints (tp_btf). It
// reads the raw BTF and decodes no type: looking the targets up in a
// cilium/ebpf kernel spec inflates each function's whole type graph
// (struct sk_buff and everything it reaches), tens of MB for an --auto
// run. A name with no record, or with more than one of its kind (two
// static functions of one name, which cilium/ebpf refuses as well), is
// left out.
func AttachIDs(path string, funcs, tracepoints []string) (fn, tp map[string]btf.TypeID, err error) {
	data, err := readBTF(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read BTF %s: %w", path, err)
	}
	s, err := parseRaw(data, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("BTF %s: %w", path, err)
	}
	const ambiguous = btf.TypeID(0)
	want := func(names []string) map[string]btf.TypeID {
		m := make(map[string]btf.TypeID, len(names))
		for _, n := range names {
			m[n] = ambiguous // until found once
		}
		return m
	}
	fn, tp = want(funcs), want(tracepoints)
	seenFn := make(map[string]int, len(funcs))
	seenTp := make(map[string]int, len(tracepoints))
	note := func(m map[string]btf.TypeID, seen map[string]int, name string, id uint32) {
		if _, ok := m[name]; !ok {
			return
		}
		if seen[name]++; seen[name] == 1 {
			m[name] = btf.TypeID(id)
		} else {
			m[name] = ambiguous
		}
	}
	for i, off := range s.offs {
		r := s.types[off:]
		id := s.firstID + uint32(i)
		switch le32(r[4:]) >> 24 & 0x1f {
		case kFunc:
			note(fn, seenFn, s.name(le32(r)), id)
		case kTypedef:
			if name, ok := strings.CutPrefix(s.name(le32(r)), tracepointPrefix); ok {
				note(tp, seenTp, name, id)
			}
		}
	}
	for _, m := range []map[string]btf.TypeID{fn, tp} {
		for name, id := range m {
			if id == ambiguous {
				delete(m, name)
			}
		}
	}
	return fn, tp, nil
}
