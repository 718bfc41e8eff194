package module

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// DataSize is the per-event data budget in bytes: every module field of
// an event is read into this area (the original ipftrace had 64 bytes too).
const DataSize = 64

// MaxFields is the most fields all modules together may have (each is one
// bit of the event's validity mask and a few dozen BPF instructions).
const MaxFields = 16

// maxString bounds a string field (a char array) in bytes.
const maxString = 32

// formatKind is how a field's value is printed.
type formatKind uint8

const (
	fmtDec formatKind = iota
	fmtHex
	fmtString
	fmtEnum
	fmtFlags
	fmtBool
)

// names are the constants of an enum: value → name for enum:, single bits
// in ascending order for flags:.
type names struct {
	byValue map[uint64]string
	bits    []bitName
}

type bitName struct {
	bit  uint64
	name string
}

// slot is a resolved field: how BPF reads it and how userspace prints it.
type slot struct {
	name   string // output name
	module string
	expr   Expr
	format formatKind
	names  *names // enum:, flags:

	root   string   // skb or shinfo
	derefs []uint32 // p = root; p = *(u64 *)(p + d) for each d, NULL ends the path
	off    uint32   // offset of the value from the last pointer
	size   uint32   // bytes read: 1, 2, 4, 8, or the length of a string
	shift  uint8    // bitfield: bits to shift the read value right
	nbits  uint8    // bitfield: width (0: not a bitfield)
	signed bool
	be     bool // big-endian (__be16, __be32, __be64): swapped after the read
	str    bool
	ptr    bool // a pointer: hex, a JSON string (64-bit addresses do not fit a JSON number's 53 bits)

	match   *slotMatch
	dataOff uint32 // offset in the event's data area
}

// slotMatch is a match condition resolved against its field's type.
type slotMatch struct {
	op    Op
	value uint64 // integers: the operand (two's complement if negative)
	str   []byte // strings: the bytes to compare, with the NUL if it fits
}

// resolver resolves expressions against one BTF spec.
type resolver struct {
	spec     *btf.Spec
	enumIDs  EnumFinder          // nil: walk spec
	roots    map[string]btf.Type // struct sk_buff, struct skb_shared_info
	warnings []string            // of the field being resolved
}

// missingEnumError is an enum:/flags: name the kernel's BTF does not have.
type missingEnumError string

func (e missingEnumError) Error() string { return string(e) }

func newResolver(spec *btf.Spec) (*resolver, error) {
	r := &resolver{spec: spec, roots: map[string]btf.Type{}}
	for root, name := range map[string]string{"skb": "sk_buff", "shinfo": "skb_shared_info"} {
		var s *btf.Struct
		if err := spec.TypeByName(name, &s); err != nil {
			return nil, fmt.Errorf("kernel BTF: struct %s: %w", name, err)
		}
		r.roots[root] = s
	}
	return r, nil
}

// typeName spells a BTF type the way C would, for errors.
func typeName(t btf.Type) string {
	switch t := t.(type) {
	case *btf.Struct:
		return "struct " + orAnon(t.Name)
	case *btf.Union:
		return "union " + orAnon(t.Name)
	case *btf.Enum:
		return "enum " + orAnon(t.Name)
	case *btf.Pointer:
		return typeName(t.Target) + " *"
	case *btf.Array:
		return fmt.Sprintf("%s[%d]", typeName(t.Type), t.Nelems)
	case *btf.Typedef:
		return t.Name
	case *btf.Const:
		return "const " + typeName(t.Type)
	case *btf.Volatile:
		return "volatile " + typeName(t.Type)
	case *btf.Int:
		return t.Name
	case *btf.Void:
		return "void"
	case *btf.FuncProto:
		return "function"
	case nil:
		return "?"
	}
	return t.TypeName()
}

func orAnon(name string) string {
	if name == "" {
		return "(anonymous)"
	}
	return name
}

// bigEndianTypedefs are the kernel's network byte order integer types.
var bigEndianTypedefs = map[string]bool{"__be16": true, "__be32": true, "__be64": true}

// skipQualifiers strips typedefs and qualifiers, noting a big-endian
// typedef on the way.
func skipQualifiers(t btf.Type) (btf.Type, bool) {
	be := false
	for range 32 {
		switch v := t.(type) {
		case *btf.Typedef:
			if bigEndianTypedefs[v.Name] {
				be = true
			}
			t = v.Type
		case *btf.Const:
			t = v.Type
		case *btf.Volatile:
			t = v.Type
		case *btf.Restrict:
			t = v.Type
		case *btf.TypeTag:
			t = v.Type
		default:
			return t, be
		}
	}
	return t, be
}

