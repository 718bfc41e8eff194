//go:build linux

package e2e

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// autoOutputPath is the full path of an ICMP echo request from a to b, for
// function backends: global functions, or functions only called through a
// pointer, so that no kernel can have inlined the call. A step is required
// if one of its names is traced (listed for the backend by -ls --auto and
// not skipped at attach).
var autoOutputPath = path{
	{"ip_local_out", "__ip_local_out"},
	{"ip_output"},
	{"__dev_queue_xmit"},
	{"dev_hard_start_xmit"},
	{"veth_xmit"},
	{"__dev_forward_skb"},
	{"netif_rx", "__netif_rx"},
	{"ip_rcv"},
	{"ip_local_deliver"},
	{"icmp_rcv"},
	{"consume_skb"},
}

// autoStatic are static functions of the same path that a compiler may
// inline at the call the packet takes (ip_rcv_finish into ip_rcv on 6.1,
// say) while keeping a traceable copy: logged, not required.
var autoStatic = []string{"ip_finish_output", "__ip_finish_output", "ip_finish_output2", "netif_rx_internal",
	"__netif_receive_skb", "__netif_receive_skb_one_core", "ip_rcv_core", "ip_rcv_finish",
	"ip_local_deliver_finish", "ip_protocol_deliver_rcu"}

// autoCore must be traced whatever the kernel.
var autoCore = []string{"ip_output", "__dev_queue_xmit", "ip_rcv", "icmp_rcv"}

var skippedRE = regexp.MustCompile(`(?m)^ipftrace: skipped (\S+): `)

// listTraced returns the names -ls --auto lists for backend.
func listTraced(t *testing.T, backend string) map[string]bool {
	t.Helper()
	stdout, stderr, code := ipftrace(t, append(backendArgs(), "-ls", "--auto")...)
	if code != 0 {
		t.Fatalf("ipftrace -ls --auto: exit status %d; stderr:\n%s", code, stderr)
	}
	names := map[string]bool{}
	for i, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 6 {
			continue
		}
		if contains(strings.Split(f[5], ","), backend) {
			names[f[0]] = true
		}
	}
	return names
}

// TestAutoPing: --auto traces every skb function (or tracepoint); one ping's
// request journey follows the full IPv4 output and input path. Logs how
// many were attached, how long attaching took, and how long exiting took
// after SIGINT.
func TestAutoPing(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	tr := startTracer(t, "--auto", "-v", "-l", "1000", "-o", "json", "-p", "icmp", "-s", addrA, "-d", addrB)
	n, m, secs := tr.attached()
	t.Logf("backend %s: attached %d/%d in %.2fs (ready file after %v)", tr.backend, n, m, secs, tr.ready.Round(time.Millisecond))

	want := tpXmitRecv
	if isFuncBackend(tr.backend) {
		listed := listTraced(t, tr.backend)
		for _, mm := range skippedRE.FindAllStringSubmatch(tr.stderr.String(), -1) {
			delete(listed, mm[1])
		}
		for _, c := range autoCore {
			if !listed[c] {
				t.Fatalf("%s is not traced with --auto on this kernel (listed by -ls --auto for %s and not skipped)", c, tr.backend)
			}
		}
		want = nil
		var left []string
		for _, step := range autoOutputPath {
			var traced []string
			for _, name := range step {
				if listed[name] {
					traced = append(traced, name)
				}
			}
			if traced != nil {
				want = append(want, traced)
			} else {
				left = append(left, strings.Join(step, "|"))
			}
		}
		if left != nil {
			t.Logf("not traced on this kernel, left out of the path: %s", strings.Join(left, ", "))
		}
	}
	ping(t, p.a, addrB, 1)
	what := "ICMP 10.0.0.1 -> 10.0.0.2 echo request journey through " + want.String()
	js := tr.waitJourneys(p, what, func(js []Journey) bool {
		for _, j := range js {
			if isFlow(j, 4, "ICMP", addrA, addrB, 0, 0) && matchPath(j.Funcs(), want) &&
				(isFuncBackend(tr.backend) || (j.End == "egress" && lastIn(j, tpRelease))) {
				return true
			}
		}
		return false
	})
	took := tr.stop()
	t.Logf("backend %s: exit %v after SIGINT", tr.backend, took.Round(time.Millisecond))
	for _, j := range js {
		if isFlow(j, 4, "ICMP", addrA, addrB, 0, 0) && matchPath(j.Funcs(), want) {
			t.Logf("request journey (%d events): %s", len(j.Events), j)
			if isFuncBackend(tr.backend) {
				var seen, missed []string
				for _, f := range autoStatic {
					if contains(j.Funcs(), f) {
						seen = append(seen, f)
					} else {
						missed = append(missed, f)
					}
				}
				t.Logf("static functions on the path: seen %v, not seen (inlined or not traced) %v", seen, missed)
			}
			break
		}
	}
	if regexp.MustCompile(`lost [1-9]`).MatchString(tr.stderr.String()) {
		t.Logf("stderr reports lost events:\n%s", tr.stderr.String())
	}
	if tr.backend == "fentry" {
		checkStubs(t, tr.stderr.String(), n)
	}
}

