package btfscan

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// CORE is what loading CO-RE BPF programs needs from the kernel's BTF, cut
// down from the whole of it: cilium/ebpf parses all of vmlinux (and every
// module's BTF) for relocations and kfuncs, a third of the start-up under
// emulation, where this loads in a few milliseconds and is cached with the
// scan.
type CORE struct {
	// BTF holds a copy of every kernel type named in Options.CORETypes, in
	// raw BTF: the full layout of each, but every pointer in it leads to
	// void (a CO-RE relocation reads one level of a type; a chain of
	// pointers is one relocation per type, each rooted at a named type).
	BTF []byte
	// KernelIDs maps the ID of each named type in BTF to its ID in the
	// kernel's BTF (for relocations that ask for a kernel type ID).
	KernelIDs map[uint32]uint32
	// Kfuncs maps each function of Options.Kfuncs that vmlinux has to its
	// BTF ID.
	Kfuncs map[string]uint32
}

// Spec parses c.BTF.
func (c *CORE) Spec() (*btf.Spec, error) {
	spec, err := btf.LoadSpecFromReader(bytes.NewReader(c.BTF))
	if err != nil {
		return nil, fmt.Errorf("CO-RE types: %w", err)
	}
	return spec, nil
}

// buildCORE copies the named types and records the kfuncs' IDs from the
// kernel BTF spec k.
func buildCORE(k *btf.Spec, names, kfuncs []string) (*CORE, error) {
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
