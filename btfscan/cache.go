package btfscan

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultCacheDir is where ScanCached keeps the scan of the running kernel:
// /run is a tmpfs, so a new boot starts without one.
const DefaultCacheDir = "/run/ipftrace"

// cacheFormat changes whenever cacheFile or the meaning of its fields does.
const cacheFormat = "ipftrace-scan-3"

// cacheFile is what ScanCached stores: a Result without its lazily loaded
// BTF (which is read from the BTF path again on demand).
type cacheFile struct {
	Funcs           []Func
	Tracepoints     []Tracepoint
	Modules         []string
	FentryMaxArgs   int
	FilterListKnown bool
	BlacklistKnown  bool
	Drop            map[uint64]string
	CORE            *CORE
}

// ScanCached is Scan for the running kernel, with the result cached in dir
// (DefaultCacheDir if empty) for the rest of the boot. Under emulation the
// scan and the kernel's generation of available_filter_functions take most
// of a second, each time ipftrace starts.
//
// The cache is keyed by the boot, the loaded modules and their BTF, the
// options and the ipftrace executable itself (path, size, modification
// time), so a module loaded or unloaded, or a rebuilt binary, scans afresh.
// It is used only by the user that owns dir and only when neither dir nor
// the file is writable by anyone else; any problem with it (unreadable,
// corrupt, not ours) means a fresh scan, never an error. Options that do not
// describe the running kernel (another BTF file, other lists) bypass it.
// cached reports whether the result came from the cache.
func ScanCached(opts Options, dir string) (res *Result, cached bool, err error) {
	if !cacheable(opts) {
		res, err = Scan(opts)
		return res, false, err
	}
	if dir == "" {
		dir = DefaultCacheDir
	}
	key, kerr := cacheKey(opts)
	if kerr != nil {
		res, err = Scan(opts)
		return res, false, err
	}
	path := filepath.Join(dir, "scan-"+key+".gob")
	if res, ok := readCache(dir, path); ok {
		return res, true, nil
	}
	res, err = Scan(opts)
	if err != nil {
		return nil, false, err
	}
	writeCache(dir, path, res) // best effort: the next run scans again
	return res, false, nil
}

// cacheable reports whether opts describe the running kernel with the
// default lists, the only case the cache key covers.
func cacheable(o Options) bool {
	return (o.BTFPath == "" || o.BTFPath == DefaultBTFPath) &&
		(o.ModulesDir == "" || o.ModulesDir == DefaultModulesDir) &&
		o.FilterFunctions == "" && o.KprobeBlacklist == "" && o.Kallsyms == "" && !o.IgnoreTraceFS
}

// cacheKey hashes everything a scan of the running kernel depends on.
func cacheKey(o Options) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\nkmods=%v maxargs=%d core=%q kfuncs=%q\n", cacheFormat, o.Kmods, o.FentryMaxArgs, o.CORETypes, o.Kfuncs)
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	st, err := os.Stat(exe)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "exe %s %d %d\n", exe, st.Size(), st.ModTime().UnixNano())
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "boot %s\n", bytes.TrimSpace(boot))
	// Loaded modules by name and address (not the use counts, which
	// change all the time): their functions are in the tracefs lists.
	mods, err := os.ReadFile("/proc/modules")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	for line := range strings.Lines(string(mods)) {
		f := strings.Fields(line)
		if len(f) >= 6 {
			fmt.Fprintf(h, "mod %s %s\n", f[0], f[5])
		}
	}
	// The BTF objects the scan reads (vmlinux and, with Kmods, modules).
	entries, err := os.ReadDir(DefaultModulesDir)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if !o.Kmods && e.Name() != "vmlinux" {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "btf %s %d\n", e.Name(), info.Size())
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

// private reports whether the file described by info is owned by this
// process's user and not writable by group or others.
func private(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid() && info.Mode().Perm()&0o022 == 0
}

// privateDir reports whether dir is a directory (not a symlink to one) that
// is private.
func privateDir(dir string) bool {
	info, err := os.Lstat(dir)
	return err == nil && info.IsDir() && private(info)
}

// readCache returns the cached result at path, if there is a usable one.
// Only the running kernel's scan is cached (cacheable), so its BTF is at
// DefaultBTFPath.
func readCache(dir, path string) (*Result, bool) {
	if !privateDir(dir) {
		return nil, false
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() || !private(info) {
		return nil, false
	}
	var c cacheFile
	if err := gob.NewDecoder(f).Decode(&c); err != nil {
		return nil, false
	}
	return &Result{
		Funcs:           c.Funcs,
		Tracepoints:     c.Tracepoints,
		Modules:         c.Modules,
		FentryMaxArgs:   c.FentryMaxArgs,
		FilterListKnown: c.FilterListKnown,
		BlacklistKnown:  c.BlacklistKnown,
		CORE:            c.CORE,
		spec:            &lazySpec{path: DefaultBTFPath},
		drop:            dropReasons{m: c.Drop},
	}, true
}

// writeCache stores res at path, replacing the cache files of other keys
// (older module sets, older binaries). Errors are ignored: it is a cache.
func writeCache(dir, path string, res *Result) {
	if res.drop.err != nil {
		return // keep the error for DropReasons to report each time
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	if !privateDir(dir) {
		return
	}
	var buf bytes.Buffer
	c := cacheFile{
		Funcs: res.Funcs, Tracepoints: res.Tracepoints, Modules: res.Modules,
		FentryMaxArgs: res.FentryMaxArgs, FilterListKnown: res.FilterListKnown,
		BlacklistKnown: res.BlacklistKnown, Drop: res.drop.m, CORE: res.CORE,
	}
	if err := gob.NewEncoder(&buf).Encode(&c); err != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, ".scan-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(buf.Bytes())
	cerr := tmp.Close()
	if werr != nil || cerr != nil || os.Rename(tmp.Name(), path) != nil {
		os.Remove(tmp.Name())
		return
	}
	old, _ := filepath.Glob(filepath.Join(dir, "scan-*.gob"))
	for _, o := range old {
		if o != path {
			os.Remove(o)
		}
	}
}
