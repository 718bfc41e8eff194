//go:build linux

package e2e

import (
	"strings"
	"testing"
)

// noChainEnv is tracer.NoChainEnv, a hidden test hook.
const noChainEnv = "IPFTRACE_TEST_NO_CHAIN"

// TestFentryPaths traces a ping with each way the fentry backend attaches:
// a stub per function chained to one handler (what every kernel the tests
// boot takes), and shared handlers, the fallback where the handler cannot
// be chained (forced through the hook IPFTRACE_TEST_NO_CHAIN). Each must
// say which it took (-v) and print the ping's journey.
func TestFentryPaths(t *testing.T) {
	if wantBackend != "fentry" {
		t.Skipf("SKIPPED: the fentry attach paths need IPFTRACE_BACKEND=fentry (backend under test: %q); the VM lanes run it", wantBackend)
	}
	for _, tc := range []struct {
		name, hook, line string
	}{
		{"stubs", "", "ipftrace: fentry: a stub per function, chained to fentry_chain on "},
		{"shared", "1", "ipftrace: fentry: no chained stubs (test hook " + noChainEnv + "); shared handlers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(noChainEnv, tc.hook) // startTracer's ipftrace inherits the environment
			tr := pingText(t, "-v")
			stderr := tr.stderr.String()
			if !strings.Contains(stderr, tc.line) {
				t.Fatalf("no line %q on stderr; stderr:\n%s", tc.line, stderr)
			}
			n, m, _ := tr.attached()
			if tc.hook == "" {
				checkStubs(t, stderr, n)
			} else {
				checkShared(t, stderr, n, m)
			}
		})
	}
}
