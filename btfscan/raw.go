package btfscan

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"unsafe"
)

// A minimal reader of raw BTF (kernel Documentation/bpf/btf.rst), enough to
// classify functions and tracepoints without inflating every type into Go
// objects the way btf.LoadSpec does. It keeps the type section as bytes and
// one offset per type ID.

const (
	btfMagic      = 0xeb9f
	btfHeaderSize = 24 // magic, version, flags, hdr_len, type_off/len, str_off/len
	btfTypeSize   = 12 // name_off, info, size/type

	// maxResolveDepth bounds typedef/qualifier chains, as btf.UnderlyingType.
	maxResolveDepth = 32
)

// BTF kinds.
const (
	kInt       = 1
	kPtr       = 2
	kArray     = 3
	kStruct    = 4
	kUnion     = 5
	kEnum      = 6
	kFwd       = 7
	kTypedef   = 8
	kVolatile  = 9
	kConst     = 10
	kRestrict  = 11
	kFunc      = 12
	kFuncProto = 13
	kVar       = 14
	kDatasec   = 15
	kFloat     = 16
	kDeclTag   = 17
	kTypeTag   = 18
	kEnum64    = 19
	kMax       = kEnum64
)

// badID is what resolve returns for a dangling reference or a cycle.
const badID = math.MaxUint32

// rawSpec is one BTF blob: vmlinux (base == nil) or a module's split BTF.
type rawSpec struct {
	base    *rawSpec
	firstID uint32   // ID of the first type in types: 1 for a base, base's last ID + 1 for split BTF
	types   []byte   // type section, little-endian
	offs    []uint32 // offset in types of the record of each ID, from firstID
	strs    []byte   // own string section
	strBase uint32   // string offset of strs[0]: the base's string section length for split BTF
	class   []uint8  // memoized paramClass of each ID, from firstID
}

// parseRaw parses raw BTF. base is nil for vmlinux and the vmlinux spec for
// module (split) BTF. The spec keeps references into data.
func parseRaw(data []byte, base *rawSpec) (*rawSpec, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file, not BTF")
	}
	if len(data) < 2 || binary.LittleEndian.Uint16(data) != btfMagic && binary.BigEndian.Uint16(data) != btfMagic {
		return nil, errors.New("not a BTF file (bad magic)")
	}
	if len(data) < btfHeaderSize {
		return nil, fmt.Errorf("truncated header (%d bytes)", len(data))
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if binary.LittleEndian.Uint16(data) != btfMagic {
		bo = binary.BigEndian
	}
	if v := data[2]; v != 1 {
		return nil, fmt.Errorf("unsupported BTF version %d", v)
	}
	if f := data[3]; f != 0 {
		return nil, fmt.Errorf("unsupported BTF header flags %#x", f)
	}
	hdrLen := bo.Uint32(data[4:])
	typeOff, typeLen := bo.Uint32(data[8:]), bo.Uint32(data[12:])
	strOff, strLen := bo.Uint32(data[16:]), bo.Uint32(data[20:])
	if hdrLen < btfHeaderSize || uint64(hdrLen) > uint64(len(data)) {
		return nil, fmt.Errorf("header length %d out of bounds (file is %d bytes)", hdrLen, len(data))
	}
	body := data[hdrLen:]
	if uint64(typeOff)+uint64(typeLen) > uint64(len(body)) {
		return nil, fmt.Errorf("type section (offset %d, length %d) beyond end of file (%d bytes after header): truncated?", typeOff, typeLen, len(body))
	}
	if uint64(strOff)+uint64(strLen) > uint64(len(body)) {
		return nil, fmt.Errorf("string section (offset %d, length %d) beyond end of file (%d bytes after header): truncated?", strOff, strLen, len(body))
	}
	if typeLen%4 != 0 {
		return nil, fmt.Errorf("type section length %d is not a multiple of 4", typeLen)
	}

	s := &rawSpec{
		base:    base,
		firstID: 1,
		types:   body[typeOff : typeOff+typeLen],
		strs:    body[strOff : strOff+strLen],
	}
	if base != nil {
		if base.base != nil {
			return nil, errors.New("split BTF used as base")
		}
		s.firstID = base.firstID + uint32(len(base.offs))
		s.strBase = uint32(len(base.strs))
	}
	if n := len(s.strs); n > 0 {
		if s.strs[n-1] != 0 {
			return nil, errors.New("string section is not NUL-terminated")
		}
		if base == nil && s.strs[0] != 0 {
			return nil, errors.New("string section does not start with the empty string")
		}
	}
	if bo == binary.BigEndian {
		// Every field of the type section is a 32-bit word: swap them all
		// once so the rest of the reader only deals with little-endian.
		sw := make([]byte, len(s.types))
		for i := 0; i < len(sw); i += 4 {
			binary.LittleEndian.PutUint32(sw[i:], binary.BigEndian.Uint32(s.types[i:]))
		}
		s.types = sw
	}
	if err := s.index(); err != nil {
		return nil, err
	}
	s.class = make([]uint8, len(s.offs))
	return s, nil
}

