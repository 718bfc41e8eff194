package btfscan

import (
	"encoding/binary"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/ksym"
)

// Differential tests: the raw BTF scan must return exactly what the
// btf.LoadSpec-based reference scan (scan_reference_test.go) returns.

func diffScan(t *testing.T, opts Options) *Result {
	t.Helper()
	got, err := Scan(opts)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	want, spec, err := refScan(opts)
	if err != nil {
		t.Fatalf("reference scan: %v", err)
	}
	if len(got.Funcs) != len(want.Funcs) {
		t.Errorf("%d funcs, reference has %d", len(got.Funcs), len(want.Funcs))
	}
	if len(got.Tracepoints) != len(want.Tracepoints) {
		t.Errorf("%d tracepoints, reference has %d", len(got.Tracepoints), len(want.Tracepoints))
	}
	// The reference scans BTF only; addresses come from kallsyms
	// (TestSetAddrs, and TestDiffHost checks that a host scan has them).
	funcs := slices.Clone(got.Funcs)
	for i := range funcs {
		funcs[i].Addr = 0
	}
	diffEntries(t, "func", funcs, want.Funcs, func(f Func) string { return f.Name })
	diffEntries(t, "tracepoint", got.Tracepoints, want.Tracepoints, func(tp Tracepoint) string { return tp.Name })
	if !slices.Equal(got.Modules, want.Modules) {
		t.Errorf("modules %v, reference %v", got.Modules, want.Modules)
	}
	if got.FentryMaxArgs != want.FentryMaxArgs || got.FilterListKnown != want.FilterListKnown || got.BlacklistKnown != want.BlacklistKnown {
		t.Errorf("got FentryMaxArgs %d FilterListKnown %v BlacklistKnown %v, reference %d %v %v",
			got.FentryMaxArgs, got.FilterListKnown, got.BlacklistKnown, want.FentryMaxArgs, want.FilterListKnown, want.BlacklistKnown)
	}

	wantDrop, wantErr := DropReasons(spec)
	gotDrop, gotErr := got.DropReasons()
	if (gotErr == nil) != (wantErr == nil) {
		t.Errorf("DropReasons error %v, reference %v", gotErr, wantErr)
	} else if !maps.Equal(gotDrop, wantDrop) {
		t.Errorf("DropReasons %v, reference %v", gotDrop, wantDrop)
	}
	return got
}

// diffEntries compares every field of every entry, sorted by name.
func diffEntries[T comparable](t *testing.T, what string, got, want []T, name func(T) string) {
	t.Helper()
	i, j, bad := 0, 0, 0
	for (i < len(got) || j < len(want)) && bad < 20 {
		switch {
		case j == len(want) || i < len(got) && name(got[i]) < name(want[j]):
			t.Errorf("%s %+v: not in the reference", what, got[i])
			i++
			bad++
		case i == len(got) || name(want[j]) < name(got[i]):
			t.Errorf("%s %+v: missing (in the reference)", what, want[j])
			j++
			bad++
		default:
			if got[i] != want[j] {
				t.Errorf("%s: got %+v, reference %+v", what, got[i], want[j])
				bad++
			}
			i++
			j++
		}
	}
}

func TestDiffHost(t *testing.T) {
	requireVmlinux(t)
	res := diffScan(t, Options{Kmods: true})
	t.Logf("%d funcs, %d tracepoints, %d modules identical", len(res.Funcs), len(res.Tracepoints), len(res.Modules))
	if os.Geteuid() == 0 {
		// As root, a vmlinux function has an address if and only if
		// kallsyms has a text symbol of exactly its name.
		raw, err := os.ReadFile(ksym.DefaultPath)
		if err != nil {
			t.Fatal(err)
		}
		text := map[string]bool{}
		for _, line := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(line); len(f) == 3 && (f[1] == "t" || f[1] == "T") {
				text[f[2]] = true
			}
		}
		n := 0
		for _, f := range res.Funcs {
			if f.Module != "" {
				continue
			}
			if (f.Addr != 0) != text[f.Name] {
				t.Errorf("%s: address %#x, kallsyms has the symbol: %v", f.Name, f.Addr, text[f.Name])
			}
			if f.Addr != 0 {
				n++
			}
		}
		t.Logf("%d functions with an address", n)
	}
	for _, max := range []int{6, 12} {
		diffScan(t, Options{Kmods: true, FentryMaxArgs: max, IgnoreTraceFS: true})
	}
}

func TestDiffSynthetic(t *testing.T) {
	path := synthetic(t)
	for _, max := range []int{6, 12} {
		diffScan(t, Options{BTFPath: path, FentryMaxArgs: max, IgnoreTraceFS: true})
	}
	dir := t.TempDir()
	ff := filepath.Join(dir, "available_filter_functions")
	bl := filepath.Join(dir, "blacklist")
	os.WriteFile(ff, []byte("# comment\nplain\nblacklisted\nthirteen [mod]\n  \nseventh\r\nsmall_by_value\tx"), 0o644)
	os.WriteFile(bl, []byte("0xffffffff81000000-0xffffffff81000010\tblacklisted\nplain\n\n0x1-0x2 seventh extra\n"), 0o644)
	diffScan(t, Options{BTFPath: path, FentryMaxArgs: 6, FilterFunctions: ff, KprobeBlacklist: bl})
}

