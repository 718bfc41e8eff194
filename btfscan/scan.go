// Package btfscan walks kernel BTF to find the functions and raw tracepoints
// that take a struct sk_buff pointer, and which attach mechanisms can reach
// each of them.
package btfscan

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/ksym"
)

// DefaultBTFPath is the kernel's own BTF.
const DefaultBTFPath = "/sys/kernel/btf/vmlinux"

// DefaultModulesDir holds the split BTF of loaded kernel modules.
const DefaultModulesDir = "/sys/kernel/btf"

// MaxKprobeArgs is how many arguments a kprobe can read from registers
// (x86-64 pt_regs: rdi, rsi, rdx, rcx, r8, r9).
const MaxKprobeArgs = 6

// Default locations of the tracefs lists the scan consults when readable.
var (
	defaultFilterFunctions = []string{
		"/sys/kernel/tracing/available_filter_functions",
		"/sys/kernel/debug/tracing/available_filter_functions",
	}
	defaultKprobeBlacklist = []string{
		"/sys/kernel/debug/kprobes/blacklist",
	}
)

// Options controls a scan. The zero value scans vmlinux only.
type Options struct {
	// BTFPath is the base BTF file; empty means DefaultBTFPath.
	BTFPath string
	// Kmods also loads module BTF as split BTF on top of BTFPath.
	Kmods bool
	// ModulesDir is where module BTF is read from when Kmods is set. Empty
	// means DefaultModulesDir if BTFPath is the default, and no modules
	// otherwise (module BTF only makes sense on top of its own vmlinux).
	ModulesDir string
	// FentryMaxArgs is the most argument slots a BPF trampoline supports;
	// 0 detects it from the running kernel (6 before 6.6, 12 from 6.6).
	FentryMaxArgs int
	// FilterFunctions is a file in available_filter_functions format; empty
	// means the tracefs default locations. Functions not listed are dropped.
	FilterFunctions string
	// KprobeBlacklist is a file in kprobes/blacklist format; empty means
	// the debugfs default location. Listed functions lose kprobe backends.
	KprobeBlacklist string
	// IgnoreTraceFS skips the tracefs and debugfs lists entirely, e.g. for a
	// BTF file that does not describe the running kernel. It also leaves
	// the functions' addresses unset.
	IgnoreTraceFS bool
	// Kallsyms is the file the functions' addresses are read from; empty
	// means ksym.DefaultPath.
	Kallsyms string
	// CORETypes names the kernel types BPF programs relocate against
	// (CO-RE), and Kfuncs the kernel functions they call: with either set,
	// Scan fills Result.CORE from the raw BTF.
	CORETypes, Kfuncs []string
}

// Scan reads BTF and returns every skb function and skb tracepoint in it.
//
// It reads the raw BTF directly (see raw.go) rather than through
// btf.LoadSpec, which would inflate every kernel type into Go objects: that
// takes a quarter of a second natively and seconds under emulation.
// Result.BTF loads the btf.Spec when something needs it.
func Scan(opts Options) (*Result, error) {
	path := opts.BTFPath
	if path == "" {
		path = DefaultBTFPath
	}

	// The kernel takes long to generate available_filter_functions (most of
	// the scan under emulation): read the lists while the BTF is walked.
	var lists chan traceLists
	if !opts.IgnoreTraceFS {
		lists = make(chan traceLists, 1)
		go func() { lists <- readTraceLists(opts) }()
	}

	base, err := loadRaw(path, nil)
	if err != nil {
		return nil, err
	}

	maxArgs := opts.FentryMaxArgs
	if maxArgs <= 0 {
		maxArgs = detectFentryMaxArgs()
	}

	res := &Result{FentryMaxArgs: maxArgs, spec: &lazySpec{path: path}}

	s := scanner{
		funcs: make(map[string]*funcCands, 4096),
		tps:   make(map[string]Tracepoint, 64),
	}
	s.walk(base, "")
	res.drop = dropReasonsRaw(base, s.dropEnums)

	var modErr error
	if opts.Kmods {
		dir := opts.ModulesDir
		if dir == "" && path == DefaultBTFPath {
			dir = DefaultModulesDir
		}
		if dir != "" {
			res.Modules, modErr = s.walkModules(dir, base)
		}
	}

	var l traceLists
	if lists != nil {
		l = <-lists
		if l.err != nil {
			return nil, l.err // reported before module errors, as it always was
		}
	}
	if modErr != nil {
		return nil, modErr
	}
	res.FilterListKnown, res.BlacklistKnown = l.traceableKnown, l.blacklist != nil

	res.Funcs = s.resolve(maxArgs, l)
	if !opts.IgnoreTraceFS {
		ks := opts.Kallsyms
		if ks == "" {
			ks = ksym.DefaultPath
		}
		setAddrs(res.Funcs, ks)
	}
	res.Tracepoints = sortedValues(s.tps, func(t Tracepoint) string { return t.Name })
	if len(opts.CORETypes) > 0 || len(opts.Kfuncs) > 0 {
		// Without it, loads read the kernel's BTF themselves.
		res.CORE, _ = rawCORE(base, opts.CORETypes, opts.Kfuncs)
	}
	return res, nil
}

