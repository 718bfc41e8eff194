//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bounds of TestIdleReader. A reader that polls every 250 ms while idle
// switched context ~110 times in idleWindow on the host (the reader's ring
// buffer wait, its counter read and the Go runtime's thread wakeups);
// asleep it switches 0 times here and in the VMs, 17 times in one CI run
// on the host. An event must still wake it: without the wakeup, the first
// journey after a quiet spell would wait for the 30 s idle poll.
const (
	idleWindow      = 3 * time.Second
	idleMaxSwitches = 40
	idleWakeBound   = 2500 * time.Millisecond
)

// TestIdleReader: with nothing to trace, ipftrace sleeps (few context
// switches over idleWindow), and the first packet after the quiet spell
// still reaches the output at once, not at the next idle poll.
func TestIdleReader(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)...)
	pid := tr.cmd.Process.Pid
	// The reader goes to sleep at its first poll (250 ms) with nothing in
	// flight.
	time.Sleep(time.Second)
	before := contextSwitches(t, pid)
	time.Sleep(idleWindow)
	switches := contextSwitches(t, pid) - before
	t.Logf("backend %s: %d context switches of ipftrace's threads in %v idle", tr.backend, switches, idleWindow)
	if switches > idleMaxSwitches {
		t.Errorf("ipftrace switched context %d times in %v with nothing to trace, want at most %d: it polls while idle",
			switches, idleWindow, idleMaxSwitches)
	}

	start := time.Now()
	ping(t, p.a, addrB, 1)
	tr.waitEchoRequest(p)
	took := time.Since(start)
	t.Logf("echo request journey in the output %v after the ping started", took)
	if took > idleWakeBound {
		t.Errorf("the first journey after %v idle reached the output after %v, want under %v: the event did not wake the reader",
			idleWindow, took, idleWakeBound)
	}
	tr.stop()
}

// contextSwitches sums the voluntary and involuntary context switches of
// every thread of process pid.
func contextSwitches(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "status"))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of pid %d: %v (%d found)", pid, err, len(tasks))
	}
	n := 0
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				c, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					t.Fatalf("%s: %q: %v", f, line, err)
				}
				n += c
			}
		}
	}
	return n
}

// TestNoHugePages: ipftrace runs with transparent huge pages off
// (PR_SET_THP_DISABLE), so that a kernel that backs anonymous memory with
// huge pages wherever it can does not keep the Go heap's freed pages
// resident in 2 MiB pages (issue 6's peak RSS).
func TestNoHugePages(t *testing.T) {
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)...)
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(tr.cmd.Process.Pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := "", false
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok = strings.CutPrefix(line, "THP_enabled:"); ok {
			break
		}
	}
	tr.stop()
	if !ok {
		t.Skip("TestNoHugePages: SKIPPED, /proc/PID/status has no THP_enabled (Linux before 5.0)")
	}
	if v = strings.TrimSpace(v); v != "0" {
		t.Errorf("ipftrace runs with THP_enabled %s, want 0 (PR_SET_THP_DISABLE)", v)
	}
}