func TestDiffModules(t *testing.T) {
	base, dir := moduleFixture(t)
	res := diffScan(t, Options{BTFPath: base, Kmods: true, ModulesDir: dir, FentryMaxArgs: 12, IgnoreTraceFS: true})
	if len(res.Modules) != 2 {
		t.Errorf("modules %v", res.Modules)
	}
	// Traceability applies to module functions by name.
	ff := filepath.Join(t.TempDir(), "available_filter_functions")
	os.WriteFile(ff, []byte("other_xmit [mod_b]\nplain\nmod_rcv\n"), 0o644)
	diffScan(t, Options{BTFPath: base, Kmods: true, ModulesDir: dir, FentryMaxArgs: 6, FilterFunctions: ff, KprobeBlacklist: ff})
}

// edgeTypes covers corners of the classification the kernel may not have:
// 128-bit integers, unions, qualifier and typedef chains on both sides of the
// pointer, type tags, variadic functions, forward-declared sk_buff, drop
// reasons with signed values.
func edgeTypes() []btf.Type {
	i32 := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	i128 := &btf.Int{Name: "__int128", Size: 16, Encoding: btf.Signed}
	skb := &btf.Struct{Name: "sk_buff", Size: 232}
	fwd := &btf.Fwd{Name: "sk_buff", Kind: btf.FwdStruct}
	union16 := &btf.Union{Name: "u16b", Size: 16}
	union32 := &btf.Union{Name: "u32b", Size: 32}
	s12 := &btf.Struct{Name: "s12", Size: 12}
	s8 := &btf.Struct{Name: "s8", Size: 8}
	skbp := &btf.Pointer{Target: skb}
	voidp := &btf.Pointer{Target: &btf.Void{}}
	var chain btf.Type = skbp
	for i := range 40 {
		if i%2 == 0 {
			chain = &btf.Const{Type: chain}
		} else {
			chain = &btf.Typedef{Name: "t", Type: chain}
		}
	}
	var chain30 btf.Type = skb
	for range 30 {
		chain30 = &btf.Volatile{Type: chain30}
	}
	p := func(ts ...btf.Type) []btf.FuncParam {
		ps := make([]btf.FuncParam, len(ts))
		for i, t := range ts {
			ps[i] = btf.FuncParam{Name: "a", Type: t}
		}
		return ps
	}
	fn := func(name string, ts ...btf.Type) btf.Type {
		return &btf.Func{Name: name, Linkage: btf.StaticFunc, Type: &btf.FuncProto{Return: i32, Params: p(ts...)}}
	}
	tp := func(name string, ts ...btf.Type) btf.Type {
		return &btf.Typedef{Name: "btf_trace_" + name, Type: &btf.Pointer{Target: &btf.FuncProto{Return: &btf.Void{}, Params: p(ts...)}}}
	}
	return []btf.Type{
		fn("int128_first", i128, i32, skbp),
		fn("int128_typedef", &btf.Typedef{Name: "s128", Type: i128}, skbp),
		fn("union16", union16, skbp),
		fn("union32", union32, skbp),
		fn("s12_s8", s12, s8, i32, i32, i32, skbp),
		fn("s12x3", s12, s12, s12, skbp),
		fn("restrict_skb", &btf.Restrict{Type: skbp}),
		fn("tagged_skb", &btf.Pointer{Target: &btf.TypeTag{Type: skb, Value: "rcu"}}),
		fn("tagged_ptr", &btf.TypeTag{Type: skbp, Value: "percpu"}),
		fn("long_chain", chain),
		fn("chain30", &btf.Pointer{Target: chain30}),
		fn("fwd_skb", &btf.Pointer{Target: fwd}),
		fn("variadic", i32, skbp, &btf.Void{}),
		fn("void_arg", &btf.Void{}, skbp),
		fn("dup_static", skbp),
		fn("dup_static", i32, i32, skbp),
		fn("seven_slots", i128, i128, i128, skbp),
		&btf.Func{Name: "not_proto", Linkage: btf.GlobalFunc, Type: &btf.FuncProto{Return: i32}},
		tp("typedef_ctx", &btf.Typedef{Name: "ctx_t", Type: voidp}, i32, skbp),
		tp("const_ctx", &btf.Const{Type: voidp}, skbp),
		tp("int_ctx", i32, skbp),
		tp("dotted.name", voidp, skbp),
		tp("fwd_skb", voidp, &btf.Pointer{Target: fwd}),
		tp("only_ctx", voidp),
		&btf.Typedef{Name: "btf_trace_typedef_ptr", Type: &btf.Typedef{Name: "x", Type: &btf.Pointer{Target: &btf.FuncProto{Return: i32, Params: p(voidp, skbp)}}}},
		&btf.Typedef{Name: "btf_trace_ptr_typedef_proto", Type: &btf.Pointer{Target: &btf.Typedef{Name: "x", Type: &btf.FuncProto{Return: i32, Params: p(voidp, skbp)}}}},
		&btf.Enum{Name: "skb_drop_reason", Size: 4, Signed: true, Values: []btf.EnumValue{
			{Name: "SKB_NOT_DROPPED_YET", Value: 0},
			{Name: "SKB_DROP_REASON_NOT_SPECIFIED", Value: 2},
			{Name: "SKB_DROP_REASON_NEGATIVE", Value: math.MaxUint64},
			{Name: "SKB_DROP_REASON_DUP", Value: 2},
		}},
		&btf.Enum{Name: "skb_drop_reason___flavour", Size: 8, Values: []btf.EnumValue{{Name: "X", Value: 1 << 40}}},
	}
}

