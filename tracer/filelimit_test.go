package tracer

import (
	"syscall"
	"testing"
)

// TestRaiseFileLimit lowers this process's open-file limit and checks that
// raiseFileLimit lifts it to what a run needs (root may raise the hard
// limit), or says why it cannot (others may not).
func TestRaiseFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	eff, err := effectiveCaps()
	if err != nil {
		t.Fatal(err)
	}
	const capSysResource = 24
	root := eff&(1<<capSysResource) != 0 // may raise the hard limit
	t.Logf("CAP_SYS_RESOURCE: %v, limit %d/%d", root, orig.Cur, orig.Max)
	if !root && orig.Max < 64 {
		t.Skipf("TestRaiseFileLimit: hard open-file limit %d is too low to test with", orig.Max)
	}
	// Without CAP_SYS_RESOURCE a lowered hard limit cannot be raised again:
	// lower the soft one only.
	low := syscall.Rlimit{Cur: 64, Max: orig.Max}
	if root {
		low.Max = 64
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore open-file limit: %v", err)
		}
	})
	need := fdsNeeded(4000) // more than the common hard limit of 4096
	err = raiseFileLimit(need)
	var got syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &got); err != nil {
		t.Fatal(err)
	}
	canReach := root || orig.Max >= need
	switch {
	case canReach && err != nil:
		t.Fatalf("raiseFileLimit(%d): %v", need, err)
	case canReach && got.Cur < need:
		t.Fatalf("limit %d after raiseFileLimit(%d)", got.Cur, need)
	case !canReach && err == nil:
		t.Fatalf("raiseFileLimit(%d) above the hard limit %d without CAP_SYS_RESOURCE returned no error", need, orig.Max)
	case !canReach && got.Cur != orig.Max:
		t.Fatalf("soft limit %d, want the hard limit %d", got.Cur, orig.Max)
	}
	if err := raiseFileLimit(32); err != nil {
		t.Fatalf("raiseFileLimit below the current limit: %v", err)
	}
}