// MemberOffset returns the bit offset of member name in the struct or union
// t, found as C finds it (in anonymous members too).
func MemberOffset(t btf.Type, name string) (btf.Bits, bool) {
	_, off, ok := findMember(t, name, 0)
	return off, ok
}

// findMember looks name up in a struct or union, descending into anonymous
// members as C does. It returns the member and its bit offset from the
// start of t.
func findMember(t btf.Type, name string, depth int) (btf.Member, btf.Bits, bool) {
	var members []btf.Member
	switch t := t.(type) {
	case *btf.Struct:
		members = t.Members
	case *btf.Union:
		members = t.Members
	default:
		return btf.Member{}, 0, false
	}
	for _, m := range members {
		if m.Name == name {
			return m, m.Offset, true
		}
	}
	if depth > 8 {
		return btf.Member{}, 0, false
	}
	for _, m := range members {
		if m.Name != "" {
			continue
		}
		inner, _ := skipQualifiers(m.Type)
		if found, off, ok := findMember(inner, name, depth+1); ok {
			return found, m.Offset + off, true
		}
	}
	return btf.Member{}, 0, false
}

// resolve turns an expression into a slot (without its data offset).
func (r *resolver) resolve(e Expr) (*slot, error) {
	s := &slot{expr: e, root: e.Root}
	// The root is a pointer held in a register: its first -> needs no load.
	var cur btf.Type = &btf.Pointer{Target: r.roots[e.Root]}
	inReg := true
	var off uint64 // bytes from the last pointer
	var bitOff, bitSize btf.Bits
	for i, st := range e.Steps {
		where := e.prefix(i + 1)
		if bitSize != 0 {
			return nil, fmt.Errorf("%s: %s is a bitfield", where, e.prefix(i))
		}
		t, _ := skipQualifiers(cur)
		switch st.Kind {
		case Arrow:
			p, ok := t.(*btf.Pointer)
			if !ok {
				return nil, fmt.Errorf("%s: %s is %s, not a pointer (use . for a member of a struct)", where, e.prefix(i), typeName(cur))
			}
			if !inReg {
				if off > 1<<30 {
					return nil, fmt.Errorf("%s: offset too large", where)
				}
				s.derefs = append(s.derefs, uint32(off))
			}
			inReg = false
			off = 0
			t, _ = skipQualifiers(p.Target)
		case Dot:
			if _, ok := t.(*btf.Pointer); ok {
				return nil, fmt.Errorf("%s: %s is a pointer (%s); use ->", where, e.prefix(i), typeName(cur))
			}
		case Index:
			a, ok := t.(*btf.Array)
			if !ok {
				return nil, fmt.Errorf("%s: %s is %s, not an array", where, e.prefix(i), typeName(cur))
			}
			if uint32(st.Index) >= a.Nelems {
				return nil, fmt.Errorf("%s: index %d out of range, %s has %d elements", where, st.Index, e.prefix(i), a.Nelems)
			}
			esz, err := btf.Sizeof(a.Type)
			if err != nil {
				return nil, fmt.Errorf("%s: size of %s: %w", where, typeName(a.Type), err)
			}
			off += uint64(st.Index) * uint64(esz)
			cur = a.Type
			continue
		}
		// Arrow and Dot: a member of the struct or union t.
		switch t.(type) {
		case *btf.Struct, *btf.Union:
		default:
			return nil, fmt.Errorf("%s: %s is not a struct or union", where, typeName(t))
		}
		m, mOff, ok := findMember(t, st.Member, 0)
		if !ok {
			return nil, fmt.Errorf("%s: %s has no member %s", where, typeName(t), st.Member)
		}
		if m.BitfieldSize != 0 {
			bitOff = btf.Bits(off*8) + mOff
			bitSize = m.BitfieldSize
		} else {
			if mOff%8 != 0 {
				return nil, fmt.Errorf("%s: member at bit offset %d is not byte aligned", where, mOff)
			}
			off += uint64(mOff / 8)
		}
		cur = m.Type
	}
	if off > 1<<30 {
		return nil, fmt.Errorf("%s: offset too large", e)
	}
	if inReg {
		return nil, fmt.Errorf("%s: want a member, such as %s->len", e, e.Root)
	}
	leaf, be := skipQualifiers(cur)
	switch t := leaf.(type) {
	case *btf.Int:
		s.size = t.Size
		s.signed = t.Encoding == btf.Signed
		if t.Encoding == btf.Bool {
			s.format = fmtBool
		}
	case *btf.Enum:
		s.size = t.Size
		s.signed = t.Signed
		if t.Name != "" {
			s.format = fmtEnum
			s.names = enumNames([]*btf.Enum{t}, "")
		}
	case *btf.Pointer:
		s.size = 8
		s.format = fmtHex
		s.ptr = true
	case *btf.Array:
		el, _ := skipQualifiers(t.Type)
		if in, ok := el.(*btf.Int); ok && in.Size == 1 && bitSize == 0 {
			s.str = true
			s.format = fmtString
			s.size = min(t.Nelems, maxString)
			break
		}
		return nil, fmt.Errorf("%s: %s is not a scalar or string (only arrays of char are strings)", e, typeName(cur))
	default:
		return nil, fmt.Errorf("%s: %s is not a scalar or string", e, typeName(cur))
	}
	if !s.str && s.size != 1 && s.size != 2 && s.size != 4 && s.size != 8 {
		return nil, fmt.Errorf("%s: %s has size %d, want 1, 2, 4 or 8", e, typeName(cur), s.size)
	}
	if s.size == 1 {
		be = false
	}
	s.be = be
	if bitSize != 0 {
		if be {
			return nil, fmt.Errorf("%s: big-endian bitfields are not supported", e)
		}
		// Read the bytes that hold the bitfield, then shift and mask.
		start := uint64(bitOff / 8)
		shift := uint64(bitOff % 8)
		need := (shift + uint64(bitSize) + 7) / 8
		size := uint64(1)
		for size < need {
			size *= 2
		}
		if size > 8 {
			return nil, fmt.Errorf("%s: bitfield spans more than 8 bytes", e)
		}
		s.off = uint32(start)
		s.size = uint32(size)
		s.shift = uint8(shift)
		s.nbits = uint8(bitSize)
		s.signed = false
		return s, nil
	}
	s.off = uint32(off)
	return s, nil
}

