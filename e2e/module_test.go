//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bulkTCP sends size bytes over a TCP connection from ns a (src) to a
// listener in ns b (dst) and returns the client's port and its MSS
// (TCP_MAXSEG: the segment size the stack uses on this path, the gso_size
// of its GSO packets). The listener must exist already.
func bulkTCP(t *testing.T, l *net.TCPListener, ns, src, dst string, dport, size int) (sport, mss int) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := l.AcceptTCP()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		n, err := io.Copy(io.Discard, c)
		if err == nil && n != int64(size) {
			err = fmt.Errorf("server read %d bytes, want %d", n, size)
		}
		done <- err
	}()
	network := "tcp4"
	if strings.Contains(dst, ":") {
		network = "tcp6"
	}
	var c *net.TCPConn
	err := inNetns(ns, func() error {
		var err error
		c, err = net.DialTCP(network, &net.TCPAddr{IP: net.ParseIP(src)}, &net.TCPAddr{IP: net.ParseIP(dst), Port: dport})
		return err
	})
	if err != nil {
		t.Fatalf("dial %s %s -> [%s]:%d: %v", network, src, dst, dport, err)
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG) }); err != nil || serr != nil {
		t.Fatalf("TCP_MAXSEG: %v %v", err, serr)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write(make([]byte, size)); err != nil {
		t.Fatalf("tcp write: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("tcp close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the server did not read the data within 2m")
	}
	return c.LocalAddr().(*net.TCPAddr).Port, mss
}

func listenTCP(t *testing.T, ns, addr string) *net.TCPListener {
	t.Helper()
	network := "tcp4"
	if strings.Contains(addr, ":") {
		network = "tcp6"
	}
	var l *net.TCPListener
	err := inNetns(ns, func() error {
		var err error
		l, err = net.ListenTCP(network, &net.TCPAddr{IP: net.ParseIP(addr)})
		return err
	})
	if err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// bulkSize is enough for the stack to build GSO packets of several
// segments (the initial window is 10 segments), and small enough for TCG.
const bulkSize = 256 << 10

// TestModuleGSOText: a TCP bulk transfer over veth (GSO on by default)
// traced with -m gso in the original's text style: some event's Custom Data
// reads "(len: N gso_size: MSS gso_segs: K gso_type: SKB_GSO_TCPV4...)" with
// MSS the connection's segment size and K >= 2.
func TestModuleGSOText(t *testing.T) {
	p := newNetPair(t)
	l := listenTCP(t, p.b, addrB)
	dport := l.Addr().(*net.TCPAddr).Port
	tr := startTracer(t, tracerArgs(t, "-o", "text", "-m", "gso", "-p", "tcp", "-dp", fmt.Sprint(dport))...)
	sport, mss := bulkTCP(t, l, p.a, addrA, addrB, dport, bulkSize)
	header := regexp.MustCompile(fmt.Sprintf(`^TCP\s+%s:%d\s+->\s+%s:%d\s*$`, regexp.QuoteMeta(addrA), sport, regexp.QuoteMeta(addrB), dport))
	data := regexp.MustCompile(`\(len: (\d+) gso_size: (\d+) gso_segs: (\d+) gso_type: ([A-Z0-9_|x]*)\)$`)
	var found string
	check := func() bool {
		for _, b := range textBlocks(tr.stdout.String()) {
			if !header.MatchString(b[0]) || len(b) < 2 || !strings.Contains(b[1], "Custom Data") {
				continue
			}
			for _, row := range b[2:] {
				m := data.FindStringSubmatch(row)
				if m == nil {
					continue
				}
				size, _ := strconv.Atoi(m[2])
				segs, _ := strconv.Atoi(m[3])
				if size == mss && segs >= 2 && strings.Contains("|"+m[4]+"|", "|SKB_GSO_TCPV4|") {
					found = row
					return true
				}
			}
		}
		return false
	}
	deadline := time.Now().Add(journeyTimeout)
	for !check() {
		if tr.exitedNow() || time.Now().After(deadline) {
			t.Fatalf("no TCP %s:%d -> %s:%d event with (gso_size: %d gso_segs: >=2 gso_type: SKB_GSO_TCPV4); stdout:\n%.6000s\nstderr:\n%s",
				addrA, sport, addrB, dport, mss, tr.stdout.String(), tr.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	tr.stop()
	t.Logf("MSS %d; %s", mss, strings.TrimSpace(found))
}

// TestModuleGSOv6JSON: the same over IPv6 in JSON: typed data (numbers
// are numbers) with gso_type SKB_GSO_TCPV6.
func TestModuleGSOv6JSON(t *testing.T) {
	p := newNetPair(t)
	l := listenTCP(t, p.b, addrB6)
	dport := l.Addr().(*net.TCPAddr).Port
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-m", "gso", "-p", "tcp", "-dp", fmt.Sprint(dport))...)
	sport, mss := bulkTCP(t, l, p.a, addrA6, addrB6, dport, bulkSize)
	var found Event
	tr.waitJourneys(p, fmt.Sprintf("TCP [%s]:%d -> [%s]:%d event with gso_size %d, gso_segs >= 2, gso_type SKB_GSO_TCPV6", addrA6, sport, addrB6, dport, mss),
		func(js []Journey) bool {
			for _, j := range js {
				if !isFlow(j, 6, "TCP", addrA6, addrB6, sport, dport) {
					continue
				}
				for _, e := range j.Events {
					size, ok1 := e.Data["gso_size"].(float64)
					segs, ok2 := e.Data["gso_segs"].(float64)
					typ, ok3 := e.Data["gso_type"].(string)
					if ok1 && ok2 && ok3 && int(size) == mss && segs >= 2 && strings.Contains("|"+typ+"|", "|SKB_GSO_TCPV6|") {
						found = e
						return true
					}
				}
			}
			return false
		})
	tr.stop()
	if l, ok := found.Data["len"].(float64); !ok || int(l) <= mss {
		t.Errorf("GSO event len %v: want a number above the MSS %d", found.Data["len"], mss)
	}
	t.Logf("MSS %d; %s %v", mss, found.Func, found.Data)
}

// TestModuleMatchMark: two UDP flows from a to b; an nftables rule in a
// marks one of them (meta mark set 0x10). A module whose field carries the
// match condition "== 0x10" keeps exactly the marked flow: its journeys are
// printed, every event with mark 16, and the other flow's are not; no
// event that failed the condition went through the ring buffer.
func TestModuleMatchMark(t *testing.T) {
	p := newNetPair(t)
	requireTool(t, "nft")
	sinkMarked := listenUDP(t, p.b, addrB, false)
	sinkPlain := listenUDP(t, p.b, addrB, false)
	marked := dialUDP(t, p.a, addrA, addrB, sinkMarked.port)
	plain := dialUDP(t, p.a, addrA, addrB, sinkPlain.port)
	rules := fmt.Sprintf("add table inet t; add chain inet t out { type filter hook output priority 0; }; add rule inet t out udp dport %d meta mark set 0x10", sinkMarked.port)
	if out, err := nsExec(p.a, time.Minute, "nft", rules); err != nil {
		t.Fatalf("nft %s: %v\n%s", rules, err, out)
	}
	mod := filepath.Join(t.TempDir(), "marked.yaml")
	if err := os.WriteFile(mod, []byte("name: marked\nfields:\n  - {name: mark, expr: skb->mark, format: hex, match: \"== 0x10\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tr := startTracer(t, tracerArgs(t, "-o", "json", "-m", mod, "-p", "udp", "-s", addrA, "-d", addrB)...)
	// The unmarked flow first: had it matched, its journey would be out
	// before the marked one's.
	plain.send(t, []byte("plain"))
	marked.send(t, []byte("marked"))
	for _, s := range []*udpSink{sinkPlain, sinkMarked} {
		select {
		case <-s.got:
		case <-time.After(journeyTimeout):
			t.Fatal("a datagram did not arrive")
		}
	}
	tr.waitJourneys(p, fmt.Sprintf("journey of the marked flow UDP %s:%d -> %s:%d", addrA, marked.sport, addrB, sinkMarked.port), func(js []Journey) bool {
		for _, j := range js {
			if isFlow(j, 4, "UDP", addrA, addrB, marked.sport, sinkMarked.port) {
				return true
			}
		}
		return false
	})
	tr.stop()
	// The condition is checked in BPF before the ring buffer: every event
	// received is one of the printed journeys' (all of them, whatever
	// namespace), none was received and then filtered out.
	all := tr.journeys()
	printed := 0
	for _, j := range all {
		printed += len(j.Events)
	}
	m := regexp.MustCompile(`(?m)^ipftrace: \d+ journeys, (\d+) events received, lost (\d+) events$`).FindStringSubmatch(tr.stderr.String())
	if m == nil {
		t.Fatalf("no exit summary on stderr:\n%s", tr.stderr.String())
	}
	if received, _ := strconv.Atoi(m[1]); received != printed {
		t.Errorf("%d events received from the ring buffer, %d printed: the match condition was not applied in BPF; stderr:\n%s",
			received, printed, tr.stderr.String())
	}
	js := p.filterOurs(all)
	for _, j := range js {
		if !isFlow(j, 4, "UDP", addrA, addrB, marked.sport, sinkMarked.port) {
			t.Errorf("journey of a flow without the mark: %s", j)
		}
		for _, e := range j.Events {
			if m, ok := e.Data["mark"].(float64); !ok || m != 0x10 {
				t.Errorf("event %s with data %v, want mark 16: %s", e.Func, e.Data, j)
			}
		}
	}
	t.Logf("%d journeys:\n%s", len(js), dumpJourneys(js))
}
