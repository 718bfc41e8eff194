//go:build linux

package e2e

import (
	"strings"
	"testing"
	"time"
)

// noMmapEnv is tracer.NoMmapEnv, a hidden test hook.
const noMmapEnv = "IPFTRACE_TEST_NO_MMAP"

// TestNoMmap runs ipftrace as it runs where the data section's map has no
// memory mapping (before Linux 5.5, through the hook IPFTRACE_TEST_NO_MMAP):
// the reader cannot ask the programs to wake it, so it keeps polling while
// idle, and Ctrl-C stops the programs by rewriting the whole section. A
// ping, an idle spell longer than a journey's idle end, and a second ping:
// both journeys must be printed (a reader asleep for good would miss the
// second one until exit) and the exit must account for every event.
func TestNoMmap(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	t.Setenv(noMmapEnv, "1") // startTracer's ipftrace inherits the environment
	tr := startTracer(t, tracerArgs(t, "-v", "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)...)
	if note := "test hook " + noMmapEnv + ": "; !strings.Contains(tr.stderr.String(), note) {
		t.Fatalf("no line %q on stderr: the hook did not reach the run; stderr:\n%s", note, tr.stderr.String())
	}
	ping(t, p.a, addrB, 1)
	tr.waitEchoRequest(p)
	time.Sleep(2 * time.Second) // past the journeys' 1 s idle end: the reader would sleep now
	if !strings.Contains(tr.stderr.String(), "ipftrace: reader: polling while idle: ") {
		t.Errorf("no \"reader: polling while idle\" line on stderr after an idle spell; stderr:\n%s", tr.stderr.String())
	}
	start := time.Now()
	ping(t, p.a, addrB, 1)
	tr.waitEchoRequests(p, 2)
	// Polling finds it within a poll period (250 ms) of its end; a reader
	// asleep would wait for its 30 s safety poll.
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("second journey printed %v after its ping started: the reader slept instead of polling", took)
	} else {
		t.Logf("second journey printed %v after its ping started", took.Round(time.Millisecond))
	}
	took := tr.stop()
	stderr := tr.stderr.String()
	if strings.Contains(stderr, "unaccounted for") || !strings.Contains(stderr, " lost 0 events") {
		t.Errorf("exit accounting after stopping the programs through a section rewrite:\n%s", stderr)
	}
	t.Logf("backend %s, exit after SIGINT in %v:\n%s", tr.backend, took, dumpJourneys(p.filterOurs(tr.journeys())))
}
