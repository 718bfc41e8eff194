package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ipftrace/ipftrace/test/vm/vm"
)

// The VM tests boot real kernels under qemu (TCG): slow and needing qemu,
// busybox-static, apt access. Opt in with IPFTRACE_VMTEST=1; restrict kernels
// with IPFTRACE_VMTEST_KERNELS=6.12 (comma separated; default all pinned).
func vmTest(t *testing.T) {
	t.Helper()
	if os.Getenv("IPFTRACE_VMTEST") != "1" {
		t.Skip("SKIPPING VM TESTS: set IPFTRACE_VMTEST=1 to boot Debian kernels under qemu (needs qemu-system-x86, busybox-static, kmod, apt)")
	}
}

func kernels() []string {
	if s := os.Getenv("IPFTRACE_VMTEST_KERNELS"); s != "" {
		return strings.Split(s, ",")
	}
	return []string{"6.1", "6.12"}
}

var (
	buildOnce sync.Once
	runnerBin string
	buildErr  error
)

// runner builds this command once per test process.
func runner(t *testing.T) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmtest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		runnerBin = filepath.Join(dir, "vmrun")
		out, err := exec.Command("go", "build", "-o", runnerBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return runnerBin
}

func repoDir(t *testing.T) string {
	d, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type runResult struct {
	code     int
	stdout   string
	stderr   string
	qemuPid  int
	bootTime float64
	wall     time.Duration
}

var (
	pidRe  = regexp.MustCompile(`vm: qemu pid (\d+)`)
	bootRe = regexp.MustCompile(`vm: booted in ([0-9.]+)s`)
)

// start runs the runner with args; onStderr sees each stderr line.
func start(t *testing.T, env []string, onStderr func(string), args ...string) (*exec.Cmd, func() *runResult) {
	t.Helper()
	cmd := exec.Command(runner(t), args...)
	cmd.Dir = repoDir(t)
	cmd.Env = append(os.Environ(), env...)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			stderr.WriteString(sc.Text() + "\n")
			t.Log(sc.Text())
			if onStderr != nil {
				onStderr(sc.Text())
			}
		}
	}()
	return cmd, func() *runResult {
		<-done
		err := cmd.Wait()
		r := &runResult{stdout: stdout.String(), stderr: stderr.String(), wall: time.Since(t0)}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				r.code = 128 + int(ws.Signal())
			}
		} else if err != nil {
			t.Fatal(err)
		}
		if m := pidRe.FindStringSubmatch(r.stderr); m != nil {
			r.qemuPid, _ = strconv.Atoi(m[1])
		}
		if m := bootRe.FindStringSubmatch(r.stderr); m != nil {
			r.bootTime, _ = strconv.ParseFloat(m[1], 64)
		}
		t.Logf("stdout:\n%s", r.stdout)
		t.Logf("exit %d, boot %.1fs, wall %.1fs", r.code, r.bootTime, r.wall.Seconds())
		for _, a := range args {
			if a == "--" { // a boot was asked for
				assertNoQemu(t, r.qemuPid)
			}
		}
		return r
	}
}

func runVM(t *testing.T, env []string, args ...string) *runResult {
	t.Helper()
	_, wait := start(t, env, nil, args...)
	return wait()
}

