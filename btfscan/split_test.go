package btfscan

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf/btf"
)

// splitBuilder hand-encodes split BTF on top of a base file, the way the
// kernel exposes module BTF in /sys/kernel/btf/<module>. The btf package can
// read split BTF but not write it.
type splitBuilder struct {
	nextID   uint32 // ID of the next type
	strBase  uint32 // length of the base string table
	types    bytes.Buffer
	strs     bytes.Buffer
	skbPtrID uint32 // base ID of struct sk_buff *
}

const (
	kindPtr       = 2
	kindTypedef   = 8
	kindFunc      = 12
	kindFuncProto = 13
)

func newSplitBuilder(t *testing.T, basePath string) *splitBuilder {
	t.Helper()
	raw, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpec(basePath)
	if err != nil {
		t.Fatal(err)
	}
	b := &splitBuilder{strBase: binary.NativeEndian.Uint32(raw[20:24])}
	var maxID btf.TypeID
	for typ, err := range spec.All() {
		if err != nil {
			t.Fatal(err)
		}
		id, err := spec.TypeID(typ)
		if err != nil {
			t.Fatal(err)
		}
		maxID = max(maxID, id)
		if ptr, ok := typ.(*btf.Pointer); ok && b.skbPtrID == 0 {
			if st, ok := ptr.Target.(*btf.Struct); ok && st.Name == "sk_buff" {
				b.skbPtrID = uint32(id)
			}
		}
	}
	if b.skbPtrID == 0 {
		t.Fatal("base has no struct sk_buff *")
	}
	b.nextID = uint32(maxID) + 1
	return b
}

func (b *splitBuilder) str(s string) uint32 {
	if s == "" {
		return 0
	}
	off := b.strBase + uint32(b.strs.Len())
	b.strs.WriteString(s)
	b.strs.WriteByte(0)
	return off
}

func (b *splitBuilder) typ(name string, kind, vlen int, sizeType uint32, extra ...uint32) uint32 {
	for _, v := range append([]uint32{b.str(name), uint32(kind)<<24 | uint32(vlen), sizeType}, extra...) {
		binary.Write(&b.types, binary.NativeEndian, v)
	}
	id := b.nextID
	b.nextID++
	return id
}

// fn adds a global function whose parameters are type IDs.
func (b *splitBuilder) fn(name string, params ...uint32) {
	var extra []uint32
	for _, p := range params {
		extra = append(extra, 0, p)
	}
	proto := b.typ("", kindFuncProto, len(params), 0, extra...)
	b.typ(name, kindFunc, 1, proto)
}

// tracepoint adds btf_trace_<name> with a leading void * and the params.
func (b *splitBuilder) tracepoint(name string, params ...uint32) {
	voidp := b.typ("", kindPtr, 0, 0)
	extra := []uint32{0, voidp}
	for _, p := range params {
		extra = append(extra, 0, p)
	}
	proto := b.typ("", kindFuncProto, len(params)+1, 0, extra...)
	ptr := b.typ("", kindPtr, 0, proto)
	b.typ("btf_trace_"+name, kindTypedef, 0, ptr)
}

