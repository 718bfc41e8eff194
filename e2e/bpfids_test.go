//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// bpfObjs is a set of BPF program and link IDs.
type bpfObjs struct {
	progs map[uint32]bool
	links map[uint32]bool
}

func newBPFObjs() bpfObjs {
	return bpfObjs{progs: map[uint32]bool{}, links: map[uint32]bool{}}
}

func (o bpfObjs) String() string {
	return fmt.Sprintf("programs %v, links %v", sortedIDs(o.progs), sortedIDs(o.links))
}

func (o bpfObjs) empty() bool { return len(o.progs) == 0 && len(o.links) == 0 }

func sortedIDs(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for id := range m {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// minus returns the IDs in o but not in other.
func (o bpfObjs) minus(other bpfObjs) bpfObjs {
	d := newBPFObjs()
	for id := range o.progs {
		if !other.progs[id] {
			d.progs[id] = true
		}
	}
	for id := range o.links {
		if !other.links[id] {
			d.links[id] = true
		}
	}
	return d
}

// intersect returns the IDs in both.
func (o bpfObjs) intersect(other bpfObjs) bpfObjs {
	d := newBPFObjs()
	for id := range o.progs {
		if other.progs[id] {
			d.progs[id] = true
		}
	}
	for id := range o.links {
		if other.links[id] {
			d.links[id] = true
		}
	}
	return d
}

// linkGetNextID is BPF_LINK_GET_NEXT_ID. (link.Iterator would open every
// link, holding a reference that delays the detach we are waiting for.)
func linkGetNextID(start uint32) (uint32, error) {
	attr := struct{ start, next, flags uint32 }{start: start}
	const bpfLinkGetNextID = 31
	_, _, errno := unix.Syscall(unix.SYS_BPF, bpfLinkGetNextID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return 0, errno
	}
	return attr.next, nil
}

// systemBPF lists every BPF program and link on the system.
func systemBPF(t *testing.T) bpfObjs {
	t.Helper()
	o := newBPFObjs()
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			t.Fatalf("BPF_PROG_GET_NEXT_ID: %v", err)
		}
		o.progs[uint32(next)] = true
		id = next
	}
	var lid uint32
	for {
		next, err := linkGetNextID(lid)
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			t.Fatalf("BPF_LINK_GET_NEXT_ID: %v", err)
		}
		o.links[next] = true
		lid = next
	}
	return o
}

// bpfFDInfo returns the fields of /proc/PID/fdinfo ("map_type", "prog_id",
// "link_id"...) of each BPF descriptor (map, program, link) that process
// pid holds. A descriptor closed meanwhile is left out.
func bpfFDInfo(pid int) ([]map[string]string, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var infos []map[string]string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.Contains(target, "bpf") {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[k] = strings.TrimSpace(v)
			}
		}
		infos = append(infos, fields)
	}
	return infos, nil
}

// processBPF returns the BPF programs and links that process pid holds
// file descriptors of (a link counts its program too).
func processBPF(pid int) (bpfObjs, error) {
	o := newBPFObjs()
	infos, err := bpfFDInfo(pid)
	if err != nil {
		return o, err
	}
	for _, fields := range infos {
		for k, ids := range map[string]map[uint32]bool{"prog_id": o.progs, "link_id": o.links} {
			if n, err := strconv.ParseUint(fields[k], 10, 32); err == nil {
				ids[uint32(n)] = true
			}
		}
	}
	return o, nil
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
