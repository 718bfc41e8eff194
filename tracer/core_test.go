package tracer

import (
	"bytes"
	"encoding/binary"
	"os"
	"slices"
	"testing"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/module"
)

// TestCORE checks that relocating the programs against the scan's copy of
// the kernel types gives the instructions cilium/ebpf's relocation against
// the kernel's whole BTF gives, and that kfunc calls get the kernel's IDs.
func TestCORE(t *testing.T) {
	if _, err := os.Stat(btfscan.DefaultBTFPath); err != nil {
		t.Skipf("SKIP: no kernel BTF at %s: %v", btfscan.DefaultBTFPath, err)
	}
	res := coreScan(t)
	if res.CORE == nil {
		t.Fatal("scan has no CO-RE types")
	}
	reduced, err := res.CORE.Spec()
	if err != nil {
		t.Fatal(err)
	}
	full, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	relos, kfuncs := 0, 0
	for _, g := range bpf.Groups {
		spec, err := bpf.Load(g)
		if err != nil {
			t.Fatal(err)
		}
		for name, ps := range spec.Programs {
			got := slices.Clone(ps.Instructions)
			if err := relocateProgram(got, res.CORE, reduced); err != nil {
				t.Fatalf("%v %s: %v", g, name, err)
			}
			want := slices.Clone(ps.Instructions)
			var rs []*btf.CORERelocation
			var at []int
			for i := range want {
				if r := btf.CORERelocationMetadata(&want[i]); r != nil {
					rs = append(rs, r)
					at = append(at, i)
				}
			}
			fixups, err := btf.CORERelocate(rs, []*btf.Spec{full}, binary.LittleEndian, nil)
			if err != nil {
				t.Fatalf("%v %s: relocate against the kernel's BTF: %v", g, name, err)
			}
			for j, f := range fixups {
				if err := f.Apply(&want[at[j]]); err != nil {
					t.Fatal(err)
				}
			}
			relos += len(rs)
			for i := range got {
				if btf.CORERelocationMetadata(&got[i]) != nil {
					t.Errorf("%v %s: instruction %d keeps its CO-RE relocation", g, name, i)
				}
				if want[i].IsKfuncCall() {
					var fn *btf.Func
					if err := full.TypeByName(want[i].Reference(), &fn); err != nil {
						t.Fatal(err)
					}
					id, _ := full.TypeID(fn)
					if got[i].Constant != int64(id) || !got[i].IsKfuncCall() {
						t.Errorf("%v %s: instruction %d: %v, want a call of kfunc ID %d", g, name, i, got[i], id)
					}
					kfuncs++
					continue
				}
				if !sameInsn(got[i], want[i]) {
					t.Errorf("%v %s: instruction %d: %v, relocated against the kernel's BTF: %v", g, name, i, got[i], want[i])
				}
			}
		}
	}
	if relos == 0 || kfuncs == 0 {
		t.Fatalf("%d relocations and %d kfunc calls checked: the objects have both", relos, kfuncs)
	}
	t.Logf("%d relocations and %d kfunc calls give the same instructions; CO-RE types: %d bytes of BTF", relos, kfuncs, len(res.CORE.BTF))
}

func sameInsn(a, b asm.Instruction) bool {
	return a.OpCode == b.OpCode && a.Dst == b.Dst && a.Src == b.Src && a.Offset == b.Offset && a.Constant == b.Constant
}

// TestSockLayout checks that the running kernel's struct sock_common has
// the layout for which parse_sk (bpf/ipftrace.c) reads every field it needs
// with one probe read: the same condition as sk_fields_read's, on offsets
// from skc_daddr. On another layout the programs are still right (a read
// per field), but slower, and this test says so.
func TestSockLayout(t *testing.T) {
	if _, err := os.Stat(btfscan.DefaultBTFPath); err != nil {
		t.Skipf("SKIP: no kernel BTF at %s: %v", btfscan.DefaultBTFPath, err)
	}
	spec, err := btf.LoadSpec(btfscan.DefaultBTFPath)
	if err != nil {
		t.Fatal(err)
	}
	var sc *btf.Struct
	if err := spec.TypeByName("sock_common", &sc); err != nil {
		t.Fatal(err)
	}
	off := map[string]int{}
	for _, name := range []string{"skc_daddr", "skc_rcv_saddr", "skc_dport", "skc_num", "skc_family", "skc_state", "skc_v6_daddr", "skc_v6_rcv_saddr"} {
		bits, ok := module.MemberOffset(sc, name)
		if !ok {
			t.Fatalf("struct sock_common has no member %s", name)
		}
		off[name] = int(bits / 8)
	}
	base := off["skc_daddr"]
	rel := func(name string) int { return off[name] - base }
	d6, s6 := rel("skc_v6_daddr"), rel("skc_v6_rcv_saddr")
	if rel("skc_rcv_saddr") != 4 || rel("skc_dport") != 12 || rel("skc_num") != 14 || rel("skc_family") != 16 ||
		rel("skc_state") != 18 || d6%8 != 0 || d6+16 > 88 || s6%8 != 0 || s6+16 > 88 {
		t.Errorf("struct sock_common offsets %v: parse_sk reads field by field on this kernel", off)
	}
}

// TestHasStructs checks the test that gates use_cast on read_hdr's types.
func TestHasStructs(t *testing.T) {
	u64 := &btf.Int{Name: "u64", Size: 8}
	in6 := &btf.Struct{Name: "in6_addr", Size: 16}
	cpustat := &btf.Struct{Name: "kernel_cpustat", Size: 80, Members: []btf.Member{
		{Name: "cpustat", Type: &btf.Array{Index: u64, Type: u64, Nelems: 10}},
	}}
	notStruct := &btf.Typedef{Name: "kernel_cpustat", Type: u64}
	for _, tc := range []struct {
		name  string
		types []btf.Type
		want  bool
	}{
		{"both", []btf.Type{in6, cpustat}, true},
		{"no kernel_cpustat", []btf.Type{in6}, false},
		{"kernel_cpustat not a struct", []btf.Type{in6, notStruct}, false},
		{"none", []btf.Type{u64}, false},
	} {
		b, err := btf.NewBuilder(tc.types, nil)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := b.Marshal(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		spec, err := btf.LoadSpecFromReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if got := hasStructs(spec, castTypes); got != tc.want {
			t.Errorf("%s: hasStructs = %v, want %v", tc.name, got, tc.want)
		}
	}
	if hasStructs(nil, castTypes) {
		t.Error("hasStructs(nil) = true")
	}
}