func writeBTF(t *testing.T, types []btf.Type, opts *btf.MarshalOptions) string {
	t.Helper()
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDiffEdgeCases(t *testing.T) {
	path := writeBTF(t, edgeTypes(), nil)
	for _, max := range []int{6, 12} {
		res := diffScan(t, Options{BTFPath: path, FentryMaxArgs: max, IgnoreTraceFS: true})
		if max == 12 {
			var names []string
			for _, f := range res.Funcs {
				names = append(names, f.Name)
			}
			for _, tp := range res.Tracepoints {
				names = append(names, "tp:"+tp.Name)
			}
			t.Logf("found %v", names)
		}
	}
	m, err := Scan(Options{BTFPath: path, IgnoreTraceFS: true})
	if err != nil {
		t.Fatal(err)
	}
	drop, err := m.DropReasons()
	if err != nil || drop[2] != "DUP" || drop[0xffffffffffffffff] != "NEGATIVE" || drop[0] != "SKB_NOT_DROPPED_YET" {
		t.Errorf("drop reasons %v, %v", drop, err)
	}

	// An enum64 drop reason, and two enums of the name.
	e64 := &btf.Enum{Name: "skb_drop_reason", Size: 8, Values: []btf.EnumValue{{Name: "SKB_DROP_REASON_BIG", Value: 1<<40 | 3}}}
	diffScan(t, Options{BTFPath: writeBTF(t, []btf.Type{e64}, nil), FentryMaxArgs: 6, IgnoreTraceFS: true})
	e32 := &btf.Enum{Name: "skb_drop_reason", Size: 4, Values: []btf.EnumValue{{Name: "A", Value: 1}}}
	diffScan(t, Options{BTFPath: writeBTF(t, []btf.Type{e64, e32}, nil), FentryMaxArgs: 6, IgnoreTraceFS: true})
}

func TestDiffBigEndian(t *testing.T) {
	opts := &btf.MarshalOptions{Order: binary.BigEndian}
	types := append(edgeTypes(), syntheticTypes()...)
	path := writeBTF(t, types, opts)
	res := diffScan(t, Options{BTFPath: path, FentryMaxArgs: 12, IgnoreTraceFS: true})
	if len(res.Funcs) < 10 {
		t.Errorf("only %d funcs in big-endian BTF", len(res.Funcs))
	}
}

// TestDiffELF checks BTF in the .BTF section of an ELF file (vmlinux as
// built), made with objcopy from the synthetic BTF.
func TestDiffELF(t *testing.T) {
	dir := t.TempDir()
	obj := filepath.Join(dir, "empty.o")
	os.WriteFile(filepath.Join(dir, "empty.c"), []byte("int x;\n"), 0o644)
	if out, err := exec.Command("cc", "-c", "-o", obj, filepath.Join(dir, "empty.c")).CombinedOutput(); err != nil {
		t.Skipf("SKIPPING: no C compiler to build an ELF file: %v: %s", err, out)
	}
	raw := writeBTF(t, append(syntheticTypes(), edgeTypes()...), nil)
	elfPath := filepath.Join(dir, "vmlinux.elf")
	if out, err := exec.Command("objcopy", "--add-section", ".BTF="+raw, obj, elfPath).CombinedOutput(); err != nil {
		t.Skipf("SKIPPING: objcopy: %v: %s", err, out)
	}
	res := diffScan(t, Options{BTFPath: elfPath, FentryMaxArgs: 12, IgnoreTraceFS: true})
	if len(res.Funcs) < 10 {
		t.Errorf("only %d funcs from ELF", len(res.Funcs))
	}

	_, err := Scan(Options{BTFPath: obj, IgnoreTraceFS: true})
	if err == nil || !strings.Contains(err.Error(), "read BTF "+obj+": ELF file has no .BTF section") {
		t.Errorf("ELF without .BTF: error %v", err)
	}
}
