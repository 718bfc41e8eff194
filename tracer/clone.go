package tracer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// rawTemplate is a per-function template (fentry_stubN, fentry_skbN, tp_skbN, fexit_clone) made
// ready once for a run: relocated, its maps' descriptors and fill_data in
// place, marshalled. Each clone is then a copy of its bytes with the
// function's descriptor written at descOffs and one BPF_PROG_LOAD, the way
// retsnoop and nettrace clone theirs. Through cilium/ebpf every clone
// repeated all of that work (a collection, map and reference resolution,
// marshalling, a BTF handle): a sixth of a clone's CPU natively (3.86 →
// 3.26 ms, BenchmarkLoadClone) and ~1800 allocations per clone.
type rawTemplate struct {
	progType   uint32
	attachType uint32
	name       [16]byte
	license    []byte // NUL-terminated
	insns      []byte
	descOffs   []int       // byte offsets of the descriptor's ld_imm64 instructions
	btf        *btf.Handle // the func and line info's types, shared by every clone
	funcInfo   []byte
	lineInfo   []byte
	nFuncInfo  uint32
	nLineInfo  uint32
	bo         binary.ByteOrder // the object's, the kernel's
}

// Kernel values (include/uapi/linux/bpf.h) of the only program and attach
// types the raw path loads.
const (
	bpfProgLoad            = 5  // BPF_PROG_LOAD
	bpfProgTypeTracing     = 26 // BPF_PROG_TYPE_TRACING
	bpfAttachTraceRawTp    = 23 // BPF_TRACE_RAW_TP
	bpfAttachTraceFEntry   = 24 // BPF_TRACE_FENTRY
	bpfAttachTraceFExit    = 25 // BPF_TRACE_FEXIT
	bpfFuncInfoSize        = 8  // struct bpf_func_info
	bpfLineInfoSize        = 16 // struct bpf_line_info
	progLoadAttrKnownBytes = 144
)

// progLoadAttr is the BPF_PROG_LOAD part of union bpf_attr, up to
// log_true_size (Linux 6.4); older kernels accept it as long as the fields
// they do not know are zero, and these are.
type progLoadAttr struct {
	progType           uint32
	insnCnt            uint32
	insns              uint64
	license            uint64
	logLevel           uint32
	logSize            uint32
	logBuf             uint64
	kernVersion        uint32
	progFlags          uint32
	progName           [16]byte
	progIfindex        uint32
	expectedAttachType uint32
	progBTFFd          uint32
	funcInfoRecSize    uint32
	funcInfo           uint64
	funcInfoCnt        uint32
	lineInfoRecSize    uint32
	lineInfo           uint64
	lineInfoCnt        uint32
	attachBTFID        uint32
	attachBTFObjFd     uint32
	coreReloCnt        uint32
	fdArray            uint64
	coreRelos          uint64
	coreReloRecSize    uint32
	logTrueSize        uint32
}

var _ [progLoadAttrKnownBytes - unsafe.Sizeof(progLoadAttr{})]struct{} // the layout above is exact
var _ [unsafe.Sizeof(progLoadAttr{}) - progLoadAttrKnownBytes]struct{}

// rawTemplate returns the raw template of template, built on first use.
// It is nil, with no error, for a template the raw path does not load.
func (o *objects) rawTemplate(template string) (*rawTemplate, error) {
	o.rawMu.Lock()
	defer o.rawMu.Unlock()
	if rt, ok := o.raw[template]; ok {
		return rt, nil
	}
	rt, err := o.buildRawTemplate(template)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", template, err)
	}
	o.raw[template] = rt
	return rt, nil
}

func (o *objects) buildRawTemplate(template string) (*rawTemplate, error) {
	gr, ps, err := o.cloneSpec(template)
	if err != nil {
		return nil, err
	}
	rt := &rawTemplate{progType: bpfProgTypeTracing, bo: gr.spec.ByteOrder}
	switch {
	case ps.Type != ebpf.Tracing:
		return nil, nil
	case ps.AttachType == ebpf.AttachTraceFEntry:
		rt.attachType = bpfAttachTraceFEntry
	case ps.AttachType == ebpf.AttachTraceFExit:
		rt.attachType = bpfAttachTraceFExit
	case ps.AttachType == ebpf.AttachTraceRawTp:
		rt.attachType = bpfAttachTraceRawTp
	default:
		return nil, nil
	}
	copy(rt.name[:len(rt.name)-1], ps.Name)
	rt.license = append([]byte(ps.License), 0)

	insns := ps.Instructions
	off := 0
	for i := range insns {
		ins := &insns[i]
		switch {
		case btf.CORERelocationMetadata(ins) != nil, ins.IsKfuncCall() && ins.Constant <= 0:
			return nil, nil // left for cilium/ebpf to resolve (no scan, or no kfunc ID)
		case ins.IsLoadFromMap() && ins.Reference() != "":
			m := gr.maps[ins.Reference()]
			if m == nil {
				return nil, fmt.Errorf("instruction %d: no map %q", i, ins.Reference())
			}
			if err := ins.AssociateMap(m); err != nil {
				return nil, fmt.Errorf("instruction %d: %w", i, err)
			}
		case isDescMarker(ins):
			rt.descOffs = append(rt.descOffs, off)
		}
		off += int(ins.Size())
	}
	if len(rt.descOffs) == 0 && !unpatchedTemplate(template) {
		return nil, errors.New("descriptor marker not found")
	}

	var b btf.Builder
	rt.funcInfo, rt.lineInfo, err = btf.MarshalExtInfos(insns, &b)
	if err != nil {
		return nil, fmt.Errorf("marshal func and line info: %w", err)
	}
	rt.nFuncInfo = uint32(len(rt.funcInfo) / bpfFuncInfoSize)
	rt.nLineInfo = uint32(len(rt.lineInfo) / bpfLineInfoSize)
	if rt.btf, err = btf.NewHandle(&b); err != nil {
		return nil, fmt.Errorf("load BTF: %w", err)
	}
	var buf bytes.Buffer
	if err := insns.Marshal(&buf, rt.bo); err != nil {
		rt.btf.Close()
		return nil, err
	}
	rt.insns = buf.Bytes()
	if off != len(rt.insns) {
		rt.btf.Close()
		return nil, fmt.Errorf("marshalled %d bytes, counted %d", len(rt.insns), off)
	}
	for _, o := range rt.descOffs {
		if lo, hi := rt.bo.Uint32(rt.insns[o+4:]), rt.bo.Uint32(rt.insns[o+12:]); uint64(hi)<<32|uint64(lo) != descMarker {
			rt.btf.Close()
			return nil, fmt.Errorf("no descriptor marker at byte %d", o)
		}
	}
	return rt, nil
}

