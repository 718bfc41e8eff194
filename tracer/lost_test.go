package tracer

import (
	"bytes"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestAccountingFinal checks the exit summary against the per-CPU counters
// as the programs leave them: the counts summed over CPUs, the hint when
// events were lost, and the line for events neither received nor lost.
func TestAccountingFinal(t *testing.T) {
	requireRoot(t)
	for _, tt := range []struct {
		name          string
		matched, lost []uint64 // per CPU (CPU 0, 1)
		received      uint64
		want, notWant []string
	}{
		{"all received", []uint64{60, 40}, []uint64{0, 0}, 100,
			[]string{"ipftrace: 7 journeys, 100 events received, lost 0 events\n"},
			[]string{"ring buffer full", "unaccounted"}},
		{"some lost", []uint64{60, 40}, []uint64{5, 10}, 85,
			[]string{"ipftrace: 7 journeys, 85 events received, lost 15 events\n", "a larger --ring-size"},
			[]string{"unaccounted"}},
		{"unaccounted", []uint64{60, 40}, []uint64{0, 2}, 90,
			[]string{"lost 2 events\n", "100 events matched in the kernel, 90 received + 2 lost: 8 unaccounted for"},
			nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ncpu, err := ebpf.PossibleCPU()
			if err != nil {
				t.Fatal(err)
			}
			if ncpu < 2 {
				t.Skipf("%s: SKIPPED, needs 2 possible CPUs, this machine has %d (GOMAXPROCS %d)", t.Name(), ncpu, runtime.GOMAXPROCS(0))
			}
			m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			put := func(which uint32, vals []uint64) {
				per := make([]uint64, ncpu)
				copy(per, vals)
				if err := m.Put(which, per); err != nil {
					t.Fatal(err)
				}
			}
			put(countMatched, tt.matched)
			put(countLost, tt.lost)
			var out bytes.Buffer
			a := newAccounting(m, &out)
			a.received = tt.received
			a.final(7)
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("summary has %q:\n%s", w, out.String())
				}
			}
		})
	}
}
