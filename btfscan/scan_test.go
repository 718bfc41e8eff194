package btfscan

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
)

// requireVmlinux skips the test when the host has no kernel BTF.
func requireVmlinux(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(DefaultBTFPath); err != nil {
		t.Skipf("SKIPPING: %s not readable (%v); this test needs a kernel with CONFIG_DEBUG_INFO_BTF", DefaultBTFPath, err)
	}
}

var hostScan struct {
	res *Result
	err error
	dur time.Duration
}

func scanHost(t testing.TB) *Result {
	t.Helper()
	requireVmlinux(t)
	if hostScan.res == nil && hostScan.err == nil {
		start := time.Now()
		hostScan.res, hostScan.err = Scan(Options{Kmods: true})
		hostScan.dur = time.Since(start)
	}
	if hostScan.err != nil {
		t.Fatal(hostScan.err)
	}
	return hostScan.res
}

func TestScanHostKnownFunctions(t *testing.T) {
	res := scanHost(t)
	t.Logf("scan took %v: %d funcs, %d tracepoints, %d modules, filter list known: %v",
		hostScan.dur, len(res.Funcs), len(res.Tracepoints), len(res.Modules), res.FilterListKnown)

	for _, tc := range []struct {
		name string
		pos  int
	}{
		{"ip_rcv", 1},
		{"ip_local_out", 3},
		{"ip_output", 3},
		{"ip_local_deliver_finish", 3},
		{"ip_forward", 1},
		{"ip_route_input_noref", 1},
		{"__dev_queue_xmit", 1},
		{"tcp_v4_rcv", 1},
		{"nf_hook_slow", 1},
		{"consume_skb", 1},
		{"sk_skb_reason_drop", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fn, ok := res.Func(tc.name)
			if !ok {
				t.Fatalf("%s not found", tc.name)
			}
			if fn.SkbPos != tc.pos {
				t.Errorf("%s: skb_pos %d, want %d", tc.name, fn.SkbPos, tc.pos)
			}
			if fn.Module != "" {
				t.Errorf("%s: module %q, want vmlinux", tc.name, fn.Module)
			}
			if !fn.Backends.Has(BackendKprobe | BackendKprobeMulti | BackendFentry) {
				t.Errorf("%s: backends %s", tc.name, fn.Backends)
			}
		})
	}
}

func TestScanHostShape(t *testing.T) {
	res := scanHost(t)
	if n := len(res.Funcs); n <= 2000 {
		t.Errorf("only %d skb functions, want > 2000", n)
	}
	if n := len(res.Tracepoints); n < 25 {
		t.Errorf("only %d skb tracepoints, want >= 25", n)
	}
	if !slices.IsSortedFunc(res.Funcs, func(a, b Func) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("funcs not sorted")
	}
	if !slices.IsSortedFunc(res.Tracepoints, func(a, b Tracepoint) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("tracepoints not sorted")
	}
	for i, fn := range res.Funcs {
		if strings.Contains(fn.Name, ".") || strings.HasPrefix(fn.Name, "__bpf_trace_") || strings.HasPrefix(fn.Name, "bpf_trace_run") {
			t.Errorf("excluded name %q listed", fn.Name)
		}
		if i > 0 && res.Funcs[i-1].Name == fn.Name {
			t.Errorf("duplicate %q", fn.Name)
		}
		if fn.SkbPos < 1 || fn.SkbPos > fn.NumArgs || fn.Backends == 0 {
			t.Errorf("bad func %+v", fn)
		}
	}
	for _, name := range []string{"kfree_skb", "consume_skb", "net_dev_queue", "netif_receive_skb"} {
		if _, ok := res.Tracepoint(name); !ok {
			t.Errorf("tracepoint %s not found", name)
		}
	}
	tp, _ := res.Tracepoint("kfree_skb")
	if tp.SkbPos != 1 {
		t.Errorf("tracepoint kfree_skb skb_pos %d, want 1", tp.SkbPos)
	}
}

// TestScanHostConstSkb checks that a function taking const struct sk_buff *
// in vmlinux BTF is found.
func TestScanHostConstSkb(t *testing.T) {
	res := scanHost(t)
	spec, err := res.BTF()
	if err != nil {
		t.Fatal(err)
	}
	var found string
	for typ := range spec.All() {
		fn, ok := typ.(*btf.Func)
		if !ok || excludedName(fn.Name) {
			continue
		}
		proto := fn.Type.(*btf.FuncProto)
		if len(proto.Params) == 0 {
			continue
		}
		ptr, ok := proto.Params[0].Type.(*btf.Pointer)
		if !ok {
			continue
		}
		if c, ok := ptr.Target.(*btf.Const); ok {
			if st, ok := c.Type.(*btf.Struct); ok && st.Name == "sk_buff" {
				if _, ok := res.Func(fn.Name); ok {
					found = fn.Name
					break
				}
			}
		}
	}
	if found == "" {
		t.Fatal("no function taking const struct sk_buff * found")
	}
	t.Logf("const skb function: %s", found)
}

