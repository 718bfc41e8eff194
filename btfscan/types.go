package btfscan

import (
	"errors"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"
)

// Backends is a set of attach mechanisms that can reach a function.
type Backends uint8

// The attach mechanisms.
const (
	BackendFentry      Backends = 1 << iota // BPF trampoline (fentry)
	BackendKprobeMulti                      // kprobe-multi (fprobe) link
	BackendKprobe                           // one kprobe per function
	BackendTracepoint                       // tp_btf on a raw tracepoint
)

var backendNames = []struct {
	b    Backends
	name string
}{
	{BackendFentry, "fentry"},
	{BackendKprobeMulti, "kprobe-multi"},
	{BackendKprobe, "kprobe"},
	{BackendTracepoint, "tracepoint"},
}

// Has reports whether every backend in o is in b.
func (b Backends) Has(o Backends) bool { return b&o == o }

// String lists the backends comma-separated, e.g. "fentry,kprobe-multi,kprobe".
func (b Backends) String() string {
	var names []string
	for _, n := range backendNames {
		if b&n.b != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

// Func is a kernel function that takes a struct sk_buff pointer.
type Func struct {
	Name     string   // symbol name
	SkbPos   int      // 1-based position of the first struct sk_buff * parameter
	SkbSlot  int      // 1-based 8-byte argument slot of the skb (differs from SkbPos after a 9..16-byte struct passed by value)
	NumArgs  int      // number of parameters
	Module   string   // kernel module, "" for vmlinux
	Backends Backends // mechanisms that can attach to it
	Addr     uint64   // address of its (first) symbol in kallsyms; 0: unknown or hidden
}

// Tracepoint is a raw tracepoint whose arguments include a struct sk_buff pointer.
type Tracepoint struct {
	Name    string // tracepoint name, e.g. "net_dev_queue" (from btf_trace_net_dev_queue)
	SkbPos  int    // 1-based position of the skb among the tracepoint's arguments (excluding the leading void *)
	NumArgs int    // number of tracepoint arguments (excluding the leading void *)
	Module  string // kernel module, "" for vmlinux
}

// Result is the outcome of a scan, sorted by name.
type Result struct {
	Funcs           []Func       // skb functions, sorted by name
	Tracepoints     []Tracepoint // skb tracepoints, sorted by name
	Modules         []string     // modules whose BTF was scanned
	FentryMaxArgs   int          // argument slots a trampoline supports on this kernel
	FilterListKnown bool         // available_filter_functions was readable and applied
	BlacklistKnown  bool         // the kprobe blacklist was readable and applied
	CORE            *CORE        // the kernel types and kfuncs of Options.CORETypes and Kfuncs; nil without

	spec *lazySpec   // the vmlinux BTF, loaded on first use by BTF
	drop dropReasons // enum skb_drop_reason of vmlinux
}

// lazySpec loads a btf.Spec on first use.
type lazySpec struct {
	path string
	once sync.Once
	spec *btf.Spec
	err  error
}

// BTF returns the vmlinux BTF the scan read, as a btf.Spec. The scan itself
// does not need one; BTF loads it on the first call (which takes a quarter
// of a second natively, seconds under emulation) and returns the same Spec
// afterwards. It is safe for concurrent use.
func (r *Result) BTF() (*btf.Spec, error) {
	if r.spec == nil {
		return nil, errors.New("read BTF: scan result has no BTF source")
	}
	l := r.spec
	l.once.Do(func() { l.spec, l.err = loadSpec(l.path, nil) })
	return l.spec, l.err
}

// Func returns the scanned function called name.
func (r *Result) Func(name string) (Func, bool) {
	i, ok := slicesBinarySearch(len(r.Funcs), func(i int) string { return r.Funcs[i].Name }, name)
	if !ok {
		return Func{}, false
	}
	return r.Funcs[i], true
}

// Tracepoint returns the scanned tracepoint called name.
func (r *Result) Tracepoint(name string) (Tracepoint, bool) {
	i, ok := slicesBinarySearch(len(r.Tracepoints), func(i int) string { return r.Tracepoints[i].Name }, name)
	if !ok {
		return Tracepoint{}, false
	}
	return r.Tracepoints[i], true
}

func slicesBinarySearch(n int, at func(int) string, name string) (int, bool) {
	lo, hi := 0, n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if at(mid) < name {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, lo < n && at(lo) == name
}
