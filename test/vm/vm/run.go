package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Exit codes of the runner itself (the command's own code otherwise).
const (
	ExitTimeout = 124 // -timeout hit, qemu killed
	ExitInfra   = 125 // the VM failed: no exit code reported
)

// Options for one VM run.
type Options struct {
	Kernel    *Kernel
	Initramfs string
	Cmd       []string // argv, run as root in Dir
	Dir       string   // working directory inside the guest (a host path)
	Env       []string // KEY=VALUE for the command (the whole environment)
	Mem       string   // qemu -m, e.g. "3G"
	SMP       int
	TCGThread string   // "single" or "multi" (qemu -accel tcg,thread=)
	Append    string   // extra kernel command line
	RW        []string // host directories mounted writable at the same path
	TmpfsTmp  bool     // mount a fresh tmpfs on /tmp (default: host /tmp visible through the overlay)
	Console   string   // if set, copy the kernel console log here
	Stdout    io.Writer
	Logf      func(string, ...any) // runner messages ("vm: ...")
	// Started is called with the qemu pid once it runs (tests use it).
	Started func(pid int)
}

// Result of a run.
type Result struct {
	ExitCode int
	BootTime time.Duration // qemu start to the first command
	Total    time.Duration
	TimedOut bool
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = ShellQuote(a)
	}
	return strings.Join(q, " ")
}