func TestScanHostSpeed(t *testing.T) {
	requireVmlinux(t)
	if testing.Short() {
		t.Skip("timing test")
	}
	start := time.Now()
	if _, err := Scan(Options{Kmods: true}); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("full scan: %v", d)
	if d > 5*time.Second {
		t.Errorf("scan took %v", d)
	}
}

func TestDropReasons(t *testing.T) {
	res := scanHost(t)
	spec, err := res.BTF()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := res.BTF(); again != spec {
		t.Error("BTF loaded twice")
	}
	m, err := DropReasons(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) > 0 && m[2] != "NOT_SPECIFIED" {
		t.Errorf("reason 2 = %q, want NOT_SPECIFIED", m[2])
	}
	raw, err := res.DropReasons()
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(raw, m) {
		t.Errorf("Result.DropReasons (%d reasons) differs from DropReasons(spec) (%d reasons)", len(raw), len(m))
	}
	t.Logf("%d drop reasons", len(m))
}

// synthetic builds a small BTF file exercising the classification rules.
func synthetic(t *testing.T) string {
	t.Helper()
	return writeBTF(t, syntheticTypes(), nil)
}

func syntheticTypes() []btf.Type {
	u64 := &btf.Int{Name: "u64", Size: 8}
	i32 := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	skb := &btf.Struct{Name: "sk_buff", Size: 232}
	head := &btf.Struct{Name: "sk_buff_head", Size: 24}
	small := &btf.Struct{Name: "pair", Size: 16, Members: []btf.Member{{Name: "a", Type: u64}, {Name: "b", Type: u64, Offset: 64}}}
	big := &btf.Struct{Name: "triple", Size: 24, Members: []btf.Member{{Name: "a", Type: u64}, {Name: "b", Type: u64, Offset: 64}, {Name: "c", Type: u64, Offset: 128}}}
	skbp := &btf.Pointer{Target: skb}
	skbTypedef := &btf.Typedef{Name: "skb_t", Type: skbp}
	skbStructTypedef := &btf.Typedef{Name: "skb_struct_t", Type: skb}

	p := func(ts ...btf.Type) []btf.FuncParam {
		ps := make([]btf.FuncParam, len(ts))
		for i, t := range ts {
			ps[i] = btf.FuncParam{Name: "a", Type: t}
		}
		return ps
	}
	fn := func(name string, ts ...btf.Type) btf.Type {
		return &btf.Func{Name: name, Linkage: btf.GlobalFunc, Type: &btf.FuncProto{Return: i32, Params: p(ts...)}}
	}
	n := func(k int, t btf.Type) []btf.Type {
		out := make([]btf.Type, k)
		for i := range out {
			out[i] = t
		}
		return out
	}
	tp := func(name string, ts ...btf.Type) btf.Type {
		return &btf.Typedef{Name: "btf_trace_" + name, Type: &btf.Pointer{Target: &btf.FuncProto{Return: &btf.Void{}, Params: p(ts...)}}}
	}
	voidp := &btf.Pointer{Target: &btf.Void{}}

	types := []btf.Type{
		fn("plain", skbp),
		fn("const_skb", i32, &btf.Pointer{Target: &btf.Const{Type: skb}}),
		fn("volatile_skb", &btf.Pointer{Target: &btf.Volatile{Type: skb}}),
		fn("const_ptr", &btf.Const{Type: skbp}),
		fn("typedef_ptr", i32, i32, skbTypedef),
		fn("typedef_struct", &btf.Pointer{Target: skbStructTypedef}),
		fn("double_ptr", &btf.Pointer{Target: skbp}),
		fn("skb_head", &btf.Pointer{Target: head}),
		fn("no_args"),
		fn("two_skbs", i32, skbp, skbp),
		fn("seventh", append(n(6, i32), skbp)...),
		fn("thirteen", append([]btf.Type{skbp}, n(12, i32)...)...),
		fn("thirteen_late", append(n(7, i32), append([]btf.Type{skbp}, n(5, i32)...)...)...),
		fn("big_by_value", big, skbp),
		fn("small_by_value", small, skbp),
		fn("clone.isra.0", skbp),
		fn("__bpf_trace_net_dev_queue", voidp, skbp),
		fn("bpf_trace_run2", skbp),
		fn("plain", i32, skbp), // duplicate: the first wins
		fn("unlisted", skbp),
		fn("blacklisted", skbp),
		tp("net_dev_queue", voidp, skbp),
		tp("kfree_skb", voidp, skbp, voidp, i32),
		tp("second_arg", voidp, i32, skbp),
		tp("no_skb", voidp, i32),
		tp("no_ctx", skbp),
		tp("", voidp, skbp),
		&btf.Typedef{Name: "btf_trace_not_ptr", Type: i32},
	}
	return types
}

