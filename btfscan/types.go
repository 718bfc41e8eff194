package btfscan

import "github.com/cilium/ebpf/btf"

// Backends is a set of attach mechanisms that can reach a function.
type Backends uint8

// The attach mechanisms.
const (
	BackendFentry      Backends = 1 << iota // BPF trampoline (fentry)
	BackendKprobeMulti                      // kprobe-multi (fprobe) link
	BackendKprobe                           // one kprobe per function
	BackendTracepoint                       // tp_btf on a raw tracepoint
)

// Func is a kernel function that takes a struct sk_buff pointer.
type Func struct {
	Name     string   // symbol name
	SkbPos   int      // 1-based position of the first struct sk_buff * parameter
	NumArgs  int      // number of parameters
	Module   string   // kernel module, "" for vmlinux
	Backends Backends // mechanisms that can attach to it
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
	Funcs       []Func       // skb functions, sorted by name
	Tracepoints []Tracepoint // skb tracepoints, sorted by name
	Spec        *btf.Spec    // the vmlinux BTF the scan read
}
