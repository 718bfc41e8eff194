//go:build linux

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// badCase is one bad command line and a piece of the one-line error it must
// give, which names the problem.
type badCase struct {
	name string
	args []string
	want string
}

// badInputFiles writes the bad manifests and BTF files of the bad-input
// cases into dir and returns the cases.
func badInputCases(t *testing.T, dir string) []badCase {
	t.Helper()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	m := func(name, content string) string { return write(name, []byte(content)) }
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.UintN(256))
	}
	garbage[0] = 0x01 // not the BTF or ELF magic by chance

	// 200,000 entries: all unknown to the kernel, and the same with a bad
	// entry at the very end.
	var big strings.Builder
	big.WriteString("functions:\n")
	for i := range 200000 {
		fmt.Fprintf(&big, "  - name: no_such_fn_%d\n    skb_pos: 1\n", i)
	}
	bigUnknown := m("big-unknown.yaml", big.String())
	bigBadLine := 1 + 2*200000 + 2 // the skb_pos line of entry 200001
	big.WriteString("  - name: ip_rcv\n    skb_pos: 0\n")
	bigBad := m("big-bad.yaml", big.String())

	vmlinux, err := os.ReadFile("/sys/kernel/btf/vmlinux")
	if err != nil {
		t.Fatalf("read the kernel's BTF: %v", err)
	}
	truncBTF := write("truncated.btf", vmlinux[:len(vmlinux)/2])
	headerBTF := write("header.btf", vmlinux[:20])
	garbageBTF := write("garbage.btf", garbage)
	textBTF := m("text.btf", "this is not BTF\n")
	existing := m("exists", "")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "link-target"), link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	var manyFields, bigFields strings.Builder
	manyFields.WriteString("fields:\n")
	for i := range 17 {
		fmt.Fprintf(&manyFields, "  - {name: f%d, expr: skb->len, match: \"!= %d\"}\n", i, i)
	}
	bigFields.WriteString("fields:\n")
	for i := range 5 {
		fmt.Fprintf(&bigFields, "  - {name: dev%d, expr: skb->dev->name, match: \"!= x%d\"}\n", i, i)
	}

	mk := func(name string, args []string, want string) badCase { return badCase{name, args, want} }
	auto := func(args ...string) []string { return append([]string{"--auto"}, args...) }
	return []badCase{
		// Manifests.
		mk("manifest empty", []string{m("empty.yaml", "")}, "empty file"),
		mk("manifest comments only", []string{m("comments.yaml", "# nothing\n")}, "empty file"),
		mk("manifest not YAML", []string{m("notyaml.yaml", "functions: [\n")}, "not valid YAML"),
		mk("manifest tabs", []string{m("tabs.yaml", "functions:\n\t- name: ip_rcv\n")}, "not valid YAML"),
		mk("manifest binary garbage", []string{write("garbage.yaml", garbage)}, "not a YAML file (binary data)"),
		mk("manifest scalar", []string{m("scalar.yaml", "ip_rcv\n")}, "expected a mapping with a 'functions' key"),
		mk("manifest top-level list", []string{m("list.yaml", "- name: ip_rcv\n")}, "expected a mapping with a 'functions' key, found a list"),
		mk("manifest functions map", []string{m("map.yaml", "functions:\n  ip_rcv: 1\n")}, "'functions' must be a list"),
		mk("manifest name list", []string{m("namelist.yaml", "functions:\n  - name: [ip_rcv]\n")}, ":2: function 1: name must be a string"),
		mk("manifest name number", []string{m("namenum.yaml", "functions:\n  - name: 42\n")}, "name must be a string, found int"),
		mk("manifest bad name", []string{m("badname.yaml", "functions:\n  - name: ip rcv\n")}, `invalid function name "ip rcv"`),
		mk("manifest skb_pos string", []string{m("posstr.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: first\n")}, ":3: function 1: skb_pos must be an integer"),
		mk("manifest skb_pos negative", []string{m("posneg.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: -1\n")}, "skb_pos -1 out of range 1..12"),
		mk("manifest skb_pos zero", []string{m("poszero.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: 0\n")}, "skb_pos 0 out of range 1..12"),
		mk("manifest skb_pos 13", []string{m("pos13.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: 13\n")}, "skb_pos 13 out of range 1..12"),
		mk("manifest skb_pos huge", []string{m("poshuge.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: 9223372036854775807\n")}, "skb_pos 9223372036854775807 out of range"),
		mk("manifest skb_pos beyond int64", []string{m("posbig.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: 99999999999999999999999\n")}, "skb_pos must be an integer"),
		mk("manifest skb_pos float", []string{m("posfloat.yaml", "functions:\n  - name: ip_rcv\n    skb_pos: 1.5\n")}, "skb_pos must be an integer, found float"),
		mk("manifest egress not bool", []string{m("egress.yaml", "functions:\n  - name: ip_rcv\n    egress: maybe\n")}, "egress must be true or false"),
		mk("manifest duplicate name", []string{m("dup.yaml", "functions:\n  - name: ip_rcv\n  - name: ip_rcv\n")}, ":3: duplicate function ip_rcv (first listed on line 2)"),
		mk("manifest unknown key", []string{m("key.yaml", "functions:\n  - name: ip_rcv\n    skb: 1\n")}, `unknown key "skb"`),
		mk("manifest missing name", []string{m("noname.yaml", "functions:\n  - skb_pos: 1\n")}, "missing 'name'"),
		mk("manifest alias", []string{m("alias.yaml", "x: &a [1]\nfunctions: *a\n")}, "unknown key \"x\""),
		mk("manifest all unknown", []string{m("unknown.yaml", "functions:\n  - name: no_such_fn_a\n  - name: no_such_fn_b\n")}, "none of its functions exist on this kernel (skipped 2 unknown functions (no_such_fn_a, no_such_fn_b))"),
		mk("manifest 200k entries unknown", []string{bigUnknown}, "none of its functions exist on this kernel (skipped 200000 unknown functions"),
		mk("manifest 200k entries, bad last", []string{bigBad}, fmt.Sprintf(":%d: function 200001: skb_pos 0 out of range", bigBadLine)),
		mk("manifest missing file", []string{missing}, "read manifest "+missing+": no such file or directory"),
		mk("manifest directory", []string{dir}, "read manifest "+dir+": is a directory"),
		mk("manifest device", []string{"/dev/zero"}, "read manifest /dev/zero: not a regular file"),
		mk("manifest and --auto", []string{"--auto", existing}, "both a manifest"),
		mk("no manifest", []string{"-p", "icmp"}, "no manifest given"),
		// Flags.
		mk("bad IPv4", auto("-s", "10.0.0.256"), `--saddr: invalid address "10.0.0.256"`),
		mk("bad IPv6", auto("-d", "fd00::gg"), `--daddr: invalid address "fd00::gg"`),
		mk("IPv4 CIDR /33", auto("-s", "10.0.0.0/33"), `--saddr: invalid address or CIDR "10.0.0.0/33"`),
		mk("IPv6 CIDR /129", auto("-d", "fd00::/129"), `--daddr: invalid address or CIDR "fd00::/129"`),
		mk("port 70000", auto("-p", "tcp", "-dp", "70000"), "--dport: port 70000 outside 0-65535"),
		mk("negative port", auto("-p", "udp", "-sp", "-1"), `--sport: invalid port "-1"`),
		mk("unknown protocol", auto("-p", "bogus"), `unknown protocol "bogus"`),
		mk("protocol 256", auto("-p", "256"), `unknown protocol "256"`),
		mk("-iv 4 with IPv6 address", auto("-iv", "4", "-d", "fd00::2"), "is IPv6 but the IP version is 4"),
		mk("-iv 6 with IPv4 address", auto("-iv", "6", "-s", "10.0.0.1"), "is IPv4 but the IP version is 6"),
		mk("-iv 5", auto("-iv", "5"), `invalid IP version "5"`),
		mk("mixed address families", auto("-s", "10.0.0.1", "-d", "fd00::2"), "different IP versions"),
		mk("ports without transport", auto("-p", "icmp", "-dp", "80"), "ports need tcp, udp or sctp"),
		mk("negative length", auto("-l", "-5"), "--length must be at least 1, got -5"),
		mk("length not a number", auto("-l", "many"), `--length: invalid number "many"`),
		mk("negative count", auto("-c", "-1"), "--count must be at least 0"),
		mk("bad duration", auto("--duration", "soon"), `--duration: invalid duration "soon"`),
		mk("ring size not a power of two", auto("--ring-size", "3"), "--ring-size must be a power of two from 1 to 1024 (MiB), got 3"),
		mk("bad regex", auto("-r", "ip_(rcv"), `invalid regex "ip_(rcv"`),
		mk("regex matches nothing", auto("-r", "^no_such_function_at_all$"), `regex "^no_such_function_at_all$" matches no skb function or tracepoint`),
		mk("unknown long flag", auto("--frobnicate"), "unknown flag: --frobnicate"),
		mk("unknown short flag", auto("-x"), "unknown shorthand flag: 'x' in -x"),
		mk("flag without value", []string{"--auto", "-d"}, "flag needs an argument"),
		mk("unknown backend", auto("-b", "uprobe"), `unknown backend "uprobe"`),
		mk("unknown output format", auto("-o", "xml"), `unknown output format "xml"`),
		mk("bad egress name", auto("-e", "bad name"), `invalid function name "bad name"`),
		mk("unknown egress function", auto("-e", "no_such_function_xyz"), "unknown egress function no_such_function_xyz"),
		mk("ready file exists", auto("--ready-file", existing), "--ready-file "+existing+": already exists"),
		mk("ready file is a symlink", auto("--ready-file", link), "--ready-file "+link+": already exists"),
		mk("ready file without directory", auto("--ready-file", filepath.Join(dir, "nodir", "ready")), "no such file or directory"),
		// BTF.
		mk("BTF missing", auto("--btf", filepath.Join(dir, "missing.btf")), "read BTF "+filepath.Join(dir, "missing.btf")+": no such file or directory"),
		mk("BTF truncated", auto("--btf", truncBTF), "read BTF "+truncBTF+": type section"),
		mk("BTF header only", auto("--btf", headerBTF), "read BTF "+headerBTF+":"),
		mk("BTF garbage", auto("--btf", garbageBTF), "read BTF "+garbageBTF+": not a BTF file (bad magic)"),
		mk("BTF text", auto("--btf", textBTF), "read BTF "+textBTF+": not a BTF file (bad magic)"),
		mk("BTF directory", auto("--btf", dir), "read BTF "+dir+": is a directory"),
		mk("BTF device", auto("--btf", "/dev/zero"), "read BTF /dev/zero: not a regular file"),
		// Modules (-m), resolved against this kernel's BTF.
		mk("module unknown member", auto("-m", m("mod-unknown.yaml", "fields:\n  - {name: x, expr: skb->lenn}\n")), "field x: skb->lenn: struct sk_buff has no member lenn"),
		mk("module not a scalar", auto("-m", m("mod-notscalar.yaml", "fields:\n  - {name: x, expr: skb->dev->nd_net}\n")), "skb->dev->nd_net: possible_net_t is not a scalar or string"),
		mk("module too many fields", auto("-m", m("mod-many.yaml", manyFields.String())), "too many fields: 17, at most 16"),
		mk("module data too large", auto("-m", m("mod-big.yaml", bigFields.String())), "data area too large: the fields need 80 bytes, the budget is 64 bytes per event"),
		mk("module bad format", auto("-m", m("mod-format.yaml", "fields:\n  - {name: x, expr: skb->len, format: octal}\n")), `field x: format "octal": want dec, hex, string, bool, enum:NAME or flags:NAME`),
		mk("module bad string match", auto("-m", m("mod-match.yaml", "fields:\n  - {name: x, expr: skb->dev->name, match: \"> eth0\"}\n")), "strings support == and != only"),
		mk("module not YAML", auto("-m", m("mod-syntax.yaml", "fields: [\n")), "module "+filepath.Join(dir, "mod-syntax.yaml")),
		mk("module unknown built-in", auto("-m", "gso", "-m", "nosuch"), "module nosuch: no such built-in module"),
		mk("module missing file", auto("-m", filepath.Join(dir, "missing-module.yaml")), "no such file or directory"),
	}
}

