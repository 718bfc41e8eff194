//go:build linux

package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAttachGate: pings flow from a to b every 5 ms while the tracer
// attaches. Nothing may be traced before everything is attached: a journey
// may begin mid-path (its packet was in flight when tracing began) or end
// mid-path (in flight at exit), but it must not skip a step of the path
// between two it has. Tracing while attaching gave such holes, and worse:
// an skb tracked by an attached function and freed where the free-watching
// helper was not attached yet left its address tracked, and the next packet
// allocated there, of any flow, joined a journey the filter never chose.
func TestAttachGate(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	pinger := exec.Command("ip", "netns", "exec", p.a, "ping", "-q", "-i", "0.005", addrB)
	if err := startChild(pinger); err != nil {
		t.Fatalf("start ping: %v", err)
	}
	pingDone := make(chan struct{})
	go func() { pinger.Wait(); close(pingDone) }()
	stopPing := func() {
		pinger.Process.Kill()
		<-pingDone
	}
	t.Cleanup(stopPing)
	time.Sleep(200 * time.Millisecond) // traffic flows before the attach starts

	tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)...)
	steps := requestPath(tr.backend, "ICMP", 4)
	tr.waitEchoRequest(p)
	stopPing()
	tr.stop()

	js := p.filterOurs(tr.journeys())
	full, partial, holes := 0, 0, 0
	for _, j := range js {
		have := make([]bool, len(steps))
		for i, step := range steps {
			for _, e := range j.Events {
				if contains(step, e.Func) {
					have[i] = true
				}
			}
		}
		first, last := -1, -1
		for i, h := range have {
			if h {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		if first < 0 {
			continue // not a request's journey (none of the steps)
		}
		var missing []string
		for i := first; i <= last; i++ {
			if !have[i] {
				missing = append(missing, strings.Join(steps[i], "|"))
			}
		}
		switch {
		case len(missing) > 0:
			if holes++; holes <= 3 {
				t.Errorf("journey skips %s between steps of %s: %s", strings.Join(missing, ", "), steps, j)
			}
		case first == 0 && last == len(steps)-1:
			full++
		default:
			partial++
		}
	}
	t.Logf("backend %s, attached in %v with pings flowing: %d journeys with the whole path, %d cut at the start or the end of tracing, %d with a hole",
		tr.backend, tr.ready.Round(time.Millisecond), full, partial, holes)
}
