// Command vm boots a Debian kernel under qemu (TCG) with the host's / as a
// read-only root (9p + tmpfs overlay) and runs one command in it as root,
// in the current directory, returning the command's exit code.
//
//	go run ./test/vm -kernel 6.12 [-timeout 20m] [-cache DIR] -- <command...>
//
// Exit code: the command's; 124 on -timeout; 125 when the VM failed before
// reporting one (or on a setup error); 128+n when killed by signal n.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ipftrace/ipftrace/test/vm/vm"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(s string) error { *m = append(*m, s); return nil }

func main() { os.Exit(run()) }

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vm: "+format+"\n", args...)
}

func run() int {
	var (
		kernel   = flag.String("kernel", "6.12", "kernel: 6.1, 6.12 or a linux-image-* Debian package name")
		timeout  = flag.Duration("timeout", 20*time.Minute, "kill the VM after this long (boot included)")
		cache    = flag.String("cache", "", "cache directory (default $IPFTRACE_VM_CACHE or <repo>/.cache/vm)")
		mem      = flag.String("mem", "3G", "guest memory (qemu -m)")
		smp      = flag.Int("smp", 2, "guest vCPUs")
		tcg      = flag.String("tcg-thread", envOr("IPFTRACE_VM_TCG_THREAD", "single"), "qemu TCG threading: single (round-robin, robust) or multi (MTTCG; faster, but qemu 7.2 sometimes crashes the guest while the kernel patches its own text)")
		tmpfsTmp = flag.Bool("tmpfs-tmp", false, "mount an empty tmpfs on /tmp (default: host /tmp visible, writes stay in the guest)")
		console  = flag.String("console", "", "write the guest kernel console log to this file")
		busybox  = flag.String("busybox", "/bin/busybox", "static busybox for the initramfs (apt-get install busybox-static)")
		appendK  = flag.String("append", "", "extra kernel command line (e.g. ignore_loglevel with -console to see all kernel messages)")
		fetch    = flag.Bool("fetch", false, "only download/unpack the kernel and build the initramfs; boot nothing")
		envs     multi
		rw       multi
	)
	flag.Var(&envs, "e", "KEY=VALUE for the command (repeatable); IPFTRACE_*, GO*, TERM pass through anyway")
	flag.Var(&rw, "rw", "host directory the guest may write to (same path; repeatable), e.g. for coverage or results")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: go run ./test/vm [flags] -- <command...>\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	argv := flag.Args()
	if len(argv) == 0 && !*fetch {
		flag.Usage()
		return 2
	}

	pkg, err := vm.ResolvePackage(*kernel)
	if err != nil {
		logf("%v", err)
		return 2
	}
	cacheDir := *cache
	if cacheDir == "" {
		cacheDir = os.Getenv("IPFTRACE_VM_CACHE")
	}
	if cacheDir == "" {
		cacheDir = filepath.Join(repoRoot(), ".cache", "vm")
	}
	cacheDir, _ = filepath.Abs(cacheDir)

	t0 := time.Now()
	k, err := vm.FetchKernel(cacheDir, pkg, logf)
	if err != nil {
		logf("%v", err)
		return vm.ExitInfra
	}
	initrd, err := vm.Initramfs(k, *busybox, logf)
	if err != nil {
		logf("initramfs: %v", err)
		return vm.ExitInfra
	}
	if *fetch {
		logf("kernel %s (%s) cached in %s", k.Release, pkg, k.Dir)
		return 0
	}
	prep := time.Since(t0)

	cwd, err := os.Getwd()
	if err != nil {
		logf("%v", err)
		return vm.ExitInfra
	}
	for _, hidden := range []string{"/proc", "/sys", "/dev", "/run"} {
		if cwd == hidden || strings.HasPrefix(cwd, hidden+"/") {
			logf("warning: %s is hidden in the guest (fresh mount there)", cwd)
		}
	}

	env := guestEnv(envs)
	for i, d := range rw {
		abs, err := filepath.Abs(d)
		if err != nil {
			logf("-rw %s: %v", d, err)
			return 2
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			logf("-rw %s: not a directory", d)
			return 2
		}
		rw[i] = abs
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	var gotSig os.Signal
	go func() {
		gotSig = <-sigc
		cancel()
	}()

	logf("kernel %s (%s), timeout %s, prep %.1fs", k.Release, pkg, *timeout, prep.Seconds())
	res, err := vm.Run(ctx, vm.Options{
		Kernel: k, Initramfs: initrd, Cmd: argv, Dir: cwd, Env: env,
		Mem: *mem, SMP: *smp, TCGThread: *tcg, Append: *appendK, RW: rw, TmpfsTmp: *tmpfsTmp, Console: *console,
		Stdout: os.Stdout, Logf: logf,
		Started: func(pid int) { logf("qemu pid %d", pid) },
	})
	switch {
	case res.TimedOut:
		logf("TIMEOUT after %s: killed qemu (kernel %s, command: %s)", *timeout, k.Release, strings.Join(argv, " "))
		return vm.ExitTimeout
	case gotSig != nil:
		logf("got %v: killed qemu", gotSig)
		if s, ok := gotSig.(syscall.Signal); ok {
			return 128 + int(s)
		}
		return 130
	case errors.Is(err, context.Canceled):
		return vm.ExitInfra
	case err != nil:
		logf("FAILED (kernel %s): %v", k.Release, err)
		return vm.ExitInfra
	}
	logf("exit %d (kernel %s, boot %.1fs, total %.1fs)", res.ExitCode, k.Release, res.BootTime.Seconds(), res.Total.Seconds()+prep.Seconds())
	return res.ExitCode
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// guestEnv is the command's whole environment in the guest.
func guestEnv(extra []string) []string {
	path := os.Getenv("PATH")
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !strings.Contains(":"+path+":", ":"+d+":") {
			path = d + ":" + path
		}
	}
	env := []string{"PATH=" + path, "HOME=/root", "USER=root"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "IPFTRACE_") || strings.HasPrefix(k, "GO") || k == "TERM" || k == "CI" {
			env = append(env, kv)
		}
	}
	if !strings.Contains(strings.Join(env, "\n"), "\nTERM=") {
		env = append(env, "TERM=dumb")
	}
	return append(env, extra...)
}

// repoRoot walks up from the working directory to the ipftrace go.mod.
func repoRoot() string {
	dir, _ := os.Getwd()
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/ipftrace/ipftrace\n") {
			return d
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}
