package tracer

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// fentry with stubs and a chained handler.
//
// Each function gets a stub (fentry_stubN, ~230 instructions): it drops a
// packet of another flow itself (fast_nomatch) and hands any other hit to
// fentry_chain, the whole program, loaded once: it calls
// bpf_map_delete_elem on the chain map with its hit's data as the key, the
// kernel enters array_map_delete_elem, and fentry_chain is attached there
// (bpf/ipftrace.c). The kernel runs fentry programs nested in another BPF
// program, as long as the same program is not already running on that CPU
// (then the hit counts as a skipped run, reported at exit).
//
// If fentry_chain cannot be attached, the shared handlers below are the
// fallback.

// chainTemplate is the stubs' handler; chainFunc the kernel function it
// attaches to, which the stubs reach through bpf_map_delete_elem on the
// chain map.
const (
	chainTemplate = "fentry_chain"
	chainFunc     = "array_map_delete_elem"
)

// stubTemplate is the stub template for a target's skb slot.
func stubTemplate(t Target) string { return fmt.Sprintf("fentry_stub%d", t.slot()) }

// attachChain loads fentry_chain and attaches it to chainFunc, before any
// stub: a stub's hit before then would be lost without a count.
func (t *tracer) attachChain(a *attachment) error {
	if t.objs.consts.hooks.noChain {
		return errors.New("test hook " + NoChainEnv)
	}
	prog, err := t.objs.loadClone(chainTemplate, chainFunc, "", 0)
	if err != nil {
		return fmt.Errorf("load %s: %w", chainTemplate, err)
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry})
	if err != nil {
		prog.Close()
		return fmt.Errorf("attach %s to %s: %w", chainTemplate, chainFunc, err)
	}
	a.addClone(l, prog)
	return nil
}

// fentry with shared handlers (the fallback).
//
// A clone of the whole program per function made the kernel verify and
// JIT ~1100 instructions 1650 times for --auto. The kernel lets a tracing
// program tail-call another only if both were loaded for functions of the
// same BTF prototype (the FUNC_PROTO ID), and many skb functions share
// one ("int (struct sk_buff *skb)"). So each group of functions with one
// prototype gets one handler (fentry_sharedN, the whole program), loaded
// for and attached to its first function; every other function of the
// group attaches a 5-instruction tail call into it. The handler reads the
// function's descriptor from the link's cookie, which the tail call keeps
// (the trampoline sets it for the program it entered). A group of one is
// just its handler.

// sharedTemplate is the handler template for a target's skb slot.
func sharedTemplate(t Target, split bool) string {
	return fmt.Sprintf("fentry_shared%d%s", t.slot(), splitSuffix(split))
}

// splitSuffix names the variant of a shared handler that ends each hit in a
// global function (hit_finish in bpf/ipftrace.c).
func splitSuffix(split bool) string {
	if split {
		return "_split"
	}
	return ""
}

// unpatchedTemplate reports whether template gets its descriptor at run
// time (a shared handler from the attach cookie, fentry_chain from the
// stub that called it) rather than as a patched constant.
func unpatchedTemplate(template string) bool {
	return strings.HasPrefix(template, "fentry_shared") || template == chainTemplate
}

// sharing counts what the shared-handler attach loaded.
type sharing struct {
	handlers atomic.Int64 // whole programs (one per group, more if a group fell back)
	tails    atomic.Int64 // tail-call programs
	stubs    atomic.Int64 // stubs chained to fentry_chain
	fellBack atomic.Int64 // groups whose handler could not be shared (each function got its own)
	firstErr atomic.Value // error: why the first of them could not
}

// fentryGroups splits the targets into groups that share a handler:
// functions within reach with a BTF ID, by BTF object (vmlinux or module),
// prototype and skb slot, the largest group first (so the parallel loaders
// finish together). The rest (names without a unique BTF ID, skb out of
// reach) are left to attachOneTracing, one clone each.
func (t *tracer) fentryGroups() (groups [][]int, rest []int) {
	type key struct {
		module string
		proto  uint32
		slot   int
	}
	byKey := map[key][]int{}
	var keys []key
	for id, tg := range t.targets {
		proto, ok := t.objs.protos[tg.Name]
		if _, known := t.objs.attachIDs[tg.Name]; !ok || !known || !reaches(BackendFentry, tg) {
			rest = append(rest, id)
			continue
		}
		k := key{tg.Module, uint32(proto), tg.slot()}
		if _, seen := byKey[k]; !seen {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], id)
	}
	for _, k := range keys {
		groups = append(groups, byKey[k])
	}
	slices.SortStableFunc(groups, func(a, b []int) int { return len(b) - len(a) })
	return groups, rest
}