func TestScanSynthetic(t *testing.T) {
	path := synthetic(t)
	res, err := Scan(Options{BTFPath: path, FentryMaxArgs: 12, IgnoreTraceFS: true})
	if err != nil {
		t.Fatal(err)
	}
	all := BackendFentry | BackendKprobeMulti | BackendKprobe
	kp := BackendKprobeMulti | BackendKprobe
	want := map[string]Func{
		"plain":          {SkbPos: 1, SkbSlot: 1, NumArgs: 1, Backends: all},
		"const_skb":      {SkbPos: 2, SkbSlot: 2, NumArgs: 2, Backends: all},
		"volatile_skb":   {SkbPos: 1, SkbSlot: 1, NumArgs: 1, Backends: all},
		"const_ptr":      {SkbPos: 1, SkbSlot: 1, NumArgs: 1, Backends: all},
		"typedef_ptr":    {SkbPos: 3, SkbSlot: 3, NumArgs: 3, Backends: all},
		"typedef_struct": {SkbPos: 1, SkbSlot: 1, NumArgs: 1, Backends: all},
		"two_skbs":       {SkbPos: 2, SkbSlot: 2, NumArgs: 3, Backends: all},
		"seventh":        {SkbPos: 7, SkbSlot: 7, NumArgs: 7, Backends: BackendFentry},
		"thirteen":       {SkbPos: 1, SkbSlot: 1, NumArgs: 13, Backends: kp},
		"big_by_value":   {SkbPos: 2, SkbSlot: 2, NumArgs: 2, Backends: kp},
		"small_by_value": {SkbPos: 2, SkbSlot: 3, NumArgs: 2, Backends: all},
		"unlisted":       {SkbPos: 1, SkbSlot: 1, NumArgs: 1, Backends: all},
		"blacklisted":    {SkbPos: 1, SkbSlot: 1, NumArgs: 1, Backends: all},
	}
	got := map[string]Func{}
	for _, fn := range res.Funcs {
		name := fn.Name
		fn.Name = ""
		got[name] = fn
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: not found", name)
			continue
		}
		if g != w {
			t.Errorf("%s: got %+v, want %+v", name, g, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s: unexpectedly included", name)
		}
	}

	wantTP := map[string]Tracepoint{
		"net_dev_queue": {Name: "net_dev_queue", SkbPos: 1, NumArgs: 1},
		"kfree_skb":     {Name: "kfree_skb", SkbPos: 1, NumArgs: 3},
		"second_arg":    {Name: "second_arg", SkbPos: 2, NumArgs: 2},
	}
	if len(res.Tracepoints) != len(wantTP) {
		t.Errorf("tracepoints: %+v", res.Tracepoints)
	}
	for _, tp := range res.Tracepoints {
		if tp != wantTP[tp.Name] {
			t.Errorf("tracepoint %s: got %+v, want %+v", tp.Name, tp, wantTP[tp.Name])
		}
	}
}

