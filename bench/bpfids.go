package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// idSet is a set of BPF link IDs.
type idSet map[uint32]bool

func (s idSet) minus(o idSet) idSet {
	d := idSet{}
	for id := range s {
		if !o[id] {
			d[id] = true
		}
	}
	return d
}

func (s idSet) intersect(o idSet) idSet {
	d := idSet{}
	for id := range s {
		if o[id] {
			d[id] = true
		}
	}
	return d
}

func (s idSet) String() string {
	ids := make([]uint32, 0, len(s))
	for id := range s {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) > 10 {
		return fmt.Sprintf("%v… (%d)", ids[:10], len(ids))
	}
	return fmt.Sprint(ids)
}

// linkIDs lists the IDs of every BPF link on the system with
// BPF_LINK_GET_NEXT_ID only. It opens nothing: link.Iterator opens every
// link, and a reference held by the poller at the moment the detacher closes
// its descriptor would move that link's (serialized, grace-period long)
// release into this process and skew the measurement. verifyLinkIDs checks
// the final answer with cilium/ebpf's link.Iterator.
func linkIDs() (idSet, error) {
	s := idSet{}
	var id uint32
	for {
		attr := struct{ start, next, flags uint32 }{start: id}
		const bpfLinkGetNextID = 31 // BPF_LINK_GET_NEXT_ID
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

// iteratorLinkIDs lists the link IDs with cilium/ebpf's link.Iterator.
func iteratorLinkIDs() (idSet, error) {
	s := idSet{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		s[uint32(it.ID)] = true
	}
	return s, it.Err()
}

// processLinkIDs returns the IDs of the BPF links process pid holds
// descriptors of (from /proc/PID/fdinfo).
func processLinkIDs(pid int) (idSet, error) {
	s := idSet{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || !strings.Contains(target, "bpf_link") {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && k == "link_id" {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
					s[uint32(n)] = true
				}
			}
		}
		f.Close()
	}
	return s, nil
}

// goneResult is what waitLinksGone found.
type goneResult struct {
	after   time.Duration // from since until none of ours was left
	extra   idSet         // links present then that were not there before (someone else's)
	missing idSet         // links there before that are gone (someone else's)
	left    idSet         // ours still there at the timeout
}

var errGoneTimeout = errors.New("links still present at the timeout")

// waitLinksGone polls until none of the links in ours exist, and reports
// how long that took from since and how the set of link IDs then compares
// with before (equal, unless other BPF users came or went meanwhile).
func waitLinksGone(before, ours idSet, since time.Time, timeout time.Duration) (goneResult, error) {
	deadline := since.Add(timeout)
	nextLog := time.Now().Add(30 * time.Second)
	for {
		cur, err := linkIDs()
		if err != nil {
			return goneResult{}, err
		}
		left := cur.intersect(ours)
		if len(left) == 0 {
			r := goneResult{after: time.Since(since), extra: cur.minus(before), missing: before.minus(cur)}
			// Confirm with cilium/ebpf's iterator (opens each link; nothing
			// of ours is left to hold up by now).
			it, err := iteratorLinkIDs()
			if err != nil {
				return r, fmt.Errorf("link.Iterator: %w", err)
			}
			if l := it.intersect(ours); len(l) > 0 {
				r.left = l
				return r, fmt.Errorf("link.Iterator still sees %v", l)
			}
			return r, nil
		}
		if time.Now().After(deadline) {
			return goneResult{after: time.Since(since), left: left}, errGoneTimeout
		}
		if time.Now().After(nextLog) {
			logf("    %d of %d links left after %s", len(left), len(ours), time.Since(since).Round(time.Second))
			nextLog = time.Now().Add(30 * time.Second)
		}
		// Fine-grained at first (kprobe-multi and tracepoint links go in
		// milliseconds), coarser while a long fentry detach runs.
		if time.Since(since) < 2*time.Second {
			time.Sleep(5 * time.Millisecond)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
}
