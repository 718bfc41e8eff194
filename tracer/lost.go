package tracer

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/cilium/ebpf"
)

// Indexes of the per-CPU counters in the BPF "counters" map.
const (
	countMatched   uint32 = iota // events that passed the filter
	countLost                    // events the ring buffer had no room for
	countTrackFail               // matched skbs the track table had no room for
)

// accounting tracks where every event that passed the filter went:
// received by us, or lost in the kernel. It reports losses every few
// seconds while they happen, and a summary at exit.
type accounting struct {
	m         *ebpf.Map
	w         io.Writer
	received  uint64 // records read from the ring buffer
	malformed uint64 // records the decoder rejected (counted in received)
	reported  uint64 // lost count at the last report
	lastPrint time.Time
}

func newAccounting(m *ebpf.Map, w io.Writer) *accounting {
	return &accounting{m: m, w: w}
}

// read sums one per-CPU counter.
func (a *accounting) read(which uint32) (uint64, error) {
	var per []uint64
	if err := a.m.Lookup(which, &per); err != nil {
		return 0, fmt.Errorf("read event counters: %w", err)
	}
	var sum uint64
	for _, v := range per {
		sum += v
	}
	return sum, nil
}

// poll prints the lost count if it grew and the last report is 2 s old.
func (a *accounting) poll() {
	if time.Since(a.lastPrint) < 2*time.Second {
		return
	}
	n, err := a.read(countLost)
	if err == nil && n > a.reported {
		fmt.Fprintf(a.w, "ipftrace: lost %d events so far (ring buffer full; a larger --ring-size or a narrower filter helps)\n", n)
		a.reported = n
		a.lastPrint = time.Now()
	}
}

// final prints the exit summary: events received and lost, and any gap
// between those and what the programs matched. Call it after the ring
// buffer was drained with the programs disabled.
func (a *accounting) final(journeys int) {
	lost, err1 := a.read(countLost)
	matched, err2 := a.read(countMatched)
	if err1 != nil || err2 != nil {
		fmt.Fprintf(a.w, "ipftrace: %d journeys, %d events; event counters unreadable: %v\n", journeys, a.received, firstErr(err1, err2))
		return
	}
	fmt.Fprintf(a.w, "ipftrace: %d journeys, %d events received, lost %d events\n", journeys, a.received, lost)
	if lost > 0 {
		fmt.Fprintf(a.w, "ipftrace: the lost events found the ring buffer full: a larger --ring-size or a narrower filter helps\n")
	}
	if a.malformed > 0 {
		fmt.Fprintf(a.w, "ipftrace: %d malformed events dropped\n", a.malformed)
	}
	// Programs still running on another CPU when the disable flag was set
	// can finish an event after the drain; that is the only expected gap.
	if got := a.received + lost; got != matched {
		fmt.Fprintf(a.w, "ipftrace: %d events matched in the kernel, %d received + %d lost: %d unaccounted for\n",
			matched, a.received, lost, int64(matched)-int64(got))
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// skippedRuns sums the runs the kernel skipped of every attached program
// (recursion misses, counted since Linux 5.12 for fentry and tp_btf and
// since 6.7 for kprobes). The kernel does not run a tracing program on a
// CPU where it, or with kprobes any BPF program, is already running: an
// interrupt that hits the same function while its program runs, say. Such
// a hit sends no event and is in no other count.
func (t *tracer) skippedRuns() (uint64, error) {
	progs := slices.Collect(maps.Values(t.objs.progs)) // the shared ones
	var sum uint64
	for _, p := range append(progs, t.att.progs...) {
		st, err := p.Stats()
		if err != nil {
			return sum, fmt.Errorf("program statistics: %w", err)
		}
		sum += st.RecursionMisses
	}
	return sum, nil
}

// reportSkippedRuns prints the runs the kernel skipped, if any.
func (t *tracer) reportSkippedRuns() {
	n, err := t.skippedRuns()
	switch {
	case err != nil:
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: runs skipped by the kernel unknown: %v\n", err)
	case n > 0:
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: the kernel skipped %d program runs (a BPF program was already running on that CPU); events of matching packets among them are missing\n", n)
	}
}
