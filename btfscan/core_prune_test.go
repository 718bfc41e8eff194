package btfscan

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// pruneCORE is the reference for rawCORE: it copies the named types and
// records the kfuncs' IDs from the kernel BTF spec k with cilium/ebpf's
// types and builder (what Scan did until it cost a 15 MB transient).
func pruneCORE(k *btf.Spec, names, kfuncs []string) (*CORE, error) {
	c := &CORE{KernelIDs: map[uint32]uint32{}, Kfuncs: map[string]uint32{}}
	b, err := btf.NewBuilder(nil, nil)
	if err != nil {
		return nil, err
	}
	p := pruner{}
	for _, name := range names {
		types, err := k.AnyTypesByName(name)
		if errors.Is(err, btf.ErrNotFound) {
			continue // relocations against it fail as they would on the full BTF
		}
		if err != nil {
			return nil, fmt.Errorf("CO-RE type %s: %w", name, err)
		}
		for _, t := range types {
			kid, err := k.TypeID(t)
			if err != nil {
				return nil, fmt.Errorf("CO-RE type %s: %w", name, err)
			}
			id, err := b.Add(p.copy(t))
			if err != nil {
				return nil, fmt.Errorf("CO-RE type %s: %w", name, err)
			}
			c.KernelIDs[uint32(id)] = uint32(kid)
		}
	}
	for _, name := range kfuncs {
		var fn *btf.Func
		if err := k.TypeByName(name, &fn); err != nil {
			continue // not in this kernel
		}
		id, err := k.TypeID(fn)
		if err != nil {
			return nil, fmt.Errorf("kfunc %s: %w", name, err)
		}
		c.Kfuncs[name] = uint32(id)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("CO-RE types: %w", err)
	}
	c.BTF = raw
	return c, nil
}

// pruner copies types with every pointer leading to void.
type pruner map[btf.Type]btf.Type

func (p pruner) copy(t btf.Type) btf.Type {
	if c, ok := p[t]; ok {
		return c
	}
	switch v := t.(type) {
	case *btf.Pointer:
		c := &btf.Pointer{Target: &btf.Void{}}
		p[t] = c
		return c
	case *btf.Struct:
		c := &btf.Struct{Name: v.Name, Size: v.Size}
		p[t] = c
		c.Members = p.members(v.Members)
		return c
	case *btf.Union:
		c := &btf.Union{Name: v.Name, Size: v.Size}
		p[t] = c
		c.Members = p.members(v.Members)
		return c
	case *btf.Array:
		c := &btf.Array{Nelems: v.Nelems}
		p[t] = c
		c.Index, c.Type = p.copy(v.Index), p.copy(v.Type)
		return c
	case *btf.Typedef:
		c := &btf.Typedef{Name: v.Name}
		p[t] = c
		c.Type = p.copy(v.Type)
		return c
	case *btf.Const:
		c := &btf.Const{}
		p[t] = c
		c.Type = p.copy(v.Type)
		return c
	case *btf.Volatile:
		c := &btf.Volatile{}
		p[t] = c
		c.Type = p.copy(v.Type)
		return c
	case *btf.Restrict:
		c := &btf.Restrict{}
		p[t] = c
		c.Type = p.copy(v.Type)
		return c
	case *btf.TypeTag:
		c := &btf.TypeTag{Value: v.Value}
		p[t] = c
		c.Type = p.copy(v.Type)
		return c
	case *btf.Int, *btf.Enum, *btf.Float, *btf.Fwd, *btf.Void:
		c := btf.Copy(t)
		p[t] = c
		return c
	}
	// Functions, variables and the like are not part of a layout.
	c := &btf.Void{}
	p[t] = c
	return c
}

func (p pruner) members(ms []btf.Member) []btf.Member {
	out := make([]btf.Member, len(ms))
	for i, m := range ms {
		m.Type = p.copy(m.Type)
		out[i] = m
	}
	return out
}

