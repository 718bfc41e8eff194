package tracer

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/filter"
)

// progFDs counts the BPF program descriptors this process holds.
func progFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil && l == "anon_inode:bpf-prog" {
			n++
		}
	}
	return n
}

// TestPreload checks the background loads of shared programs: a preloaded
// program is the one sharedProgram then returns, concurrent callers share
// one load, a template that fails is reported by the caller that takes it,
// and Close and releaseTemplates wait for loads in flight, so that none
// leaks a program.
func TestPreload(t *testing.T) {
	requireRoot(t)
	scan := coreScan(t)
	newObjs := func(t *testing.T) *objects {
		o, err := newObjects(bpf.Tracepoint, filter.Any(), nil, true, true, 0, sharedBTF(), scan.CORE)
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	const tmpl = "tp_kfree_skb" // a shared program the host can load

	t.Run("taken", func(t *testing.T) {
		o := newObjs(t)
		defer o.Close()
		o.preload([]string{tmpl})
		progs := make([]*ebpf.Program, 4)
		var wg sync.WaitGroup
		for i := range progs {
			wg.Go(func() {
				p, err := o.sharedProgram(tmpl)
				if err != nil {
					t.Errorf("sharedProgram after preload: %v", err)
				}
				progs[i] = p
			})
		}
		wg.Wait()
		for i, p := range progs {
			if p == nil || p != progs[0] {
				t.Fatalf("caller %d got program %p, caller 0 %p: want one shared load", i, p, progs[0])
			}
		}
		o.progMu.Lock()
		kept, inFlight := len(o.progs), len(o.loading)
		o.progMu.Unlock()
		if kept != 1 || inFlight != 0 {
			t.Errorf("after the loads: %d shared programs, %d loads in flight; want 1, 0", kept, inFlight)
		}
	})

	t.Run("failed", func(t *testing.T) {
		o := newObjs(t)
		defer o.Close()
		o.preload([]string{"no_such_template"})
		if p, err := o.sharedProgram("no_such_template"); err == nil {
			p.Close()
			t.Fatal("sharedProgram of a template that does not exist: no error")
		}
		o.loads.Wait()
		if len(o.progs) != 0 || len(o.loading) != 0 {
			t.Errorf("after a failed load: %d shared programs, %d loads in flight; want none", len(o.progs), len(o.loading))
		}
	})

	// The loads wait for the test to release btfMu (loadProgram takes it),
	// so that they are still in flight when the function returns unless it
	// waits for them.
	for _, end := range []struct {
		name string
		end  func(o *objects)
	}{
		{"Close", func(o *objects) { o.Close() }},
		{"releaseTemplates", func(o *objects) { o.releaseTemplates() }},
	} {
		t.Run("in flight at "+end.name, func(t *testing.T) {
			before := progFDs(t)
			o := newObjs(t)
			o.btfMu.Lock()
			o.preload([]string{tmpl, "tp_skb1"}) // tp_skb1 has no attach target: it fails
			go func() {
				time.Sleep(50 * time.Millisecond)
				o.btfMu.Unlock()
			}()
			end.end(o)
			o.progMu.Lock()
			inFlight := len(o.loading)
			o.progMu.Unlock()
			if inFlight != 0 {
				t.Errorf("%s returned with %d loads in flight", end.name, inFlight)
			}
			o.Close()
			if o.progs != nil {
				t.Errorf("Close returned with shared programs kept: %v", o.progs)
			}
			if after := progFDs(t); after != before {
				t.Errorf("%d program descriptors before, %d after Close: a load in flight leaked", before, after)
			}
		})
	}
}

// TestSharedTemplates checks which shared programs a run preloads: the
// ones its attach takes, in that order, and none for the backends that
// load a program per function.
func TestSharedTemplates(t *testing.T) {
	targets := []Target{
		{Name: "ip_rcv", SkbPos: 1, Addr: 0x1000},
		{Name: "ip_output", SkbPos: 3, Addr: 0x2000},
		{Name: "nf_hook_slow", SkbPos: 1, Addr: 0x3000},
		{Name: "far", SkbPos: 5, Addr: 0x4000},
		{Name: "farther", SkbPos: 6, Addr: 0x5000},
		{Name: "validate_xmit_skb.isra.0", SkbPos: 2},             // no symbol: kprobe-multi skips it
		{Name: "too_far", SkbPos: 7, Addr: 0x6000},                // no register: skipped
		{Name: "struct_arg", SkbPos: 2, SkbSlot: 3, Addr: 0x7000}, // read from slot 3
	}
	both := []helper{{kind: helperForget, name: "kfree_skbmem"}, {kind: helperClone, name: "skb_clone"}}
	for _, c := range []struct {
		backend string
		helpers []helper
		want    []string
	}{
		{BackendKprobeMulti, nil, []string{"kprobe_multi_skb1", "kprobe_multi_skb3", "kprobe_multi_skb_any"}},
		{BackendKprobeMulti, both, []string{"kprobe_multi_skb1", "kprobe_multi_skb3", "kprobe_multi_skb_any", "kprobe_multi_clone", "kretprobe_multi_clone"}},
		{BackendKprobe, both, []string{"kprobe_skb1", "kprobe_skb3", "kprobe_skb5", "kprobe_skb6", "kprobe_skb2", "kprobe_clone", "kretprobe_clone"}},
		{BackendFentry, both, nil},
		{BackendTracepoint, both, nil},
	} {
		tr := &tracer{backend: c.backend, targets: targets, helpers: c.helpers}
		if got := tr.sharedTemplates(); !slices.Equal(got, c.want) {
			t.Errorf("%s, %d helpers: %q, want %q", c.backend, len(c.helpers), got, c.want)
		}
	}
}
