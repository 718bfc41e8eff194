// Package bpfids lists the IDs of BPF programs and links: every one on the
// system, without opening any, and those a process holds descriptors of.
// The benchmark and the end-to-end tests use it to check that a tracer's
// programs and links are gone after it stopped.
package bpfids

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Set is a set of BPF object IDs (programs or links).
type Set map[uint32]bool

// Minus returns the IDs in s but not in o.
func (s Set) Minus(o Set) Set {
	d := Set{}
	for id := range s {
		if !o[id] {
			d[id] = true
		}
	}
	return d
}

// Intersect returns the IDs in both s and o.
func (s Set) Intersect(o Set) Set {
	d := Set{}
	for id := range s {
		if o[id] {
			d[id] = true
		}
	}
	return d
}

// Sorted returns the IDs in ascending order.
func (s Set) Sorted() []uint32 {
	ids := make([]uint32, 0, len(s))
	for id := range s {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// String lists the first ten IDs in order, and how many there are if more.
func (s Set) String() string {
	ids := s.Sorted()
	if len(ids) > 10 {
		return fmt.Sprintf("%v… (%d)", ids[:10], len(ids))
	}
	return fmt.Sprint(ids)
}

// bpfLinkGetNextID is the bpf(2) command BPF_LINK_GET_NEXT_ID.
const bpfLinkGetNextID = 31

// Links lists every BPF link on the system with BPF_LINK_GET_NEXT_ID only.
// It opens none: link.Iterator opens every link, and a reference held at
// the moment a tracer closes its descriptor would move that link's release
// (for fentry, a serialized kernel grace period) into the caller.
func Links() (Set, error) {
	s := Set{}
	var id uint32
	for {
		attr := struct{ start, next, flags uint32 }{start: id}
		_, _, errno := unix.Syscall(unix.SYS_BPF, bpfLinkGetNextID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		if errno == unix.ENOENT {
			return s, nil
		}
		if errno != 0 {
			return nil, fmt.Errorf("BPF_LINK_GET_NEXT_ID: %w", errno)
		}
		s[attr.next] = true
		id = attr.next
	}
}

// Programs lists every BPF program on the system (BPF_PROG_GET_NEXT_ID).
func Programs() (Set, error) {
	s := Set{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
			return s, nil
		}
		if err != nil {
			return nil, fmt.Errorf("BPF_PROG_GET_NEXT_ID: %w", err)
		}
		s[uint32(next)] = true
		id = next
	}
}

// FDInfo returns the fields of /proc/PID/fdinfo ("map_type", "prog_id",
// "link_id"...) of each BPF descriptor (map, program, link) that process
// pid holds. A descriptor closed meanwhile is left out.
func FDInfo(pid int) ([]map[string]string, error) {
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

// Held returns the IDs of the BPF programs and links that process pid
// holds descriptors of (a link's descriptor counts its program too).
func Held(pid int) (progs, links Set, err error) {
	progs, links = Set{}, Set{}
	infos, err := FDInfo(pid)
	if err != nil {
		return progs, links, err
	}
	for _, fields := range infos {
		for k, ids := range map[string]Set{"prog_id": progs, "link_id": links} {
			if n, err := strconv.ParseUint(fields[k], 10, 32); err == nil {
				ids[uint32(n)] = true
			}
		}
	}
	return progs, links, nil
}