// attachGroup attaches the functions ids, which share a prototype. The
// first function whose handler loads gets the handler itself; the others
// get a tail call into it. If the handler cannot be shared (the kernel
// refuses the program array or the tail call), each of the others loads a
// handler of its own.
func (t *tracer) attachGroup(ctx context.Context, ids []int, a *attachment, p *progress) {
	var tail *rawTemplate // nil until the handler is shared
	alone := false        // the handler could not be shared
	var obj *btf.Handle   // the functions' module's BTF object (nil: vmlinux)
	if mod := t.targets[ids[0]].Module; mod != "" {
		var err error
		if obj, err = t.objs.moduleBTF(mod); err != nil {
			// As loadCloneID does: a clone each through cilium/ebpf,
			// which finds the module itself or says why not.
			if t.cfg.Verbose {
				t.verbosef("fentry: module %s: %v; one clone per function", mod, err)
			}
			for _, id := range ids {
				if ctx.Err() != nil {
					return
				}
				t.attachOneTracing(id, a)
				p.step()
			}
			return
		}
	}
	for i, id := range ids {
		if ctx.Err() != nil {
			return
		}
		tg := t.targets[id]
		var prog *ebpf.Program
		var err error
		if tail != nil {
			prog, err = tail.load(0, t.objs.attachIDs[tg.Name], obj)
			if err == nil {
				t.share.tails.Add(1)
			}
		} else {
			prog, err = t.objs.loadClone(sharedTemplate(tg, t.split), tg.Name, tg.Module, 0)
			if err == nil {
				t.share.handlers.Add(1)
			}
			if err == nil && !alone && i < len(ids)-1 {
				if tail, err = t.shareHandler(prog, a); err != nil {
					alone = true
					if t.share.fellBack.Add(1) == 1 {
						t.share.firstErr.Store(err)
					}
					err = nil
				}
			}
		}
		if err != nil {
			if t.cfg.Verbose {
				t.verbosef("skip %s: %v", tg.Name, err)
			}
			a.addSkip(tg.Name, err)
			p.step()
			continue
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceFEntry, Cookie: t.desc(id)})
		if err != nil {
			prog.Close() // a shared handler stays in its program array
			a.addSkip(tg.Name, err)
			p.step()
			continue
		}
		a.addClone(l, prog)
		p.step()
	}
}

// shareHandler puts handler in a new program array, kept until exit (the
// kernel empties a program array when its last descriptor closes), and
// returns the template of the tail call into it.
func (t *tracer) shareHandler(handler *ebpf.Program, a *attachment) (*rawTemplate, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "ipft_handler", Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("create program array: %w", err)
	}
	if err := m.Put(uint32(0), handler); err != nil {
		m.Close()
		return nil, fmt.Errorf("add handler to program array: %w", err)
	}
	tail, err := tailTemplate(m.FD(), t.objs.spec.ByteOrder)
	if err != nil {
		m.Close()
		return nil, err
	}
	a.addMap(m)
	return tail, nil
}

// tailTemplate returns the program each function of a shared group but the
// first attaches: a tail call into slot 0 of the program array with
// descriptor handlers, with the trampoline's context, which stays in r1.
func tailTemplate(handlers int, bo binary.ByteOrder) (*rawTemplate, error) {
	return fentryAsm("fentry_tail", asm.Instructions{
		asm.LoadMapPtr(asm.R2, handlers),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnTailCall.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}, bo)
}

// fentryAsm returns a raw template of an fentry program written with asm:
// no descriptor, no maps but those already in its instructions, no BTF.
func fentryAsm(name string, insns asm.Instructions, bo binary.ByteOrder) (*rawTemplate, error) {
	var buf bytes.Buffer
	if err := insns.Marshal(&buf, bo); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	rt := &rawTemplate{
		progType:   bpfProgTypeTracing,
		attachType: bpfAttachTraceFEntry,
		license:    []byte("GPL\x00"),
		insns:      buf.Bytes(),
		bo:         bo,
	}
	copy(rt.name[:len(rt.name)-1], name)
	return rt, nil
}