// traceLists are the tracefs and debugfs lists a scan applies.
type traceLists struct {
	traceable      string          // available_filter_functions, when traceableKnown
	traceableKnown bool            // the list was readable: functions not in it are dropped
	blacklist      map[string]bool // nil: unknown, nothing is blacklisted
	err            error
}

func readTraceLists(opts Options) (l traceLists) {
	l.traceable, l.traceableKnown, l.err = readNameList(opts.FilterFunctions, defaultFilterFunctions)
	if l.err != nil {
		return l
	}
	list, known, err := readNameList(opts.KprobeBlacklist, defaultKprobeBlacklist)
	if err != nil {
		l.err = err
		return l
	}
	if known {
		l.blacklist = make(map[string]bool)
		forEachName(list, parseKprobeBlacklist, func(name string) { l.blacklist[name] = true })
	}
	return l
}

// resolve picks, for each function name, the first candidate (vmlinux, then
// modules by name, each in type ID order) that is traceable and has a
// backend: what checking each function as it was found did, with the lists
// applied after the walk so that they can be read in parallel with it.
func (s *scanner) resolve(maxArgs int, l traceLists) []Func {
	var traceable map[string]bool
	if l.traceableKnown {
		// Lookups in the small map of skb functions instead of a map of
		// every traceable kernel function.
		traceable = make(map[string]bool, len(s.funcs))
		forEachName(l.traceable, parseFilterFunctions, func(name string) {
			if _, ok := s.funcs[name]; ok {
				traceable[name] = true
			}
		})
	}
	out := make([]Func, 0, len(s.funcs))
	for name, cands := range s.funcs {
		if traceable != nil && !traceable[name] {
			continue // traceability is by name: no candidate is
		}
		for i := -1; i < len(cands.more); i++ {
			c := cands.first
			if i >= 0 {
				c = cands.more[i]
			}
			var backends Backends
			if c.p.Slots <= maxArgs && !c.p.BigStruct {
				backends |= BackendFentry
			}
			if c.p.SkbSlot <= MaxKprobeArgs && !l.blacklist[name] {
				backends |= BackendKprobeMulti | BackendKprobe
			}
			if backends == 0 {
				continue
			}
			out = append(out, Func{
				Name:     name,
				SkbPos:   c.p.SkbPos,
				SkbSlot:  c.p.SkbSlot,
				NumArgs:  c.numArgs,
				Module:   c.module,
				Backends: backends,
			})
			break
		}
	}
	slices.SortFunc(out, func(a, b Func) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func sortedValues[T any](m map[string]T, name func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(name(a), name(b)) })
	return out
}

// loadRaw reads a base (base == nil) or split BTF file with a clear error.
func loadRaw(path string, base *rawSpec) (*rawSpec, error) {
	data, err := readBTF(path)
	if err != nil {
		return nil, fmt.Errorf("read BTF %s: %w", path, err)
	}
	spec, err := parseRaw(data, base)
	if err != nil {
		return nil, fmt.Errorf("read BTF %s: %w", path, err)
	}
	return spec, nil
}

