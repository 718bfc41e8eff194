package btfscan

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/btf"
)

// The scan as it was before the raw BTF reader: btf.LoadSpec and a walk over
// every inflated type. It is the reference for the differential tests
// (scan_diff_test.go) and is kept as close as possible to the original code.

func refScan(opts Options) (*Result, *btf.Spec, error) {
	path := opts.BTFPath
	if path == "" {
		path = DefaultBTFPath
	}
	base, err := loadSpec(path, nil)
	if err != nil {
		return nil, nil, err
	}

	maxArgs := opts.FentryMaxArgs
	if maxArgs <= 0 {
		maxArgs = detectFentryMaxArgs()
	}

	res := &Result{FentryMaxArgs: maxArgs}

	var traceable, blacklist map[string]bool
	if !opts.IgnoreTraceFS {
		var known bool
		traceable, known, err = refReadNameList(opts.FilterFunctions, defaultFilterFunctions, refParseFilterFunctions)
		if err != nil {
			return nil, nil, err
		}
		res.FilterListKnown = known
		blacklist, known, err = refReadNameList(opts.KprobeBlacklist, defaultKprobeBlacklist, refParseKprobeBlacklist)
		if err != nil {
			return nil, nil, err
		}
		res.BlacklistKnown = known
	}

	s := refScanner{
		maxArgs:   maxArgs,
		traceable: traceable,
		blacklist: blacklist,
		funcs:     make(map[string]Func),
		tps:       make(map[string]Tracepoint),
	}
	if err := s.walk(base, "", path); err != nil {
		return nil, nil, err
	}

	if opts.Kmods {
		dir := opts.ModulesDir
		if dir == "" && path == DefaultBTFPath {
			dir = DefaultModulesDir
		}
		if dir != "" {
			mods, err := s.walkModules(dir, base)
			if err != nil {
				return nil, nil, err
			}
			res.Modules = mods
		}
	}

	res.Funcs = sortedValues(s.funcs, func(f Func) string { return f.Name })
	res.Tracepoints = sortedValues(s.tps, func(t Tracepoint) string { return t.Name })
	return res, base, nil
}

type refScanner struct {
	maxArgs   int
	traceable map[string]bool // nil: unknown, everything is traceable
	blacklist map[string]bool // nil: unknown, nothing is blacklisted
	funcs     map[string]Func
	tps       map[string]Tracepoint
}

func (s *refScanner) walkModules(dir string, base *btf.Spec) ([]string, error) {
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

func (s *refScanner) walk(spec *btf.Spec, module, path string) error {
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

func (s *refScanner) addFunc(fn *btf.Func, module string) {
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

func (s *refScanner) addTracepoint(td *btf.Typedef, module string) {
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
	if !ok || len(proto.Params) == 0 || !refIsVoidPointer(proto.Params[0].Type) {
		return
	}
	args := proto.Params[1:]
	c, ok := ClassifyParams(args)
	if !ok {
		return
	}
	s.tps[name] = Tracepoint{Name: name, SkbPos: c.SkbPos, NumArgs: len(args), Module: module}
}

func refIsVoidPointer(typ btf.Type) bool {
	ptr, ok := btf.UnderlyingType(typ).(*btf.Pointer)
	if !ok {
		return false
	}
	_, ok = btf.UnderlyingType(ptr.Target).(*btf.Void)
	return ok
}

func refReadNameList(path string, defaults []string, parse func(string) string) (names map[string]bool, known bool, err error) {
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

func refParseFilterFunctions(line string) string {
	fields := strings.Fields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return ""
	}
	return fields[0]
}

func refParseKprobeBlacklist(line string) string {
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