// index records the offset of every type record and checks that each record
// and its name lie within the file.
func (s *rawSpec) index() error {
	t := s.types
	s.offs = make([]uint32, 0, len(t)/32)
	strEnd := uint64(s.strBase) + uint64(len(s.strs))
	for off := 0; off < len(t); {
		id := uint64(s.firstID) + uint64(len(s.offs))
		if len(t)-off < btfTypeSize {
			return fmt.Errorf("type %d: truncated record at offset %d", id, off)
		}
		if id >= badID {
			return errors.New("too many types")
		}
		nameOff := le32(t[off:])
		info := le32(t[off+4:])
		kind, vlen := info>>24&0x1f, int(info&0xffff)
		var extra int
		switch kind {
		case kInt, kVar, kDeclTag:
			extra = 4
		case kArray:
			extra = 12
		case kStruct, kUnion, kDatasec, kEnum64:
			extra = 12 * vlen
		case kEnum, kFuncProto:
			extra = 8 * vlen
		case kPtr, kFwd, kTypedef, kVolatile, kConst, kRestrict, kFunc, kFloat, kTypeTag:
		default:
			return fmt.Errorf("type %d: unknown kind %d", id, kind)
		}
		if nameOff != 0 && uint64(nameOff) >= strEnd {
			return fmt.Errorf("type %d: name offset %d beyond string section", id, nameOff)
		}
		if len(t)-off-btfTypeSize < extra {
			return fmt.Errorf("type %d: truncated record at offset %d", id, off)
		}
		s.offs = append(s.offs, uint32(off))
		off += btfTypeSize + extra
	}
	return nil
}

func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// lastID is the highest type ID of s.
func (s *rawSpec) lastID() uint32 { return s.firstID + uint32(len(s.offs)) - 1 }

// rec returns the record of type id (header and trailing data), looking in
// the base for IDs below s.firstID. ok is false for void (0) and unknown IDs.
func (s *rawSpec) rec(id uint32) (sp *rawSpec, r []byte, ok bool) {
	for id < s.firstID {
		if s.base == nil {
			return nil, nil, false // void
		}
		s = s.base
	}
	i := id - s.firstID
	if i >= uint32(len(s.offs)) {
		return nil, nil, false
	}
	return s, s.types[s.offs[i]:], true
}

// kind returns the kind of id and its size/type field; kind 0 is void or an
// unknown ID.
func (s *rawSpec) kind(id uint32) (kind, sizeType uint32) {
	_, r, ok := s.rec(id)
	if !ok {
		return 0, 0
	}
	return le32(r[4:]) >> 24 & 0x1f, le32(r[8:])
}

