//go:build linux

// End-to-end tests of ipftrace.
//
// Environment:
//
//	IPFTRACE_BIN      the ipftrace binary to test (absolute path). Unset: the
//	                  tests build ./cmd/ipftrace once (CGO_ENABLED=0) into a
//	                  temporary directory.
//	IPFTRACE_BACKEND  fentry, kprobe, kprobe-multi or tracepoint: every run
//	                  passes "-b $IPFTRACE_BACKEND" and the tests fail unless
//	                  ipftrace reports exactly that backend. Unset: ipftrace
//	                  picks (auto) and the assertions follow the backend it
//	                  reports.
//
// The tests need root (they skip, saying why, otherwise), iproute2, and for
// some of them ping and nft. They run one after the other: ipftrace traces
// the whole host, so journeys are attributed to a test by the network
// namespaces of their events.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var (
	// ipftraceBin is the binary under test.
	ipftraceBin string
	// wantBackend is IPFTRACE_BACKEND ("" for auto).
	wantBackend string
	// notRoot is why the tests cannot run ("" if they can).
	notRoot string
	// tmpRoot holds the built binary and shared files.
	tmpRoot string
)

var validBackends = []string{"fentry", "kprobe", "kprobe-multi", "tracepoint"}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		notRoot = fmt.Sprintf("running as uid %d; the e2e tests load BPF programs and create network namespaces", os.Geteuid())
		fmt.Fprintf(os.Stderr, "e2e: needs root: %s; every test will be SKIPPED\n", notRoot)
	}
	wantBackend = os.Getenv("IPFTRACE_BACKEND")
	if wantBackend != "" && !contains(validBackends, wantBackend) {
		fmt.Fprintf(os.Stderr, "e2e: IPFTRACE_BACKEND=%q: want one of %s\n", wantBackend, strings.Join(validBackends, ", "))
		return 2
	}
	var err error
	tmpRoot, err = os.MkdirTemp("", "ipftrace-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmpRoot)

	ipftraceBin = os.Getenv("IPFTRACE_BIN")
	switch {
	case ipftraceBin != "":
		if !filepath.IsAbs(ipftraceBin) {
			fmt.Fprintf(os.Stderr, "e2e: IPFTRACE_BIN=%q must be an absolute path\n", ipftraceBin)
			return 2
		}
		if _, err := os.Stat(ipftraceBin); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: IPFTRACE_BIN: %v\n", err)
			return 1
		}
	case notRoot == "":
		ipftraceBin = filepath.Join(tmpRoot, "ipftrace")
		cmd := exec.Command("go", "build", "-o", ipftraceBin, "github.com/ipftrace/ipftrace/cmd/ipftrace")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/ipftrace: %v\n%s", err, out)
			return 1
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: binary %s, backend %s\n", ipftraceBin, orDefault(wantBackend, "auto"))
	return m.Run()
}

// requireRoot skips the test, loudly, if it cannot run here.
func requireRoot(t *testing.T) {
	t.Helper()
	if notRoot != "" {
		t.Skip("e2e: needs root: " + notRoot)
	}
}

// requireTool skips the test, loudly, if a command is not installed.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("e2e: %s is not installed (%v); install it to run this test", name, err)
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
