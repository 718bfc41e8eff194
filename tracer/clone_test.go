package tracer

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/filter"
	"github.com/ipftrace/ipftrace/module"
)

// TestRawClone loads the same tp_btf clone through cilium/ebpf and from
// the raw template, and checks that the kernel sees the same program: the
// same instructions after verification (maps, descriptor, fill_data), the
// same number of verified instructions, the same name and type. The
// fentry templates, which this host cannot load, must build too.
func TestRawClone(t *testing.T) {
	requireRoot(t)
	scan := coreScan(t)
	daddr := filter.Any()
	daddr.Daddr = netip.MustParsePrefix("10.0.0.2/32")
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	mods, err := module.Build([]string{"gso"}, kernel, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		f        filter.Filter
		fill     asm.Instructions // -m
		template string
		target   string
	}{
		{"any", filter.Any(), nil, "tp_skb1", "net_dev_queue"},
		{"daddr", daddr, nil, "tp_skb1", "netif_receive_skb"},
		{"kfree_skb", daddr, nil, "tp_kfree_skb", "kfree_skb"},
		{"module", daddr, mods.Instructions(), "tp_skb1", "net_dev_queue"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := newObjects(bpf.Tracepoint, c.f, c.fill, true, true, 0, btf.NewCache(), scan.CORE)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			desc := descriptor(77, 0) | descDying
			viaCilium, err := o.loadProgram(c.template, c.target, false, desc, true)
			if err != nil {
				t.Fatal(err)
			}
			defer viaCilium.Close()
			rt, err := o.rawTemplate(c.template)
			if err != nil || rt == nil {
				t.Fatalf("raw template: %v, %v", rt, err)
			}
			ids, err := btfscan.AttachIDs(btfscan.DefaultBTFPath, nil, []string{c.target})
			if err != nil {
				t.Fatal(err)
			}
			id, ok := ids.Tracepoints[c.target]
			if !ok {
				t.Fatalf("no BTF ID for tracepoint %s", c.target)
			}
			raw, err := rt.load(desc, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			// A refused clone says why, from the verifier's log.
			if _, err := rt.load(desc, 1, nil); err == nil || !strings.Contains(err.Error(), "load program: invalid argument: ") {
				t.Errorf("raw clone attached to type 1: error %v, want the verifier's reason", err)
			}
			want, got := progInfo(t, viaCilium), progInfo(t, raw)
			if got.name != want.name || got.typ != want.typ || got.verified != want.verified {
				t.Errorf("raw clone %+v, cilium/ebpf's %+v", got.summary(), want.summary())
			}
			if len(got.xlated) == 0 || !slices.Equal(got.xlated, want.xlated) {
				t.Errorf("raw clone: %d translated instructions differ from cilium/ebpf's %d", len(got.xlated), len(want.xlated))
			}
		})
	}
	o, err := newObjects(bpf.Fentry, filter.Any(), nil, true, false, 0, btf.NewCache(), scan.CORE)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if rt, err := o.rawTemplate("fexit_clone"); err != nil || rt == nil || len(rt.descOffs) == 0 || rt.attachType != bpfAttachTraceFExit {
		t.Errorf("fexit_clone: raw template %v, %v", rt, err)
	}
	for pos := 1; pos <= 6; pos++ {
		tmpl := fentryTemplate(Target{SkbPos: pos})
		if rt, err := o.rawTemplate(tmpl); err != nil || rt == nil || len(rt.descOffs) == 0 {
			t.Errorf("%s: raw template %v, %v", tmpl, rt, err)
		}
		for _, split := range []bool{false, true} {
			// The shared handlers take the descriptor from the cookie.
			tmpl := sharedTemplate(Target{SkbPos: pos}, split)
			if rt, err := o.rawTemplate(tmpl); err != nil || rt == nil || len(rt.descOffs) != 0 {
				t.Errorf("%s: raw template %v, %v", tmpl, rt, err)
			}
		}
	}
}

type loadedInfo struct {
	name     string
	typ      ebpf.ProgramType
	verified uint32
	xlated   []rawInsn
}

// rawInsn is an instruction as the kernel reports it, without metadata.
type rawInsn struct {
	op       asm.OpCode
	dst, src asm.Register
	off      int16
	imm      int64
}

