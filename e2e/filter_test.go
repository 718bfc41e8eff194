//go:build linux

package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestFilters: several flows at once, one filter per subtest; only the
// journeys the filter selects appear, and the selected flow does.
//
//	X  UDP    10.0.0.1:sx -> 10.0.0.2:dx
//	Y  UDP    10.0.0.4:sy -> 10.0.0.3:dy
//	Z  UDP    [fd00::1]:sz -> [fd00::2]:dz
//	P  ICMP   10.0.0.1 -> 10.0.0.2 (echo request; the reply goes back)
//	Q  ICMPv6 fd00::1 -> fd00::3  (echo request; the reply goes back)
func TestFilters(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "ping")
	sinkX := listenUDP(t, p.b, addrB, false)
	sinkY := listenUDP(t, p.b, addrB2, false)
	sinkZ := listenUDP(t, p.b, addrB6, false)
	sndX := dialUDP(t, p.a, addrA, addrB, sinkX.port)
	sndY := dialUDP(t, p.a, addrA2, addrB2, sinkY.port)
	sndZ := dialUDP(t, p.a, addrA6, addrB6, sinkZ.port)
	t.Logf("X %s:%d -> %s:%d, Y %s:%d -> %s:%d, Z [%s]:%d -> [%s]:%d", addrA, sndX.sport, addrB, sinkX.port,
		addrA2, sndY.sport, addrB2, sinkY.port, addrA6, sndZ.sport, addrB6, sinkZ.port)

	type flowDef struct {
		ipv          int
		proto        string
		saddr, daddr string
		sport, dport int
	}
	flows := map[string]flowDef{
		"X": {4, "UDP", addrA, addrB, sndX.sport, sinkX.port},
		"Y": {4, "UDP", addrA2, addrB2, sndY.sport, sinkY.port},
		"Z": {6, "UDP", addrA6, addrB6, sndZ.sport, sinkZ.port},
		"P": {4, "ICMP", addrA, addrB, 0, 0},
		"Q": {6, "ICMPv6", addrA6, addrB7, 0, 0},
	}
	sendAll := func(t *testing.T) {
		sndX.send(t, []byte("x"))
		sndY.send(t, []byte("y"))
		sndZ.send(t, []byte("z"))
		ping(t, p.a, addrB, 1)
		ping(t, p.a, addrB7, 1)
	}

	cases := []struct {
		name  string
		args  []string
		need  string            // this flow's journey must appear
		allow func(f Flow) bool // every journey's flow must pass
	}{
		{"saddr", []string{"-s", addrA2}, "Y",
			func(f Flow) bool { return f.Saddr == addrA2 }},
		{"daddr-cidr", []string{"-d", addrB2 + "/32"}, "Y",
			func(f Flow) bool { return f.Daddr == addrB2 }},
		{"sport", []string{"-sp", fmt.Sprint(sndX.sport)}, "X",
			func(f Flow) bool { return (f.Proto == "UDP" || f.Proto == "TCP") && f.Sport == sndX.sport }},
		{"dport", []string{"-p", "udp", "-dp", fmt.Sprint(sinkY.port)}, "Y",
			func(f Flow) bool { return f.Proto == "UDP" && f.Dport == sinkY.port }},
		{"proto-icmp", []string{"-p", "icmp"}, "P",
			func(f Flow) bool { return f.Proto == "ICMP" && f.IPVersion == 4 }},
		{"ipv4", []string{"-iv", "4"}, "X",
			func(f Flow) bool { return f.IPVersion == 4 }},
		{"ipv6", []string{"-iv", "6"}, "Z",
			func(f Flow) bool { return f.IPVersion == 6 }},
		{"ipv6-daddr", []string{"-iv", "6", "-d", addrB6}, "Z",
			func(f Flow) bool { return f.IPVersion == 6 && f.Daddr == addrB6 }},
		{"ipv6-icmpv6-cidr", []string{"-iv", "6", "-p", "icmpv6", "-d", addrB7 + "/128"}, "Q",
			func(f Flow) bool { return f.IPVersion == 6 && f.Proto == "ICMPv6" && f.Daddr == addrB7 }},
		{"ipv4-udp-saddr-daddr-sport-dport", []string{"-iv", "4", "-p", "udp", "-s", addrA + "/24", "-d", addrB,
			"-sp", fmt.Sprint(sndX.sport), "-dp", fmt.Sprint(sinkX.port)}, "X",
			func(f Flow) bool {
				return f.IPVersion == 4 && f.Proto == "UDP" && f.Saddr == addrA && f.Daddr == addrB &&
					f.Sport == sndX.sport && f.Dport == sinkX.port
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr := startTracer(t, tracerArgs(t, append([]string{"-o", "json"}, c.args...)...)...)
			fd := flows[c.need]
			what := fmt.Sprintf("journey of flow %s (%s %s:%d -> %s:%d) through %s", c.need, fd.proto, fd.saddr, fd.sport,
				fd.daddr, fd.dport, requestPath(tr.backend, fd.proto, fd.ipv))
			sendAll(t)
			last := time.Now()
			tr.waitJourneys(p, what, func(js []Journey) bool {
				if findPath(tr.backend, js, fd.ipv, fd.proto, fd.saddr, fd.daddr, fd.sport, fd.dport) != nil {
					return true
				}
				if time.Since(last) > 5*time.Second {
					sendAll(t) // in case the first round was missed
					last = time.Now()
				}
				return false
			})
			tr.stop()
			js := p.filterOurs(tr.journeys())
			leaked := false
			for _, j := range js {
				if !c.allow(j.Flow) {
					t.Errorf("filter %v let through %s", c.args, j)
					leaked = true
				}
			}
			if leaked {
				t.Logf("the tracer's whole output:\n%s", tr.stdout.String())
			}
			t.Logf("filter %v: %d journeys", c.args, len(js))
		})
	}
}
