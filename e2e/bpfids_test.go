//go:build linux

package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/internal/bpfids"
)

// bpfObjs is a set of BPF program and link IDs.
type bpfObjs struct {
	progs bpfids.Set
	links bpfids.Set
}

func newBPFObjs() bpfObjs {
	return bpfObjs{progs: bpfids.Set{}, links: bpfids.Set{}}
}

func (o bpfObjs) String() string {
	return fmt.Sprintf("programs %v, links %v", o.progs.Sorted(), o.links.Sorted())
}

func (o bpfObjs) empty() bool { return len(o.progs) == 0 && len(o.links) == 0 }

// minus returns the IDs in o but not in other.
func (o bpfObjs) minus(other bpfObjs) bpfObjs {
	return bpfObjs{progs: o.progs.Minus(other.progs), links: o.links.Minus(other.links)}
}

// intersect returns the IDs in both.
func (o bpfObjs) intersect(other bpfObjs) bpfObjs {
	return bpfObjs{progs: o.progs.Intersect(other.progs), links: o.links.Intersect(other.links)}
}

// systemBPF lists every BPF program and link on the system.
func systemBPF(t *testing.T) bpfObjs {
	t.Helper()
	progs, err := bpfids.Programs()
	if err != nil {
		t.Fatal(err)
	}
	links, err := bpfids.Links()
	if err != nil {
		t.Fatal(err)
	}
	return bpfObjs{progs: progs, links: links}
}

// processBPF returns the BPF programs and links that process pid holds
// file descriptors of (a link counts its program too).
func processBPF(pid int) (bpfObjs, error) {
	progs, links, err := bpfids.Held(pid)
	return bpfObjs{progs: progs, links: links}, err
}

// isIpftrace reports whether process pid runs the binary under test (the
// tracer itself, or the detacher it hands its links to).
func isIpftrace(pid int) bool {
	a, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	b, err := os.Stat(ipftraceBin)
	return err == nil && os.SameFile(a, b)
}

// holdersOf calls fn for every other process that holds BPF objects of objs,
// with the ones it holds, until fn returns false.
func holdersOf(objs bpfObjs, fn func(pid int, mine bpfObjs) bool) {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		o, err := processBPF(pid)
		if err != nil || o.empty() {
			continue
		}
		if mine := o.intersect(objs); !mine.empty() && !fn(pid, mine) {
			return
		}
	}
}

// foreignHolders reports whether every ID in objs is held by a process that
// is not running the binary under test: objects of other BPF users on this
// host (other tests, other people), not ipftrace's. It also returns a
// description of the holders.
func foreignHolders(objs bpfObjs) (bool, string) {
	held := newBPFObjs()
	var desc []string
	var ipft string
	holdersOf(objs, func(pid int, mine bpfObjs) bool {
		if isIpftrace(pid) {
			ipft = fmt.Sprintf("pid %d (ipftrace) holds %v", pid, mine)
			return false
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		desc = append(desc, fmt.Sprintf("pid %d (%s) holds %v", pid, strings.TrimSpace(string(comm)), mine))
		for id := range mine.progs {
			held.progs[id] = true
		}
		for id := range mine.links {
			held.links[id] = true
		}
		return true
	})
	if ipft != "" {
		return false, ipft
	}
	rest := objs.minus(held)
	if !rest.empty() {
		return false, fmt.Sprintf("%v held by no process (still being freed, pinned or leaked); %s", rest, strings.Join(desc, "; "))
	}
	return true, strings.Join(desc, "; ")
}

// waitBPFGone polls until none of ipftrace's programs and links (ours) exist
// any more and every object created since before is either gone or held by
// a process unrelated to ipftrace. It returns how long that took.
func waitBPFGone(t *testing.T, before, ours bpfObjs, since time.Time) time.Duration {
	t.Helper()
	deadline := time.Now().Add(detachTimeout)
	for {
		cur := systemBPF(t)
		left := cur.intersect(ours)
		created := cur.minus(before).minus(ours)
		if left.empty() {
			if created.empty() {
				return time.Since(since)
			}
			if ok, desc := foreignHolders(created); ok {
				t.Logf("ignoring BPF objects created meanwhile by other processes: %s", desc)
				return time.Since(since)
			}
		}
		if time.Now().After(deadline) {
			_, desc := foreignHolders(cur.minus(before))
			t.Fatalf("%v after the signal, ipftrace's BPF objects still exist: %v; other new objects: %v (%s)",
				time.Since(since).Round(time.Millisecond), left, created, desc)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// signalName names a signal for test names and logs.
func signalName(sig syscall.Signal) string {
	return unix.SignalName(sig)
}