func (l loadedInfo) summary() any {
	return struct {
		Name     string
		Type     ebpf.ProgramType
		Verified uint32
		Xlated   int
	}{l.name, l.typ, l.verified, len(l.xlated)}
}

func progInfo(t *testing.T, p *ebpf.Program) loadedInfo {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	insns, err := info.Instructions()
	if err != nil {
		t.Fatal(err)
	}
	var x []rawInsn
	for _, ins := range insns {
		x = append(x, rawInsn{ins.OpCode, ins.Dst, ins.Src, ins.Offset, ins.Constant})
	}
	v, _ := info.VerifiedInstructions()
	return loadedInfo{info.Name, info.Type, v, x}
}

// TestVerifierReason checks the reason taken from a verifier log.
func TestVerifierReason(t *testing.T) {
	for _, c := range []struct{ log, want string }{
		{"", ""},
		{"The function nf_log_packet with variable args is unsupported.\nprocessed 0 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n\x00junk",
			": The function nf_log_packet with variable args is unsupported."},
		{"0: (79) r1 = *(u64 *)(r1 +0)\nR1 invalid mem access 'scalar'\nprocessed 1 insns\nverification time 5 usec\nstack depth 0\n",
			": R1 invalid mem access 'scalar' (1 line(s) omitted)"},
	} {
		if got := verifierReason([]byte(c.log)); got != c.want {
			t.Errorf("verifierReason(%q) = %q, want %q", c.log, got, c.want)
		}
	}
}

// TestReleaseTemplates checks that a run's objects still do what the trace
// needs (the stop flag, the globals) once the templates are released, that
// every kind of load then fails with errReleased instead of loading, and
// that the process parses the objects again for the next run.
func TestReleaseTemplates(t *testing.T) {
	requireRoot(t)
	scan := coreScan(t)
	o, err := newObjects(bpf.Tracepoint, filter.Any(), nil, true, true, 0, sharedBTF(), scan.CORE)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	before, err := o.loadClone("tp_skb1", "net_dev_queue", "", descriptor(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	o.releaseTemplates()
	shared.mu.Lock()
	kept, kernel := len(shared.specs), shared.btf
	shared.mu.Unlock()
	if kept != 0 {
		t.Errorf("parsed objects kept after releaseTemplates: %d groups", kept)
	}
	if kernel != nil || o.cache != nil {
		t.Errorf("kernel BTF kept after releaseTemplates: process cache %p, objects' %p", kernel, o.cache)
	}
	for _, load := range []struct {
		name string
		load func() (*ebpf.Program, error)
	}{
		{"raw clone", func() (*ebpf.Program, error) {
			return o.loadClone("tp_skb1", "net_dev_queue", "", descriptor(1, 0))
		}},
		{"cilium/ebpf clone", func() (*ebpf.Program, error) {
			return o.loadProgram("tp_skb1", "net_dev_queue", false, descriptor(1, 0), true)
		}},
		{"shared program", func() (*ebpf.Program, error) { return o.sharedProgram("tp_kfree_skb") }},
		{"another group", func() (*ebpf.Program, error) {
			return o.loadProgram("kprobe_multi_skb_any", "", false, 0, false)
		}},
	} {
		p, err := load.load()
		if !errors.Is(err, errReleased) {
			if p != nil {
				p.Close()
			}
			t.Errorf("%s after release: %v, want %v", load.name, err, errReleased)
		}
	}
	for _, on := range []bool{true, false} {
		if err := o.setDisabled(on); err != nil {
			t.Fatalf("setDisabled(%v) after release: %v", on, err)
		}
	}
	if _, err := o.readGlobal("track_live"); err != nil {
		t.Errorf("readGlobal after release: %v", err)
	}
	// The next run's objects parse the object and the kernel's BTF again.
	o2, err := newObjects(bpf.Tracepoint, filter.Any(), nil, true, true, 0, sharedBTF(), scan.CORE)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	p, err := o2.loadClone("tp_skb1", "net_dev_queue", "", descriptor(1, 0))
	if err != nil {
		t.Fatalf("load after another run's release: %v", err)
	}
	p.Close()
}