// close releases the template's BTF handle.
func (rt *rawTemplate) close() {
	if rt != nil && rt.btf != nil {
		rt.btf.Close()
	}
}

// load loads a clone of the template with descriptor desc, attached at
// load time to the BTF type attachID (a function for fentry, the
// btf_trace_ typedef for tp_btf) of vmlinux, or of the module whose BTF
// object is obj.
func (rt *rawTemplate) load(desc uint64, attachID btf.TypeID, obj *btf.Handle) (*ebpf.Program, error) {
	if desc != 0 && len(rt.descOffs) == 0 {
		return nil, errors.New("load program: a descriptor for a template without its marker")
	}
	insns := make([]byte, len(rt.insns))
	copy(insns, rt.insns)
	for _, o := range rt.descOffs {
		rt.bo.PutUint32(insns[o+4:], uint32(desc))
		rt.bo.PutUint32(insns[o+12:], uint32(desc>>32))
	}
	attr := progLoadAttr{
		progType:           rt.progType,
		insnCnt:            uint32(len(insns) / asm.InstructionSize),
		insns:              uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:            uint64(uintptr(unsafe.Pointer(&rt.license[0]))),
		progName:           rt.name,
		expectedAttachType: rt.attachType,
		attachBTFID:        uint32(attachID),
	}
	if rt.btf != nil {
		attr.progBTFFd = uint32(rt.btf.FD())
	}
	if obj != nil {
		attr.attachBTFObjFd = uint32(obj.FD())
	}
	if rt.nFuncInfo > 0 {
		attr.funcInfoRecSize = bpfFuncInfoSize
		attr.funcInfo = uint64(uintptr(unsafe.Pointer(&rt.funcInfo[0])))
		attr.funcInfoCnt = rt.nFuncInfo
	}
	if rt.nLineInfo > 0 {
		attr.lineInfoRecSize = bpfLineInfoSize
		attr.lineInfo = uint64(uintptr(unsafe.Pointer(&rt.lineInfo[0])))
		attr.lineInfoCnt = rt.nLineInfo
	}
	defer runtime.KeepAlive(rt)
	defer runtime.KeepAlive(insns)
	defer runtime.KeepAlive(obj)
	fd, errno := progLoad(&attr)
	if errno != 0 && errno != unix.EPERM {
		// Load again with the verifier's log, for its reason, as
		// cilium/ebpf reports it.
		log := make([]byte, 256<<10)
		attr.logLevel, attr.logSize = 1, uint32(len(log))
		attr.logBuf = uint64(uintptr(unsafe.Pointer(&log[0])))
		var errno2 unix.Errno
		if fd, errno2 = progLoad(&attr); errno2 != 0 {
			return nil, fmt.Errorf("load program: %w%s", errno, verifierReason(log))
		}
		errno = 0
	}
	if errno != 0 {
		return nil, fmt.Errorf("load program: %w", errno)
	}
	return ebpf.NewProgramFromFD(int(fd))
}

// progLoad calls BPF_PROG_LOAD, again if the verifier was interrupted by a
// signal (EAGAIN), as cilium/ebpf does.
func progLoad(attr *progLoadAttr) (int, unix.Errno) {
	for range 5 {
		fd, _, errno := unix.Syscall(unix.SYS_BPF, bpfProgLoad, uintptr(unsafe.Pointer(attr)), unsafe.Sizeof(*attr))
		if errno != unix.EAGAIN {
			return int(fd), errno
		}
	}
	return -1, unix.EAGAIN
}

// verifierReason returns ": <the last line of a verifier log>" (before its
// statistics), or "".
func verifierReason(log []byte) string {
	if i := bytes.IndexByte(log, 0); i >= 0 {
		log = log[:i]
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	// The statistics the verifier ends with are not the reason.
	for len(lines) > 1 && (strings.HasPrefix(lines[len(lines)-1], "processed ") ||
		strings.HasPrefix(lines[len(lines)-1], "verification time") ||
		strings.HasPrefix(lines[len(lines)-1], "stack depth")) {
		lines = lines[:len(lines)-1]
	}
	last := strings.TrimSpace(lines[len(lines)-1])
	if last == "" {
		return ""
	}
	if len(lines) > 1 {
		return fmt.Sprintf(": %s (%d line(s) omitted)", last, len(lines)-1)
	}
	return ": " + last
}
