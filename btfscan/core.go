package btfscan

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

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

// rawCORE copies the types named names out of the vmlinux BTF s, every
// pointer in them leading to void, and looks up the FUNC ID of each kfunc
// (left out when vmlinux has none or several). It works on the raw BTF:
// with cilium/ebpf, finding sk_buff inflated every type it reaches through
// pointers, a 15 MB transient at the start of each fresh scan.
func rawCORE(s *rawSpec, names, kfuncs []string) (*CORE, error) {
	w := coreWriter{
		src:    s,
		ids:    map[uint32]uint32{},
		strs:   []byte{0},
		strOff: map[string]uint32{},
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	c := &CORE{KernelIDs: map[uint32]uint32{}, Kfuncs: map[string]uint32{}}
	for i, off := range s.offs {
		r := s.types[off:]
		if !want[s.name(le32(r))] || !layoutKind(le32(r[4:])>>24&0x1f) {
			continue
		}
		kid := s.firstID + uint32(i)
		id, err := w.copy(kid, 0)
		if err != nil {
			return nil, fmt.Errorf("CO-RE type %s: %w", s.name(le32(r)), err)
		}
		c.KernelIDs[id] = kid
	}
	for name, id := range findIDs(s, kfuncs, nil).Funcs {
		c.Kfuncs[name] = uint32(id)
	}
	c.BTF = w.marshal()
	return c, nil
}

// layoutKind reports whether a kind is part of a data layout; the others
// (functions, variables, sections, declaration tags) are copied as void.
func layoutKind(kind uint32) bool {
	switch kind {
	case kFunc, kFuncProto, kVar, kDatasec, kDeclTag:
		return false
	}
	return kind != 0
}

// coreWriter builds raw BTF from types copied out of src.
type coreWriter struct {
	src    *rawSpec
	ids    map[uint32]uint32 // src ID → new ID
	recs   [][]byte          // record of new ID i+1
	strs   []byte            // string section
	strOff map[string]uint32 // offset of each string in strs
}

// str copies the string at offset off of src into the new string section.
func (w *coreWriter) str(off uint32) uint32 {
	name := w.src.name(off)
	if name == "" {
		return 0
	}
	if o, ok := w.strOff[name]; ok {
		return o
	}
	o := uint32(len(w.strs))
	w.strs = append(append(w.strs, name...), 0)
	w.strOff[strings.Clone(name)] = o
	return o
}

// copy copies type id and the types it refers to, except through pointers,
// and returns its new ID (0 for void and the kinds that are no layout).
func (w *coreWriter) copy(id uint32, depth int) (uint32, error) {
	if id == 0 {
		return 0, nil
	}
	if n, ok := w.ids[id]; ok {
		return n, nil
	}
	if depth > 64 {
		return 0, fmt.Errorf("type %d: nested too deep", id)
	}
	_, r, ok := w.src.rec(id)
	if !ok {
		return 0, fmt.Errorf("type %d: no such type", id)
	}
	info := le32(r[4:])
	kind, vlen := info>>24&0x1f, int(info&0xffff)
	if !layoutKind(kind) {
		w.ids[id] = 0
		return 0, nil
	}
	// The ID is taken before the referenced types are copied, and the
	// record is filled in after.
	w.recs = append(w.recs, nil)
	n := uint32(len(w.recs))
	w.ids[id] = n
	rec := binary.LittleEndian.AppendUint32(nil, w.str(le32(r)))
	rec = binary.LittleEndian.AppendUint32(rec, info)
	sizeType := le32(r[8:])
	var err error
	switch kind {
	case kPtr:
		sizeType = 0 // to void
	case kTypedef, kVolatile, kConst, kRestrict, kTypeTag:
		if sizeType, err = w.copy(sizeType, depth+1); err != nil {
			return 0, err
		}
	}
	rec = binary.LittleEndian.AppendUint32(rec, sizeType)
	extra := r[btfTypeSize:]
	switch kind {
	case kInt:
		rec = append(rec, extra[:4]...)
	case kArray:
		elem, err := w.copy(le32(extra), depth+1)
		if err != nil {
			return 0, err
		}
		index, err := w.copy(le32(extra[4:]), depth+1)
		if err != nil {
			return 0, err
		}
		rec = binary.LittleEndian.AppendUint32(rec, elem)
		rec = binary.LittleEndian.AppendUint32(rec, index)
		rec = append(rec, extra[8:12]...)
	case kStruct, kUnion:
		for i := range vlen {
			m := extra[12*i:]
			typ, err := w.copy(le32(m[4:]), depth+1)
			if err != nil {
				return 0, err
			}
			rec = binary.LittleEndian.AppendUint32(rec, w.str(le32(m)))
			rec = binary.LittleEndian.AppendUint32(rec, typ)
			rec = append(rec, m[8:12]...)
		}
	case kEnum:
		for i := range vlen {
			v := extra[8*i:]
			rec = binary.LittleEndian.AppendUint32(rec, w.str(le32(v)))
			rec = append(rec, v[4:8]...)
		}
	case kEnum64:
		for i := range vlen {
			v := extra[12*i:]
			rec = binary.LittleEndian.AppendUint32(rec, w.str(le32(v)))
			rec = append(rec, v[4:12]...)
		}
	}
	w.recs[n-1] = rec
	return n, nil
}

// marshal returns the raw BTF: header, type section, string section.
func (w *coreWriter) marshal() []byte {
	typeLen := 0
	for _, r := range w.recs {
		typeLen += len(r)
	}
	le := binary.LittleEndian
	b := le.AppendUint16(nil, btfMagic)
	b = append(b, 1, 0) // version, flags
	b = le.AppendUint32(b, btfHeaderSize)
	b = le.AppendUint32(b, 0)               // type_off
	b = le.AppendUint32(b, uint32(typeLen)) // type_len
	b = le.AppendUint32(b, uint32(typeLen)) // str_off
	b = le.AppendUint32(b, uint32(len(w.strs)))
	for _, r := range w.recs {
		b = append(b, r...)
	}
	return append(b, w.strs...)
}
