package tracer

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/filter"
)

// BenchmarkLoadClone measures loading one patched clone of the tp_btf
// template, an fentry stub and a shared fentry handler (relocated as a run
// does, from the raw template; /cilium: through cilium/ebpf's loader): the
// per-function cost of the fentry and tracepoint backends (fentry itself
// cannot load on every host). Needs root.
func BenchmarkLoadClone(b *testing.B) {
	requireRoot(b)
	// As a run loads them: relocated against the scan's CO-RE types.
	scan := coreScan(b)
	daddr := filter.Any()
	daddr.Daddr = netip.MustParsePrefix("10.0.0.2/32")
	for _, c := range []struct {
		name string
		f    filter.Filter
	}{{"any", filter.Any()}, {"daddr", daddr}} {
		b.Run(c.name, func(b *testing.B) { benchLoadClone(b, scan, tpClone, c.f, false) })
		b.Run(c.name+"/cilium", func(b *testing.B) { benchLoadClone(b, scan, tpClone, c.f, true) })
		b.Run(c.name+"/fentry", func(b *testing.B) { benchLoadClone(b, scan, fentryClone, c.f, false) })
		b.Run(c.name+"/fentry-split", func(b *testing.B) { benchLoadClone(b, scan, fentrySplitClone, c.f, false) })
		b.Run(c.name+"/fentry-stub", func(b *testing.B) { benchLoadClone(b, scan, fentryStubClone, c.f, false) })
	}
}

// cloneKind is what BenchmarkLoadClone loads: a template of a spec, cloned
// for a target.
type cloneKind struct {
	spec        bpf.Group
	template    string
	target      string
	tracepoints bool
	cookie      bool // the descriptor is the link's cookie, not patched in
}

var (
	// tpClone is a tp_btf clone, the tracepoint backend's per-tracepoint load.
	tpClone = cloneKind{bpf.Tracepoint, "tp_skb1", "net_dev_queue", true, false}
	// fentryClone is a shared fentry handler, the fentry backend's
	// per-prototype load (ip_rcv: skb first, as most handlers).
	fentryClone = cloneKind{bpf.Fentry, "fentry_shared1", "ip_rcv", false, true}
	// fentrySplitClone is its variant that ends a hit in a global function.
	fentrySplitClone = cloneKind{bpf.Fentry, "fentry_shared1_split", "ip_rcv", false, true}
	// fentryStubClone is a stub, the fentry backend's per-function load
	// when stubs chain to fentry_chain.
	fentryStubClone = cloneKind{bpf.Fentry, "fentry_stub1", "ip_rcv", false, false}
)

// benchLoadClone loads clones as a run does (loadClone: the raw template),
// or with viaCilium through cilium/ebpf's collection loader (loadProgram).
func benchLoadClone(b *testing.B, scan *btfscan.Result, k cloneKind, f filter.Filter, viaCilium bool) {
	o, err := newObjects(k.spec, f, nil, true, false, 0, btf.NewCache(), scan.CORE)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	// As setAttachIDs does: without an ID, loadClone goes through
	// cilium/ebpf too, and the two variants measured the same loader.
	if o.attachIDs, o.protos, err = attachIDs(k.tracepoints, []string{k.target}); err != nil {
		b.Fatal(err)
	}
	if _, ok := o.attachIDs[k.target]; !ok {
		b.Fatalf("no BTF ID for %s", k.target)
	}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	n := 0
	var verified uint32
	for i := 0; b.Loop(); i++ {
		n++
		load := o.loadClone
		if viaCilium {
			load = func(tmpl, to, module string, desc uint64) (*ebpf.Program, error) {
				return o.loadProgram(tmpl, to, module != "", desc, true)
			}
		}
		desc := descriptor(uint32(i), 0)
		if k.cookie {
			desc = 0
		}
		p, err := load(k.template, k.target, "", desc)
		if err != nil {
			if n == 1 && errors.Is(err, unix.EPERM) && k.spec == bpf.Fentry {
				b.Skipf("SKIPPED: fentry programs do not load on this kernel: %v", err)
			}
			b.Fatal(err)
		}
		if verified == 0 {
			if info, err := p.Info(); err == nil {
				verified, _ = info.VerifiedInstructions()
			}
		}
		p.Close()
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-us/op")
	if verified != 0 {
		b.ReportMetric(float64(verified), "verified-insns")
	}
}
