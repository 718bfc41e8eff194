package tracer

import (
	"os"
	"testing"

	"github.com/ipftrace/ipftrace/btfscan"
)

// requireRoot skips tb, saying so, unless it runs as root: loading BPF
// programs and creating maps need it.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skipf("%s: SKIPPED, needs root to load BPF programs and create maps", tb.Name())
	}
}

// coreScan scans the running kernel as a run does: with the programs'
// CO-RE types and kfuncs, which loads are relocated against.
func coreScan(tb testing.TB) *btfscan.Result {
	tb.Helper()
	scan, err := btfscan.Scan(btfscan.Options{CORETypes: CORETypes, Kfuncs: Kfuncs})
	if err != nil {
		tb.Fatal(err)
	}
	return scan
}
