//go:build linux

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// isEchoRequest reports whether j is the journey of an ICMP echo request
// from a to b along the full path of the backend.
func isEchoRequest(backend string, j Journey) bool {
	f := j.Flow
	if f.IPVersion != 4 || f.Proto != "ICMP" || f.Saddr != addrA || f.Daddr != addrB {
		return false
	}
	if !matchPath(j.Funcs(), requestPath(backend, "ICMP", 4)) {
		return false
	}
	if !isFuncBackend(backend) {
		return j.End == "egress" && lastIn(j, tpRelease)
	}
	return true
}

// waitEchoRequest waits for the journey of an echo request from a to b
// along the backend's full path (isEchoRequest).
func (tr *tracer) waitEchoRequest(p *netPair) {
	tr.t.Helper()
	tr.waitEchoRequests(p, 1)
}

// waitEchoRequests waits until n journeys of echo requests from a to b
// along the backend's full path were printed.
func (tr *tracer) waitEchoRequests(p *netPair, n int) {
	tr.t.Helper()
	what := "echo request " + requestWhat(tr.backend, "ICMP", 4)
	if n > 1 {
		what = fmt.Sprintf("%d journeys of %s", n, what)
	}
	tr.waitJourneys(p, what, func(js []Journey) bool {
		c := 0
		for _, j := range js {
			if isEchoRequest(tr.backend, j) {
				c++
			}
		}
		return c >= n
	})
}

func requestWhat(backend, proto string, ipv int) string {
	w := proto + " journey through " + requestPath(backend, proto, ipv).String()
	if !isFuncBackend(backend) && proto == "ICMP" {
		w += " ending (egress) in consume_skb|kfree_skb"
	}
	return w
}

// TestPingJSON: the journey of one ICMP echo request, -o json.
func TestPingJSON(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)...)
	ping(t, p.a, addrB, 1)
	tr.waitEchoRequest(p)
	took := tr.stop()
	js := p.filterOurs(tr.journeys())
	for _, j := range js {
		if f := j.Flow; f.IPVersion != 4 || f.Proto != "ICMP" || f.Saddr != addrA || f.Daddr != addrB || f.Sport != 0 || f.Dport != 0 {
			t.Errorf("journey outside the filter -p icmp -s %s -d %s: %s", addrA, addrB, j)
		}
		for _, e := range j.Events {
			if e.Netns != p.inoA && e.Netns != p.inoB && e.Netns != 0 {
				t.Errorf("event in netns %d, want %d (a) or %d (b): %s", e.Netns, p.inoA, p.inoB, j)
			}
		}
	}
	t.Logf("backend %s, %d journeys, exit after SIGINT in %v:\n%s", tr.backend, len(js), took, dumpJourneys(js))
}

var textHeaderRE = regexp.MustCompile(`^ICMP\s+10\.0\.0\.1\s+->\s+10\.0\.0\.2\s*$`)

// textBlocks splits -o text output into journeys: a flow header line, then
// a table whose last column is the function.
func textBlocks(out string) [][]string {
	var blocks [][]string
	var cur []string
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			if cur != nil {
				blocks = append(blocks, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, line)
	}
	if cur != nil {
		blocks = append(blocks, cur)
	}
	return blocks
}

// TestPingText: the same journey in -o text: a flow header
// "ICMP 10.0.0.1 -> 10.0.0.2" and the functions of the path, in order.
func TestPingText(t *testing.T) {
	pingText(t)
}

// pingText traces one ping with text output (ipftrace gets extra args
// too), checks that a journey through the request path is printed and
// that no journey is outside the filter, and returns the stopped tracer.
func pingText(t *testing.T, extra ...string) *tracer {
	p := newNetPair(t)
	requireTool(t, "ping")
	tr := startTracer(t, tracerArgs(t, append([]string{"-o", "text", "-p", "icmp", "-s", addrA, "-d", addrB}, extra...)...)...)
	ping(t, p.a, addrB, 1)
	want := requestPath(tr.backend, "ICMP", 4)
	found := func() bool {
		for _, b := range textBlocks(tr.stdout.String()) {
			if !textHeaderRE.MatchString(b[0]) {
				continue
			}
			var funcs []string
			for _, row := range b[1:] {
				if f := strings.Fields(row); len(f) > 0 {
					funcs = append(funcs, f[len(f)-1])
				}
			}
			if matchPath(funcs, want) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(journeyTimeout)
	for !found() {
		if tr.exitedNow() || time.Now().After(deadline) {
			t.Fatalf("no text journey with header \"ICMP 10.0.0.1 -> 10.0.0.2\" through %s; stdout:\n%s\nstderr:\n%s",
				want, tr.stdout.String(), tr.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr.stop()
	for _, b := range textBlocks(tr.stdout.String()) {
		if h := strings.Fields(b[0]); len(h) == 0 || h[0] != "ICMP" {
			t.Errorf("text journey outside the filter -p icmp: %q", b[0])
		}
	}
	t.Logf("stdout:\n%s", tr.stdout.String())
	return tr
}

// TestCount: -c 1 exits on its own, status 0, after exactly one journey.
func TestCount(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-c", "1", "-p", "icmp", "-s", addrA, "-d", addrB)...)
	deadline := time.Now().Add(journeyTimeout)
	for !tr.exitedNow() {
		if time.Now().After(deadline) {
			t.Fatalf("-c 1: still running %v after pinging; stdout:\n%s\nstderr:\n%s", journeyTimeout, tr.stdout.String(), tr.stderr.String())
		}
		ping(t, p.a, addrB, 1)
		select {
		case <-tr.done:
		case <-time.After(500 * time.Millisecond):
		}
	}
	tr.wait(0)
	if js := tr.journeys(); len(js) != 1 {
		t.Fatalf("-c 1 printed %d journeys, want 1:\n%s", len(js), dumpJourneys(js))
	}
	if out := tr.stdout.String(); strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("-c 1: stdout is not exactly one line:\n%q", out)
	}
}

// TestDuration: --duration exits on its own, status 0, not before the
// duration has passed since attaching.
func TestDuration(t *testing.T) {
	requireRoot(t)
	const d = 2 * time.Second
	tr := startTracer(t, tracerArgs(t, "-o", "json", "--duration", d.String(), "-p", "icmp", "-d", "192.0.2.1")...)
	readyAt := time.Now()
	tr.wait(0)
	ran := tr.exited.Sub(readyAt)
	if ran < d-100*time.Millisecond {
		t.Fatalf("--duration %v: exited %v after it was ready", d, ran)
	}
	t.Logf("--duration %v: exited %v after the ready file appeared", d, ran)
}
