//go:build linux

package e2e

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLossAccounted makes ipftrace lose events for certain: a 1 MiB ring
// buffer (--ring-size 1, about 8700 events) and the process stopped
// (SIGSTOP) while a ping flood that matches fills it, then resumed and
// interrupted. Every event the programs matched must be received or
// reported lost (no "unaccounted" line), the loss must be reported with
// what helps, and every received event must be in the output.
func TestLossAccounted(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	tr := startTracer(t, tracerArgs(t, "--ring-size", "1", "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)...)
	tr.signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			tr.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	out, err := nsExec(p.a, 5*time.Minute, "ping", "-f", "-q", "-c", "4000", addrB)
	if err != nil {
		t.Fatalf("ping -f: %v: %s", err, out)
	}
	tr.signal(syscall.SIGCONT)
	stopped = false
	time.Sleep(500 * time.Millisecond) // the reader drains what the ring kept
	took := tr.stop()

	se := tr.stderr.String()
	m := exitSummaryRE.FindStringSubmatch(se)
	if m == nil {
		t.Fatalf("no exit summary; stderr:\n%s", se)
	}
	received, _ := strconv.ParseInt(m[2], 10, 64)
	lost, _ := strconv.ParseInt(m[3], 10, 64)
	t.Logf("backend %s: %d events received, %d lost; exit %v after SIGINT", tr.backend, received, lost, took.Round(time.Millisecond))
	if lost == 0 {
		t.Fatalf("no event lost with a 1 MiB ring buffer and the reader stopped during 4000 flood pings (%d received); stderr:\n%s", received, se)
	}
	if received == 0 {
		t.Errorf("no event received: the ring buffer's contents were not read after SIGCONT")
	}
	if mm := unaccountedRE.FindStringSubmatch(se); mm != nil {
		// Programs still running on another CPU when the stop flag was
		// set can finish an event after the drain: a handful at most.
		if gap, _ := strconv.ParseInt(mm[4], 10, 64); gap < 0 || gap > 64 {
			t.Errorf("events neither received nor reported lost: %s", mm[0])
		}
	}
	if hint := "ipftrace: the lost events found the ring buffer full: a larger --ring-size"; !strings.Contains(se, hint) {
		t.Errorf("the exit summary does not say what helps (%q); stderr:\n%s", hint, se)
	}
	var events int64
	for _, j := range tr.journeys() {
		events += int64(len(j.Events))
	}
	if events != received {
		t.Errorf("%d events in the output, %d received", events, received)
	}
}
