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

// detachBudget is how long detach waits for the links to be closed before it
// returns and leaves the rest to the detacher process, so that Ctrl-C returns
// within a second even when the kernel needs minutes: each fentry link waits
// for an RCU-tasks grace period when it is closed, one after the other.
const detachBudget = 200 * time.Millisecond

// detacherEnv names the environment variable that turns the ipftrace binary
// into a detacher: it closes the link file descriptors it inherited, which
// detaches them, writes one byte to its progress pipe per link, and exits.
const detacherEnv = "IPFTRACE_DETACHER_FDS"

// detach stops every program and hands every link to a detacher process,
// then waits up to detachBudget for it to finish. The links are never closed
// by this process itself: a thread blocked in close(2) on a link (one grace
// period, which under load can take minutes) keeps the whole process from
// exiting, however few links are left.
func (t *tracer) detach(a *attachment) {
	t.disable()
	for _, p := range a.progs {
		p.Close() // the links hold them
	}
	for _, m := range a.maps {
		m.Close() // empties it: the disabled handlers are not reached any more
	}
	links := a.links
	if len(links) == 0 {
		return
	}
	progress, left, err := handOver(links)
	if err != nil {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: %v; detaching %d links in the foreground\n", err, len(links))
		for _, l := range left {
			l.Close()
		}
		return
	}
	defer progress.Close()
	var n atomic.Int64 // links the detacher reported closed
	exited := make(chan struct{})
	go func() {
		defer close(exited) // EOF: the detacher exited
		buf := make([]byte, 64)
		for {
			k, err := progress.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	}()
	timer := time.NewTimer(detachBudget)
	defer timer.Stop()
	select {
	case <-exited:
		if done := n.Load(); done < int64(len(links)) {
			fmt.Fprintf(t.cfg.Stderr, "ipftrace: the detacher exited after closing %d of %d links; the kernel detaches the rest as their descriptors close\n", done, len(links))
		}
	case <-timer.C:
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: detaching the remaining %d of %d links in the background\n", len(links)-int(n.Load()), len(links))
	}
}

// handOver starts a detacher process holding a duplicate of every link's
// file descriptor, and returns the read end of its progress pipe. Each link
// is closed right after its descriptor is duplicated, which does not detach
// it (the duplicate holds it) and keeps the process from holding more
// descriptors than it had (kprobe links hold a perf event descriptor each as
// well, and 1600 of them plus as many duplicates would exceed a 4096
// descriptor limit). On error, the links already duplicated are detached by
// closing their duplicates, and the rest are returned for the caller to close.
func handOver(links []link.Link) (*os.File, []link.Link, error) {
	type fder interface{ FD() int }
	exe, err := os.Executable()
	if err != nil {
		return nil, links, fmt.Errorf("find own executable: %w", err)
	}
	// Check before duplicating anything, so that an error leaves every
	// link as it was for the caller to close.
	for _, l := range links {
		if _, ok := l.(fder); !ok {
			return nil, links, fmt.Errorf("link %T has no file descriptor", l)
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, links, fmt.Errorf("detacher pipe: %w", err)
	}
	defer pw.Close()
	files := make([]*os.File, 0, len(links)+1)
	files = append(files, pw)
	defer func() {
		for _, f := range files[1:] {
			f.Close()
		}
	}()
	for i, l := range links {
		fd, err := unix.FcntlInt(uintptr(l.(fder).FD()), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			// Fall back to detaching in the foreground: closing the
			// duplicates made so far (deferred) detaches their links.
			pr.Close()
			return nil, links[i:], fmt.Errorf("dup link: %w", err)
		}
		files = append(files, os.NewFile(uintptr(fd), "link"))
		l.Close() // the duplicate keeps the link attached
	}
	cmd := exec.Command(exe)
	cmd.Env = []string{detacherEnv + "=" + strconv.Itoa(len(links))}
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		// Closing the duplicates (deferred) detaches the links in the
		// foreground.
		pr.Close()
		return nil, nil, fmt.Errorf("start detacher: %w", err)
	}
	go cmd.Wait() //nolint:errcheck // reaped if we are still around
	return pr, nil, nil
}

// init turns the process into a detacher before anything else runs, in any
// binary that links this package (ipftrace itself, and test binaries that
// call Run in-process).
func init() { runDetacher() }

// runDetacher closes the inherited link descriptors and exits if this
// process was started as a detacher; otherwise it returns at once. Its
// descriptor 3 is the progress pipe, 4 onwards the links. A write to the
// pipe after ipftrace has exited fails with EPIPE (not SIGPIPE: it is not
// standard output or error), which is ignored.
func runDetacher() {
	v, ok := os.LookupEnv(detacherEnv)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		os.Exit(2)
	}
	progress := os.NewFile(3, "progress")
	one := []byte{1}
	for fd := 4; fd < 4+n; fd++ {
		syscall.Close(fd)
		progress.Write(one) //nolint:errcheck // ipftrace may be gone
	}
	os.Exit(0)
}