// enumNames collects the constants of enums (those whose names start with
// prefix, if set).
func enumNames(enums []*btf.Enum, prefix string) *names {
	n := &names{byValue: map[uint64]string{}}
	for _, en := range enums {
		for _, v := range en.Values {
			if prefix != "" && !strings.HasPrefix(v.Name, prefix) {
				continue
			}
			if _, dup := n.byValue[v.Value]; !dup {
				n.byValue[v.Value] = v.Name
			}
			if v.Value != 0 && bits.OnesCount64(v.Value) == 1 {
				n.bits = append(n.bits, bitName{v.Value, v.Name})
			}
		}
	}
	// Ascending bit order, the first name of each bit.
	slices.SortStableFunc(n.bits, func(a, b bitName) int { return cmp.Compare(a.bit, b.bit) })
	n.bits = slices.CompactFunc(n.bits, func(a, b bitName) bool { return a.bit == b.bit })
	return n
}

// EnumFinder returns the type IDs, in the spec modules are resolved
// against, of the enums that have a constant whose name starts with prefix
// (see btfscan.EnumsWithPrefix).
type EnumFinder func(prefix string) ([]btf.TypeID, error)

// enumsWithPrefix returns the enums that have a constant whose name
// starts with prefix.
func (r *resolver) enumsWithPrefix(prefix string) ([]*btf.Enum, error) {
	var enums []*btf.Enum
	if r.enumIDs != nil {
		ids, err := r.enumIDs(prefix)
		if err != nil {
			return nil, fmt.Errorf("look up enum constants %s*: %w", prefix, err)
		}
		for _, id := range ids {
			t, err := r.spec.TypeByID(id)
			if err != nil {
				return nil, fmt.Errorf("look up enum constants %s*: %w", prefix, err)
			}
			en, ok := t.(*btf.Enum)
			if !ok {
				return nil, fmt.Errorf("look up enum constants %s*: type %d is %s, not an enum", prefix, id, typeName(t))
			}
			enums = append(enums, en)
		}
		return enums, nil
	}
	for t, err := range r.spec.All() {
		if err != nil {
			return nil, fmt.Errorf("read kernel BTF: %w", err)
		}
		en, ok := t.(*btf.Enum)
		if !ok {
			continue
		}
		for _, v := range en.Values {
			if strings.HasPrefix(v.Name, prefix) {
				enums = append(enums, en)
				break
			}
		}
	}
	return enums, nil
}

