package tracer

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// pendingDetach is the detacher process of an earlier run that still holds
// BPF links.
type pendingDetach struct {
	pid   int
	links int // BPF link descriptors it still holds
}

// findPendingDetach lists the detacher processes (see detacherEnv) under
// procRoot (/proc) that still hold BPF links. Processes that vanish or
// cannot be read while it looks are left out.
func findPendingDetach(procRoot string) []pendingDetach {
	dirs, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	marker := []byte(detacherEnv + "=")
	var found []pendingDetach
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join(procRoot, d.Name(), "environ"))
		if err != nil || !hasEnvEntry(env, marker) {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(procRoot, d.Name(), "fd"))
		if err != nil {
			continue
		}
		n := 0
		for _, fd := range fds {
			if target, err := os.Readlink(filepath.Join(procRoot, d.Name(), "fd", fd.Name())); err == nil && target == "anon_inode:bpf_link" {
				n++
			}
		}
		if n > 0 {
			found = append(found, pendingDetach{pid: pid, links: n})
		}
	}
	return found
}

// hasEnvEntry reports whether the NUL-separated environment env has an
// entry starting with prefix.
func hasEnvEntry(env, prefix []byte) bool {
	for _, e := range bytes.Split(env, []byte{0}) {
		if bytes.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

// pendingDetachNote says why attaching with backend may be slow: links of
// earlier runs, found under procRoot (/proc), still detaching. It is empty
// if there are none, or if backend does not go through ftrace, which it
// checks before it scans (~5 µs per process). The kernel closes a
// trampoline's links one RCU-tasks grace period at a time while holding
// ftrace's locks, and every fentry or kprobe attach waits for them: in the
// 6.12 VM, right after an fentry run of ~1650 functions, a kprobe --auto
// attach took 232 s, kprobe-multi 4.2 s (0.5-0.7 s in make bench), and
// tracepoints were not slowed.
func pendingDetachNote(backend, procRoot string) string {
	if backend == BackendTracepoint {
		return ""
	}
	pending := findPendingDetach(procRoot)
	if len(pending) == 0 {
		return ""
	}
	links, pids := 0, ""
	for i, p := range pending {
		links += p.links
		if i > 0 {
			pids += ", "
		}
		pids += strconv.Itoa(p.pid)
	}
	return fmt.Sprintf("%d links of an earlier run are still detaching (detacher pid %s); the kernel closes them one grace period at a time, and attaching with %s waits behind them (minutes for an fentry --auto run)", links, pids, backend)
}
