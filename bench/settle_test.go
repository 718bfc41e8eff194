package main

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func TestParseCPUTimes(t *testing.T) {
	for _, c := range []struct {
		name, stat  string
		idle, total uint64
		err         bool
	}{
		{"full", "cpu  818064 0 110243 9674380 2103 0 15444 1835 7 9\ncpu0 1 2 3 4\n", 9674380 + 2103, 818064 + 110243 + 9674380 + 2103 + 15444 + 1835, false},
		{"old kernel, no steal", "cpu 10 0 5 100 1 0 2\n", 101, 118, false},
		{"no cpu line", "intr 1 2 3\n", 0, 0, true},
		{"short", "cpu 1 2 3\n", 0, 0, true},
		{"garbage", "cpu 1 x 3 4 5\n", 0, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := parseCPUTimes(c.stat)
			if (err != nil) != c.err {
				t.Fatalf("error %v, want error: %v", err, c.err)
			}
			if !c.err && (got.idle != c.idle || got.total != c.total) {
				t.Errorf("idle %d total %d, want %d %d", got.idle, got.total, c.idle, c.total)
			}
		})
	}
}

func TestIdleShare(t *testing.T) {
	a := cpuTimes{idle: 100, total: 200}
	for _, c := range []struct {
		b    cpuTimes
		want float64
	}{
		{cpuTimes{idle: 190, total: 300}, 0.9},
		{cpuTimes{idle: 100, total: 300}, 0},
		{cpuTimes{idle: 100, total: 200}, 0}, // no tick passed
	} {
		if got := idleShare(a, c.b); got != c.want {
			t.Errorf("idleShare(%v, %v) = %v, want %v", a, c.b, got, c.want)
		}
	}
}

// TestSettleBusy keeps every CPU busy and checks that settle gives up
// after its limit, saying that the CPUs did not settle.
func TestSettleBusy(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	for range runtime.NumCPU() {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	waited, ok, err := settle(context.Background(), 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Errorf("settled after %v with every CPU busy", waited)
	}
	if waited < 1500*time.Millisecond {
		t.Errorf("gave up after %v, before its 1.5 s limit", waited)
	}
}
