// Command bench runs the benchmark of issue 6: two network namespaces joined
// by a veth pair, `ping -f -q -c COUNT` from a to b, with no tracer (base),
// with ipftrace filtering for a flow that does not exist (nomatch), with
// ipftrace matching every request (match), with an empty BPF program
// attached to the same functions (floor, -floor), and again with no tracer
// (base-after), and optionally with another tracer in the same runs
// (-other, with the same filters). It measures attach and detach time, the time until every
// link is gone, idle CPU, peak RSS and event accounting, and prints one
// table per kernel and backend, appended to -out.
//
//	go run ./bench [-backend B[,B...]] [-reps 3] [-count 20000] [-floor] [-out FILE]
//	               [-other 'pwru ... {daddr}' -other-ready 'Listening']
//	go run ./bench -micro            # userspace microbenchmarks (go test -bench)
//
// Run as root. `make bench` runs it on the host (tracepoint) and in the
// 6.12 and 6.1 VMs (every function backend, one boot per kernel).
package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

type bench struct {
	ctx      context.Context
	ipftrace string
	count    int
	reps     int
	floor    bool
	other    *otherTool // -other: another tracer run side by side, nil for none
	extra    []string   // -args: more ipftrace flags for the nomatch and match runs
	net      *netPair
	tmp      string
	keep     bool
	verbose  bool

	idleFor       time.Duration
	settleMax     time.Duration // how long to wait for idle CPUs before a base ping (settle)
	attachTimeout time.Duration
	pingTimeout   time.Duration
	goneTimeout   time.Duration

	mu    sync.Mutex
	child *os.Process
	notes []string
}

func (b *bench) notef(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	logf("%s", s)
	b.mu.Lock()
	b.notes = append(b.notes, s)
	b.mu.Unlock()
}

func (b *bench) setChild(p *os.Process) {
	b.mu.Lock()
	b.child = p
	b.mu.Unlock()
}

func main() { os.Exit(run()) }

