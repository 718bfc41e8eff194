// Package phase is a hidden test hook, not a user interface.
//
// When the environment variable IPFTRACE_TEST_PHASES is set to a duration
// ("0", "20ms", ...), ipftrace prints a line "ipftrace: phase NAME" on stderr
// as it reaches each point of a run (the BTF scan, the start of attaching,
// every attach step as "attach I/N") and then sleeps that long there. The
// interrupt trials in e2e/interrupt_test.go use the lines to send a signal
// during a chosen phase, and the sleep to widen phases that take only
// milliseconds on a fast host. Unset (or unparsable), Mark does nothing.
package phase

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// Env is the name of the environment variable that enables the hook.
const Env = "IPFTRACE_TEST_PHASES"

var enabled, delay = parse(os.Getenv(Env))

func parse(v string) (bool, time.Duration) {
	if v == "" {
		return false, 0
	}
	if n, err := strconv.Atoi(v); err == nil && n == 0 {
		return true, 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return false, 0
	}
	return true, d
}

// Mark prints "ipftrace: phase NAME" on w and sleeps for the configured
// delay, if the hook is enabled.
func Mark(w io.Writer, format string, args ...any) {
	if !enabled {
		return
	}
	fmt.Fprintf(w, "ipftrace: phase "+format+"\n", args...)
	if delay > 0 {
		time.Sleep(delay)
	}
}
