package tracer

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// TestFentryGroups checks how fentryGroups splits targets: one group per
// BTF object (vmlinux or a module), prototype and skb slot, the largest
// first, and names without a BTF ID and skbs out of reach left to a clone
// each.
func TestFentryGroups(t *testing.T) {
	targets := []Target{
		0: {Name: "consume_skb", SkbPos: 1},
		1: {Name: "kfree_skbmem", SkbPos: 1},
		2: {Name: "ip_rcv", SkbPos: 1},
		3: {Name: "skb_free_head", SkbPos: 1},
		4: {Name: "nf_hook_slow", SkbPos: 1},         // no BTF ID
		5: {Name: "mod_fn", SkbPos: 1, Module: "nf"}, // a module's prototype 7 is not vmlinux's
		6: {Name: "far_fn", SkbPos: 13},              // out of reach
		7: {Name: "ip_rcv_core", SkbPos: 1},
		8: {Name: "same_proto_slot2", SkbPos: 2}, // same prototype ID, other slot: cannot happen, kept apart anyway
	}
	ids := map[string]btf.TypeID{}
	protos := map[string]btf.TypeID{}
	for i, tg := range targets {
		if tg.Name != "nf_hook_slow" {
			ids[tg.Name] = btf.TypeID(100 + i)
		}
	}
	for name, p := range map[string]btf.TypeID{
		"consume_skb": 7, "kfree_skbmem": 7, "skb_free_head": 7, "same_proto_slot2": 7,
		"ip_rcv": 9, "ip_rcv_core": 9, "mod_fn": 7, "far_fn": 7,
	} {
		protos[name] = p
	}
	tr := &tracer{targets: targets, objs: &objects{attachIDs: ids, protos: protos}}
	groups, rest := tr.fentryGroups()
	want := [][]int{{0, 1, 3}, {2, 7}, {5}, {8}}
	if !slices.EqualFunc(groups, want, slices.Equal) {
		t.Errorf("groups %v, want %v", groups, want)
	}
	if want := []int{4, 6}; !slices.Equal(rest, want) {
		t.Errorf("rest %v, want %v", rest, want)
	}
}

// TestTailTemplate checks the tail-call program: r2 = the program array,
// r3 = slot 0, the tail call with the trampoline's context untouched in r1,
// and 0 returned if the slot is empty.
func TestTailTemplate(t *testing.T) {
	const fd = 42
	rt, err := tailTemplate(fd, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	// As the kernel reads them (struct bpf_insn): opcode, dst | src << 4,
	// offset, immediate; ld_imm64 takes two slots.
	type insn struct {
		op       byte
		dst, src byte
		imm      int32
	}
	want := []insn{
		{0x18, 2, 1, fd}, // r2 = map fd (BPF_PSEUDO_MAP_FD)
		{0, 0, 0, 0},     // its upper half
		{0xb7, 3, 0, 0},  // r3 = 0
		{0x85, 0, 0, 12}, // call bpf_tail_call
		{0xb7, 0, 0, 0},  // r0 = 0
		{0x95, 0, 0, 0},  // exit
	}
	if len(rt.insns) != 8*len(want) {
		t.Fatalf("%d bytes, want %d", len(rt.insns), 8*len(want))
	}
	for i, w := range want {
		b := rt.insns[8*i:]
		got := insn{b[0], b[1] & 0xf, b[1] >> 4, int32(binary.LittleEndian.Uint32(b[4:]))}
		if got != w || b[2] != 0 || b[3] != 0 {
			t.Errorf("instruction %d: % x, want %+v", i, b[:8], w)
		}
	}
	if rt.progType != bpfProgTypeTracing || rt.attachType != bpfAttachTraceFEntry || len(rt.descOffs) != 0 {
		t.Errorf("type %d, attach type %d, %d descriptor offsets", rt.progType, rt.attachType, len(rt.descOffs))
	}
	if _, err := rt.load(1, 1, nil); err == nil {
		t.Error("a descriptor for the tail call program was taken")
	}
}

func TestSplitWins(t *testing.T) {
	for _, c := range []struct {
		inline, split uint32
		want          bool
	}{
		{4158, 2148, true},  // 6.1
		{1836, 2100, false}, // 6.12
		{1000, 800, true},   // a fifth fewer: enough
		{1000, 801, false},
		{0, 0, false},
		{4_000_000_000, 3_200_000_000, true}, // no overflow
	} {
		if got := splitWins(c.inline, c.split); got != c.want {
			t.Errorf("splitWins(%d, %d) = %v, want %v", c.inline, c.split, got, c.want)
		}
	}
}
