//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput: bad flags, files and -m modules exit with status 2 and one
// stderr line "ipftrace: ..." (naming the problem, for modules), print
// nothing on stdout, create no ready file and load no BPF program.
func TestBadInput(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("functions: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	type badCase struct {
		args []string
		want string // substring of the error line ("" for any)
	}
	cases := []badCase{
		{[]string{"--auto", "-p", "bogus"}, ""},
		{[]string{"--auto", "-dp", "70000"}, ""},
		{[]string{"--auto", "-iv", "5"}, ""},
		{[]string{"--auto", "-b", "nope"}, ""},
		{[]string{"--auto", "-d", "10.0.0.300"}, ""},
		{[]string{"--auto", "-iv", "4", "-d", "fd00::2"}, ""},
		{[]string{"--auto", "-p", "icmp", "-dp", "80"}, ""},
		{[]string{"--auto", "-o", "xml"}, ""},
		{[]string{"--auto", "--frobnicate"}, ""},
		{[]string{filepath.Join(dir, "missing.yaml")}, ""},
		{[]string{badYAML}, ""},
	}
	// Bad -m modules, resolved against this kernel's BTF.
	module := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var many, big strings.Builder
	many.WriteString("fields:\n")
	for i := range 17 {
		fmt.Fprintf(&many, "  - {name: f%d, expr: skb->len, match: \"!= %d\"}\n", i, i)
	}
	big.WriteString("fields:\n")
	for i := range 5 {
		fmt.Fprintf(&big, "  - {name: dev%d, expr: skb->dev->name, match: \"!= x%d\"}\n", i, i)
	}
	for _, mc := range []struct{ file, content, want string }{
		{"unknown.yaml", "fields:\n  - {name: x, expr: skb->lenn}\n", "field x: skb->lenn: struct sk_buff has no member lenn"},
		{"notscalar.yaml", "fields:\n  - {name: x, expr: skb->dev->nd_net}\n", "skb->dev->nd_net: possible_net_t is not a scalar or string"},
		{"many.yaml", many.String(), "too many fields: 17, at most 16"},
		{"big.yaml", big.String(), "data area too large: the fields need 80 bytes, the budget is 64 bytes per event"},
		{"format.yaml", "fields:\n  - {name: x, expr: skb->len, format: octal}\n", `field x: format "octal": want dec, hex, string, bool, enum:NAME or flags:NAME`},
		{"match.yaml", "fields:\n  - {name: x, expr: skb->dev->name, match: \"> eth0\"}\n", "strings support == and != only"},
		{"syntax.yaml", "fields: [\n", "module " + filepath.Join(dir, "syntax.yaml")},
	} {
		cases = append(cases, badCase{[]string{"--auto", "-m", module(mc.file, mc.content)}, mc.want})
	}
	cases = append(cases,
		badCase{[]string{"--auto", "-m", "gso", "-m", "nosuch"}, "module nosuch: no such built-in module"},
		badCase{[]string{"--auto", "-m", filepath.Join(dir, "missing-module.yaml")}, "no such file or directory"},
	)
	// Program IDs only grow: if the sentinels around the runs are
	// consecutive, nothing (ipftrace included) loaded a program in between.
	// Other BPF users on the host can break that; retry for a while.
	sentinelProgID(t) // warm up: the first load and Info run cilium/ebpf's feature probes
	var gap uint32
	giveUp := time.Now().Add(time.Minute)
	for attempt := 0; attempt == 0 || time.Now().Before(giveUp); attempt++ {
		if attempt > 0 {
			time.Sleep(time.Second)
		}
		first := sentinelProgID(t)
		for i, bc := range cases {
			args := bc.args
			ready := filepath.Join(dir, "ready")
			full := append(append(backendArgs(), args...), "--ready-file", ready)
			stdout, stderr, code := ipftrace(t, full...)
			if attempt > 0 {
				continue // the outputs were checked the first time
			}
			if code != 2 {
				t.Errorf("case %d: ipftrace %s: exit status %d, want 2; stderr:\n%s", i, strings.Join(full, " "), code, stderr)
			}
			if stdout != "" {
				t.Errorf("case %d: ipftrace %s: stdout %q, want nothing", i, strings.Join(full, " "), stdout)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "ipftrace: ") || !strings.HasSuffix(stderr, "\n") {
				t.Errorf("case %d: ipftrace %s: stderr is not one line \"ipftrace: ...\":\n%s", i, strings.Join(full, " "), stderr)
			}
			if bc.want != "" && !strings.Contains(stderr, bc.want) {
				t.Errorf("case %d: ipftrace %s: stderr %q does not say %q", i, strings.Join(full, " "), stderr, bc.want)
			}
			if _, err := os.Stat(ready); err == nil {
				t.Errorf("case %d: ipftrace %s created the ready file", i, strings.Join(full, " "))
				os.Remove(ready)
			}
			t.Logf("%s => %d %s", strings.Join(args, " "), code, strings.TrimSpace(stderr))
		}
		last := sentinelProgID(t)
		gap = last - first - 1
		if gap == 0 {
			return
		}
		t.Logf("attempt %d: %d BPF programs were loaded while the bad inputs ran (ipftrace's, or another BPF user's); retrying", attempt+1, gap)
	}
	t.Fatalf("BPF programs were loaded while ipftrace ran with bad input, in every attempt for a minute (%d the last time)", gap)
}
