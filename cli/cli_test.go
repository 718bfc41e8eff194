package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/manifest"
	"github.com/ipftrace/ipftrace/tracer"
)

// syntheticBTF writes a small vmlinux-like BTF file: a few skb functions,
// one function without an skb, and the kfree_skb and net_dev_queue tracepoints.
func syntheticBTF(t testing.TB) string {
	t.Helper()
	i32 := &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}
	skbp := &btf.Pointer{Target: &btf.Struct{Name: "sk_buff", Size: 232}}
	voidp := &btf.Pointer{Target: &btf.Void{}}
	netp := &btf.Pointer{Target: &btf.Struct{Name: "net", Size: 64}}
	skp := &btf.Pointer{Target: &btf.Struct{Name: "sock", Size: 64}}
	fn := func(name string, ts ...btf.Type) btf.Type {
		ps := make([]btf.FuncParam, len(ts))
		for i, t := range ts {
			ps[i] = btf.FuncParam{Name: "a", Type: t}
		}
		return &btf.Func{Name: name, Linkage: btf.GlobalFunc, Type: &btf.FuncProto{Return: i32, Params: ps}}
	}
	tp := func(name string, ts ...btf.Type) btf.Type {
		ps := make([]btf.FuncParam, len(ts))
		for i, t := range ts {
			ps[i] = btf.FuncParam{Name: "a", Type: t}
		}
		return &btf.Typedef{Name: "btf_trace_" + name, Type: &btf.Pointer{Target: &btf.FuncProto{Return: &btf.Void{}, Params: ps}}}
	}
	b, err := btf.NewBuilder([]btf.Type{
		fn("ip_rcv", skbp, voidp, voidp, voidp),
		fn("ip_output", netp, skp, skbp),
		fn("ip_local_deliver", skbp),
		fn("tcp_v4_rcv", skbp),
		fn("consume_skb", skbp),
		fn("sk_skb_reason_drop", skp, skbp, i32),
		fn("schedule", i32),
		tp("kfree_skb", voidp, skbp, voidp, i32, skp),
		tp("consume_skb", voidp, skbp, voidp),
		tp("net_dev_queue", voidp, skbp),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	code           int
	stdout, stderr string
	cfg            *tracer.Config
}

// run calls Main with a fake tracer that records its Config.
func run(t *testing.T, tracerErr error, args ...string) result {
	t.Helper()
	var r result
	old := runTracer
	runTracer = func(_ context.Context, cfg tracer.Config) error {
		r.cfg = &cfg
		return tracerErr
	}
	defer func() { runTracer = old }()
	var stdout, stderr bytes.Buffer
	r.code = Main(context.Background(), args, &stdout, &stderr)
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBadInput(t *testing.T) {
	vmlinux := syntheticBTF(t)
	good := writeFile(t, "good.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: 1\n")
	garbageBTF := writeFile(t, "garbage.btf", "not BTF, just text\n")
	dir := t.TempDir()
	m := func(content string) string { return writeFile(t, "m.yaml", content) }
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "target"), link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink("/nonexistent/target", dangling); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string // substring of the one-line error
	}{
		{"ipversion 5", []string{"-iv", "5", "--auto"}, `invalid IP version "5"`},
		{"ipversion long", []string{"--ipversion=x", "--auto"}, `invalid IP version "x"`},
		{"ipversion equals", []string{"-iv=7", "--auto"}, `invalid IP version "7"`},
		{"cidr /33", []string{"-s", "10.0.0.1/33", "--auto"}, `--saddr: invalid address or CIDR "10.0.0.1/33"`},
		{"bad daddr", []string{"-d", "bogus", "--auto"}, `--daddr: invalid address "bogus"`},
		{"empty saddr", []string{"--saddr=", "--auto"}, "--saddr needs a value"},
		{"unknown proto", []string{"-p", "tcpx", "--auto"}, `unknown protocol "tcpx"`},
		{"sport 70000", []string{"-sp", "70000", "--auto"}, "--sport: port 70000 outside 0-65535"},
		{"dport -1", []string{"-dp", "-1", "--auto"}, `--dport: invalid port "-1"`},
		{"sport word", []string{"--sport", "http", "--auto"}, `--sport: invalid port "http"`},
		{"v4 with v6 addr", []string{"-iv", "4", "-s", "fd00::1", "--auto"}, "is IPv6 but the IP version is 4"},
		{"v6 with icmp", []string{"-iv", "6", "-p", "icmp", "--auto"}, "icmp is IPv4 only"},
		{"v4 with icmpv6", []string{"-iv", "4", "-p", "icmpv6", "--auto"}, "icmpv6 is IPv6 only"},
		{"mixed families", []string{"-s", "10.0.0.1", "-d", "fd00::1", "--auto"}, "different IP versions"},
		{"icmp ports", []string{"-p", "icmp", "-dp", "80", "--auto"}, "ports need tcp, udp or sctp"},
		{"bad regex", []string{"-r", "(", "--auto"}, `invalid regex "("`},
		{"regex no match", []string{"-r", "^nothing_matches$", "--auto", "--btf", vmlinux}, "matches no skb function or tracepoint"},
		{"ls regex no match", []string{"-ls", "-r", "^nothing_matches$", "--btf", vmlinux}, "matches no skb function or tracepoint"},
		{"no manifest", []string{"-p", "tcp"}, "no manifest given"},
		{"manifest and auto", []string{"--auto", good}, "both a manifest"},
		{"unknown flag", []string{"--bogus"}, "unknown flag: --bogus"},
		{"unknown shorthand", []string{"-x"}, "unknown shorthand flag: 'x' in -x"},
		{"missing value", []string{"--auto", "-r"}, "flag needs an argument"},
		{"extra positional", []string{good, "extra"}, `unexpected argument "extra"`},
		{"bad backend", []string{"-b", "uprobe", "--auto"}, `unknown backend "uprobe"`},
		{"bad output", []string{"-o", "xml", "--auto"}, `unknown output format "xml"`},
		{"length 0", []string{"-l", "0", "--auto"}, "--length must be at least 1, got 0"},
		{"length word", []string{"-l", "many", "--auto"}, `--length: invalid number "many"`},
		{"count negative", []string{"-c", "-1", "--auto"}, "--count must be at least 0"},
		{"bad duration", []string{"--duration", "soon", "--auto"}, `--duration: invalid duration "soon"`},
		{"idle zero", []string{"--idle", "0", "--auto"}, "--idle must be positive"},
		{"ring size not a power of two", []string{"--ring-size", "3", "--auto"}, "--ring-size must be a power of two from 1 to 1024 (MiB), got 3"},
		{"ring size too large", []string{"--ring-size", "2048", "--auto"}, "--ring-size must be a power of two from 1 to 1024 (MiB), got 2048"},
		{"ring size zero", []string{"--ring-size", "0", "--auto"}, "--ring-size must be at least 1, got 0"},
		{"ring size word", []string{"--ring-size", "8M", "--auto"}, `--ring-size: invalid number "8M"`},
		{"negative duration", []string{"--duration", "-5s", "--auto"}, "--duration must be positive"},
		{"missing btf", []string{"--auto", "--btf", "/nonexistent"}, "read BTF /nonexistent: no such file or directory"},
		{"garbage btf", []string{"--auto", "--btf", garbageBTF}, "read BTF " + garbageBTF},
		{"directory btf", []string{"--auto", "--btf", dir}, "is a directory"},
		{"unknown egress", []string{"--auto", "--btf", vmlinux, "-e", "no_such_func"}, "unknown egress function no_such_func"},
		{"bad egress name", []string{"--auto", "-e", "bad name"}, `invalid function name "bad name"`},
		{"empty egress", []string{"--auto", "-e", ","}, "--egress needs a function name"},
		{"missing manifest", []string{filepath.Join(dir, "nope.yaml")}, "read manifest " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{"manifest is dir", []string{dir}, "is a directory"},
		{"manifest empty", []string{m("")}, "empty file"},
		{"manifest comments", []string{m("# only\n")}, "empty file"},
		{"manifest binary", []string{m("\x00\x01\x02\xff")}, "binary data"},
		{"manifest not yaml", []string{m("functions: [\n")}, "not valid YAML"},
		{"manifest scalar", []string{m("ip_rcv\n")}, "expected a mapping"},
		{"manifest unknown key", []string{m("functions:\n  - name: ip_rcv\n    skb: 1\n")}, `:3: function 1: unknown key "skb"`},
		{"manifest top key", []string{m("function:\n  - name: ip_rcv\n")}, `:1: unknown key "function"`},
		{"manifest missing name", []string{m("functions:\n  - skb_pos: 1\n")}, "missing 'name'"},
		{"manifest pos 13", []string{m("functions:\n  - name: ip_rcv\n    skb_pos: 13\n")}, "skb_pos 13 out of range 1..12"},
		{"manifest pos type", []string{m("functions:\n  - name: ip_rcv\n    skb_pos: first\n")}, "skb_pos must be an integer"},
		{"manifest egress type", []string{m("functions:\n  - name: ip_rcv\n    egress: 2\n")}, "egress must be true or false"},
		{"manifest duplicate", []string{m("functions:\n  - name: ip_rcv\n  - name: ip_rcv\n")}, "duplicate function ip_rcv"},
		{"manifest functions map", []string{m("functions:\n  ip_rcv: 1\n")}, "'functions' must be a list"},
		{"manifest all unknown", []string{"--btf", vmlinux, m("functions:\n  - name: foo\n  - name: bar\n")}, "none of its functions exist on this kernel (skipped 2 unknown functions (foo, bar))"},
		{"manifest regex no match", []string{"--btf", vmlinux, "-r", "^zzz", m("functions:\n  - name: foo\n  - name: ip_rcv\n")}, `regex "^zzz" matches no skb function or tracepoint`},
		{"ready file exists", []string{"--auto", "--btf", vmlinux, "--ready-file", good}, "--ready-file " + good + ": already exists"},
		{"ready file symlink", []string{"--auto", "--btf", vmlinux, "--ready-file", link}, "--ready-file " + link + ": already exists"},
		{"ready file dangling symlink", []string{"--auto", "--btf", vmlinux, "--ready-file", dangling}, "--ready-file " + dangling + ": already exists"},
		{"ready file no dir", []string{"--auto", "--btf", vmlinux, "--ready-file", filepath.Join(dir, "no", "ready")}, "directory " + filepath.Join(dir, "no") + ": no such file or directory"},
		{"manifest device", []string{"/dev/zero"}, "read manifest /dev/zero: not a regular file"},
		{"btf device", []string{"--auto", "--btf", "/dev/zero"}, "read BTF /dev/zero: not a regular file"},
		{"gen-manifest filter flag", []string{"gen-manifest", "-p", "tcp"}, "gen-manifest does not take --proto"},
		{"gen-manifest extra", []string{"gen-manifest", "x.yaml"}, `gen-manifest: unexpected argument "x.yaml"`},
		{"gen-manifest no match", []string{"gen-manifest", "--btf", vmlinux, "-r", "^zzz"}, "matches no skb function"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, nil, tc.args...)
			if r.code != ExitUsage {
				t.Errorf("exit %d, want %d; stderr %q", r.code, ExitUsage, r.stderr)
			}
			checkOneLine(t, r.stderr, tc.want)
			if r.cfg != nil {
				t.Error("tracer ran")
			}
		})
	}
}

