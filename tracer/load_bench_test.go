package tracer

import (
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/filter"
)

// BenchmarkLoadClone measures loading one patched clone of the tp_btf
// template (relocated as a run does), the per-function cost of the fentry
// and tracepoint backends
// (fentry itself cannot load on every host). Needs root.
func BenchmarkLoadClone(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("BenchmarkLoadClone: needs root to load BPF programs")
	}
	// As a run loads them: relocated against the scan's CO-RE types.
	scan, err := btfscan.Scan(btfscan.Options{CORETypes: CORETypes, Kfuncs: Kfuncs})
	if err != nil {
		b.Fatal(err)
	}
	o, err := newObjects(bpf.Tracepoint, filter.Any(), nil, true, btf.NewCache(), scan.CORE)
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	n := 0
	for i := 0; b.Loop(); i++ {
		n++
		p, err := o.loadProgram("tp_skb1", "net_dev_queue", false, descriptor(uint32(i), 0), true)
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-us/op")
}
