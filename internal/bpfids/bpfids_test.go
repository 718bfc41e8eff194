package bpfids

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

func TestSetOps(t *testing.T) {
	a := Set{1: true, 2: true, 3: true}
	b := Set{2: true, 4: true}
	for _, tc := range []struct {
		name string
		got  Set
		want []uint32
	}{
		{"a minus b", a.Minus(b), []uint32{1, 3}},
		{"b minus a", b.Minus(a), []uint32{4}},
		{"intersect", a.Intersect(b), []uint32{2}},
		{"minus itself", a.Minus(a), []uint32{}},
	} {
		if got := tc.got.Sorted(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	many := Set{}
	for id := uint32(20); id > 0; id-- {
		many[id] = true
	}
	for _, tc := range []struct {
		s    Set
		want string
	}{
		{Set{}, "[]"},
		{Set{7: true, 3: true}, "[3 7]"},
		{many, "[1 2 3 4 5 6 7 8 9 10]… (20)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

// TestLive loads a raw tracepoint program and attaches it, and checks
// that Programs, Links, Held and FDInfo see both, and that Programs and
// Links stop listing them once they are closed.
func TestLive(t *testing.T) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.RawTracepoint,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "GPL",
	})
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		t.Skipf("SKIP: loading a BPF program is not permitted here (run as root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	l, err := link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sys_enter", Program: prog})
	if err != nil {
		t.Fatalf("attach raw tracepoint sys_enter: %v", err)
	}
	defer l.Close()
	pinfo, err := prog.Info()
	if err != nil {
		t.Fatal(err)
	}
	pid, ok := pinfo.ID()
	if !ok {
		t.Fatal("no program ID")
	}
	linfo, err := l.Info()
	if err != nil {
		t.Fatal(err)
	}
	progID, linkID := uint32(pid), uint32(linfo.ID)

	progs, err := Programs()
	if err != nil {
		t.Fatal(err)
	}
	links, err := Links()
	if err != nil {
		t.Fatal(err)
	}
	if !progs[progID] || !links[linkID] {
		t.Fatalf("program %d listed %v, link %d listed %v", progID, progs[progID], linkID, links[linkID])
	}
	hp, hl, err := Held(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !hp[progID] || !hl[linkID] {
		t.Fatalf("this process holds program %d: %v, link %d: %v (held: %v, %v)", progID, hp[progID], linkID, hl[linkID], hp, hl)
	}
	infos, err := FDInfo(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var sawLink bool
	for _, f := range infos {
		if f["link_id"] == strconv.Itoa(int(linkID)) && f["prog_id"] != "" {
			sawLink = true
		}
	}
	if !sawLink {
		t.Fatalf("no fdinfo with link_id %d and a prog_id among %v", linkID, infos)
	}

	l.Close()
	prog.Close()
	// The kernel frees them after a grace period.
	deadline := time.Now().Add(10 * time.Second)
	for {
		progs, err1 := Programs()
		links, err2 := Links()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if !progs[progID] && !links[linkID] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10 s after closing: program %d listed %v, link %d listed %v", progID, progs[progID], linkID, links[linkID])
		}
		time.Sleep(20 * time.Millisecond)
	}
	hp, hl, err = Held(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if hp[progID] || hl[linkID] {
		t.Fatalf("closed, yet held: %v, %v", hp, hl)
	}
}

func TestHeldNoProcess(t *testing.T) {
	if _, _, err := Held(-1); err == nil {
		t.Fatal("Held(-1): no error")
	}
}
