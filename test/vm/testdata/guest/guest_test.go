// Package guest is built on the host as a static test binary by
// test/vm/vm_test.go and run inside the VM: it proves a host-built Go test
// binary runs there, as root, with BPF and kprobes usable.
package guest

import (
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

func release() string {
	var u syscall.Utsname
	syscall.Uname(&u)
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

func TestGuest(t *testing.T) {
	want := os.Getenv("IPFTRACE_VM_WANT_RELEASE")
	if want == "" {
		t.Fatal("IPFTRACE_VM_WANT_RELEASE not passed through")
	}
	if got := release(); got != want {
		t.Fatalf("uname -r = %q, want %q", got, want)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("euid %d, want root", os.Geteuid())
	}
	if fi, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil || fi.Size() < 1<<20 {
		t.Fatalf("vmlinux BTF: %v", err)
	}
	t.Logf("kernel %s, HOME=%s", release(), os.Getenv("HOME"))
}

func TestKprobe(t *testing.T) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.Kprobe,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	})
	if err != nil {
		t.Fatalf("load kprobe program: %v", err)
	}
	defer prog.Close()
	l, err := link.Kprobe("__netif_receive_skb", prog, nil)
	if err != nil {
		t.Fatalf("attach kprobe: %v", err)
	}
	l.Close()
}