// Run boots the VM, runs the command and returns its exit code. Cancelling
// ctx (timeout, signal) kills qemu; the caller tells which happened.
func Run(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	res := &Result{ExitCode: ExitInfra}
	if o.SMP == 0 {
		o.SMP = 2
	}
	if o.TCGThread == "" {
		o.TCGThread = "single"
	}
	if o.Mem == "" {
		o.Mem = "3G"
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return res, fmt.Errorf("qemu-system-x86_64 not found (apt-get install qemu-system-x86): %w", err)
	}
	cleanStale()
	tmp, err := os.MkdirTemp("", "ipftrace-vm-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)
	os.WriteFile(filepath.Join(tmp, "runner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644)
	share := filepath.Join(tmp, "share")
	if err := os.Mkdir(share, 0o755); err != nil {
		return res, err
	}
	consoleLog := filepath.Join(tmp, "console.log")

	nb := make([]byte, 8)
	rand.Read(nb)
	nonce := hex.EncodeToString(nb)
	readyMark := "IPFTRACE_VM_READY " + nonce
	exitMark := "IPFTRACE_VM_EXIT="
	exitSuffix := " #" + nonce

	tmpfsTmp := "0"
	if o.TmpfsTmp {
		tmpfsTmp = "1"
	}
	bootConf := fmt.Sprintf("VM_MODDIR=%s\nVM_TMPFS_TMP=%s\nVM_RW_N=%d\n", ShellQuote(o.Kernel.ModDir), tmpfsTmp, len(o.RW))
	for i, d := range o.RW {
		bootConf += fmt.Sprintf("VM_RW_%d=%s\n", i, ShellQuote(d))
	}
	runSh := fmt.Sprintf(`#!/bin/sh
# written by the ipftrace VM runner
echo %[1]s
rc=125
if cd %[2]s; then
	env -i %[3]s %[4]s
	rc=$?
else
	echo "vm: cannot cd to %[2]s in the guest"
fi
echo $rc >/run/ipftrace-vm/rc.tmp && mv /run/ipftrace-vm/rc.tmp /run/ipftrace-vm/rc
echo "%[5]s$rc%[6]s"
stty -F /dev/ttyS0 raw -echo 2>/dev/null # drains the serial output
sync
echo o >/proc/sysrq-trigger
sleep 10 2>/dev/null
`, readyMark, ShellQuote(o.Dir), shellJoin(o.Env), shellJoin(o.Cmd), exitMark, exitSuffix)
	if err := os.WriteFile(filepath.Join(share, "boot.conf"), []byte(bootConf), 0o644); err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(share, "run.sh"), []byte(runSh), 0o755); err != nil {
		return res, err
	}

	kimg := o.Kernel.Vmlinuz
	if o.Kernel.Vmlinux != "" && os.Getenv("IPFTRACE_VM_BZIMAGE") != "1" {
		kimg = o.Kernel.Vmlinux
	}
	args := []string{
		"-accel", "tcg,thread=" + o.TCGThread, "-cpu", "max", "-smp", strconv.Itoa(o.SMP), "-m", o.Mem,
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", kimg, "-initrd", o.Initramfs,
		"-append", strings.TrimSpace("console=ttyS1 quiet loglevel=3 panic=-1 oops=panic random.trust_cpu=on mitigations=off tsc=reliable 8250.nr_uarts=2 rdinit=/init " + o.Append),
		"-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out",
		"-serial", "file:" + consoleLog,
		"-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
		"-fsdev", "local,id=share,path=" + share + ",security_model=none,multidevs=remap",
		"-device", "virtio-9p-pci,fsdev=share,mount_tag=ipfshare",
		"-device", "virtio-rng-pci",
	}
	for i, d := range o.RW {
		if strings.Contains(d, ",") {
			return res, fmt.Errorf("-rw %s: commas are not allowed (qemu option syntax)", d)
		}
		args = append(args,
			"-fsdev", fmt.Sprintf("local,id=rw%d,path=%s,security_model=none,multidevs=remap", i, d),
			"-device", fmt.Sprintf("virtio-9p-pci,fsdev=rw%d,mount_tag=rw%d", i, i))
	}
	args = append(args, strings.Fields(os.Getenv("IPFTRACE_VM_QEMU_ARGS"))...)
	cmd := exec.Command(qemu, args...)
	cmd.Stdin = nil
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	var qstderr bytes.Buffer
	cmd.Stderr = &qstderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start qemu: %w", err)
	}
	qstart := time.Now()
	if o.Started != nil {
		o.Started(cmd.Process.Pid)
	}
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	defer kill() // every path: no qemu left behind

	var (
		mu         sync.Mutex
		markerCode = -1
		initFailed bool
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		r := bufio.NewReaderSize(stdout, 64*1024)
		for {
			line, err := r.ReadString('\n')
			if len(line) > 0 {
				t := strings.TrimRight(line, "\r\n")
				switch {
				case t == readyMark:
					mu.Lock()
					res.BootTime = time.Since(qstart)
					mu.Unlock()
					o.Logf("booted in %.1fs, running: %s", res.BootTime.Seconds(), shellJoin(o.Cmd))
				case strings.HasPrefix(t, exitMark) && strings.HasSuffix(t, exitSuffix):
					if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(t, exitMark), exitSuffix)); err == nil {
						mu.Lock()
						markerCode = n
						mu.Unlock()
					}
				case t == "IPFTRACE_VM_INIT_FAILED":
					mu.Lock()
					initFailed = true
					mu.Unlock()
				default:
					line = strings.ReplaceAll(line, "\r\n", "\n")
					o.Stdout.Write([]byte(line))
				}
			}
			if err != nil {
				return
			}
		}
	}()

	waitErr := make(chan error, 1)
	go func() {
		<-readDone
		waitErr <- cmd.Wait()
	}()
	select {
	case err = <-waitErr:
	case <-ctx.Done():
		kill()
		<-waitErr
		res.Total = time.Since(start)
		res.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
		copyConsole(consoleLog, o.Console)
		return res, ctx.Err()
	}
	res.Total = time.Since(start)
	copyConsole(consoleLog, o.Console)

	if b, rerr := os.ReadFile(filepath.Join(share, "rc")); rerr == nil {
		if n, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
			res.ExitCode = n
			return res, nil
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if markerCode >= 0 {
		res.ExitCode = markerCode
		return res, nil
	}
	msg := "guest died without reporting an exit code"
	if initFailed {
		msg = "guest init failed"
	}
	if err != nil {
		msg += fmt.Sprintf(" (qemu: %v)", err)
	}
	if s := strings.TrimSpace(qstderr.String()); s != "" {
		msg += "\n--- qemu stderr ---\n" + s
	}
	msg += "\n--- kernel console ---\n" + crashLog(consoleLog)
	return res, errors.New(msg)
}

// cleanStale removes run directories left by runners that were SIGKILLed.
func cleanStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "ipftrace-vm-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "runner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

func copyConsole(from, to string) {
	if to == "" {
		return
	}
	if b, err := os.ReadFile(from); err == nil {
		os.WriteFile(to, b, 0o644)
	}
}

// crashLog returns the interesting part of the kernel console: from the
// first oops/panic/warning line (at most 120 lines), else the last 40 lines.
func crashLog(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no console log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i, l := range lines {
		if strings.Contains(l, "BUG:") || strings.Contains(l, "Oops") || strings.Contains(l, "Kernel panic") ||
			strings.Contains(l, "WARNING:") || strings.Contains(l, "general protection") {
			lines = lines[i:]
			if len(lines) > 120 {
				lines = lines[:120]
			}
			return strings.Join(lines, "\n")
		}
	}
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}
