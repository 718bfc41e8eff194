package tracer

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// printkProgram returns a program that calls bpf_trace_printk("ipft\n")
// and returns 0, as a tp_btf program on the bpf_trace_printk tracepoint
// (tracepoint) or as a socket filter to run with BPF_PROG_TEST_RUN.
func printkProgram(tb testing.TB, tracepoint bool) *ebpf.Program {
	tb.Helper()
	// "ipft\n\0\0\0" as a little-endian u64 at fp-8.
	var fmtWord int64
	for i, c := range []byte("ipft\n") {
		fmtWord |= int64(c) << (8 * i)
	}
	spec := &ebpf.ProgramSpec{
		Name:    "ipft_printk",
		Type:    ebpf.SocketFilter,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadImm(asm.R1, fmtWord, asm.DWord),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.DWord),
			asm.Mov.Reg(asm.R1, asm.RFP),
			asm.Add.Imm(asm.R1, -8),
			asm.Mov.Imm(asm.R2, 6), // with the NUL
			asm.FnTracePrintk.Call(),
			asm.Mov.Imm(asm.R0, 0),
			asm.Return(),
		},
	}
	if tracepoint {
		spec.Type = ebpf.Tracing
		spec.AttachType = ebpf.AttachTraceRawTp
		spec.AttachTo = "bpf_trace_printk"
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		tb.Skipf("%s: SKIPPED, cannot load a %s program calling bpf_trace_printk on this kernel: %v", tb.Name(), spec.Type, err)
	}
	tb.Cleanup(func() { prog.Close() })
	return prog
}

// TestSkippedRuns makes the kernel skip runs of a real attached program and
// checks that the exit report counts them, whether the program is a
// per-function clone (attachment.progs, through its BTF-less descriptor) or
// a shared one (objects.progs). The program is a tp_btf program on the
// bpf_trace_printk tracepoint that itself calls bpf_trace_printk: each
// trigger runs it once, and its own printk fires the tracepoint again on the
// same CPU while it runs, a run the kernel skips (a recursion miss). That is
// the situation of an interrupt hitting a traced function while its program
// runs, made deterministic.
func TestSkippedRuns(t *testing.T) {
	requireRoot(t)
	trigger := printkProgram(t, false)

	tests := []struct {
		name     string
		shared   bool // the program is a shared one, else a per-function clone
		triggers int  // test runs of the trigger while attached
	}{
		{"clone", false, 5},
		{"shared", true, 3},
		{"none skipped", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog := printkProgram(t, true)
			l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp})
			if err != nil {
				t.Skipf("%s: SKIPPED, cannot attach tp_btf to bpf_trace_printk: %v", t.Name(), err)
			}
			tr := &tracer{objs: &objects{progs: map[string]*ebpf.Program{}}, att: &attachment{}}
			var stderr bytes.Buffer
			tr.cfg.Stderr = &stderr
			if tt.shared {
				tr.objs.progs["tp_shared"] = prog
				defer l.Close()
			} else {
				tr.att.addClone(l, prog) // replaces prog's descriptor with a BTF-less one
				defer func() {
					l.Close()
					for _, p := range tr.att.progs {
						p.Close()
					}
				}()
			}

			for i := 0; i < tt.triggers; i++ {
				if _, err := trigger.Run(&ebpf.RunOptions{Data: make([]byte, 14)}); err != nil {
					t.Fatalf("run trigger: %v", err)
				}
			}
			kernel, err := prog.Stats()
			if err != nil && !tt.shared {
				kernel, err = tr.att.progs[0].Stats()
			}
			if err != nil {
				t.Fatalf("program statistics: %v", err)
			}
			if tt.triggers > 0 && kernel.RecursionMisses == 0 {
				t.Skipf("%s: SKIPPED, this kernel does not count recursion misses of tp_btf programs (%d triggers, 0 misses)", t.Name(), tt.triggers)
			}
			// Other printk callers on the host (another BPF program) can
			// add runs and misses, never take any away.
			if kernel.RecursionMisses < uint64(tt.triggers) {
				t.Fatalf("kernel counted %d recursion misses for %d triggers, want at least one each", kernel.RecursionMisses, tt.triggers)
			}

			n, err := tr.skippedRuns()
			if err != nil {
				t.Fatal(err)
			}
			if n != kernel.RecursionMisses {
				t.Errorf("skippedRuns = %d, kernel counted %d", n, kernel.RecursionMisses)
			}
			tr.reportSkippedRuns()
			want := ""
			if n > 0 {
				want = fmt.Sprintf("ipftrace: the kernel skipped %d program runs", n)
			}
			got := stderr.String()
			if want == "" && got != "" || want != "" && !strings.HasPrefix(got, want) {
				t.Errorf("report = %q, want it to start with %q", got, want)
			}
		})
	}
}

// TestSkippedRunsUnreadable checks the report when the statistics cannot
// be read: it says so rather than printing nothing.
func TestSkippedRunsUnreadable(t *testing.T) {
	requireRoot(t)
	prog := printkProgram(t, false)
	tr := &tracer{objs: &objects{progs: map[string]*ebpf.Program{}}, att: &attachment{}}
	var stderr bytes.Buffer
	tr.cfg.Stderr = &stderr
	closed, err := prog.Clone()
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	tr.att.progs = append(tr.att.progs, closed)
	if _, err := tr.skippedRuns(); err == nil {
		t.Fatalf("skippedRuns of a closed program: err = %v, want an error", err)
	}
	tr.reportSkippedRuns()
	if got := stderr.String(); !strings.HasPrefix(got, "ipftrace: runs skipped by the kernel unknown: ") {
		t.Errorf("report = %q", got)
	}
}
