//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// isFlow reports whether j is a journey of the given flow (ports 0 match
// any).
func isFlow(j Journey, ipv int, proto, saddr, daddr string, sport, dport int) bool {
	f := j.Flow
	return f.IPVersion == ipv && f.Proto == proto && f.Saddr == saddr && f.Daddr == daddr &&
		(sport == 0 || f.Sport == sport) && (dport == 0 || f.Dport == dport)
}

// findPath returns the first journey of the flow that follows the request
// path of the backend.
func findPath(backend string, js []Journey, ipv int, proto, saddr, daddr string, sport, dport int) *Journey {
	for i, j := range js {
		if isFlow(j, ipv, proto, saddr, daddr, sport, dport) && matchPath(j.Funcs(), requestPath(backend, proto, ipv)) {
			return &js[i]
		}
	}
	return nil
}

// TestTCP: a TCP connection carrying 1000 bytes from a to b, traced with
// -p tcp -dp PORT: the data segment's journey has the TCP flow with both
// ports and follows the backend's path.
func TestTCP(t *testing.T) {
	p := newNetPair(t)
	l := tcpListen(t, p.b, addrB)
	dport := l.Addr().(*net.TCPAddr).Port
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "tcp", "-dp", fmt.Sprint(dport))...)
	payload := bytes.Repeat([]byte("x"), 1000)
	sport := tcpSend(t, l, p.a, addrA, addrB, dport, payload)
	what := fmt.Sprintf("TCP %s:%d -> %s:%d data (len >= 1000) %s", addrA, sport, addrB, dport, requestWhat(tr.backend, "TCP", 4))
	tr.waitJourneys(p, what, func(js []Journey) bool {
		for _, j := range js {
			if !isFlow(j, 4, "TCP", addrA, addrB, sport, dport) || !matchPath(j.Funcs(), requestPath(tr.backend, "TCP", 4)) {
				continue
			}
			for _, e := range j.Events {
				if e.Len >= len(payload) {
					return true
				}
			}
		}
		return false
	})
	tr.stop()
	js := p.filterOurs(tr.journeys())
	for _, j := range js {
		if !isFlow(j, 4, "TCP", addrA, addrB, sport, dport) {
			t.Errorf("journey outside the filter -p tcp -dp %d: %s", dport, j)
		}
	}
	t.Logf("%d journeys:\n%s", len(js), dumpJourneys(js))
}

// TestUDP: one UDP datagram from a to b, traced with -p udp -dp PORT.
func TestUDP(t *testing.T) {
	p := newNetPair(t)
	sink := listenUDP(t, p.b, addrB, false)
	snd := dialUDP(t, p.a, addrA, addrB, sink.port)
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-p", "udp", "-dp", fmt.Sprint(sink.port))...)
	snd.send(t, []byte("hello"))
	select {
	case <-sink.got:
	case <-time.After(journeyTimeout):
		t.Fatal("the datagram did not arrive")
	}
	what := fmt.Sprintf("UDP %s:%d -> %s:%d %s", addrA, snd.sport, addrB, sink.port, requestWhat(tr.backend, "UDP", 4))
	tr.waitJourneys(p, what, func(js []Journey) bool {
		return findPath(tr.backend, js, 4, "UDP", addrA, addrB, snd.sport, sink.port) != nil
	})
	tr.stop()
	js := p.filterOurs(tr.journeys())
	for _, j := range js {
		if !isFlow(j, 4, "UDP", addrA, addrB, snd.sport, sink.port) {
			t.Errorf("journey outside the filter -p udp -dp %d: %s", sink.port, j)
		}
	}
	t.Logf("%d journeys:\n%s", len(js), dumpJourneys(js))
}

// TestInterruptFlush: a datagram that waits, unread, in a socket's queue is
// a journey in flight; SIGINT prints it with end "exit", and ipftrace exits
// with status 0.
func TestInterruptFlush(t *testing.T) {
	p := newNetPair(t)
	sink := listenUDP(t, p.b, addrB, true)
	snd := dialUDP(t, p.a, addrA, addrB, sink.port)
	tr := startTracer(t, tracerArgs(t, "-o", "json", "--idle", "30m", "-p", "udp", "-dp", fmt.Sprint(sink.port))...)
	snd.send(t, []byte("hello"))
	// Wait until the datagram is queued on the receiving socket.
	rc, err := sink.conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(journeyTimeout)
	for {
		var n int
		var ierr error
		if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
			t.Fatal(err)
		}
		if ierr != nil {
			t.Fatalf("SIOCINQ: %v", ierr)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the datagram was not queued on the receiving socket")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if js := p.filterOurs(tr.journeys()); len(js) != 0 {
		t.Errorf("journeys printed before SIGINT though the skb is still queued and --idle is 30m:\n%s", dumpJourneys(js))
	}
	took := tr.stop()
	js := p.filterOurs(tr.journeys())
	j := findPath(tr.backend, js, 4, "UDP", addrA, addrB, snd.sport, sink.port)
	if j == nil {
		t.Fatalf("after SIGINT: no UDP %s:%d -> %s:%d journey through %s; journeys:\n%s\nstderr:\n%s",
			addrA, snd.sport, addrB, sink.port, requestPath(tr.backend, "UDP", 4), dumpJourneys(js), tr.stderr.String())
	}
	if j.End != "exit" {
		t.Errorf("in-flight journey flushed at SIGINT ends %q, want \"exit\": %s", j.End, j)
	}
	t.Logf("exit %v after SIGINT; %s", took, j)
}