// assertNoQemu checks the runner's qemu is gone (not even a zombie).
func assertNoQemu(t *testing.T, pid int) {
	t.Helper()
	if pid == 0 {
		t.Error("runner did not report a qemu pid")
		return
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || !strings.HasPrefix(string(comm), "qemu") {
			break
		}
		if time.Now().After(deadline) {
			out, _ := exec.Command("pgrep", "-a", "qemu").CombinedOutput()
			t.Errorf("qemu pid %d still alive after the runner exited; pgrep -a qemu:\n%s", pid, out)
			syscall.Kill(pid, syscall.SIGKILL)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestVM(t *testing.T) {
	vmTest(t)
	for _, k := range kernels() {
		t.Run(k, func(t *testing.T) {
			pkg, err := vm.ResolvePackage(k)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			if r := runVM(t, nil, "-kernel", k, "-fetch"); r.code != 0 {
				t.Fatalf("fetch %s: exit %d", pkg, r.code)
			}
			t.Logf("fetch/cache check: %.1fs", time.Since(t0).Seconds())

			t.Run("true", func(t *testing.T) {
				r := runVM(t, nil, "-kernel", k, "-timeout", "5m", "--", "true")
				if r.code != 0 {
					t.Fatalf("exit %d, want 0", r.code)
				}
				if r.bootTime == 0 {
					t.Error("no boot time reported")
				}
				if strings.Contains(r.stdout, "IPFTRACE_VM_") {
					t.Errorf("marker lines leaked to stdout: %q", r.stdout)
				}
			})
			t.Run("exit7", func(t *testing.T) {
				r := runVM(t, nil, "-kernel", k, "-timeout", "5m", "--", "sh", "-c", "echo 'it'\"'\"'s quoted'; exit 7")
				if r.code != 7 {
					t.Fatalf("exit %d, want 7", r.code)
				}
				if !strings.Contains(r.stdout, "it's quoted\n") {
					t.Errorf("stdout %q lacks the command's output", r.stdout)
				}
			})
			t.Run("timeout", func(t *testing.T) {
				r := runVM(t, nil, "-kernel", k, "-timeout", "15s", "--", "sleep", "600")
				if r.code != vm.ExitTimeout {
					t.Fatalf("exit %d, want %d", r.code, vm.ExitTimeout)
				}
				if !strings.Contains(r.stderr, "TIMEOUT") {
					t.Error("no TIMEOUT message")
				}
				if r.wall > 60*time.Second {
					t.Errorf("took %s to time out after 15s", r.wall)
				}
			})
			t.Run("guest", func(t *testing.T) { guestChecks(t, k) })
		})
	}
}

// guestChecks runs the environment checks and a host-built static Go test
// binary inside one VM.
func guestChecks(t *testing.T, k string) {
	pkg, _ := vm.ResolvePackage(k)
	cache := filepath.Join(repoDir(t), ".cache", "vm")
	if c := os.Getenv("IPFTRACE_VM_CACHE"); c != "" {
		cache = c
	}
	rel, err := os.ReadFile(filepath.Join(cache, pkg, "release"))
	if err != nil {
		t.Fatal(err)
	}
	release := strings.TrimSpace(string(rel))

	// Host /tmp is visible in the guest (overlay), so t.TempDir works.
	bin := filepath.Join(t.TempDir(), "guest.test")
	rwDir := t.TempDir()
	build := exec.Command("go", "test", "-c", "-o", bin, "./testdata/guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build guest test: %v\n%s", err, out)
	}
	script := `set -e
echo "cwd=$(pwd) home=$HOME user=$(id -un)"
test "$(uname -r)" = "$IPFTRACE_VM_WANT_RELEASE"
test -r /sys/kernel/btf/vmlinux
ip netns add x
ip link add veth0 type veth peer name veth1
ip link set veth1 netns x
ip addr add 10.99.0.1/24 dev veth0 && ip link set veth0 up
ip -n x addr add 10.99.0.2/24 dev veth1 && ip -n x link set veth1 up
ip -n x link set lo up
ping -c1 -W5 10.99.0.2 >/dev/null
nft list ruleset
nft add table inet t
nft add chain inet t c '{ type filter hook input priority 0; }'
nft add rule inet t c ip saddr 10.99.0.2 counter
nft list ruleset >/dev/null
test -e /sys/kernel/tracing/kprobe_events -o -e /sys/bus/event_source/devices/kprobe
test -d /sys/fs/bpf && test -e /sys/kernel/debug/tracing -o -e /sys/kernel/tracing/trace
` + bin + ` -test.v
echo written-in-guest >` + rwDir + `/result
echo GUEST-CHECKS-OK`
	r := runVM(t, []string{"IPFTRACE_VM_WANT_RELEASE=" + release}, "-kernel", k, "-timeout", "5m", "-rw", rwDir, "--", "sh", "-c", script)
	if r.code != 0 || !strings.Contains(r.stdout, "GUEST-CHECKS-OK") {
		t.Fatalf("guest checks failed: exit %d", r.code)
	}
	if b, err := os.ReadFile(filepath.Join(rwDir, "result")); err != nil || string(b) != "written-in-guest\n" {
		t.Errorf("-rw dir: result %q, %v", b, err)
	}
	if !strings.Contains(r.stdout, "cwd="+repoDir(t)+" home=/root user=root") {
		t.Errorf("wrong cwd/env in guest: %q", r.stdout)
	}
}

// TestVMSignal: SIGTERM to the runner kills qemu and exits 128+15.
func TestVMSignal(t *testing.T) {
	vmTest(t)
	ks := kernels()
	k := ks[len(ks)-1]
	booted := make(chan struct{})
	var once sync.Once
	cmd, wait := start(t, nil, func(line string) {
		if bootRe.MatchString(line) {
			once.Do(func() { close(booted) })
		}
	}, "-kernel", k, "-timeout", "5m", "--", "sleep", "600")
	select {
	case <-booted:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		t.Fatal("guest did not boot in 3 minutes")
	}
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	r := wait()
	if r.code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %d, want %d", r.code, 128+int(syscall.SIGTERM))
	}
}

// TestVMGuestCrash: a kernel panic in the guest ends the run (exit 125)
// with the oops on stderr, and no qemu left.
func TestVMGuestCrash(t *testing.T) {
	vmTest(t)
	ks := kernels()
	r := runVM(t, nil, "-kernel", ks[len(ks)-1], "-timeout", "5m", "--", "sh", "-c", "echo c >/proc/sysrq-trigger")
	if r.code != vm.ExitInfra {
		t.Fatalf("exit %d, want %d", r.code, vm.ExitInfra)
	}
	if !strings.Contains(r.stderr, "guest died") || !strings.Contains(r.stderr, "Kernel panic") {
		t.Errorf("stderr lacks the crash report")
	}
}