// TestRawCORE checks rawCORE against pruneCORE on the kernel's BTF: the
// same types, each with the same layout all the way down (every pointer to
// void), the same kernel IDs and the same kfuncs, and that it decodes no
// more than the raw spec.
func TestRawCORE(t *testing.T) {
	if _, err := os.Stat(DefaultBTFPath); err != nil {
		t.Skipf("TestRawCORE: SKIPPED, no kernel BTF at %s: %v", DefaultBTFPath, err)
	}
	names := []string{"sk_buff", "sock", "net_device", "net", "in6_addr", "skb_drop_reason", "no_such_type"}
	kfuncs := []string{"bpf_rdonly_cast", "bpf_cast_to_kern_ctx", "no_such_kfunc"}
	raw, err := loadRaw(DefaultBTFPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rawCORE(raw, names, kfuncs)
	if err != nil {
		t.Fatal(err)
	}
	k, err := btf.LoadSpec(DefaultBTFPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pruneCORE(k, names, kfuncs)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Kfuncs, want.Kfuncs) {
		t.Errorf("kfuncs: got %v, want %v", got.Kfuncs, want.Kfuncs)
	}
	if len(got.Kfuncs) == 0 {
		t.Errorf("no kfunc found: the comparison checks nothing")
	}
	gotTypes, gotN := coreGraphs(t, got)
	wantTypes, wantN := coreGraphs(t, want)
	if len(gotTypes) < 4 {
		t.Fatalf("only %d named types copied: %v", len(gotTypes), slices.Collect(maps.Keys(gotTypes)))
	}
	for key, w := range wantTypes {
		if g, ok := gotTypes[key]; !ok {
			t.Errorf("%s missing", key)
		} else if g != w {
			t.Errorf("%s differs:\n got %.300s\nwant %.300s", key, g, w)
		}
	}
	for key := range gotTypes {
		if _, ok := wantTypes[key]; !ok {
			t.Errorf("%s copied but not by the reference", key)
		}
	}
	t.Logf("%d named types, %d types in all (reference %d), %d bytes of BTF (reference %d)",
		len(gotTypes), gotN, wantN, len(got.BTF), len(want.BTF))
}

// coreGraphs parses c.BTF and renders each type of c.KernelIDs, keyed by
// its kernel ID, kind and name; it also returns the number of types.
func coreGraphs(t *testing.T, c *CORE) (map[string]string, int) {
	t.Helper()
	spec, err := c.Spec()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for id, kid := range c.KernelIDs {
		typ, err := spec.TypeByID(btf.TypeID(id))
		if err != nil {
			t.Fatalf("kernel type %d: %v", kid, err)
		}
		var b strings.Builder
		renderType(&b, typ, map[btf.Type]bool{}, 0)
		out[fmt.Sprintf("%d %T %s", kid, typ, typ.TypeName())] = b.String()
	}
	n := 0
	for range spec.All() {
		n++
	}
	return out, n
}

// renderType writes the layout of typ, following every reference; a
// struct or union already in seen is written by name.
func renderType(b *strings.Builder, typ btf.Type, seen map[btf.Type]bool, depth int) {
	if depth > 64 {
		b.WriteString("...")
		return
	}
	switch v := typ.(type) {
	case *btf.Struct, *btf.Union:
		if seen[typ] {
			fmt.Fprintf(b, "(%s)", typ.TypeName())
			return
		}
		seen[typ] = true
		var ms []btf.Member
		if s, ok := v.(*btf.Struct); ok {
			fmt.Fprintf(b, "struct %s %d {", s.Name, s.Size)
			ms = s.Members
		} else {
			u := v.(*btf.Union)
			fmt.Fprintf(b, "union %s %d {", u.Name, u.Size)
			ms = u.Members
		}
		for _, m := range ms {
			fmt.Fprintf(b, "%s@%d:%d ", m.Name, m.Offset, m.BitfieldSize)
			renderType(b, m.Type, seen, depth+1)
			b.WriteString("; ")
		}
		b.WriteString("}")
	case *btf.Pointer:
		b.WriteString("*")
		renderType(b, v.Target, seen, depth+1)
	case *btf.Array:
		fmt.Fprintf(b, "[%d]", v.Nelems)
		renderType(b, v.Type, seen, depth+1)
	case *btf.Typedef:
		fmt.Fprintf(b, "typedef %s=", v.Name)
		renderType(b, v.Type, seen, depth+1)
	case *btf.Const:
		b.WriteString("const ")
		renderType(b, v.Type, seen, depth+1)
	case *btf.Volatile:
		b.WriteString("volatile ")
		renderType(b, v.Type, seen, depth+1)
	case *btf.Restrict:
		b.WriteString("restrict ")
		renderType(b, v.Type, seen, depth+1)
	case *btf.TypeTag:
		fmt.Fprintf(b, "tag(%s) ", v.Value)
		renderType(b, v.Type, seen, depth+1)
	default:
		fmt.Fprintf(b, "%v", typ) // Int, Enum, Float, Fwd, Void: formatted in full
	}
}
