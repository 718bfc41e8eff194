package main

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/ipftrace/ipftrace/internal/bpfids"
)

// traced is a tracer process being measured: ipftrace, or the other tool
// (-other).
type traced struct {
	name   string
	cmd    *exec.Cmd
	stderr syncBuf
	exited chan error // receives cmd.Wait's result once
	start  time.Time
}

// startTraced starts cmd with its stdout to out and its stderr kept. The
// bench interrupts it if it is itself interrupted (setChild); call
// b.setChild(nil) once it has exited.
func (b *bench) startTraced(name string, cmd *exec.Cmd, out io.Writer) (*traced, error) {
	t := &traced{name: name, cmd: cmd, exited: make(chan error, 1)}
	cmd.Stdout = out
	cmd.Stderr = &t.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGINT}
	t.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b.setChild(cmd.Process)
	go func() { t.exited <- cmd.Wait() }()
	return t, nil
}

func (t *traced) pid() int { return t.cmd.Process.Pid }

// abort interrupts the process, waits for it (killing it after 2 minutes)
// and returns err with its stderr.
func (t *traced) abort(err error) error {
	t.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-t.exited:
	case <-time.After(2 * time.Minute):
		t.cmd.Process.Kill()
		<-t.exited
	}
	return fmt.Errorf("%w; %s stderr:\n%s", err, t.name, strings.TrimSpace(t.stderr.String()))
}

// idleCPU returns the process's CPU time over b.idleFor with no traffic, in
// % of one CPU, or -1 if /proc could not tell; an error only if the bench
// was interrupted meanwhile.
func (b *bench) idleCPU(pid int) (float64, error) {
	c0, err := procCPU(pid)
	if err != nil {
		return -1, nil
	}
	t0 := time.Now()
	select {
	case <-time.After(b.idleFor):
	case <-b.ctx.Done():
		return -1, b.ctx.Err()
	}
	c1, err := procCPU(pid)
	if err != nil {
		return -1, nil
	}
	return float64(c1-c0) / clkTck / time.Since(t0).Seconds() * 100, nil
}

// detached is what interrupt measured.
type detached struct {
	detach  time.Duration // SIGINT until the process exited
	gone    goneResult    // SIGINT until none of its links was left
	goneErr error
	waitErr error // the process's exit status, if not 0
}

// interrupt sends SIGINT to the process and measures until it exits and
// until the links it held (ours; before: every link before it started) are
// gone. It fails if the process does not exit within b.goneTimeout.
func (b *bench) interrupt(t *traced, before, ours bpfids.Set) (detached, error) {
	var d detached
	sig := time.Now()
	if err := t.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return d, t.abort(err)
	}
	type goneRes struct {
		r   goneResult
		err error
	}
	gonec := make(chan goneRes, 1)
	go func() {
		g, err := waitLinksGone(before, ours, sig, b.goneTimeout)
		gonec <- goneRes{g, err}
	}()
	select {
	case d.waitErr = <-t.exited:
		d.detach = time.Since(sig)
	case <-time.After(b.goneTimeout):
		t.cmd.Process.Kill()
		<-t.exited
		return d, fmt.Errorf("%s did not exit within %s of SIGINT", t.name, b.goneTimeout)
	}
	g := <-gonec
	d.gone, d.goneErr = g.r, g.err
	return d, nil
}

// measured is what a traced run measures once its tracer is ready.
type measured struct {
	attach  time.Duration // process start until ready
	idleCPU float64       // % of one CPU, -1 if not measured
	ping    pingResult
	hwmKB   int64
	cpuPing int64 // CPU ticks at the ping's start
	cpuSig  int64 // and at SIGINT
	detached
	stderr string
}

// measure runs the workload with the tracer t ready: its idle CPU first if
// idle, the ping, its peak RSS and links, then SIGINT (interrupt). before
// is the set of links from before t started. On an error t has exited.
func (b *bench) measure(t *traced, m *measured, before bpfids.Set, idle bool, tag string) error {
	pid := t.pid()
	var err error
	if idle {
		if m.idleCPU, err = b.idleCPU(pid); err != nil {
			return t.abort(err)
		}
	}
	m.cpuPing, _ = procCPU(pid)
	if m.ping, err = b.ping(); err != nil {
		return t.abort(err)
	}
	m.hwmKB, _ = procHWM(pid)
	_, ours, err := bpfids.Held(pid)
	if err != nil {
		return t.abort(err)
	}
	if len(ours) == 0 {
		b.notef("%s: %s (pid %d) holds no BPF link descriptors", tag, t.name, pid)
	}
	m.cpuSig, _ = procCPU(pid)
	m.detached, err = b.interrupt(t, before, ours)
	m.stderr = t.stderr.String()
	return err
}
