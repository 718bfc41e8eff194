package e2e

import (
	"strings"
	"testing"
)

// TestScanCache: the second run in a boot reads the first one's scan from
// /run/ipftrace and lists the same functions; --no-scan-cache scans afresh
// and lists them too.
func TestScanCache(t *testing.T) {
	requireRoot(t)
	list := func(args ...string) (string, string) {
		t.Helper()
		stdout, stderr, code := ipftrace(t, append([]string{"-ls", "--auto", "-v"}, args...)...)
		if code != 0 {
			t.Fatalf("ipftrace -ls --auto -v %s: exit status %d; stderr:\n%s", strings.Join(args, " "), code, stderr)
		}
		return stdout, stderr
	}
	const cachedLine = "ipftrace: read this boot's scan from /run/ipftrace in "
	const scannedLine = "ipftrace: scanned BTF in "
	first, _ := list()
	second, stderr := list()
	if !strings.Contains(stderr, cachedLine) {
		t.Errorf("second run: no %q line; stderr:\n%s", cachedLine, stderr)
	}
	if second != first {
		t.Errorf("second run (cached scan) lists other functions than the first")
	}
	fresh, stderr := list("--no-scan-cache")
	if !strings.Contains(stderr, scannedLine) || strings.Contains(stderr, cachedLine) {
		t.Errorf("--no-scan-cache: want %q and not %q; stderr:\n%s", scannedLine, cachedLine, stderr)
	}
	if fresh != first {
		t.Errorf("--no-scan-cache lists other functions than the cached scan")
	}
	if n := strings.Count(first, "\n"); n < 10 {
		t.Errorf("-ls --auto listed %d lines:\n%s", n, first)
	}
}
