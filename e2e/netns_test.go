//go:build linux

package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the test topology: namespace a (10.0.0.1, 10.0.0.4,
// fd00::1) and namespace b (10.0.0.2, 10.0.0.3, fd00::2, fd00::3), joined
// by a veth pair named veth0 on both sides. Neighbour entries are static, so
// no ARP or neighbour discovery happens while tracing.
const (
	addrA  = "10.0.0.1"
	addrA2 = "10.0.0.4"
	addrB  = "10.0.0.2"
	addrB2 = "10.0.0.3"
	addrA6 = "fd00::1"
	addrB6 = "fd00::2"
	addrB7 = "fd00::3"
	macA   = "02:00:00:00:00:0a"
	macB   = "02:00:00:00:00:0b"
)

// netPair is a pair of network namespaces created for one test.
type netPair struct {
	a, b       string // namespace names under /run/netns
	inoA, inoB uint64 // their inode numbers (the "netns" of events)
}

func randSuffix() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// ipCmd runs ip(8) and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetPair creates the two namespaces and removes them when the test ends.
func newNetPair(t *testing.T) *netPair {
	t.Helper()
	requireRoot(t)
	requireTool(t, "ip")
	suffix := randSuffix()
	p := &netPair{a: "ipft-" + suffix + "-a", b: "ipft-" + suffix + "-b"}
	for _, ns := range []string{p.a, p.b} {
		ipCmd(t, "netns", "add", ns)
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v\n%s", ns, err, out)
			}
		})
	}
	ipCmd(t, "link", "add", "veth0", "netns", p.a, "address", macA, "type", "veth",
		"peer", "name", "veth0", "netns", p.b, "address", macB)
	for _, c := range [][]string{
		{"-n", p.a, "link", "set", "lo", "up"},
		{"-n", p.b, "link", "set", "lo", "up"},
		{"-n", p.a, "addr", "add", addrA + "/24", "dev", "veth0"},
		{"-n", p.a, "addr", "add", addrA2 + "/24", "dev", "veth0"},
		{"-n", p.a, "addr", "add", addrA6 + "/64", "dev", "veth0", "nodad"},
		{"-n", p.b, "addr", "add", addrB + "/24", "dev", "veth0"},
		{"-n", p.b, "addr", "add", addrB2 + "/24", "dev", "veth0"},
		{"-n", p.b, "addr", "add", addrB6 + "/64", "dev", "veth0", "nodad"},
		{"-n", p.b, "addr", "add", addrB7 + "/64", "dev", "veth0", "nodad"},
		{"-n", p.a, "link", "set", "veth0", "up"},
		{"-n", p.b, "link", "set", "veth0", "up"},
		{"-n", p.a, "neigh", "replace", addrB, "lladdr", macB, "dev", "veth0", "nud", "permanent"},
		{"-n", p.a, "neigh", "replace", addrB2, "lladdr", macB, "dev", "veth0", "nud", "permanent"},
		{"-n", p.a, "neigh", "replace", addrB6, "lladdr", macB, "dev", "veth0", "nud", "permanent"},
		{"-n", p.a, "neigh", "replace", addrB7, "lladdr", macB, "dev", "veth0", "nud", "permanent"},
		{"-n", p.b, "neigh", "replace", addrA, "lladdr", macA, "dev", "veth0", "nud", "permanent"},
		{"-n", p.b, "neigh", "replace", addrA2, "lladdr", macA, "dev", "veth0", "nud", "permanent"},
		{"-n", p.b, "neigh", "replace", addrA6, "lladdr", macA, "dev", "veth0", "nud", "permanent"},
	} {
		ipCmd(t, c...)
	}
	p.inoA = nsInode(t, p.a)
	p.inoB = nsInode(t, p.b)
	return p
}

func nsInode(t *testing.T, ns string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/run/netns/"+ns, &st); err != nil {
		t.Fatalf("stat netns %s: %v", ns, err)
	}
	return st.Ino
}

// ours reports whether a journey happened in this test's namespaces: at
// least one event in a or b and none in another namespace (events whose skb
// has neither a device nor a socket have netns 0). ipftrace traces the whole
// host; other journeys (other tests' or other users' traffic) are not this
// test's business.
func (p *netPair) ours(j Journey) bool {
	mine := false
	for _, e := range j.Events {
		switch e.Netns {
		case p.inoA, p.inoB:
			mine = true
		case 0:
		default:
			return false
		}
	}
	return mine
}

// filterOurs returns the journeys of this test's namespaces.
func (p *netPair) filterOurs(js []Journey) []Journey {
	var out []Journey
	for _, j := range js {
		if p.ours(j) {
			out = append(out, j)
		}
	}
	return out
}