// checkOneLine checks that stderr holds exactly one line, "ipftrace: ...",
// containing want.
func checkOneLine(t *testing.T, stderr, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Fatalf("stderr is not one line: %q", stderr)
	}
	if !strings.HasPrefix(lines[0], "ipftrace: ") {
		t.Errorf("stderr %q lacks the ipftrace: prefix", lines[0])
	}
	if !strings.Contains(lines[0], want) {
		t.Errorf("stderr %q does not contain %q", lines[0], want)
	}
}

func TestTracerError(t *testing.T) {
	vmlinux := syntheticBTF(t)
	r := run(t, errors.New("attach: permission denied"), "--auto", "--btf", vmlinux)
	if r.code != ExitRuntime {
		t.Errorf("exit %d, want 1", r.code)
	}
	checkOneLine(t, r.stderr, "ipftrace: attach: permission denied")
}

func TestHelpVersion(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--auto", "--help", "--bogus-after-help-is-still-an-error"}} {
		r := run(t, nil, args...)
		if len(args) == 3 {
			if r.code != ExitUsage {
				t.Errorf("%v: exit %d", args, r.code)
			}
			continue
		}
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: ipftrace") || r.stderr != "" {
			t.Errorf("%v: exit %d, stdout %.40q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	r := run(t, nil, "--version")
	if r.code != 0 || r.stdout != "ipftrace dev\n" {
		t.Errorf("--version: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestPlanAuto(t *testing.T) {
	vmlinux := syntheticBTF(t)
	r := run(t, nil, "--auto", "--btf", vmlinux, "-iv", "4", "-p", "TCP", "-dp", "80", "-l", "5", "-c", "3",
		"--duration", "10s", "--idle", "250ms", "--ring-size", "32", "-b", "fentry", "-o", "json", "--ready-file", "/tmp/r")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	cfg := r.cfg
	if cfg.Backend != "fentry" || cfg.Format != "json" || cfg.Length != 5 || cfg.Count != 3 ||
		cfg.Duration.String() != "10s" || cfg.Idle.String() != "250ms" || cfg.ReadyFile != "/tmp/r" || cfg.NoTrack ||
		cfg.RingSize != 32<<20 {
		t.Errorf("config %+v", cfg)
	}
	if r := run(t, nil, "--auto", "--btf", vmlinux); r.code != 0 || r.cfg.RingSize != DefaultRingSize<<20 {
		t.Errorf("default ring size: exit %d, RingSize %d: %s", r.code, r.cfg.RingSize, r.stderr)
	}
	if r := run(t, nil, "--auto", "--btf", vmlinux, "--no-track"); r.code != 0 || !r.cfg.NoTrack {
		t.Errorf("--no-track: exit %d, NoTrack %v: %s", r.code, r.cfg.NoTrack, r.stderr)
	}
	if f := cfg.Filter; f.IPVersion != 4 || f.Proto != 6 || f.Dport != 80 || f.Sport != -1 || f.Saddr.IsValid() {
		t.Errorf("filter %+v", f)
	}
	names := targetNames(cfg.Funcs)
	if want := []string{"consume_skb", "ip_local_deliver", "ip_output", "ip_rcv", "sk_skb_reason_drop", "tcp_v4_rcv"}; !slices.Equal(names, want) {
		t.Errorf("funcs %v, want %v", names, want)
	}
	if want := []string{"consume_skb", "kfree_skb", "net_dev_queue"}; !slices.Equal(targetNames(cfg.Tracepoints), want) {
		t.Errorf("tracepoints %v, want %v", targetNames(cfg.Tracepoints), want)
	}
	for _, tg := range cfg.Funcs {
		wantEgress := tg.Name == "consume_skb" || tg.Name == "sk_skb_reason_drop"
		if tg.Egress != wantEgress || tg.Tracepoint {
			t.Errorf("%+v", tg)
		}
		if tg.Name == "ip_output" && (tg.SkbPos != 3 || tg.NumArgs != 3) {
			t.Errorf("%+v", tg)
		}
	}
	for _, tg := range cfg.Tracepoints {
		if !tg.Tracepoint || tg.Egress != (tg.Name != "net_dev_queue") {
			t.Errorf("%+v", tg)
		}
	}
}

func TestPlanManifest(t *testing.T) {
	vmlinux := syntheticBTF(t)
	m := writeFile(t, "m.yaml", `functions:
  - name: ip_rcv
    skb_pos: 1
  - name: ip_output
    skb_pos: 1
  - name: gone_func
    skb_pos: 2
  - name: ip_local_deliver
    egress: true
`)
	r := run(t, nil, "--btf", vmlinux, m, "-e", "tcp_v4_rcv,net_dev_queue")
	all := btfscan.BackendFentry | btfscan.BackendKprobeMulti | btfscan.BackendKprobe
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if want := "manifest: skipped 1 unknown function (gone_func); corrected skb_pos of 1 (ip_output 1→3)\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	want := []tracer.Target{
		{Name: "ip_rcv", SkbPos: 1, SkbSlot: 1, NumArgs: 4, Reach: all},
		{Name: "ip_output", SkbPos: 3, SkbSlot: 3, NumArgs: 3, Reach: all},
		{Name: "ip_local_deliver", SkbPos: 1, SkbSlot: 1, NumArgs: 1, Egress: true, Reach: all},
		{Name: "sk_skb_reason_drop", SkbPos: 2, SkbSlot: 2, NumArgs: 3, Egress: true, Reach: all},
		{Name: "consume_skb", SkbPos: 1, SkbSlot: 1, NumArgs: 1, Egress: true, Reach: all},
		{Name: "tcp_v4_rcv", SkbPos: 1, SkbSlot: 1, NumArgs: 1, Egress: true, Reach: all},
	}
	if !r.cfg.Named {
		t.Error("a manifest's functions are not marked as named")
	}
	if !slices.Equal(r.cfg.Funcs, want) {
		t.Errorf("funcs\n got %+v\nwant %+v", r.cfg.Funcs, want)
	}
	for _, tg := range r.cfg.Tracepoints {
		if !tg.Egress {
			t.Errorf("tracepoint %s: not egress", tg.Name)
		}
	}
}

func TestPlanRegexKeepsEgress(t *testing.T) {
	scan, err := btfscan.Scan(btfscan.Options{BTFPath: syntheticBTF(t), IgnoreTraceFS: true})
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{Auto: true, Regex: regexp.MustCompile("^ip_"), Length: 80, Backend: "auto", Format: "text"}
	cfg, _, err := Plan(o, scan)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ip_local_deliver", "ip_output", "ip_rcv", "sk_skb_reason_drop", "consume_skb"}; !slices.Equal(targetNames(cfg.Funcs), want) {
		t.Errorf("funcs %v, want %v", targetNames(cfg.Funcs), want)
	}
	if want := []string{"kfree_skb", "consume_skb"}; !slices.Equal(targetNames(cfg.Tracepoints), want) {
		t.Errorf("tracepoints %v, want %v", targetNames(cfg.Tracepoints), want)
	}
}

func targetNames(ts []tracer.Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

func TestLegacyFlagsEndToEnd(t *testing.T) {
	vmlinux := syntheticBTF(t)
	// -r takes "-ls" as its value: that is a regex, not --list-func, and it
	// matches nothing.
	r := run(t, nil, "--btf", vmlinux, "--auto", "-r", "-ls")
	if r.code != ExitUsage || !strings.Contains(r.stderr, `regex "-ls" matches no`) {
		t.Errorf("-r -ls: exit %d, stderr %q", r.code, r.stderr)
	}
	r = run(t, nil, "--btf", vmlinux, "-iv=6", "-sp", "443", "-dp=8443", "-p", "udp", "--auto")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if f := r.cfg.Filter; f.IPVersion != 6 || f.Sport != 443 || f.Dport != 8443 || f.Proto != 17 {
		t.Errorf("filter %+v", f)
	}
}

func TestListFuncs(t *testing.T) {
	vmlinux := syntheticBTF(t)
	r := run(t, nil, "-ls", "-r", "^ip_", "--btf", vmlinux)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`(?m)^ip_rcv +func +1 +4 +vmlinux +fentry,kprobe-multi,kprobe$`).MatchString(r.stdout) {
		t.Errorf("no ip_rcv row:\n%s", r.stdout)
	}
	if r.stderr != "3 functions, 0 tracepoints\n" {
		t.Errorf("stderr %q", r.stderr)
	}

	m := writeFile(t, "m.yaml", "functions:\n  - name: ip_output\n    skb_pos: 2\n  - name: nope\n")
	r = run(t, nil, "-ls", "--btf", vmlinux, m)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^ip_output +func +3 `).MatchString(r.stdout) || strings.Contains(r.stdout, "ip_rcv") {
		t.Errorf("manifest listing:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`(?m)^kfree_skb +tracepoint +1 +4 +vmlinux +tracepoint +yes$`).MatchString(r.stdout) {
		t.Errorf("no kfree_skb tracepoint row:\n%s", r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "manifest: skipped 1 unknown function (nope); corrected skb_pos of 1 (ip_output 2→3)\n") {
		t.Errorf("stderr %q", r.stderr)
	}
}

func TestListFuncsHost(t *testing.T) {
	if _, err := os.Stat(btfscan.DefaultBTFPath); err != nil {
		t.Skipf("SKIPPING: %s not readable (%v); needs kernel BTF", btfscan.DefaultBTFPath, err)
	}
	r := run(t, nil, "-ls", "-r", "^ip_")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !regexp.MustCompile(`(?m)^ip_rcv +func +1 `).MatchString(r.stdout) {
		t.Errorf("no ip_rcv with skb_pos 1:\n%s", r.stdout)
	}
}

func TestGenManifestRoundTrip(t *testing.T) {
	vmlinux := syntheticBTF(t)
	r := run(t, nil, "gen-manifest", "--btf", vmlinux)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	m, err := manifest.Parse([]byte(r.stdout), "generated")
	if err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	want := []manifest.Entry{
		{Name: "consume_skb", SkbPos: 1, Egress: true},
		{Name: "ip_local_deliver", SkbPos: 1},
		{Name: "ip_output", SkbPos: 3},
		{Name: "ip_rcv", SkbPos: 1},
		{Name: "sk_skb_reason_drop", SkbPos: 2, Egress: true},
		{Name: "tcp_v4_rcv", SkbPos: 1},
	}
	if !slices.Equal(m.Functions, want) {
		t.Errorf("got %+v", m.Functions)
	}
	// The generated manifest drives a run without any reconcile message.
	path := writeFile(t, "gen.yaml", r.stdout)
	r = run(t, nil, "--btf", vmlinux, path)
	if r.code != 0 || r.stderr != "" || len(r.cfg.Funcs) != len(want) {
		t.Errorf("run with generated manifest: exit %d, stderr %q", r.code, r.stderr)
	}
	// -r filters gen-manifest too.
	r = run(t, nil, "gen-manifest", "--btf", vmlinux, "-r", "output$")
	if r.code != 0 || r.stdout != "functions:\n  - name: ip_output\n    skb_pos: 3\n" {
		t.Errorf("gen-manifest -r: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestGenManifestHead checks that a reader that stops early (| head) is not
// an error.
func TestGenManifestHead(t *testing.T) {
	if _, err := os.Stat(btfscan.DefaultBTFPath); err != nil {
		t.Skipf("SKIPPING: %s not readable (%v); needs kernel BTF", btfscan.DefaultBTFPath, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var head []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for len(head) < 10 && sc.Scan() {
			head = append(head, sc.Text())
		}
		pr.Close()
	}()
	var stderr bytes.Buffer
	code := Main(context.Background(), []string{"gen-manifest"}, pw, &stderr)
	pw.Close()
	<-done
	if code != 0 || stderr.Len() != 0 {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	if len(head) != 10 || head[0] != "functions:" || !strings.HasPrefix(head[1], "  - name: ") {
		t.Errorf("head: %q", head)
	}
}

// TestModules: -m builds the modules against the running kernel's BTF
// (replaced here by the kernel's own, when readable) before tracing; a bad
// module is exit 2, one line, and the tracer never runs.
func TestModules(t *testing.T) {
	if _, err := btf.LoadKernelSpec(); err != nil {
		t.Skipf("no kernel BTF to build modules against: %v", err)
	}
	vmlinux := syntheticBTF(t)
	r := run(t, nil, "--auto", "--btf", vmlinux, "-m", "gso", "-m", "mark")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.cfg.Modules == nil || !slices.Equal(r.cfg.Modules.Names(), []string{"len", "gso_size", "gso_segs", "gso_type", "mark"}) {
		t.Errorf("modules %v, want the gso and mark fields", r.cfg.Modules)
	}
	bad := writeFile(t, "bad.yaml", "fields:\n  - {name: x, expr: skb->lenn}\n")
	for _, tc := range []struct{ arg, want string }{
		{bad, "ipftrace: module " + bad + ": field x: skb->lenn: struct sk_buff has no member lenn"},
		{"nosuch", "ipftrace: module nosuch: no such built-in module"},
	} {
		r := run(t, nil, "--auto", "--btf", vmlinux, "-m", tc.arg)
		if r.code != ExitUsage || r.cfg != nil {
			t.Errorf("-m %s: exit %d (tracer ran: %v), want 2 without tracing", tc.arg, r.code, r.cfg != nil)
		}
		checkOneLine(t, r.stderr, tc.want)
	}
}