func TestScanFentryLimit(t *testing.T) {
	path := synthetic(t)
	res, err := Scan(Options{BTFPath: path, FentryMaxArgs: 6, IgnoreTraceFS: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Func("seventh"); ok {
		t.Error("seventh: has no backend with 6 trampoline slots and skb beyond register 6, but was included")
	}
	fn, _ := res.Func("plain")
	if fn.Backends != BackendFentry|BackendKprobeMulti|BackendKprobe {
		t.Errorf("plain: %s", fn.Backends)
	}
}

func TestScanTraceFSLists(t *testing.T) {
	path := synthetic(t)
	dir := t.TempDir()
	ff := filepath.Join(dir, "available_filter_functions")
	bl := filepath.Join(dir, "blacklist")
	os.WriteFile(ff, []byte("plain\nblacklisted\nthirteen [mod]\n"), 0o644)
	os.WriteFile(bl, []byte("0xffffffff81000000-0xffffffff81000010\tblacklisted\n"), 0o644)
	res, err := Scan(Options{BTFPath: path, FentryMaxArgs: 12, FilterFunctions: ff, KprobeBlacklist: bl})
	if err != nil {
		t.Fatal(err)
	}
	if !res.FilterListKnown || !res.BlacklistKnown {
		t.Error("lists not marked known")
	}
	var names []string
	for _, fn := range res.Funcs {
		names = append(names, fn.Name)
	}
	if want := []string{"blacklisted", "plain", "thirteen"}; !slices.Equal(names, want) {
		t.Errorf("funcs %v, want %v", names, want)
	}
	fn, _ := res.Func("blacklisted")
	if fn.Backends != BackendFentry {
		t.Errorf("blacklisted: backends %s, want fentry", fn.Backends)
	}

	if _, err := Scan(Options{BTFPath: path, FilterFunctions: filepath.Join(dir, "nope")}); err == nil {
		t.Error("explicit missing filter list: no error")
	}
}

func TestScanErrors(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("this is not BTF at all, just some text\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)

	full, _ := os.ReadFile(synthetic(t))
	truncated := filepath.Join(dir, "truncated")
	os.WriteFile(truncated, full[:len(full)/2], 0o644)
	badVersion := filepath.Join(dir, "version")
	os.WriteFile(badVersion, append([]byte("\x9f\xeb\x07\x00"), full[4:]...), 0o644)

	moddir := t.TempDir()
	os.WriteFile(filepath.Join(moddir, "badmod"), []byte("\x9f\xeb\x01\x00garbage"), 0o644)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"missing", Options{BTFPath: filepath.Join(dir, "missing")}, "read BTF " + filepath.Join(dir, "missing") + ": no such file"},
		{"directory", Options{BTFPath: dir}, "is a directory"},
		{"garbage", Options{BTFPath: garbage}, "read BTF " + garbage + ": not a BTF file (bad magic)"},
		{"empty", Options{BTFPath: empty}, "read BTF " + empty + ": empty file, not BTF"},
		// Neither may be read to the end: /dev/zero never ends, a FIFO
		// without a writer blocks in open.
		{"device", Options{BTFPath: "/dev/zero"}, "read BTF /dev/zero: not a regular file"},
		{"fifo", Options{BTFPath: fifo}, "read BTF " + fifo + ": not a regular file"},
		{"truncated", Options{BTFPath: truncated}, "read BTF " + truncated + ": type section (offset 0, length"},
		{"short", Options{BTFPath: filepath.Join(moddir, "badmod")}, "truncated header"},
		{"version", Options{BTFPath: badVersion}, "unsupported BTF version 7"},
		{"bad module", Options{BTFPath: synthetic(t), Kmods: true, ModulesDir: moddir, IgnoreTraceFS: true}, "read BTF " + filepath.Join(moddir, "badmod")},
		{"missing module dir", Options{BTFPath: synthetic(t), Kmods: true, ModulesDir: filepath.Join(dir, "x"), IgnoreTraceFS: true}, "module BTF directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Scan(tc.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
		})
	}
}

func TestFentryMaxArgsFor(t *testing.T) {
	for _, tc := range []struct {
		release string
		want    int
	}{
		{"6.18.44-fc-v657", 12},
		{"6.6.0", 12},
		{"6.5.13-generic", 6},
		{"6.1.0-28-amd64", 6},
		{"5.15.0", 6},
		{"7.0", 12},
		{"6.10rc1", 12},
		{"garbage", 6},
		{"", 6},
	} {
		if got := fentryMaxArgsFor(tc.release); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.release, got, tc.want)
		}
	}
}

func TestBackendsString(t *testing.T) {
	for _, tc := range []struct {
		b    Backends
		want string
	}{
		{0, "-"},
		{BackendFentry | BackendKprobeMulti | BackendKprobe, "fentry,kprobe-multi,kprobe"},
		{BackendTracepoint, "tracepoint"},
	} {
		if got := tc.b.String(); got != tc.want {
			t.Errorf("%d: %q, want %q", tc.b, got, tc.want)
		}
	}
}

func BenchmarkScan(b *testing.B) {
	requireVmlinux(b)
	for b.Loop() {
		if _, err := Scan(Options{Kmods: true}); err != nil {
			b.Fatal(err)
		}
	}
}