// inNetns runs fn on an OS thread that has joined namespace ns. Sockets
// created by fn belong to ns for their whole life. The thread is discarded
// afterwards (the goroutine exits locked), so no other goroutine ever runs
// in ns.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the runtime ends the thread with the goroutine.
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// nsExec runs a command in namespace ns with "ip netns exec".
func nsExec(ns string, timeout time.Duration, name string, args ...string) ([]byte, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := startChild(cmd); err != nil {
		return nil, err
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	return out.Bytes(), err
}

// ping sends count echo requests from namespace ns to dst and fails the test
// unless they are answered.
func ping(t *testing.T, ns, dst string, count int) {
	t.Helper()
	args := []string{"-c", fmt.Sprint(count), "-i", "0.2", "-W", "5", dst}
	if strings.Contains(dst, ":") {
		args = append([]string{"-6"}, args...)
	}
	out, err := nsExec(ns, time.Minute, "ping", args...)
	if err != nil {
		t.Fatalf("ping %s in %s: %v\n%s", dst, ns, err, out)
	}
}

// udpSink is a UDP socket in namespace b that reads every datagram.
type udpSink struct {
	conn *net.UDPConn
	port int
	got  chan []byte
}

// listenUDP opens a UDP socket on addr:0 in namespace ns, reading datagrams
// into got (dropped if nobody takes them) unless noRead.
func listenUDP(t *testing.T, ns, addr string, noRead bool) *udpSink {
	t.Helper()
	s := &udpSink{got: make(chan []byte, 64)}
	network := "udp4"
	if strings.Contains(addr, ":") {
		network = "udp6"
	}
	err := inNetns(ns, func() error {
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr)})
		s.conn = c
		return err
	})
	if err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { s.conn.Close() })
	s.port = s.conn.LocalAddr().(*net.UDPAddr).Port
	if !noRead {
		go func() {
			buf := make([]byte, 65536)
			for {
				n, _, err := s.conn.ReadFromUDP(buf)
				if err != nil {
					return
				}
				select {
				case s.got <- append([]byte(nil), buf[:n]...):
				default:
				}
			}
		}()
	}
	return s
}

// udpSender is a connected UDP socket in namespace a.
type udpSender struct {
	conn  *net.UDPConn
	sport int
}

func dialUDP(t *testing.T, ns, src, dst string, dport int) *udpSender {
	t.Helper()
	network := "udp4"
	if strings.Contains(dst, ":") {
		network = "udp6"
	}
	s := &udpSender{}
	err := inNetns(ns, func() error {
		c, err := net.DialUDP(network, &net.UDPAddr{IP: net.ParseIP(src)}, &net.UDPAddr{IP: net.ParseIP(dst), Port: dport})
		s.conn = c
		return err
	})
	if err != nil {
		t.Fatalf("dial udp %s -> %s:%d in %s: %v", src, dst, dport, ns, err)
	}
	t.Cleanup(func() { s.conn.Close() })
	s.sport = s.conn.LocalAddr().(*net.UDPAddr).Port
	return s
}

func (s *udpSender) send(t *testing.T, payload []byte) {
	t.Helper()
	if _, err := s.conn.Write(payload); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("udp send %v -> %v: %v", s.conn.LocalAddr(), s.conn.RemoteAddr(), err)
	}
}

// tcpListen opens a TCP listener on addr:0 in namespace ns.
func tcpListen(t *testing.T, ns, addr string) *net.TCPListener {
	t.Helper()
	var l *net.TCPListener
	err := inNetns(ns, func() error {
		var err error
		l, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(addr)})
		return err
	})
	if err != nil {
		t.Fatalf("listen tcp %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// tcpSend connects from ns/src to dst:dport, writes payload and closes;
// the listener l reads everything. It returns the client's port.
func tcpSend(t *testing.T, l *net.TCPListener, ns, src, dst string, dport int, payload []byte) int {
	t.Helper()
	read := make(chan error, 1)
	go func() {
		c, err := l.AcceptTCP()
		if err != nil {
			read <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		total := 0
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			total += n
			if err != nil {
				if total != len(payload) {
					read <- fmt.Errorf("server read %d bytes, want %d (%v)", total, len(payload), err)
				} else {
					read <- nil
				}
				return
			}
		}
	}()
	var c *net.TCPConn
	err := inNetns(ns, func() error {
		var err error
		c, err = net.DialTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(src)}, &net.TCPAddr{IP: net.ParseIP(dst), Port: dport})
		return err
	})
	if err != nil {
		t.Fatalf("dial tcp %s -> %s:%d: %v", src, dst, dport, err)
	}
	sport := c.LocalAddr().(*net.TCPAddr).Port
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write(payload); err != nil {
		t.Fatalf("tcp write: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("tcp close: %v", err)
	}
	select {
	case err := <-read:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("tcp: the server did not read the data within 2m")
	}
	return sport
}
