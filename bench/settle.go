package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// settleWindow is how long the CPUs must be mostly idle before a base ping.
const settleWindow = 500 * time.Millisecond

// settleIdle is the share of CPU time that must be idle over a window.
const settleIdle = 0.9

// cpuTimes is the first line of /proc/stat: time spent in each state by
// all CPUs together, in clock ticks.
type cpuTimes struct {
	idle, total uint64 // idle and iowait; every state
}

// parseCPUTimes reads the aggregate "cpu" line of /proc/stat.
func parseCPUTimes(stat string) (cpuTimes, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: no cpu line: %q", line)
	}
	var t cpuTimes
	// user nice system idle iowait irq softirq steal guest guest_nice; guest
	// time is already counted in user and nice.
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		t.total += v
		if i == 3 || i == 4 {
			t.idle += v
		}
	}
	return t, nil
}

// idleShare is the share of CPU time idle between a and b (0 if no tick
// passed).
func idleShare(a, b cpuTimes) float64 {
	if b.total <= a.total {
		return 0
	}
	return float64(b.idle-a.idle) / float64(b.total-a.total)
}

func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUTimes(string(b))
}

// settle waits until the CPUs were at least 90% idle over a 500 ms window,
// for at most max: the kernel goes on freeing what a detach released (BPF
// trampolines and images, after grace periods) after the last link is
// gone, and a base ping measured meanwhile would carry that work. It
// returns how long it waited and whether the CPUs settled.
func settle(ctx context.Context, max time.Duration) (time.Duration, bool, error) {
	start := time.Now()
	prev, err := readCPUTimes()
	if err != nil {
		return 0, false, err
	}
	for {
		select {
		case <-ctx.Done():
			return time.Since(start), false, ctx.Err()
		case <-time.After(settleWindow):
		}
		cur, err := readCPUTimes()
		if err != nil {
			return time.Since(start), false, err
		}
		if idleShare(prev, cur) >= settleIdle {
			return time.Since(start), true, nil
		}
		if time.Since(start) >= max {
			return time.Since(start), false, nil
		}
		prev = cur
	}
}
