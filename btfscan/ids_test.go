package btfscan

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestAttachIDs checks AttachIDs against cilium/ebpf's lookups in the
// running kernel's BTF, for every skb function and tracepoint of a scan:
// the same ID where cilium/ebpf finds exactly one FUNC (or btf_trace_
// TYPEDEF), and nothing where it finds none or several.
func TestAttachIDs(t *testing.T) {
	res, spec := kernelScan(t)
	var funcs, tps []string
	for _, f := range res.Funcs {
		if f.Module == "" {
			funcs = append(funcs, f.Name)
		}
	}
	for _, tp := range res.Tracepoints {
		if tp.Module == "" {
			tps = append(tps, tp.Name)
		}
	}
	funcs = append(funcs, "no_such_function_ipftrace")
	ids, err := AttachIDs(DefaultBTFPath, funcs, tps)
	if err != nil {
		t.Fatal(err)
	}
	check := func(kind string, names []string, got map[string]btf.TypeID, lookup func(string) (btf.TypeID, int)) {
		found := 0
		for _, name := range names {
			if strings.Contains(name, "___") {
				// cilium/ebpf cuts a name at "___" (a CO-RE flavor suffix):
				// ___pskb_trim is "" to it. The kernel attaches to it.
				if _, ok := got[name]; ok {
					found++
				}
				continue
			}
			want, n := lookup(name)
			id, ok := got[name]
			switch {
			case n == 1 && (!ok || id != want):
				t.Errorf("%s %s: ID %d (found %v), cilium/ebpf finds %d", kind, name, id, ok, want)
			case n != 1 && ok:
				t.Errorf("%s %s: ID %d, but cilium/ebpf finds %d records", kind, name, id, n)
			case ok:
				found++
			}
		}
		if found < len(names)/2 {
			t.Errorf("%s: only %d of %d names have an ID", kind, found, len(names))
		}
		t.Logf("%s: %d of %d names have an ID", kind, found, len(names))
	}
	check("function", funcs, ids.Funcs, func(name string) (btf.TypeID, int) {
		return idsOf[*btf.Func](t, spec, name)
	})
	check("tracepoint", tps, ids.Tracepoints, func(name string) (btf.TypeID, int) {
		return idsOf[*btf.Typedef](t, spec, tracepointPrefix+name)
	})
}

// TestAttachProtos checks each function's FUNC_PROTO ID against
// cilium/ebpf's, and that every function with an ID has one.
func TestAttachProtos(t *testing.T) {
	res, spec := kernelScan(t)
	var funcs []string
	for _, f := range res.Funcs {
		if f.Module == "" && !strings.Contains(f.Name, "___") {
			funcs = append(funcs, f.Name)
		}
	}
	ids, err := AttachIDs(DefaultBTFPath, funcs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids.Protos) != len(ids.Funcs) {
		t.Errorf("%d prototypes for %d functions", len(ids.Protos), len(ids.Funcs))
	}
	distinct := map[btf.TypeID]bool{}
	for name, id := range ids.Funcs {
		typ, err := spec.TypeByID(id)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fn, ok := typ.(*btf.Func)
		if !ok {
			t.Fatalf("%s: ID %d is a %T", name, id, typ)
		}
		want, err := spec.TypeID(fn.Type)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids.Protos[name]; got != want {
			t.Errorf("%s: prototype %d, cilium/ebpf says %d", name, got, want)
		}
		distinct[want] = true
	}
	// Many skb functions share a prototype ("int (struct sk_buff *skb)"):
	// that is what lets fentry share handlers.
	if len(distinct) >= len(ids.Funcs) {
		t.Errorf("%d prototypes for %d functions: none shared", len(distinct), len(ids.Funcs))
	}
	t.Logf("%d functions, %d prototypes", len(ids.Funcs), len(distinct))
}

// kernelScan scans the running kernel's BTF (skipping the test loudly
// without it) and returns the scan and cilium/ebpf's spec of the BTF.
func kernelScan(t *testing.T) (*Result, *btf.Spec) {
	t.Helper()
	if _, err := os.Stat(DefaultBTFPath); err != nil {
		t.Skipf("%s: SKIPPED, no kernel BTF at %s: %v", t.Name(), DefaultBTFPath, err)
	}
	res, err := Scan(Options{IgnoreTraceFS: true})
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	return res, spec
}

// idsOf returns the ID of the one type of kind T named name, and how many
// there are.
func idsOf[T btf.Type](t *testing.T, spec *btf.Spec, name string) (btf.TypeID, int) {
	types, err := spec.AnyTypesByName(name)
	if err != nil {
		return 0, 0
	}
	var ids []btf.TypeID
	for _, typ := range types {
		if _, ok := typ.(T); ok {
			id, err := spec.TypeID(typ)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 {
		return 0, len(ids)
	}
	return ids[0], 1
}
