package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/filter"
)

// loadSpecForTest parses every program group and returns one spec holding
// all their programs (and the maps of the maps' object), after checking that
// each group's maps and globals match the maps' object.
func loadSpecForTest() (*ebpf.CollectionSpec, error) {
	all, err := bpf.Load(bpf.Tracepoint)
	if err != nil {
		return nil, err
	}
	for _, g := range bpf.Groups {
		spec, err := bpf.Load(g)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", g, err)
		}
		if err := sameLayout(all, spec); err != nil {
			return nil, fmt.Errorf("%v: %w", g, err)
		}
		for name, ps := range spec.Programs {
			if templateGroup(name) != g {
				return nil, fmt.Errorf("program %s is in group %v, templateGroup says %v", name, g, templateGroup(name))
			}
			all.Programs[name] = ps
		}
	}
	return all, nil
}

func TestEncodePrefix(t *testing.T) {
	tests := []struct {
		prefix string
		ver    uint8
		addr   [2]uint64
		mask   [2]uint64
	}{
		// 10.0.0.2/32: bytes 0a 00 00 02 in the first word, little-endian.
		{"10.0.0.2/32", 4, [2]uint64{0x0200000a, 0}, [2]uint64{0xffffffff, 0}},
		{"10.0.0.0/8", 4, [2]uint64{0x0a, 0}, [2]uint64{0xff, 0}},
		{"10.1.2.3/16", 4, [2]uint64{0x010a, 0}, [2]uint64{0xffff, 0}},
		{"fd00::2/128", 6, [2]uint64{0xfd, 0x0200000000000000}, [2]uint64{^uint64(0), ^uint64(0)}},
		{"fd00::/72", 6, [2]uint64{0xfd, 0}, [2]uint64{^uint64(0), 0xff}},
		{"0.0.0.0/0", 4, [2]uint64{0, 0}, [2]uint64{0, 0}},
	}
	for _, tt := range tests {
		c := encodePrefix(netip.MustParsePrefix(tt.prefix))
		if c.ver != tt.ver || c.addr != tt.addr || c.mask != tt.mask {
			t.Errorf("%s: got ver %d addr %#x mask %#x, want ver %d addr %#x mask %#x",
				tt.prefix, c.ver, c.addr, c.mask, tt.ver, tt.addr, tt.mask)
		}
	}
	if c := encodePrefix(netip.Prefix{}); c != (prefixConst{}) {
		t.Errorf("invalid prefix: got %+v, want zero (any)", c)
	}
}

func TestEncodeFilter(t *testing.T) {
	any := encodeFilter(filter.Any())
	if any.protoSet != 0 || any.sportSet != 0 || any.dportSet != 0 || any.ipversion != 0 || any.saddr.ver != 0 || any.daddr.ver != 0 {
		t.Errorf("Any() encodes to a non-empty filter: %+v", any)
	}
	f := filter.Any()
	f.Proto, f.Sport, f.Dport, f.IPVersion = 17, 0, 8000, 4
	c := encodeFilter(f)
	if c.protoSet != 1 || c.proto != 17 || c.sportSet != 1 || c.sport != 0 || c.dportSet != 1 || c.dport != 8000 || c.ipversion != 4 {
		t.Errorf("got %+v", c)
	}
}

func TestSetFilterNamesExist(t *testing.T) {
	f := filter.Any()
	f.Daddr = netip.MustParsePrefix("10.0.0.2/32")
	f.Proto = 1
	spec, err := loadSpecForTest()
	if err != nil {
		t.Fatal(err)
	}
	if err := setFilter(spec, f); err != nil {
		t.Fatal(err)
	}
}