// name returns the string at offset off, as a view into the string section:
// clone it before keeping it.
func (s *rawSpec) name(off uint32) string {
	if off == 0 {
		return ""
	}
	for off < s.strBase {
		s = s.base
	}
	off -= s.strBase
	if off >= uint32(len(s.strs)) {
		return ""
	}
	b := s.strs[off:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// typeName is the name of type id.
func (s *rawSpec) typeName(id uint32) string {
	sp, r, ok := s.rec(id)
	if !ok {
		return ""
	}
	return sp.name(le32(r))
}

// resolve strips typedefs and qualifiers (const, volatile, restrict,
// type tags) like btf.UnderlyingType. It returns 0 for void and badID for a
// dangling reference or a chain longer than btf.UnderlyingType follows.
func (s *rawSpec) resolve(id uint32) uint32 {
	for depth := 0; depth <= maxResolveDepth; depth++ {
		if id == 0 {
			return 0
		}
		k, next := s.kind(id)
		switch k {
		case 0:
			return badID
		case kTypedef, kConst, kVolatile, kRestrict, kTypeTag:
			id = next
		default:
			return id
		}
	}
	return badID
}

// protoParams returns the parameter type IDs of FUNC_PROTO id, appended to
// buf. ok is false if id is not a FUNC_PROTO.
func (s *rawSpec) protoParams(id uint32, buf []uint32) (params []uint32, ok bool) {
	_, r, ok := s.rec(id)
	if !ok || le32(r[4:])>>24&0x1f != kFuncProto {
		return buf, false
	}
	vlen := int(le32(r[4:]) & 0xffff)
	for i := range vlen {
		buf = append(buf, le32(r[btfTypeSize+8*i+4:])) // {name_off, type}
	}
	return buf, true
}

// paramClass bits: what ClassifyParams needs to know about a parameter type.
const (
	classKnown   = 1 << iota // computed
	classTwo                 // takes two argument slots: a 9..16-byte struct or union, or a 128-bit int
	classBig                 // a struct or union larger than 16 bytes
	classSkbPtr              // struct sk_buff *
	classVoidPtr             // void *
)

// paramClass classifies a parameter type, memoized per type ID: the same
// few thousand types are the parameters of tens of thousands of functions.
func (s *rawSpec) paramClass(id uint32) uint8 {
	if id == 0 {
		return classKnown // void: variadic marker
	}
	sp, _, ok := s.rec(id)
	if !ok {
		return classKnown
	}
	c := &sp.class[id-sp.firstID]
	if *c == 0 {
		*c = s.computeClass(id)
	}
	return *c
}

func (s *rawSpec) computeClass(id uint32) uint8 {
	c := uint8(classKnown)
	u := s.resolve(id)
	if u == 0 || u == badID {
		return c
	}
	switch k, size := s.kind(u); k {
	case kStruct, kUnion:
		switch {
		case size > 16:
			c |= classBig
		case size > 8:
			c |= classTwo
		}
	case kInt:
		if size > 8 {
			c |= classTwo
		}
	case kPtr:
		switch t := s.resolve(size); {
		case t == 0:
			c |= classVoidPtr
		case t != badID:
			if k, _ := s.kind(t); k == kStruct && s.typeName(t) == "sk_buff" {
				c |= classSkbPtr
			}
		}
	}
	return c
}

// isSkbPointer is IsSkbPointer on raw BTF: a pointer to struct sk_buff,
// ignoring typedefs and qualifiers on both the pointer and the struct.
func (s *rawSpec) isSkbPointer(id uint32) bool { return s.paramClass(id)&classSkbPtr != 0 }

// isVoidPointer reports whether id is a pointer to void, ignoring typedefs
// and qualifiers.
func (s *rawSpec) isVoidPointer(id uint32) bool { return s.paramClass(id)&classVoidPtr != 0 }

// classifyParams is ClassifyParams on raw BTF.
func (s *rawSpec) classifyParams(params []uint32) (p Params, ok bool) {
	for i, param := range params {
		c := s.paramClass(param)
		if p.SkbPos == 0 && c&classSkbPtr != 0 {
			p.SkbPos = i + 1
			p.SkbSlot = p.Slots + 1
		}
		if c&classBig != 0 {
			p.BigStruct = true
		}
		p.Slots++
		if c&classTwo != 0 {
			p.Slots++
		}
	}
	return p, p.SkbPos != 0
}

// hasSkbParam is a quick check whether any parameter of the FUNC_PROTO id
// is a struct sk_buff *, before anything else is looked at.
func (s *rawSpec) hasSkbParam(id uint32) bool {
	_, r, ok := s.rec(id)
	if !ok || le32(r[4:])>>24&0x1f != kFuncProto {
		return false
	}
	vlen := int(le32(r[4:]) & 0xffff)
	for i := range vlen {
		if s.paramClass(le32(r[btfTypeSize+8*i+4:]))&classSkbPtr != 0 {
			return true
		}
	}
	return false
}

// enumValues returns the values of the ENUM or ENUM64 id, in order, with
// the same sign extension as the btf package.
func (s *rawSpec) enumValues(id uint32) (names []string, values []uint64) {
	sp, r, ok := s.rec(id)
	if !ok {
		return nil, nil
	}
	info := le32(r[4:])
	kind, vlen, signed := info>>24&0x1f, int(info&0xffff), info>>31 == 1
	for i := range vlen {
		var v uint64
		var nameOff uint32
		switch kind {
		case kEnum:
			e := r[btfTypeSize+8*i:]
			nameOff = le32(e)
			v = uint64(le32(e[4:]))
			if signed {
				v = uint64(int64(int32(le32(e[4:]))))
			}
		case kEnum64:
			e := r[btfTypeSize+12*i:]
			nameOff = le32(e)
			v = uint64(le32(e[8:]))<<32 | uint64(le32(e[4:]))
		default:
			return nil, nil
		}
		names = append(names, sp.name(nameOff))
		values = append(values, v)
	}
	return names, values
}

// elfBTF returns the .BTF section of an ELF file.
func elfBTF(r io.ReaderAt) (btf []byte, err error) {
	defer func() {
		// debug/elf is not hardened against every malformed input.
		if p := recover(); p != nil {
			btf, err = nil, fmt.Errorf("malformed ELF file: %v", p)
		}
	}()
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("bad ELF file: %v", oneLine(err))
	}
	sec := f.Section(".BTF")
	if sec == nil {
		return nil, errors.New("ELF file has no .BTF section")
	}
	if btf, err = sec.Data(); err != nil {
		return nil, fmt.Errorf("read ELF .BTF section: %v", oneLine(err))
	}
	if len(btf) >= 2 && binary.LittleEndian.Uint16(btf) == btfMagic != (f.ByteOrder == binary.LittleEndian) {
		return nil, errors.New("BTF byte order does not match the ELF byte order")
	}
	return btf, nil
}

func oneLine(err error) string {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// readBTF returns the raw BTF of a file: all of it, or the .BTF section of
// an ELF file. Errors are one line, without the path, which the caller names.
func readBTF(path string) ([]byte, error) {
	// Check before opening: opening a FIFO blocks until it has a writer.
	if fi, err := os.Stat(path); err == nil && !fi.IsDir() && !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, cause(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, cause(err)
	}
	if fi.IsDir() {
		return nil, errors.New("is a directory")
	}
	if !fi.Mode().IsRegular() {
		// A device or a FIFO: /dev/zero would be read until memory runs
		// out, a FIFO without a writer blocks forever.
		return nil, errors.New("not a regular file")
	}
	var magic [4]byte
	if n, _ := f.ReadAt(magic[:], 0); n == 4 && string(magic[:]) == "\x7fELF" {
		return elfBTF(f)
	}
	// sysfs reports the real size of BTF files; read on in case it does not.
	size := fi.Size()
	if size <= 0 || size > maxBTFSize {
		size = 64 << 10
	}
	buf := make([]byte, 0, size+1)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, cause(err)
		}
		if len(buf) > maxBTFSize {
			return nil, fmt.Errorf("larger than %d MiB, not a BTF file", maxBTFSize>>20)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
	return buf, nil
}

// maxBTFSize bounds a raw BTF file (vmlinux BTF is about 6 MiB).
const maxBTFSize = 1 << 30
