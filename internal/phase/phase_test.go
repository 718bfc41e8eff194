package phase

import (
	"bytes"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in    string
		on    bool
		delay time.Duration
	}{
		{"", false, 0},
		{"0", true, 0},
		{"20ms", true, 20 * time.Millisecond},
		{"1s", true, time.Second},
		{"-1s", false, 0},
		{"soon", false, 0},
	} {
		on, d := parse(tc.in)
		if on != tc.on || d != tc.delay {
			t.Errorf("parse(%q) = %v, %v; want %v, %v", tc.in, on, d, tc.on, tc.delay)
		}
	}
}

func TestMark(t *testing.T) {
	old, oldDelay := enabled, delay
	defer func() { enabled, delay = old, oldDelay }()
	var b bytes.Buffer
	enabled, delay = false, 0
	Mark(&b, "scan")
	if b.Len() != 0 {
		t.Fatalf("disabled hook wrote %q", b.String())
	}
	enabled, delay = true, 10*time.Millisecond
	start := time.Now()
	Mark(&b, "attach %d/%d", 3, 30)
	if got := b.String(); got != "ipftrace: phase attach 3/30\n" {
		t.Fatalf("wrote %q", got)
	}
	if took := time.Since(start); took < delay {
		t.Fatalf("slept %v, want at least %v", took, delay)
	}
}
