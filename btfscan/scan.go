// Package btfscan walks kernel BTF to find the functions and raw tracepoints
// that take a struct sk_buff pointer, and which attach mechanisms can reach
// each of them.
package btfscan

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf/btf"
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
	// BTF file that does not describe the running kernel.
	IgnoreTraceFS bool
}

// Scan loads BTF and returns every skb function and skb tracepoint in it.
func Scan(opts Options) (*Result, error) {
	path := opts.BTFPath
	if path == "" {
		path = DefaultBTFPath
	}
	base, err := loadSpec(path, nil)
	if err != nil {
		return nil, err
	}

	maxArgs := opts.FentryMaxArgs
	if maxArgs <= 0 {
		maxArgs = detectFentryMaxArgs()
	}

	res := &Result{Spec: base, FentryMaxArgs: maxArgs}

	var traceable, blacklist map[string]bool
	if !opts.IgnoreTraceFS {
		var known bool
		traceable, known, err = readNameList(opts.FilterFunctions, defaultFilterFunctions, parseFilterFunctions)
		if err != nil {
			return nil, err
		}
		res.FilterListKnown = known
		blacklist, known, err = readNameList(opts.KprobeBlacklist, defaultKprobeBlacklist, parseKprobeBlacklist)
		if err != nil {
			return nil, err
		}
		res.BlacklistKnown = known
	}

	s := scanner{
		maxArgs:   maxArgs,
		traceable: traceable,
		blacklist: blacklist,
		funcs:     make(map[string]Func),
		tps:       make(map[string]Tracepoint),
	}
	if err := s.walk(base, "", path); err != nil {
		return nil, err
	}

	if opts.Kmods {
		dir := opts.ModulesDir
		if dir == "" && path == DefaultBTFPath {
			dir = DefaultModulesDir
		}
		if dir != "" {
			mods, err := s.walkModules(dir, base)
			if err != nil {
				return nil, err
			}
			res.Modules = mods
		}
	}

	res.Funcs = sortedValues(s.funcs, func(f Func) string { return f.Name })
	res.Tracepoints = sortedValues(s.tps, func(t Tracepoint) string { return t.Name })
	return res, nil
}

func sortedValues[T any](m map[string]T, name func(T) string) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(name(a), name(b)) })
	return out
}

// loadSpec reads a base (base == nil) or split BTF file with a clear error.
func loadSpec(path string, base *btf.Spec) (*btf.Spec, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read BTF %s: %w", path, cause(err))
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("read BTF %s: is a directory", path)
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
		return nil, fmt.Errorf("read BTF %s: %w", path, err)
	}
	return spec, nil
}

type scanner struct {
	maxArgs   int
	traceable map[string]bool // nil: unknown, everything is traceable
	blacklist map[string]bool // nil: unknown, nothing is blacklisted
	funcs     map[string]Func
	tps       map[string]Tracepoint
}

// walkModules scans every module BTF in dir and returns the module names.
func (s *scanner) walkModules(dir string, base *btf.Spec) ([]string, error) {
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
		spec, err := loadSpec(path, base)
		if err != nil {
			// A module unloaded between ReadDir and open is not an error.
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		if err := s.walk(spec, e.Name(), path); err != nil {
			return nil, err
		}
		mods = append(mods, e.Name())
	}
	return mods, nil
}

// walk records the skb functions and tracepoints of one spec. Names already
// seen win, so vmlinux (walked first) takes precedence over modules.
func (s *scanner) walk(spec *btf.Spec, module, path string) error {
	for typ, err := range spec.All() {
		if err != nil {
			return fmt.Errorf("read BTF %s: %w", path, err)
		}
		switch t := typ.(type) {
		case *btf.Func:
			s.addFunc(t, module)
		case *btf.Typedef:
			s.addTracepoint(t, module)
		}
	}
	return nil
}

func (s *scanner) addFunc(fn *btf.Func, module string) {
	name := fn.Name
	if excludedName(name) {
		return
	}
	if _, dup := s.funcs[name]; dup {
		return
	}
	proto, ok := fn.Type.(*btf.FuncProto)
	if !ok {
		return
	}
	c, ok := ClassifyParams(proto.Params)
	if !ok {
		return
	}
	if s.traceable != nil && !s.traceable[name] {
		return
	}

	var backends Backends
	if c.Slots <= s.maxArgs && !c.BigStruct {
		backends |= BackendFentry
	}
	if c.SkbSlot <= MaxKprobeArgs && !s.blacklist[name] {
		backends |= BackendKprobeMulti | BackendKprobe
	}
	if backends == 0 {
		return
	}
	s.funcs[name] = Func{
		Name:     name,
		SkbPos:   c.SkbPos,
		SkbSlot:  c.SkbSlot,
		NumArgs:  len(proto.Params),
		Module:   module,
		Backends: backends,
	}
}

const tracepointPrefix = "btf_trace_"

func (s *scanner) addTracepoint(td *btf.Typedef, module string) {
	name, ok := strings.CutPrefix(td.Name, tracepointPrefix)
	if !ok || name == "" || strings.Contains(name, ".") {
		return
	}
	if _, dup := s.tps[name]; dup {
		return
	}
	ptr, ok := td.Type.(*btf.Pointer)
	if !ok {
		return
	}
	proto, ok := ptr.Target.(*btf.FuncProto)
	if !ok || len(proto.Params) == 0 || !isVoidPointer(proto.Params[0].Type) {
		return
	}
	args := proto.Params[1:]
	c, ok := ClassifyParams(args)
	if !ok {
		return
	}
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

func isVoidPointer(typ btf.Type) bool {
	ptr, ok := btf.UnderlyingType(typ).(*btf.Pointer)
	if !ok {
		return false
	}
	_, ok = btf.UnderlyingType(ptr.Target).(*btf.Void)
	return ok
}

// readNameList reads the first readable file (path, or the defaults when
// path is empty). known is false when none is readable; an explicit path that
// cannot be read is an error.
func readNameList(path string, defaults []string, parse func(string) string) (names map[string]bool, known bool, err error) {
	candidates := defaults
	if path != "" {
		candidates = []string{path}
	}
	for _, p := range candidates {
		f, err := os.Open(p)
		if err != nil {
			if path != "" {
				return nil, false, fmt.Errorf("read function list %s: %w", p, cause(err))
			}
			continue
		}
		names := make(map[string]bool)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			if n := parse(sc.Text()); n != "" {
				names[n] = true
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			if path != "" {
				return nil, false, fmt.Errorf("read function list %s: %w", p, err)
			}
			continue
		}
		return names, true, nil
	}
	return nil, false, nil
}

// parseFilterFunctions takes "name" or "name [module]".
func parseFilterFunctions(line string) string {
	fields := strings.Fields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return ""
	}
	return fields[0]
}

// parseKprobeBlacklist takes "0xstart-0xend\tname".
func parseKprobeBlacklist(line string) string {
	fields := strings.Fields(line)
	switch len(fields) {
	case 0:
		return ""
	case 1:
		return fields[0]
	default:
		return fields[1]
	}
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
