package btfscan

import (
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// detectFentryMaxArgs returns the argument slots a BPF trampoline supports on
// the running kernel: 12 from Linux 6.6, 6 before (and when unknown).
func detectFentryMaxArgs() int {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 6
	}
	return fentryMaxArgsFor(unix.ByteSliceToString(u.Release[:]))
}

// fentryMaxArgsFor maps a kernel release like "6.18.4-foo" to the limit.
func fentryMaxArgsFor(release string) int {
	major, minor, ok := parseRelease(release)
	if !ok {
		return 6
	}
	if major > 6 || (major == 6 && minor >= 6) {
		return 12
	}
	return 6
}

func parseRelease(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, false
	}
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end == 0 {
		return 0, 0, false
	}
	if end > 0 {
		parts[1] = parts[1][:end]
	}
	minor, err = strconv.Atoi(parts[1])
	if err != nil {
		return 0, 0, false
	}
	return major, minor, true
}