// cookieProbe is the program sharedHandlers loads: it reads the attach
// cookie, which fentry programs can since Linux 6.0.
var cookieProbe = asm.Instructions{
	asm.FnGetAttachCookie.Call(),
	asm.Mov.Imm(asm.R0, 0),
	asm.Return(),
}

// sharedHandlers reports whether the kernel lets fentry programs read
// their link's cookie, which shared handlers need, by loading cookieProbe
// for the first vmlinux target with a BTF ID. If not, or if no target has
// one, every function gets a clone with its descriptor patched in.
func (t *tracer) sharedHandlers() (bool, error) {
	for _, tg := range t.targets {
		id, ok := t.objs.attachIDs[tg.Name]
		if !ok || tg.Module != "" {
			continue
		}
		rt, err := fentryAsm("ipft_cookie", cookieProbe, t.objs.spec.ByteOrder)
		if err != nil {
			return false, err
		}
		prog, err := rt.load(0, id, nil)
		if err != nil {
			return false, fmt.Errorf("fentry program reading its cookie (%s): %w", tg.Name, err)
		}
		prog.Close()
		return true, nil
	}
	return false, errors.New("no target with a vmlinux BTF ID")
}

// splitMinTargets is the smallest fentry job for which chooseFentrySplit
// measures: below it, two more loads cost more than the choice can save.
const splitMinTargets = 16

// chooseFentrySplit decides whether the shared fentry handlers are the
// _split templates, which end each hit in a global function that the
// verifier checks once on its own. It loads the handler both ways for the
// first vmlinux target with a BTF ID and keeps the one the kernel verified
// in fewer instructions (splitWins). why says what it chose and on what
// numbers. The per-function clones (no shared handlers, names without a
// unique BTF ID) stay inline: they are few. Measured in the VMs (one
// handler, -d filter): 6.1 verifies 4158 instructions inline and 2148
// split; 6.12 1836 inline and 2100 split.
func (t *tracer) chooseFentrySplit() (split bool, why string) {
	if len(t.targets) < splitMinTargets {
		return false, fmt.Sprintf("inline handlers (%d functions: too few to measure the choice)", len(t.targets))
	}
	for _, tg := range t.targets {
		if _, ok := t.objs.attachIDs[tg.Name]; !ok || tg.Module != "" || !reaches(BackendFentry, tg) {
			continue
		}
		var n [2]uint32
		var errs [2]error
		for i, split := range []bool{false, true} {
			n[i], errs[i] = verifiedInsns(t.objs.loadClone(sharedTemplate(tg, split), tg.Name, "", 0))
		}
		switch {
		case errs[0] != nil && errs[1] == nil:
			return true, fmt.Sprintf("split handlers (inline: %v)", errs[0])
		case errs[0] != nil || errs[1] != nil:
			return false, fmt.Sprintf("inline handlers (no verifier counts for %s: %v, %v)", tg.Name, errs[0], errs[1])
		case splitWins(n[0], n[1]):
			return true, fmt.Sprintf("split handlers (%s verified in %d instructions split, %d inline)", tg.Name, n[1], n[0])
		}
		return false, fmt.Sprintf("inline handlers (%s verified in %d instructions inline, %d split)", tg.Name, n[0], n[1])
	}
	return false, "inline handlers (no vmlinux target to measure the choice on)"
}

// splitWins reports whether a handler the verifier checked in split
// instructions as two functions beats one checked in inline instructions:
// by at least a fifth, for the second function's JIT pass and call.
func splitWins(inline, split uint32) bool {
	return split < inline && uint64(split)*5 <= uint64(inline)*4
}

// verifiedInsns returns how many instructions the verifier processed to
// load prog (Linux 5.16+), and closes it.
func verifiedInsns(prog *ebpf.Program, err error) (uint32, error) {
	if err != nil {
		return 0, err
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return 0, err
	}
	n, ok := info.VerifiedInstructions()
	if !ok {
		return 0, errors.New("the kernel does not report verified instructions")
	}
	return n, nil
}
