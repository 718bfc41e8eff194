package tracer

import (
	"fmt"
	"io"
	"time"

	"github.com/cilium/ebpf"
)

// lostCounter reports events the BPF programs could not reserve ring buffer
// space for, summed over the per-CPU counters: every few seconds while
// events are being lost, and once at exit.
type lostCounter struct {
	m         *ebpf.Map
	w         io.Writer
	reported  uint64
	lastPrint time.Time
	malformed uint64 // records the decoder rejected
}

func newLostCounter(m *ebpf.Map, w io.Writer) *lostCounter {
	return &lostCounter{m: m, w: w}
}

// read returns the total number of lost events.
func (l *lostCounter) read() uint64 {
	var per []uint64
	if err := l.m.Lookup(uint32(0), &per); err != nil {
		return l.reported
	}
	var sum uint64
	for _, v := range per {
		sum += v
	}
	return sum
}

// poll prints the count if it grew and the last report is 2 s old.
func (l *lostCounter) poll() {
	if time.Since(l.lastPrint) < 2*time.Second {
		return
	}
	if n := l.read(); n > l.reported {
		fmt.Fprintf(l.w, "ipftrace: lost %d events so far (ring buffer full)\n", n)
		l.reported = n
		l.lastPrint = time.Now()
	}
}

// final prints the total at exit. It is silent only when nothing was lost.
func (l *lostCounter) final() {
	n := l.read()
	if n > 0 {
		fmt.Fprintf(l.w, "ipftrace: lost %d events (ring buffer full)\n", n)
	}
	if l.malformed > 0 {
		fmt.Fprintf(l.w, "ipftrace: dropped %d malformed events\n", l.malformed)
	}
}
