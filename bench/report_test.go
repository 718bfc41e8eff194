package main

import (
	"bytes"
	"regexp"
	"testing"
)

// TestPrintWorstRep checks that the table shows each measure's worst
// repetition: a loss in one of five repetitions has min and median 0.
func TestPrintWorstRep(t *testing.T) {
	r := &results{backend: "kprobe-multi", samples: map[string][]float64{
		"ping.base":  {1000, 1200, 1100},
		"ping.match": {9000, 12000, 10000},
		"ping.floor": {2000, 3000, 2500},
		"ev.lost":    {0, 0, 50465, 0, 12},
	}}
	var buf bytes.Buffer
	r.print(&buf, envInfo{label: "test", kernel: "k", version: "v", cpus: 2}, &bench{count: 20000, reps: 5})
	out := buf.String()
	for _, c := range []struct{ name, re string }{
		{"header", `(?m)^measure +n +min +median +max +×base \(med\) +×base \(min\) +×floor \(med\) +×floor \(min\)`},
		{"lost", `(?m)^match: events lost \(reported\) +5 +0 +0 +50465 *$`},
		// median 10000 / floor median 2500; min 9000 / floor min 2000.
		{"match", `(?m)^ping match \(ms\) +3 +9000 +10000 +12000 +9\.09× +9\.00× +4\.00× +4\.50× *$`},
	} {
		if !regexp.MustCompile(c.re).MatchString(out) {
			t.Errorf("%s: no line matching %q in:\n%s", c.name, c.re, out)
		}
	}
}
