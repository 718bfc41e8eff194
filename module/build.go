package module

import (
	"fmt"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// Program is the compiled form of the -m modules: the fields every event
// carries, their layout in the event's data area and the BPF code that
// reads them.
type Program struct {
	slots    []*slot
	warnings []string
	shinfo   *shinfoLayout
	insns    asm.Instructions
}

// shinfoLayout says how BPF finds skb_shinfo(skb): skb->head + skb->end,
// or skb->end itself where end is a pointer (32-bit kernels).
type shinfoLayout struct {
	headOff, endOff uint32
	endSize         uint32
	endIsPtr        bool
}

// Build loads the modules named by the -m arguments (built-in names or
// YAML paths) and resolves their fields against spec, the running kernel's
// BTF. Fields identical in two modules (same name, expression and format,
// no match) are read once; a name used by two different fields is printed
// as module.name for the later ones. The fields must fit MaxFields and the
// DataSize-byte data area.
//
// find, if not nil, finds the enums of flags:PREFIX* and enum:PREFIX*
// formats without walking every type of spec.
func Build(args []string, spec *btf.Spec, find EnumFinder) (*Program, error) {
	var mods []*Module
	seen := map[string]bool{}
	for _, a := range args {
		m, err := Load(a)
		if err != nil {
			return nil, err
		}
		if seen[m.Name] {
			continue // -m gso -m gso
		}
		seen[m.Name] = true
		mods = append(mods, m)
	}
	return Compile(mods, spec, find)
}

// Compile resolves and lays out the fields of mods against spec and
// generates their BPF code (find: as for Build).
func Compile(mods []*Module, spec *btf.Spec, find EnumFinder) (*Program, error) {
	r, err := newResolver(spec)
	if err != nil {
		return nil, err
	}
	r.enumIDs = find
	p := &Program{}
	type key struct{ name, expr, format string }
	shared := map[key]bool{}
	names := map[string]bool{}
	for _, m := range mods {
		for _, f := range m.Fields {
			e, err := ParseExpr(f.Expr)
			if err != nil {
				return nil, fmt.Errorf("module %s: field %s: %w", m.source, f.Name, err)
			}
			k := key{f.Name, e.String(), f.Format}
			if f.Match == "" && shared[k] {
				continue
			}
			s, err := r.resolve(e)
			r.warnings = r.warnings[:0]
			if err == nil {
				err = r.applyFormat(s, f.Format)
			}
			for _, w := range r.warnings {
				p.warnings = append(p.warnings, fmt.Sprintf("module %s: field %s: %s", m.source, f.Name, w))
			}
			if err == nil && f.Match != "" {
				var mt Match
				if mt, err = ParseMatch(f.Match); err == nil {
					err = s.applyMatch(mt)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("module %s: field %s: %w", m.source, f.Name, err)
			}
			if f.Match == "" {
				shared[k] = true
			}
			s.module = m.Name
			s.name = f.Name
			if names[s.name] {
				s.name = m.Name + "." + f.Name
			}
			names[s.name] = true
			p.slots = append(p.slots, s)
		}
	}
	if len(p.slots) > MaxFields {
		return nil, fmt.Errorf("modules: too many fields: %d, at most %d", len(p.slots), MaxFields)
	}
	// Lay the fields out in order, each aligned to its size (BPF stack
	// accesses must be aligned).
	off := uint32(0)
	for _, s := range p.slots {
		align := uint32(1)
		if !s.str {
			align = s.size
		}
		off = (off + align - 1) / align * align
		s.dataOff = off
		off += s.size
	}
	if off > DataSize {
		return nil, fmt.Errorf("modules: data area too large: the fields need %d bytes, the budget is %d bytes per event", off, DataSize)
	}
	for _, s := range p.slots {
		if s.root == "shinfo" {
			if p.shinfo, err = shinfoOf(r); err != nil {
				return nil, err
			}
			break
		}
	}
	p.insns, err = p.generate()
	if err != nil {
		return nil, err
	}
	return p, nil
}

// shinfoOf finds skb->head and skb->end.
func shinfoOf(r *resolver) (*shinfoLayout, error) {
	skb := r.roots["skb"]
	head, headOff, ok := findMember(skb, "head", 0)
	if !ok {
		return nil, fmt.Errorf("shinfo: struct sk_buff has no member head")
	}
	if t, _ := skipQualifiers(head.Type); !isPointer(t) {
		return nil, fmt.Errorf("shinfo: sk_buff.head is %s, not a pointer", typeName(head.Type))
	}
	end, endOff, ok := findMember(skb, "end", 0)
	if !ok {
		return nil, fmt.Errorf("shinfo: struct sk_buff has no member end")
	}
	l := &shinfoLayout{headOff: uint32(headOff / 8), endOff: uint32(endOff / 8)}
	switch t, _ := skipQualifiers(end.Type); t := t.(type) {
	case *btf.Pointer:
		l.endSize, l.endIsPtr = 8, true
	case *btf.Int:
		if t.Size != 4 && t.Size != 8 {
			return nil, fmt.Errorf("shinfo: sk_buff.end has size %d", t.Size)
		}
		l.endSize = t.Size
	default:
		return nil, fmt.Errorf("shinfo: sk_buff.end is %s", typeName(end.Type))
	}
	return l, nil
}

// Warnings returns what the modules asked for that this kernel cannot
// give, such as an enum that is not in its BTF (the field prints numbers).
func (p *Program) Warnings() []string { return p.warnings }

func isPointer(t btf.Type) bool {
	_, ok := t.(*btf.Pointer)
	return ok
}

// Instructions returns the body of the fill_data subprogram.
func (p *Program) Instructions() asm.Instructions { return p.insns }

// Len returns the number of fields.
func (p *Program) Len() int { return len(p.slots) }

// HasMatch reports whether some field carries a match condition.
func (p *Program) HasMatch() bool {
	for _, s := range p.slots {
		if s.match != nil {
			return true
		}
	}
	return false
}

// Size returns the bytes of the data area the fields use.
func (p *Program) Size() int {
	n := 0
	for _, s := range p.slots {
		n = max(n, int(s.dataOff+s.size))
	}
	return n
}