// TestBadInput: each bad flag, manifest or BTF file exits with status 2 and
// exactly one stderr line "ipftrace: ..." that names the problem, prints
// nothing on stdout, creates no ready file, shows no panic or stack trace,
// and attaches nothing: it runs under a seccomp filter that kills it on
// bpf(2) or perf_event_open(2) (see nobpf_test.go), so a normal exit proves
// it created no BPF program, map or link, whatever other BPF users on the
// host do meanwhile.
func TestBadInput(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	cases := badInputCases(t, dir)
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "200k") && isFuncBackend(orDefault(wantBackend, "tracepoint")) {
				// Pure parsing, the same on every kernel; 10-20 s each in TCG.
				t.Skip("SKIPPED with a function backend (the VM runs): the 200k-entry manifests are parsed the same on every kernel and take 10-20 s each under TCG; the host run covers them")
			}
			ready := filepath.Join(t.TempDir(), "ready")
			full := backendArgs()
			if !slices.Contains(tc.args, "--ready-file") {
				full = append(full, "--ready-file", ready)
			}
			full = append(full, tc.args...)
			stdout, stderr, code, killed := runNoBPF(t, append([]string{ipftraceBin}, full...)...)
			if killed {
				t.Fatalf("ipftrace %s called bpf(2) or perf_event_open(2) (killed by the seccomp filter); stderr:\n%s", strings.Join(full, " "), stderr)
			}
			checkBadInput(t, full, tc.want, stdout, stderr, code)
			if _, err := os.Lstat(ready); err == nil {
				t.Errorf("ipftrace %s created the ready file", strings.Join(full, " "))
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(stderr))
		})
	}
}