// loadSpec loads a base (base == nil) or split BTF file with the btf package,
// with a clear error.
func loadSpec(path string, base *btf.Spec) (*btf.Spec, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read BTF %s: %w", path, cause(err))
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("read BTF %s: is a directory", path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read BTF %s: not a regular file", path)
	}
	if err := checkMagic(path); err != nil {
		return nil, fmt.Errorf("read BTF %s: %w", path, err)
	}
	var spec *btf.Spec
	if base == nil {
		spec, err = btf.LoadSpec(path)
	} else {
		spec, err = btf.LoadSplitSpec(path, base)
	}
	if err != nil {
		return nil, fmt.Errorf("read BTF %s: %s", path, oneLine(err))
	}
	return spec, nil
}

type scanner struct {
	funcs     map[string]*funcCands // skb functions by name (pointers: see addFunc)
	tps       map[string]Tracepoint
	dropEnums []uint32 // vmlinux ENUM/ENUM64 types named skb_drop_reason
	params    []uint32 // scratch
}

// funcCand is a function taking an skb, before the tracefs lists and the
// backends decide whether it is kept.
type funcCand struct {
	p       Params
	numArgs int
	module  string
}

// funcCands are the candidates of one name, in walk order.
type funcCands struct {
	first funcCand
	more  []funcCand // rare: static functions and module functions sharing a name
}

// walkModules scans every module BTF in dir and returns the module names.
func (s *scanner) walkModules(dir string, base *rawSpec) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read module BTF directory %s: %w", dir, cause(err))
	}
	var mods []string
	for _, e := range entries {
		if e.Name() == "vmlinux" || e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		spec, err := loadRaw(path, base)
		if err != nil {
			// A module unloaded between ReadDir and open is not an error.
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		s.walk(spec, e.Name())
		mods = append(mods, e.Name())
	}
	return mods, nil
}

// walk records the skb functions and tracepoints of one spec. Names already
// seen win, so vmlinux (walked first) takes precedence over modules.
func (s *scanner) walk(sp *rawSpec, module string) {
	for i, off := range sp.offs {
		r := sp.types[off:]
		switch le32(r[4:]) >> 24 & 0x1f {
		case kFunc:
			s.addFunc(sp, r, module)
		case kTypedef:
			s.addTracepoint(sp, r, module)
		case kEnum, kEnum64:
			if module == "" && sp.name(le32(r)) == "skb_drop_reason" {
				s.dropEnums = append(s.dropEnums, sp.firstID+uint32(i))
			}
		}
	}
}

// addFunc considers the FUNC record r. Backends and traceability are
// decided by resolve.
func (s *scanner) addFunc(sp *rawSpec, r []byte, module string) {
	if !sp.hasSkbParam(le32(r[8:])) {
		return // most functions: skip the name
	}
	name := sp.name(le32(r)) // a view into sp: cloned when kept
	if excludedName(name) {
		return
	}
	params, ok := sp.protoParams(le32(r[8:]), s.params[:0])
	s.params = params
	if !ok {
		return
	}
	c, ok := sp.classifyParams(params)
	if !ok {
		return
	}
	cand := funcCand{p: c, numArgs: len(params), module: module}
	if cands, ok := s.funcs[name]; ok {
		// Through the pointer, not by storing the entry again: a map
		// assignment replaces the key of an entry with the one given, and
		// name is a view into the BTF just read, which every Func of that
		// name would then keep alive. It kept all 4.4 MB of 6.1's vmlinux
		// BTF in the heap for the whole trace.
		cands.more = append(cands.more, cand)
		return
	}
	s.funcs[strings.Clone(name)] = &funcCands{first: cand}
}

const tracepointPrefix = "btf_trace_"

// addTracepoint considers the TYPEDEF record r: btf_trace_<name> is a
// pointer to a FUNC_PROTO whose first parameter is void *.
func (s *scanner) addTracepoint(sp *rawSpec, r []byte, module string) {
	name, ok := strings.CutPrefix(sp.name(le32(r)), tracepointPrefix)
	if !ok || name == "" || strings.Contains(name, ".") {
		return
	}
	if _, dup := s.tps[name]; dup {
		return
	}
	k, proto := sp.kind(le32(r[8:]))
	if k != kPtr {
		return
	}
	params, ok := sp.protoParams(proto, s.params[:0])
	s.params = params
	if !ok || len(params) == 0 || !sp.isVoidPointer(params[0]) {
		return
	}
	args := params[1:]
	c, ok := sp.classifyParams(args)
	if !ok {
		return
	}
	name = strings.Clone(name)
	s.tps[name] = Tracepoint{Name: name, SkbPos: c.SkbPos, NumArgs: len(args), Module: module}
}

