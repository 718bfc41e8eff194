//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInput: bad flags and files exit with status 2 and one stderr line
// "ipftrace: ...", print nothing on stdout, create no ready file and load no
// BPF program.
func TestBadInput(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("functions: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := [][]string{
		{"--auto", "-p", "bogus"},
		{"--auto", "-dp", "70000"},
		{"--auto", "-iv", "5"},
		{"--auto", "-b", "nope"},
		{"--auto", "-d", "10.0.0.300"},
		{"--auto", "-iv", "4", "-d", "fd00::2"},
		{"--auto", "-p", "icmp", "-dp", "80"},
		{"--auto", "-o", "xml"},
		{"--auto", "--frobnicate"},
		{filepath.Join(dir, "missing.yaml")},
		{badYAML},
	}
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
		for i, args := range cases {
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
