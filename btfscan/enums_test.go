package btfscan

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func TestEnumsWithPrefix(t *testing.T) {
	u32 := &btf.Int{Name: "unsigned int", Size: 4}
	gso := &btf.Enum{Size: 4, Values: []btf.EnumValue{{Name: "SKB_GSO_TCPV4", Value: 1}, {Name: "SKB_GSO_TCPV6", Value: 16}}}
	other := &btf.Enum{Name: "other", Size: 4, Values: []btf.EnumValue{{Name: "OTHER_A", Value: 1}}}
	big := &btf.Enum{Name: "big", Size: 8, Values: []btf.EnumValue{{Name: "SKB_GSO_HUGE", Value: 1 << 40}}}
	b, err := btf.NewBuilder([]btf.Type{u32, gso, other, big}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "vmlinux")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := btf.LoadSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prefix string
		want   []btf.Type
	}{
		{"SKB_GSO_", []btf.Type{gso, big}},
		{"OTHER", []btf.Type{other}},
		{"NOPE", nil},
	} {
		ids, err := EnumsWithPrefix(path, tc.prefix)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, id := range ids {
			typ, err := spec.TypeByID(id)
			if err != nil {
				t.Fatal(err)
			}
			en, ok := typ.(*btf.Enum)
			if !ok {
				t.Fatalf("%s: id %d is %v, not an enum", tc.prefix, id, typ)
			}
			names = append(names, en.Values[0].Name)
		}
		var want []string
		for _, w := range tc.want {
			want = append(want, w.(*btf.Enum).Values[0].Name)
		}
		if !slices.Equal(names, want) {
			t.Errorf("EnumsWithPrefix(%q): enums starting with %v, want %v", tc.prefix, names, want)
		}
	}
	if _, err := EnumsWithPrefix(filepath.Join(t.TempDir(), "missing"), "X"); err == nil {
		t.Error("no error for a missing file")
	}
}