// stubsRE is -v's account of the fentry attach with chained stubs.
var stubsRE = regexp.MustCompile(`(?m)^ipftrace: fentry: (\d+) stubs chained to fentry_chain$`)

// checkStubs checks that an fentry run attached a stub for each of its
// attached functions, plus fentry_chain, which the journey the test
// asserted ran through (with the functions' own names: the stubs passed
// their descriptors on).
func checkStubs(t *testing.T, stderr string, attached int) {
	t.Helper()
	m := stubsRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("fentry -v printed no chained-stubs line:\n%s", stderr)
	}
	stubs, _ := strconv.Atoi(m[1])
	t.Logf("fentry: %d stubs chained to fentry_chain", stubs)
	if stubs != attached {
		t.Errorf("%d stubs for %d attached functions", stubs, attached)
	}
}

// sharedRE is -v's account of the fentry attach with shared handlers.
var sharedRE = regexp.MustCompile(`(?m)^ipftrace: fentry: (\d+) functions in (\d+) prototype groups: (\d+) handlers, (\d+) tail calls$`)

// splitRE is -v's account of the measured choice between the inline and
// split shared handlers: the chosen variant's count first.
var splitRE = regexp.MustCompile(`(?m)^ipftrace: fentry: (split|inline) handlers \(\S+ verified in (\d+) instructions (split|inline), (\d+) (split|inline)\)$`)

// checkShared checks that an fentry run shared handlers: fewer
// handlers than functions, the others reached by tail call, and a program
// for every function of the groups attached (the others, module
// functions above all, load a clone each). The journey the test asserted ran through
// functions of the large groups ("int (struct sk_buff *skb)"), most of
// them tail calls, with their own names: the descriptors came from the
// cookies.
func checkShared(t *testing.T, stderr string, attached, targets int) {
	t.Helper()
	m := sharedRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("fentry --auto -v printed no shared-handler line:\n%s", stderr)
	}
	funcs, _ := strconv.Atoi(m[1])
	groups, _ := strconv.Atoi(m[2])
	handlers, _ := strconv.Atoi(m[3])
	tails, _ := strconv.Atoi(m[4])
	t.Logf("fentry: %d functions, %d groups, %d handlers, %d tail calls", funcs, groups, handlers, tails)
	if tails == 0 || groups >= funcs || handlers > groups+groups/10 {
		t.Errorf("fentry shared nothing: %s", m[0])
	}
	if others := targets - funcs; handlers+tails < attached-others {
		t.Errorf("%d handlers + %d tail calls loaded, but %d of the %d functions in groups attached",
			handlers, tails, attached-others, funcs)
	}
	// The handler variant was chosen on the verifier's counts, and the
	// journey the test asserted ran through it. A split handler must be
	// verified in at least a fifth fewer instructions than the inline one.
	c := splitRE.FindStringSubmatch(stderr)
	if c == nil || c[1] != c[3] || c[3] == c[5] {
		t.Fatalf("fentry --auto -v printed no measured handler choice:\n%s", stderr)
	}
	chosen, _ := strconv.Atoi(c[2])
	other, _ := strconv.Atoi(c[4])
	t.Logf("fentry: %s handlers (%d instructions verified, %d the other way)", c[1], chosen, other)
	split, inline := chosen, other
	if c[1] == "inline" {
		split, inline = other, chosen
	}
	if splitWins := split < inline && split*5 <= inline*4; splitWins != (c[1] == "split") {
		t.Errorf("fentry chose %s handlers on %d against %d instructions", c[1], chosen, other)
	}
}