// lookupEnum resolves the NAME of enum:NAME and flags:NAME: an enum type,
// or with a trailing *, the constants of any enum whose names start with
// the prefix (for the kernel's anonymous enums, such as SKB_GSO_*).
func (r *resolver) lookupEnum(name string) (*names, error) {
	if prefix, ok := strings.CutSuffix(name, "*"); ok {
		if prefix == "" {
			return nil, errors.New("empty enum constant prefix")
		}
		enums, err := r.enumsWithPrefix(prefix)
		if err != nil {
			return nil, err
		}
		if len(enums) == 0 {
			return nil, missingEnumError(fmt.Sprintf("no enum constants named %s in kernel BTF", name))
		}
		return enumNames(enums, prefix), nil
	}
	types, err := r.spec.AnyTypesByName(name)
	if err != nil && !errors.Is(err, btf.ErrNotFound) {
		return nil, fmt.Errorf("look up enum %s: %w", name, err)
	}
	var enums []*btf.Enum
	for _, t := range types {
		if en, ok := t.(*btf.Enum); ok {
			enums = append(enums, en)
		}
	}
	if len(enums) == 0 {
		return nil, missingEnumError(fmt.Sprintf("no enum %s in kernel BTF", name))
	}
	return enumNames(enums[:1], ""), nil
}

// applyFormat sets the slot's format from a field's format string.
func (r *resolver) applyFormat(s *slot, f string) error {
	kind, arg, _ := strings.Cut(f, ":")
	if (kind == "enum" || kind == "flags") != (arg != "") {
		return fmt.Errorf("format %q: want dec, hex, string, bool, enum:NAME or flags:NAME", f)
	}
	if s.str && kind != "" && kind != "string" {
		return fmt.Errorf("format %s: %s is a string (char array); want format string", f, s.expr)
	}
	switch kind {
	case "":
		return nil
	case "dec":
		s.format = fmtDec
	case "hex":
		s.format = fmtHex
	case "bool":
		s.format = fmtBool
	case "string":
		if !s.str {
			return fmt.Errorf("format string: %s is not an array of char", s.expr)
		}
	case "enum", "flags":
		n, err := r.lookupEnum(arg)
		var missing missingEnumError
		if errors.As(err, &missing) {
			// Not every enum of the sources is in BTF (AF_* are macros,
			// for example): print numbers rather than refuse.
			r.warnings = append(r.warnings, fmt.Sprintf("format %s: %v; printing numbers", f, err))
			s.format = fmtDec
			return nil
		}
		if err != nil {
			return fmt.Errorf("format %s: %w", f, err)
		}
		s.names = n
		s.format = fmtEnum
		if kind == "flags" {
			s.format = fmtFlags
		}
	default:
		return fmt.Errorf("format %q: want dec, hex, string, bool, enum:NAME or flags:NAME", f)
	}
	return nil
}

// applyMatch resolves a match condition against the slot's type.
func (s *slot) applyMatch(m Match) error {
	if s.str {
		if m.Op != OpEq && m.Op != OpNe {
			return fmt.Errorf("match %s %s: strings support == and != only", m.Op, m.Operand)
		}
		if uint32(len(m.Operand)) > s.size {
			return fmt.Errorf("match %s %q: longer than the %d bytes read", m.Op, m.Operand, s.size)
		}
		b := []byte(m.Operand)
		if uint32(len(b)) < s.size {
			b = append(b, 0)
		}
		s.match = &slotMatch{op: m.Op, str: b}
		return nil
	}
	if m.Quoted {
		return fmt.Errorf("match %s %q: %s is not a string", m.Op, m.Operand, s.expr)
	}
	v, ok := parseInt(m.Operand)
	switch {
	case ok:
	case m.Operand == "true":
		v, ok = 1, s.format == fmtBool
	case m.Operand == "false":
		v, ok = 0, s.format == fmtBool
	}
	if !ok && s.names != nil {
		ok = false
		for val, name := range s.names.byValue {
			if name == m.Operand {
				v, ok = val, true
				break
			}
		}
	}
	if !ok {
		want := "a number"
		if s.format == fmtBool {
			want += ", true or false"
		}
		if s.names != nil {
			want += " or a constant of the field's enum"
		}
		return fmt.Errorf("match %s %s: want %s", m.Op, m.Operand, want)
	}
	s.match = &slotMatch{op: m.Op, value: v}
	return nil
}