// excludedName reports functions that must never be traced: compiler
// clones (foo.isra.0, foo.cold) and the BPF tracing machinery itself.
func excludedName(name string) bool {
	return name == "" ||
		strings.Contains(name, ".") ||
		strings.HasPrefix(name, "__bpf_trace_") ||
		strings.HasPrefix(name, "bpf_trace_run")
}

// Params describes where the skb sits in a parameter list.
type Params struct {
	SkbPos    int  // 1-based index of the first struct sk_buff * parameter
	SkbSlot   int  // 1-based 8-byte argument slot of that parameter
	Slots     int  // 8-byte argument slots used by all parameters
	BigStruct bool // a struct or union larger than 16 bytes is passed by value
}

// ClassifyParams finds the first struct sk_buff * parameter. ok is false if
// there is none.
func ClassifyParams(params []btf.FuncParam) (p Params, ok bool) {
	for i, param := range params {
		slots := 1
		switch t := btf.UnderlyingType(param.Type).(type) {
		case *btf.Struct, *btf.Union:
			size, _ := btf.Sizeof(t)
			switch {
			case size > 16:
				p.BigStruct = true
			case size > 8:
				slots = 2
			}
		case *btf.Int:
			if t.Size > 8 {
				slots = 2
			}
		}
		if p.SkbPos == 0 && IsSkbPointer(param.Type) {
			p.SkbPos = i + 1
			p.SkbSlot = p.Slots + 1
		}
		p.Slots += slots
	}
	return p, p.SkbPos != 0
}

// IsSkbPointer reports whether typ is a pointer to struct sk_buff, ignoring
// typedefs and qualifiers on both the pointer and the struct.
func IsSkbPointer(typ btf.Type) bool {
	ptr, ok := btf.UnderlyingType(typ).(*btf.Pointer)
	if !ok {
		return false
	}
	st, ok := btf.UnderlyingType(ptr.Target).(*btf.Struct)
	return ok && st.Name == "sk_buff"
}

// readNameList reads the first readable file (path, or the defaults when
// path is empty) whole. known is false when none is readable; an explicit
// path that cannot be read is an error.
func readNameList(path string, defaults []string) (list string, known bool, err error) {
	candidates := defaults
	if path != "" {
		candidates = []string{path}
	}
	for _, p := range candidates {
		b, err := os.ReadFile(p)
		if err != nil {
			if path != "" {
				return "", false, fmt.Errorf("read function list %s: %w", p, cause(err))
			}
			continue
		}
		return unsafe.String(unsafe.SliceData(b), len(b)), true, nil
	}
	return "", false, nil
}

// forEachName calls fn with the name parse finds on each line of list.
func forEachName(list string, parse func(string) string, fn func(string)) {
	for line := range strings.Lines(list) {
		if n := parse(line); n != "" {
			fn(n)
		}
	}
}

// parseFilterFunctions takes "name" or "name [module]".
func parseFilterFunctions(line string) string {
	for f := range strings.FieldsSeq(line) {
		if strings.HasPrefix(f, "#") {
			return ""
		}
		return f
	}
	return ""
}

// parseKprobeBlacklist takes "0xstart-0xend\tname".
func parseKprobeBlacklist(line string) string {
	var first string
	i := 0
	for f := range strings.FieldsSeq(line) {
		if i == 1 {
			return f
		}
		first = f
		i++
	}
	return first
}

// cause strips the *fs.PathError wrapper, whose path the caller already names.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkMagic rejects files that are neither raw BTF nor ELF up front, with a
// clearer message than the header parser's.
func checkMagic(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return cause(err)
	}
	defer f.Close()
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	switch {
	case n >= 2 && (magic[0] == 0x9f && magic[1] == 0xeb || magic[0] == 0xeb && magic[1] == 0x9f):
		return nil // raw BTF, either byte order
	case n == 4 && string(magic[:]) == "\x7fELF":
		return nil
	case n == 0:
		return errors.New("empty file, not BTF")
	}
	return errors.New("not a BTF file (bad magic)")
}