func run() int {
	var (
		backends = flag.String("backend", "auto", "ipftrace backend(s), comma-separated: auto, fentry, kprobe-multi, kprobe, tracepoint; base is measured with each")
		reps     = flag.Int("reps", 3, "repetitions of every case")
		count    = flag.Int("count", 20000, "ping -c COUNT")
		floor    = flag.Bool("floor", false, "also measure the floor: an empty BPF program attached with the same mechanism to the same functions")
		out      = flag.String("out", "bench-results.txt", "append the tables to this file (\"\" for none)")
		ipft     = flag.String("ipftrace", "bin/ipftrace", "the ipftrace binary")
		idle     = flag.Duration("idle", 5*time.Second, "idle CPU is measured over this long, with no traffic")
		settleTO = flag.Duration("settle", time.Minute, "before each base ping, wait up to this long for the CPUs to be 90% idle over 500 ms (0: do not wait)")
		goneTO   = flag.Duration("gone-timeout", 30*time.Minute, "how long to wait for ipftrace to exit and for its links to be gone")
		attachTO = flag.Duration("attach-timeout", 20*time.Minute, "how long to wait for the ready file")
		pingTO   = flag.Duration("ping-timeout", 30*time.Minute, "how long to wait for ping")
		keep     = flag.Bool("keep", false, "keep the JSON outputs (printed path)")
		micro    = flag.Bool("micro", false, "run the userspace microbenchmarks (go test -bench) instead")
		benchT   = flag.String("benchtime", "300ms", "-micro: go test -benchtime")
		gocmd    = flag.String("go", "go", "-micro: the go command")
		testbin  = flag.String("testbin", "", "-micro: run this prebuilt test binary (go test -c) instead of go test, e.g. in a VM")
		benchRe  = flag.String("bench", ".", "-micro: the benchmarks to run (go test -bench)")
		label    = flag.String("label", "", "label for the table titles (default: host or vm, from the environment)")
		verbose  = flag.Bool("v", false, "print ipftrace's stderr of every run")
		extra    = flag.String("args", os.Getenv("IPFTRACE_BENCH_ARGS"), "more ipftrace flags for the nomatch and match runs, space-separated, e.g. \"--ring-size 32\" (default $IPFTRACE_BENCH_ARGS)")
		otherCmd = flag.String("other", os.Getenv("IPFTRACE_BENCH_OTHER"), "another tracer to measure side by side in the same runs: a shell command line in which {daddr} becomes the address to match; its stdout goes to a file (default $IPFTRACE_BENCH_OTHER)")
		otherNm  = flag.String("other-name", os.Getenv("IPFTRACE_BENCH_OTHER_NAME"), "the other tracer's name in the table (default: its command's base name, or $IPFTRACE_BENCH_OTHER_NAME)")
		otherRdy = flag.String("other-ready", os.Getenv("IPFTRACE_BENCH_OTHER_READY"), "regular expression for the other tracer's line (stdout or stderr) that says it is tracing (default $IPFTRACE_BENCH_OTHER_READY)")
	)
	flag.Parse()

	if *micro {
		return runMicro(microRun{gocmd: *gocmd, testbin: *testbin, bench: *benchRe, benchtime: *benchT, label: *label}, *out)
	}
	if os.Geteuid() != 0 {
		logf("needs root (network namespaces, BPF)")
		return 1
	}
	if _, err := os.Stat(*ipft); err != nil {
		logf("%v (run make build, or pass -ipftrace)", err)
		return 1
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		logf("remove memlock: %v", err)
		return 1
	}
	other, err := newOtherTool(*otherCmd, *otherNm, *otherRdy)
	if err != nil {
		logf("%v", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := &bench{
		other: other, extra: strings.Fields(*extra),
		ctx: ctx, ipftrace: *ipft, count: *count, reps: *reps, floor: *floor, keep: *keep, verbose: *verbose,
		idleFor: *idle, settleMax: *settleTO, attachTimeout: *attachTO, pingTimeout: *pingTO, goneTimeout: *goneTO,
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigc
		logf("got %v: stopping", s)
		b.mu.Lock()
		if b.child != nil {
			b.child.Signal(syscall.SIGINT)
		}
		b.mu.Unlock()
		cancel()
	}()

	b.tmp, err = os.MkdirTemp("", "ipftrace-bench-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	if !b.keep {
		defer os.RemoveAll(b.tmp)
	}
	b.net, err = setupNetPair()
	if err != nil {
		logf("setup: %v", err)
		return 1
	}
	defer b.net.cleanup()

	var outw io.Writer = io.Discard
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer f.Close()
		outw = f
	}

	// Run a private copy: bin/ is shared with whoever rebuilds it meanwhile.
	b.ipftrace, err = copyBinary(*ipft, b.tmp)
	if err != nil {
		logf("%v", err)
		return 1
	}
	env := describeEnv(b.ipftrace, *label)
	// Warm up (first ping in a fresh namespace or boot is an outlier).
	if _, err := b.ping(); err != nil {
		logf("warm-up ping: %v", err)
		return 1
	}
	var all []target
	if b.floor {
		all, err = listTargets(b.ipftrace)
		if err != nil {
			logf("floor: %v", err)
			return 1
		}
	}
	rc := 0
	for _, backend := range strings.Split(*backends, ",") {
		backend = strings.TrimSpace(backend)
		if backend == "" {
			continue
		}
		res, err := b.runBackend(backend, all)
		if res != nil {
			var sb strings.Builder
			res.print(&sb, env, b)
			fmt.Print(sb.String())
			io.WriteString(outw, sb.String())
		}
		if err != nil {
			logf("backend %s: %v", backend, err)
			rc = 1
			if ctx.Err() != nil {
				return 130
			}
		}
	}
	return rc
}

// envInfo describes where the benchmark ran.
type envInfo struct {
	label, kernel, version string
	cpus                   int
}

func describeEnv(ipft, label string) envInfo {
	var u syscallUtsname
	e := envInfo{kernel: u.release(), cpus: numCPU()}
	if v, err := exec.Command(ipft, "--version").Output(); err == nil {
		e.version = strings.TrimSpace(string(v))
	}
	if data, err := os.ReadFile(ipft); err == nil {
		e.version += fmt.Sprintf(" sha256:%x", sha256.Sum256(data))[:len(" sha256:")+12]
	}
	e.label = label
	if e.label == "" {
		e.label = "host"
		if os.Getenv("IPFTRACE_VM") != "" || isVMGuest() {
			e.label = "vm"
		}
	}
	return e
}

// isVMGuest guesses whether we run in the qemu VM of test/vm (its init
// passes the command on the kernel command line's environment).
func isVMGuest() bool {
	b, err := os.ReadFile("/sys/class/dmi/id/sys_vendor")
	return err == nil && strings.Contains(string(b), "QEMU")
}

// copyBinary copies the ipftrace binary into dir.
func copyBinary(src, dir string) (string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "ipftrace")
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return "", err
	}
	if err := exec.Command(dst, "--version").Run(); err != nil {
		logf("cannot run a copy of %s from %s (%v); using it in place", src, dir, err)
		return src, nil
	}
	return dst, nil
}