func TestPatchDescriptor(t *testing.T) {
	spec, err := loadSpecForTest()
	if err != nil {
		t.Fatal(err)
	}
	for name, ps := range spec.Programs {
		insns := ps.Copy().Instructions
		err := patchDescriptor(insns, descriptor(42, 3))
		patched := (name[:3] == "fen" || name[:3] == "tp_" || name[:3] == "fex") && !unpatchedTemplate(name)
		if patched && err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !patched && err == nil {
			t.Errorf("%s: has a descriptor marker but gets its descriptor at run time", name)
		}
		if patched {
			for _, ins := range insns {
				if ins.OpCode.IsDWordLoad() && uint64(ins.Constant) == descMarker {
					t.Errorf("%s: marker left after patching", name)
				}
			}
			if ps.Instructions[0].Constant == int64(descriptor(42, 3)) {
				t.Errorf("%s: patching changed the template", name)
			}
		}
	}
	if err := patchDescriptor(asm.Instructions{asm.Return()}, 1); err == nil {
		t.Error("no error for instructions without the marker")
	}
}

func TestDescriptor(t *testing.T) {
	d := descriptor(0xdeadbeef, 3)
	if uint32(d) != 0xdeadbeef || (d>>32)&0xff != 3 {
		t.Errorf("descriptor = %#x", d)
	}
}

func TestDescribeErr(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("load: %w", unix.EPERM), "not permitted (EPERM)"},
		{fmt.Errorf("load: %w", unix.EINVAL), "EINVAL"},
		{fmt.Errorf("attach: %w", unix.ENOENT), "not found (ENOENT)"},
		{fmt.Errorf("x: %w", ebpf.ErrNotSupported), "not supported by this kernel"},
		{fmt.Errorf("y: %w", unix.Errno(524)), "ENOTSUPP"},
		{errors.New("a: b: something odd"), "something odd"},
		{errPosition, "skb argument out of reach"},
	}
	for _, tt := range tests {
		if got := describeErr(tt.err); got != tt.want {
			t.Errorf("describeErr(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestAttachmentSummary(t *testing.T) {
	a := &attachment{}
	if s := a.summary(); s != "" {
		t.Errorf("empty summary = %q", s)
	}
	for i := 0; i < 40; i++ {
		a.addSkip(fmt.Sprint("f", i), unix.ENOENT)
	}
	for i := 0; i < 12; i++ {
		a.addSkip(fmt.Sprint("g", i), unix.EINVAL)
	}
	want := "52 skipped: 40 not found (ENOENT), 12 EINVAL"
	if s := a.summary(); s != want {
		t.Errorf("summary = %q, want %q", s, want)
	}
}

func TestTemplates(t *testing.T) {
	spec, err := loadSpecForTest()
	if err != nil {
		t.Fatal(err)
	}
	for pos := 1; pos <= maxFentryArg; pos++ {
		tg := Target{SkbPos: pos}
		names := []string{fentryTemplate(tg), stubTemplate(tg), sharedTemplate(tg, false), sharedTemplate(tg, true)}
		for _, name := range names {
			if _, ok := spec.Programs[name]; !ok {
				t.Errorf("no fentry template %s", name)
			}
		}
	}
	for pos := 1; pos <= maxKprobeArg; pos++ {
		for _, name := range []string{fmt.Sprintf("kprobe_skb%d", pos), tpTemplate(Target{SkbPos: pos})} {
			if _, ok := spec.Programs[name]; !ok {
				t.Errorf("no template %s", name)
			}
		}
	}
	for _, name := range []string{chainTemplate, "kprobe_multi_skb1", "kprobe_multi_skb2", "kprobe_multi_skb3", "kprobe_multi_skb_any", "kprobe_multi_clone", "kretprobe_multi_clone"} {
		if _, ok := spec.Programs[name]; !ok {
			t.Errorf("no template %s", name)
		}
	}
	if got := tpTemplate(Target{Name: "kfree_skb", SkbPos: 1, NumArgs: 4}); got != "tp_kfree_skb" {
		t.Errorf("kfree_skb tracepoint template = %s", got)
	}
}
