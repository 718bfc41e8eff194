package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The workload of issue 6: namespaces a (10.0.0.1) and b (10.0.0.2) joined
// by a veth pair. The namespaces get unique names (ipftb-<pid>-a/-b) so that
// a benchmark never collides with tests running on the same host; the veth
// ends are created directly inside them (veth0 on both sides), so no name
// is taken in the root namespace. Neighbour entries are static: no ARP
// while measuring.
const (
	addrA     = "10.0.0.1"
	addrB     = "10.0.0.2"
	macA      = "02:00:00:00:00:0a"
	macB      = "02:00:00:00:00:0b"
	nsPrefix  = "ipftb-"
	noMatchIP = "10.200.200.200"
)

type netPair struct {
	a, b       string
	inoA, inoB uint64
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// cleanStale deletes namespaces left by benchmark processes that no longer
// exist (killed before they could clean up).
func cleanStale() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		name := e.Name()
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", pidStr)); err == nil && pid != os.Getpid() {
			continue // its benchmark is still running
		}
		if err := ipCmd("netns", "del", name); err == nil {
			logf("removed stale namespace %s", name)
		}
	}
}

func setupNetPair() (*netPair, error) {
	cleanStale()
	p := &netPair{a: fmt.Sprintf("%s%d-a", nsPrefix, os.Getpid()), b: fmt.Sprintf("%s%d-b", nsPrefix, os.Getpid())}
	for _, ns := range []string{p.a, p.b} {
		if err := ipCmd("netns", "add", ns); err != nil {
			p.cleanup()
			return nil, err
		}
	}
	cmds := [][]string{
		{"link", "add", "veth0", "netns", p.a, "address", macA, "type", "veth", "peer", "name", "veth0", "netns", p.b, "address", macB},
		{"-n", p.a, "link", "set", "lo", "up"},
		{"-n", p.b, "link", "set", "lo", "up"},
		{"-n", p.a, "addr", "add", addrA + "/24", "dev", "veth0"},
		{"-n", p.b, "addr", "add", addrB + "/24", "dev", "veth0"},
		{"-n", p.a, "link", "set", "veth0", "up"},
		{"-n", p.b, "link", "set", "veth0", "up"},
		{"-n", p.a, "neigh", "replace", addrB, "lladdr", macB, "dev", "veth0", "nud", "permanent"},
		{"-n", p.b, "neigh", "replace", addrA, "lladdr", macA, "dev", "veth0", "nud", "permanent"},
	}
	for _, c := range cmds {
		if err := ipCmd(c...); err != nil {
			p.cleanup()
			return nil, err
		}
	}
	for _, x := range []struct {
		ns  string
		ino *uint64
	}{{p.a, &p.inoA}, {p.b, &p.inoB}} {
		var st unix.Stat_t
		if err := unix.Stat("/run/netns/"+x.ns, &st); err != nil {
			p.cleanup()
			return nil, fmt.Errorf("stat netns %s: %w", x.ns, err)
		}
		*x.ino = st.Ino
	}
	return p, nil
}

// cleanup deletes both namespaces (the veth pair goes with them).
func (p *netPair) cleanup() {
	for _, ns := range []string{p.a, p.b} {
		if _, err := os.Stat("/run/netns/" + ns); err != nil {
			continue
		}
		if err := ipCmd("netns", "del", ns); err != nil {
			logf("cleanup: %v", err)
		}
	}
}