// checkBadInput checks the outcome of one bad-input run.
func checkBadInput(t *testing.T, args []string, want, stdout, stderr string, code int) {
	t.Helper()
	cmdline := strings.Join(args, " ")
	if len(cmdline) > 200 {
		cmdline = cmdline[:200] + "…"
	}
	if code != 2 {
		t.Errorf("ipftrace %s: exit status %d, want 2; stderr:\n%s", cmdline, code, stderr)
	}
	if stdout != "" {
		t.Errorf("ipftrace %s: stdout %q, want nothing", cmdline, stdout)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "fatal error") {
		t.Errorf("ipftrace %s: panic or stack trace:\n%s", cmdline, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "ipftrace: ") || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("ipftrace %s: stderr is not one line \"ipftrace: ...\":\n%s", cmdline, stderr)
	} else if !strings.Contains(lines[0], want) {
		t.Errorf("ipftrace %s: stderr %q does not name the problem (want %q)", cmdline, lines[0], want)
	}
}

// TestUnprivileged: run as nobody (setpriv), ipftrace says which
// capabilities are missing and exits with status 1, before loading anything;
// with CAP_BPF alone it names CAP_PERFMON. (Bad input still takes
// precedence: it is exit 2 for anybody.)
func TestUnprivileged(t *testing.T) {
	requireRoot(t)
	setpriv := requireTool(t, "setpriv")
	// The binary under test may sit in a directory nobody cannot enter.
	dir, err := os.MkdirTemp("", "ipftrace-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "ipftrace")
	data, err := os.ReadFile(ipftraceBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	nobody := []string{"--reuid=65534", "--regid=65534", "--clear-groups"}
	for _, tc := range []struct {
		name string
		caps []string
		args []string
		code int
		want string
	}{
		{"no capabilities", nil, []string{"--auto", "-p", "icmp"}, 1,
			"ipftrace: insufficient privileges: run as root or with CAP_BPF and CAP_PERFMON (missing CAP_BPF, CAP_PERFMON)"},
		{"CAP_BPF only", []string{"--inh-caps=+bpf", "--ambient-caps=+bpf"}, []string{"--auto", "-p", "icmp"}, 1,
			"ipftrace: insufficient privileges: run as root or with CAP_BPF and CAP_PERFMON (missing CAP_PERFMON)"},
		{"CAP_PERFMON only", []string{"--inh-caps=+perfmon", "--ambient-caps=+perfmon"}, []string{"--auto", "-p", "icmp"}, 1,
			"ipftrace: insufficient privileges: run as root or with CAP_BPF and CAP_PERFMON (missing CAP_BPF)"},
		{"bad input first", nil, []string{"--auto", "-p", "bogus"}, 2, `ipftrace: unknown protocol "bogus" (want icmp, tcp, udp, icmpv6, sctp or a number 0-255)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append(append([]string{setpriv}, nobody...), tc.caps...), bin)
			args = append(append(args, backendArgs()...), tc.args...)
			stdout, stderr, code, killed := runNoBPF(t, args...)
			if killed {
				t.Fatalf("%s: called bpf(2) or perf_event_open(2) (killed by the seccomp filter); stderr:\n%s", strings.Join(args, " "), stderr)
			}
			if code != tc.code || stderr != tc.want+"\n" || stdout != "" {
				t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit %d and stderr %q",
					strings.Join(args, " "), code, stdout, stderr, tc.code, tc.want+"\n")
			}
			t.Logf("exit %d: %s", code, strings.TrimSpace(stderr))
		})
	}
}
