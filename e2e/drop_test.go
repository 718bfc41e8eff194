//go:build linux

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestDrop: an nftables rule in b drops a UDP datagram at input; its
// journey ends (egress) at the drop function: the kfree_skb tracepoint, or
// the kernel's drop function (sk_skb_reason_drop on 6.11+,
// kfree_skb_reason before) after nf_hook_slow.
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
	tr.waitJourneys(p, what, func(js []Journey) bool {
		for _, j := range js {
			if isFlow(j, 4, "UDP", addrA, addrB, snd.sport, sink.port) && matchPath(j.Funcs(), want) &&
				lastIn(j, drops) && j.End == "egress" {
				return true
			}
		}
		return false
	})
	tr.stop()
	select {
	case <-sink.got:
		t.Error("the datagram arrived despite the drop rule")
	default:
	}
	js := p.filterOurs(tr.journeys())
	t.Logf("%d journeys:\n%s", len(js), dumpJourneys(js))
}