func (b *splitBuilder) write(t *testing.T, path string) {
	t.Helper()
	var out bytes.Buffer
	hdr := []any{uint16(0xeb9f), uint8(1), uint8(0), uint32(24),
		uint32(0), uint32(b.types.Len()), uint32(b.types.Len()), uint32(b.strs.Len())}
	for _, v := range hdr {
		binary.Write(&out, binary.NativeEndian, v)
	}
	out.Write(b.types.Bytes())
	out.Write(b.strs.Bytes())
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// moduleFixture writes the synthetic vmlinux and a module directory with two
// modules of split BTF on top of it.
func moduleFixture(t *testing.T) (base, dir string) {
	t.Helper()
	base = synthetic(t)
	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinux"), []byte("ignored: the base is read from BTFPath"), 0o644)

	m := newSplitBuilder(t, base)
	skb := m.skbPtrID
	m.fn("mod_rcv", skb)
	m.fn("plain", skb, skb) // vmlinux has "plain": vmlinux wins
	m.fn("mod_out.cold", skb)
	m.tracepoint("mod_event", skb)
	m.write(t, filepath.Join(dir, "mod_a"))

	m = newSplitBuilder(t, base)
	m.fn("mod_rcv", skb) // also in mod_a: the first module (by name) wins
	m.fn("other_xmit", m.skbPtrID, m.skbPtrID)
	m.write(t, filepath.Join(dir, "mod_b"))
	return base, dir
}

func TestScanModules(t *testing.T) {
	base, dir := moduleFixture(t)
	res, err := Scan(Options{BTFPath: base, Kmods: true, ModulesDir: dir, FentryMaxArgs: 12, IgnoreTraceFS: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, module string
		pos, args    int
	}{
		{"mod_rcv", "mod_a", 1, 1},
		{"other_xmit", "mod_b", 1, 2},
		{"plain", "", 1, 1},
	} {
		fn, ok := res.Func(tc.name)
		if !ok {
			t.Errorf("%s: not found", tc.name)
			continue
		}
		if fn.Module != tc.module || fn.SkbPos != tc.pos || fn.NumArgs != tc.args {
			t.Errorf("%s: got %+v", tc.name, fn)
		}
	}
	if _, ok := res.Func("mod_out.cold"); ok {
		t.Error("mod_out.cold included")
	}
	tp, ok := res.Tracepoint("mod_event")
	if !ok || tp.Module != "mod_a" || tp.SkbPos != 1 || tp.NumArgs != 1 {
		t.Errorf("mod_event: %+v, %v", tp, ok)
	}
	if len(res.Modules) != 2 {
		t.Errorf("modules %v", res.Modules)
	}

	// Without Kmods the modules are not read.
	res, err = Scan(Options{BTFPath: base, ModulesDir: dir, IgnoreTraceFS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Func("mod_rcv"); ok {
		t.Error("module function found without Kmods")
	}
}

// TestModuleAttachIDs checks the IDs of module functions and tracepoints
// against cilium/ebpf's lookups in the modules' split BTF, and that the
// vmlinux names are looked up in the same call.
func TestModuleAttachIDs(t *testing.T) {
	base, dir := moduleFixture(t)
	vm, got, err := KernelAttachIDs(base, dir, Names{Funcs: []string{"two_skbs", "plain"}}, map[string]Names{
		"mod_a":   {Funcs: []string{"mod_rcv", "plain", "absent"}, Tracepoints: []string{"mod_event"}},
		"mod_b":   {Funcs: []string{"mod_rcv", "other_xmit"}},
		"mod_old": {Funcs: []string{"gone"}}, // unloaded since the scan
	})
	if err == nil || !strings.Contains(err.Error(), "mod_old") {
		t.Errorf("error %v, want one about mod_old", err)
	}
	baseSpec, err := btf.LoadSpec(base)
	if err != nil {
		t.Fatal(err)
	}
	var two *btf.Func
	if err := baseSpec.TypeByName("two_skbs", &two); err != nil {
		t.Fatal(err)
	}
	if want, _ := baseSpec.TypeID(two); vm == nil || vm.Funcs["two_skbs"] != want {
		t.Errorf("vmlinux two_skbs: %v, want ID %d", vm, want)
	}
	if _, ok := vm.Funcs["plain"]; ok {
		t.Error("vmlinux plain, a name with two FUNCs, has an ID")
	}
	for _, c := range []struct {
		mod, name string
		tp        bool
	}{
		{"mod_a", "mod_rcv", false},
		{"mod_a", "plain", false},
		{"mod_a", "mod_event", true},
		{"mod_b", "mod_rcv", false},
		{"mod_b", "other_xmit", false},
	} {
		f, err := os.Open(filepath.Join(dir, c.mod))
		if err != nil {
			t.Fatal(err)
		}
		spec, err := btf.LoadSplitSpecFromReader(f, baseSpec)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ids := got[c.mod]
		if ids == nil {
			t.Fatalf("%s: no IDs", c.mod)
		}
		if c.tp {
			var td *btf.Typedef
			if err := spec.TypeByName("btf_trace_"+c.name, &td); err != nil {
				t.Fatal(err)
			}
			want, _ := spec.TypeID(td)
			if ids.Tracepoints[c.name] != want {
				t.Errorf("%s tracepoint %s: ID %d, want %d", c.mod, c.name, ids.Tracepoints[c.name], want)
			}
			continue
		}
		var fn *btf.Func
		if err := spec.TypeByName(c.name, &fn); err != nil {
			t.Fatal(err)
		}
		want, _ := spec.TypeID(fn)
		proto, _ := spec.TypeID(fn.Type)
		if ids.Funcs[c.name] != want || ids.Protos[c.name] != proto {
			t.Errorf("%s %s: ID %d proto %d, want %d and %d", c.mod, c.name, ids.Funcs[c.name], ids.Protos[c.name], want, proto)
		}
	}
	if _, ok := got["mod_a"].Funcs["absent"]; ok {
		t.Error("absent function has an ID")
	}
	if _, ok := got["mod_old"]; ok {
		t.Error("unreadable module has IDs")
	}
}

// TestScanKeepsNoView checks that no name a scan returns points into the
// BTF it read, which would keep the whole file in memory for as long as the
// result lives (4.4 MB for 6.1's vmlinux, through the names of functions
// found more than once). The fixture has such names: "plain" in vmlinux and
// mod_a, "mod_rcv" in both modules. The walk is Scan's, on buffers the test
// keeps.
func TestScanKeepsNoView(t *testing.T) {
	base, dir := moduleFixture(t)
	var bufs [][]byte
	load := func(path string, b *rawSpec) *rawSpec {
		data, err := readBTF(path)
		if err != nil {
			t.Fatal(err)
		}
		sp, err := parseRaw(data, b)
		if err != nil {
			t.Fatal(err)
		}
		bufs = append(bufs, data)
		return sp
	}
	s := scanner{funcs: map[string]*funcCands{}, tps: map[string]Tracepoint{}}
	vmlinux := load(base, nil)
	s.walk(vmlinux, "")
	for _, m := range []string{"mod_a", "mod_b"} {
		s.walk(load(filepath.Join(dir, m), vmlinux), m)
	}
	inside := func(str string) bool {
		if str == "" {
			return false
		}
		p := uintptr(unsafe.Pointer(unsafe.StringData(str)))
		for _, b := range bufs {
			start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
			if p >= start && p < start+uintptr(len(b)) {
				return true
			}
		}
		return false
	}
	funcs := s.resolve(12, traceLists{})
	if len(funcs) == 0 {
		t.Fatal("no functions found")
	}
	for _, f := range funcs {
		if inside(f.Name) || inside(f.Module) {
			t.Errorf("function %q (module %q) is a view into the BTF read", f.Name, f.Module)
		}
	}
	for name, tp := range s.tps {
		if inside(name) || inside(tp.Name) {
			t.Errorf("tracepoint %q is a view into the BTF read", name)
		}
	}
}
