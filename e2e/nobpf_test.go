//go:build linux

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// noBPFEnv makes the test binary a wrapper: it installs a seccomp filter
// that kills the process on bpf(2) or perf_event_open(2), and execs its
// arguments. The filter is inherited across exec, so a command run through
// the wrapper that exits normally provably made neither call: it loaded no
// program, created no map or link, and attached nothing. Unlike comparing
// the system's BPF IDs before and after, this does not depend on what other
// BPF users on the host do meanwhile.
const noBPFEnv = "IPFTRACE_E2E_NOBPF_EXEC"

// auditArch is the seccomp architecture of this build, 0 if unsupported.
var auditArch = map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}[runtime.GOARCH]

func init() {
	if os.Getenv(noBPFEnv) == "" {
		return
	}
	if err := noBPFExec(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "e2e no-bpf wrapper: %v\n", err)
		os.Exit(127)
	}
}

func noBPFExec(args []string) error {
	if len(args) == 0 {
		return errors.New("no command")
	}
	if auditArch == 0 {
		return fmt.Errorf("seccomp filter not written for %s", runtime.GOARCH)
	}
	kill, allow := uint32(unix.SECCOMP_RET_KILL_PROCESS), uint32(unix.SECCOMP_RET_ALLOW)
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: auditArch},
		{Code: unix.BPF_RET | unix.BPF_K, K: kill},            // another ABI: cannot judge, kill
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 2, K: unix.SYS_BPF},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: unix.SYS_PERF_EVENT_OPEN},
		{Code: unix.BPF_RET | unix.BPF_K, K: allow},
		{Code: unix.BPF_RET | unix.BPF_K, K: kill},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// As root no PR_SET_NO_NEW_PRIVS is needed (it would also stop setpriv
	// from passing on ambient capabilities); TSYNC covers every thread.
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if len(kv) < len(noBPFEnv)+1 || kv[:len(noBPFEnv)+1] != noBPFEnv+"=" {
			env = append(env, kv)
		}
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	return syscall.Exec(path, args, env)
}

// runNoBPF runs a command under the no-bpf wrapper and returns its output
// and exit code; killed reports that the filter killed it (it called
// bpf(2) or perf_event_open(2)).
func runNoBPF(t *testing.T, args ...string) (stdout, stderr string, code int, killed bool) {
	t.Helper()
	if auditArch == 0 {
		t.Skipf("e2e: the no-bpf seccomp wrapper has no filter for %s", runtime.GOARCH)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), noBPFEnv+"=1")
	o, e, err := runToExit(cmd)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() && ws.Signal() == syscall.SIGSYS {
			killed = true
		}
		code = ee.ExitCode()
	default:
		t.Fatalf("run %v under the no-bpf wrapper: %v", args, err)
	}
	if code == 127 && bytes.Contains(e.Bytes(), []byte("e2e no-bpf wrapper:")) {
		t.Fatalf("no-bpf wrapper failed: %s", e.String())
	}
	return o.String(), e.String(), code, killed
}

// TestNoBPFWrapper: the wrapper kills a run that does use BPF (so a normal
// exit under it proves something), and lets a plain command through.
func TestNoBPFWrapper(t *testing.T) {
	requireRoot(t)
	_, stderr, code, killed := runNoBPF(t, append([]string{ipftraceBin}, append(backendArgs(), "--auto", "-p", "icmp", "-d", "192.0.2.1", "--duration", "1ms")...)...)
	if !killed {
		t.Fatalf("ipftrace --auto ran under the no-bpf filter without being killed (exit %d); stderr:\n%s", code, stderr)
	}
	stdout, _, code, killed := runNoBPF(t, ipftraceBin, "--version")
	if killed || code != 0 || stdout == "" {
		t.Fatalf("ipftrace --version under the filter: exit %d, killed %v, stdout %q", code, killed, stdout)
	}
}
