package tracer

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// detachBudget is how long detach closes links itself before it hands the
// rest to a detacher process, so that Ctrl-C returns within a second even
// when the kernel needs minutes: each fentry link waits for an RCU-tasks
// grace period when it is closed, one after the other.
const detachBudget = 200 * time.Millisecond

// detacherEnv names the environment variable that turns the ipftrace binary
// into a detacher: it closes the link file descriptors it inherited, which
// detaches them, and exits.
const detacherEnv = "IPFTRACE_DETACHER_FDS"

// detach stops every program and closes every link. Links still open after
// detachBudget are passed to a detacher process that outlives this one.
func (t *tracer) detach(a *attachment) {
	t.disable()
	links := a.links
	if len(links) == 0 {
		return
	}
	var stop atomic.Bool
	var closed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, l := range links {
			if stop.Load() {
				return
			}
			l.Close()
			closed.Add(1)
		}
	}()
	select {
	case <-done:
		return
	case <-time.After(detachBudget):
	}
	stop.Store(true)
	<-done // at most one link is being closed
	rest := links[closed.Load():]
	if len(rest) == 0 {
		return
	}
	left, err := handOver(rest)
	if err != nil {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: %v; detaching %d links in the foreground\n", err, len(rest))
		for _, l := range left {
			l.Close()
		}
		return
	}
	fmt.Fprintf(t.cfg.Stderr, "ipftrace: detaching the remaining %d links in the background\n", len(rest))
}

// handOver starts a detacher process holding a duplicate of every link's
// file descriptor. Each link is closed right after its descriptor is
// duplicated, so the process never holds more descriptors than it had
// (kprobe links hold a perf event descriptor each as well, and 1600 of them
// plus as many duplicates would exceed a 4096 descriptor limit). On error,
// the links not yet handed over are returned for the caller to close.
func handOver(links []link.Link) ([]link.Link, error) {
	type fder interface{ FD() int }
	files := make([]*os.File, 0, len(links))
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return links, fmt.Errorf("find own executable: %w", err)
	}
	for i, l := range links {
		fl, ok := l.(fder)
		if !ok {
			return links[i:], fmt.Errorf("link %T has no file descriptor", l)
		}
		fd, err := unix.FcntlInt(uintptr(fl.FD()), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return links[i:], fmt.Errorf("dup link: %w", err)
		}
		files = append(files, os.NewFile(uintptr(fd), "link"))
		l.Close() // the duplicate keeps the link attached
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{detacherEnv + "=" + strconv.Itoa(len(files))}
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		// Closing files below detaches the links in the foreground.
		return nil, fmt.Errorf("start detacher: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reaped if we are still around
	return nil, nil
}

// init turns the process into a detacher before anything else runs, in any
// binary that links this package (ipftrace itself, and test binaries that
// call Run in-process).
func init() { runDetacher() }

// runDetacher closes the inherited link descriptors and exits if this
// process was started as a detacher; otherwise it returns at once.
func runDetacher() {
	v, ok := os.LookupEnv(detacherEnv)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		os.Exit(2)
	}
	for fd := 3; fd < 3+n; fd++ {
		syscall.Close(fd)
	}
	os.Exit(0)
}
