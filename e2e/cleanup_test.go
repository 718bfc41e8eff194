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
// detacher process closes the links, one RCU grace period each).
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
			gone := waitBPFGone(t, before, ours, sent)
			t.Logf("%s: %d links, %d programs; process exited %v after the signal, BPF objects gone after %v",
				signalName(sig), len(ours.links), len(ours.progs), exit.Round(time.Millisecond), gone.Round(time.Millisecond))
		})
	}
}
