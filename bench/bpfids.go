package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/ipftrace/ipftrace/internal/bpfids"
)

// iteratorLinkIDs lists the link IDs with cilium/ebpf's link.Iterator,
// which opens each link (bpfids.Links does not).
func iteratorLinkIDs() (bpfids.Set, error) {
	s := bpfids.Set{}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		s[uint32(it.ID)] = true
	}
	return s, it.Err()
}

// goneResult is what waitLinksGone found.
type goneResult struct {
	after   time.Duration // from since until none of ours was left
	extra   bpfids.Set    // links present then that were not there before (someone else's)
	missing bpfids.Set    // links there before that are gone (someone else's)
	left    bpfids.Set    // ours still there at the timeout
}

var errGoneTimeout = errors.New("links still present at the timeout")

// waitLinksGone polls until none of the links in ours exist, and reports
// how long that took from since and how the set of link IDs then compares
// with before (equal, unless other BPF users came or went meanwhile).
func waitLinksGone(before, ours bpfids.Set, since time.Time, timeout time.Duration) (goneResult, error) {
	deadline := since.Add(timeout)
	nextLog := time.Now().Add(30 * time.Second)
	for {
		cur, err := bpfids.Links()
		if err != nil {
			return goneResult{}, err
		}
		left := cur.Intersect(ours)
		if len(left) == 0 {
			r := goneResult{after: time.Since(since), extra: cur.Minus(before), missing: before.Minus(cur)}
			// Confirm with cilium/ebpf's iterator (opens each link; nothing
			// of ours is left to hold up by now).
			it, err := iteratorLinkIDs()
			if err != nil {
				return r, fmt.Errorf("link.Iterator: %w", err)
			}
			if l := it.Intersect(ours); len(l) > 0 {
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
