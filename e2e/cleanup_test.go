//go:build linux

package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCleanup: after SIGINT or SIGTERM ipftrace exits with status 0, and
// after any of SIGINT, SIGTERM and SIGKILL every BPF program and link it
// created goes away (possibly after a while: with fentry a background
// detacher process closes the links, one RCU grace period each). After
// SIGINT, a second run started at once must say when the first one's links
// are still detaching (checkPendingNote).
func TestCleanup(t *testing.T) {
	requireRoot(t)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(signalName(sig), func(t *testing.T) {
			before := systemBPF(t)
			tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "icmp", "-d", "192.0.2.1")...)
			ours, err := processBPF(tr.cmd.Process.Pid)
			if err != nil {
				t.Fatalf("read ipftrace's file descriptors: %v", err)
			}
			n, _, _ := tr.attached()
			// Links normally; perf-event based kprobes may hold no link.
			if ours.empty() {
				t.Fatalf("ipftrace (attached %d) holds no BPF links or programs", n)
			}
			during := systemBPF(t)
			if missing := ours.minus(during); !missing.empty() {
				t.Fatalf("ipftrace holds BPF objects the system does not list: %v", missing)
			}
			sent := tr.signal(sig)
			select {
			case <-tr.done:
			case <-time.After(exitTimeout):
				t.Fatalf("ipftrace did not exit within %v after %s; stderr:\n%s", exitTimeout, signalName(sig), tr.stderr.String())
			}
			exit := tr.exited.Sub(sent)
			var ee *exec.ExitError
			switch {
			case sig == syscall.SIGKILL:
				if !errors.As(tr.waitErr, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() {
					t.Errorf("after SIGKILL: %v, want killed by the signal", tr.waitErr)
				}
			case tr.waitErr != nil:
				t.Errorf("after %s: %v, want exit status 0; stderr:\n%s", signalName(sig), tr.waitErr, tr.stderr.String())
			}
			if sig != syscall.SIGKILL && strings.Contains(tr.stdout.String(), "\n") {
				// No traffic matches 192.0.2.1; anything printed is a journey
				// from elsewhere, which is fine, but it must be valid.
				tr.journeys()
			}
			if sig == syscall.SIGINT {
				checkPendingNote(t, tr.backend, ours)
			}
			gone := waitBPFGone(t, before, ours, sent)
			t.Logf("%s: %d links, %d programs; process exited %v after the signal, BPF objects gone after %v",
				signalName(sig), len(ours.links), len(ours.progs), exit.Round(time.Millisecond), gone.Round(time.Millisecond))
		})
	}
}

// checkPendingNote runs ipftrace again right after an earlier run exited,
// and checks that it says so when that run's links are still detaching
// (fentry: a grace period per link, in a detacher process), which slows
// any attach through ftrace. The note is required only if the earlier
// run's detacher still held links once the second run was attached.
func checkPendingNote(t *testing.T, backend string, ours bpfObjs) {
	t.Helper()
	if !isFuncBackend(backend) {
		t.Logf("backend %s: attaching does not wait for detaching links; no note to check", backend)
		return
	}
	before := detachersOf(ours)
	if len(before) == 0 {
		t.Logf("the links were detached before a second run could start; note not checked")
		return
	}
	// One function, so that the attach is over before the earlier run's
	// links are (tracking helpers attach too).
	tr := startTracer(t, tracerArgs(t, "-r", "^ip_rcv$", "-d", "192.0.2.1")...)
	after := detachersOf(ours) // held at the ready file: held at the note
	tr.stop()
	stderr := tr.stderr.String()
	const note = "links of an earlier run are still detaching"
	switch {
	case len(after) > 0 && !strings.Contains(stderr, note):
		t.Errorf("detacher %v still held the earlier run's links, but the second run did not say %q; stderr:\n%s", after, note, stderr)
	case len(after) > 0:
		t.Logf("second run, with %v links of the first still detaching: %s", after, firstLineWith(stderr, note))
	default:
		t.Logf("the earlier run's links were gone before the second run was attached; note not required (said: %v)", strings.Contains(stderr, note))
	}
}

// detachersOf returns the processes running the binary under test that hold
// links of objs, with how many each holds.
func detachersOf(objs bpfObjs) map[int]int {
	found := map[int]int{}
	holdersOf(objs, func(pid int, mine bpfObjs) bool {
		if len(mine.links) > 0 && isIpftrace(pid) {
			found[pid] = len(mine.links)
		}
		return true
	})
	return found
}

// firstLineWith returns the first line of s that contains sub.
func firstLineWith(s, sub string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			return line
		}
	}
	return ""
}
