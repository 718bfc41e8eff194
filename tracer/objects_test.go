package tracer

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// TestReplaceFunc: the module code replaces exactly the body of the
// fill_data stub in every program template, keeping its symbol and BTF
// function info, and the call to it.
// noEvents reports whether program name emits no event, so has no
// fill_data: the kprobe entries that stash the original skb of a clone, and
// the fentry stubs (fentry_chain emits theirs).
func noEvents(name string) bool {
	return name == "kprobe_clone" || name == "kprobe_multi_clone" || strings.HasPrefix(name, "fentry_stub")
}

func TestReplaceFunc(t *testing.T) {
	spec, err := loadSpecForTest()
	if err != nil {
		t.Fatal(err)
	}
	body := asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Mov.Imm(asm.R0, 7), asm.Return()}
	for name, ps := range spec.Programs {
		start, end := -1, len(ps.Instructions)
		for i, ins := range ps.Instructions {
			if ins.Symbol() == fillFunc {
				start = i
			} else if start >= 0 && ins.Symbol() != "" && end == len(ps.Instructions) {
				end = i
			}
		}
		if start < 0 {
			if !noEvents(name) {
				t.Errorf("%s: no %s subprogram", name, fillFunc)
			}
			continue
		}
		out, err := replaceFunc(ps.Instructions, fillFunc, body)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want := len(ps.Instructions) - (end - start) + len(body); len(out) != want {
			t.Errorf("%s: %d instructions after the splice, want %d", name, len(out), want)
		}
		if out[start].Symbol() != fillFunc || btf.FuncMetadata(&out[start]) == nil {
			t.Errorf("%s: the new body lost the symbol or the BTF func info: %v", name, out[start])
		}
		if out[start+1].Constant != 7 || out[start+len(body)-1].OpCode.JumpOp() != asm.Exit {
			t.Errorf("%s: body not in place: %v", name, out[start:start+len(body)])
		}
		calls := 0
		for _, ins := range out {
			if ins.IsFunctionCall() && ins.Reference() == fillFunc {
				calls++
			}
		}
		if calls != 1 {
			t.Errorf("%s: %d calls to %s, want 1", name, calls, fillFunc)
		}
		if end < len(ps.Instructions) && out[start+len(body)].Symbol() != ps.Instructions[end].Symbol() {
			t.Errorf("%s: the next subprogram %s moved", name, ps.Instructions[end].Symbol())
		}
	}
	if _, err := replaceFunc(asm.Instructions{asm.Return()}, fillFunc, body); err == nil {
		t.Error("no error without the stub")
	}
}

// TestRemoveFunc: without modules the fill_data stub and its call go, so
// that every program is one function again.
func TestRemoveFunc(t *testing.T) {
	spec, err := loadSpecForTest()
	if err != nil {
		t.Fatal(err)
	}
	for name, ps := range spec.Programs {
		if noEvents(name) {
			if hasFunc(ps.Instructions, fillFunc) {
				t.Errorf("%s: emits no events but has %s", name, fillFunc)
			}
			continue
		}
		start, end, err := funcRange(ps.Instructions, fillFunc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := removeFunc(ps.Instructions, fillFunc, asm.Mov.Imm(asm.R0, 1))
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != len(ps.Instructions)-(end-start) {
			t.Errorf("%s: %d instructions, want %d", name, len(out), len(ps.Instructions)-(end-start))
		}
		calls := 0
		for i, ins := range out {
			if ins.IsFunctionCall() {
				calls++
			}
			if ins.Symbol() == fillFunc || ins.Reference() == fillFunc {
				t.Errorf("%s: instruction %d still names %s: %v", name, i, fillFunc, ins)
			}
			// The _split fentry templates call hit_finish, and only they.
			if ins.IsFunctionCall() && (ins.Reference() != "hit_finish" || !strings.HasSuffix(name, "_split")) {
				t.Errorf("%s: a bpf-to-bpf call is left: %v", name, ins)
			}
		}
		if strings.HasSuffix(name, "_split") && calls == 0 {
			t.Errorf("%s: no call to hit_finish", name)
		}
	}
}

func TestDropKfuncCalls(t *testing.T) {
	spec, err := loadSpecForTest()
	if err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		for _, ps := range spec.Programs {
			for _, ins := range ps.Instructions {
				if ins.IsKfuncCall() {
					n++
				}
			}
		}
		return n
	}
	if count() == 0 {
		t.Fatal("no kfunc call in the BPF object: the use_cast paths are gone?")
	}
	dropKfuncCalls(spec)
	if n := count(); n != 0 {
		t.Fatalf("%d kfunc calls left", n)
	}
}
