//go:build linux

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDrop: an nftables rule in b drops a UDP datagram at input; its
// journey ends (egress) at the drop function: the kfree_skb tracepoint, or
// the kernel's drop function (sk_skb_reason_drop on 6.11+,
// kfree_skb_reason before) after nf_hook_slow. The JSON names the drop
// reason, NETFILTER_DROP, and netfilter as where it happened.
func TestDrop(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "nft")
	sink := listenUDP(t, p.b, addrB, false)
	snd := dialUDP(t, p.a, addrA, addrB, sink.port)
	rules := fmt.Sprintf("add table inet t; add chain inet t in { type filter hook input priority 0; }; add rule inet t in udp dport %d drop", sink.port)
	if out, err := nsExec(p.b, time.Minute, "nft", rules); err != nil {
		t.Fatalf("nft %s: %v\n%s", rules, err, out)
	}
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "udp", "-dp", fmt.Sprint(sink.port))...)

	var want path
	var drops []string
	if isFuncBackend(tr.backend) {
		drops = presentDrops(t)
		if len(drops) == 0 {
			t.Fatalf("none of the drop functions %v is in the manifest (gen-manifest found none on this kernel)", dropFuncs)
		}
		want = path{{"ip_output"}, {"__dev_queue_xmit"}, {"ip_rcv"}, {"nf_hook_slow"}, drops}
	} else {
		drops = []string{"kfree_skb"}
		want = append(append(path{}, tpXmitRecv...), drops)
	}
	snd.send(t, []byte("drop me"))
	what := fmt.Sprintf("UDP %s:%d -> %s:%d journey through %s ending (egress) in %v", addrA, snd.sport, addrB, sink.port, want, drops)
	var dropped *Journey
	tr.waitJourneys(p, what, func(js []Journey) bool {
		for i, j := range js {
			if isFlow(j, 4, "UDP", addrA, addrB, snd.sport, sink.port) && matchPath(j.Funcs(), want) &&
				lastIn(j, drops) && j.End == "egress" {
				dropped = &js[i]
				return true
			}
		}
		return false
	})
	tr.stop()
	// Where: the caller of the drop function, nft_do_chain, where the
	// kfree_skb tracepoint's location (6.18 host) and the kprobe's return
	// address (6.1) point; fentry has no caller address and names the
	// traced function before the drop, nf_hook_slow.
	if dropped.DropReason != "NETFILTER_DROP" || (dropped.DropLocation != "nf_hook_slow" && dropped.DropLocation != "nft_do_chain") {
		t.Errorf("drop_reason %q at %q, want NETFILTER_DROP at nf_hook_slow or nft_do_chain: %s", dropped.DropReason, dropped.DropLocation, dropped)
	}
	select {
	case <-sink.got:
		t.Error("the datagram arrived despite the drop rule")
	default:
	}
	js := p.filterOurs(tr.journeys())
	t.Logf("%d journeys:\n%s", len(js), dumpJourneys(js))
}

// TestDropClosedPort: a datagram to a UDP port nobody listens on is dropped
// by the UDP receive path with its own reason, NO_SOCKET; -o text prints
// "dropped: NO_SOCKET at <function>" under the journey, the function being
// the UDP receive function that gave up (__udp4_lib_rcv, or udp_rcv where
// it is inlined).
func TestDropClosedPort(t *testing.T) {
	p := newNetPair(t)
	closed := listenUDP(t, p.b, addrB, true)
	port := closed.port
	closed.conn.Close()
	snd := dialUDP(t, p.a, addrA, addrB, port)
	tr := startTracer(t, tracerArgs(t, "-o", "text", "-p", "udp", "-dp", fmt.Sprint(port))...)
	snd.send(t, []byte("nobody home"))
	header := regexp.MustCompile(fmt.Sprintf(`^UDP\s+%s:%d\s+->\s+%s:%d\s*$`, regexp.QuoteMeta(addrA), snd.sport, regexp.QuoteMeta(addrB), port))
	dropLine := regexp.MustCompile(`^dropped: (\S+)(?: at (\S+))?$`)
	var reason, at string
	found := func() bool {
		for _, b := range textBlocks(tr.stdout.String()) {
			if !header.MatchString(b[0]) {
				continue
			}
			for _, line := range b[1:] {
				if m := dropLine.FindStringSubmatch(line); m != nil {
					reason, at = m[1], m[2]
					return true
				}
			}
		}
		return false
	}
	deadline := time.Now().Add(journeyTimeout)
	for !found() {
		if tr.exitedNow() || time.Now().After(deadline) {
			t.Fatalf("no text journey \"UDP %s:%d -> %s:%d\" with a \"dropped: ...\" line; stdout:\n%s\nstderr:\n%s",
				addrA, snd.sport, addrB, port, tr.stdout.String(), tr.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr.stop()
	if reason != "NO_SOCKET" {
		t.Errorf("dropped: %s, want NO_SOCKET; stdout:\n%s", reason, tr.stdout.String())
	}
	if at != "__udp4_lib_rcv" && at != "udp_rcv" {
		t.Errorf("dropped at %q, want __udp4_lib_rcv or udp_rcv; stdout:\n%s", at, tr.stdout.String())
	}
	if strings.Contains(tr.stdout.String(), "dropped: SKB_CONSUMED") {
		t.Errorf("a consumed skb reported as dropped:\n%s", tr.stdout.String())
	}
	t.Logf("stdout:\n%s", tr.stdout.String())
}
