package tracer

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/bpf"
)

// The parsed BPF object and the kernel's BTF, shared by every load of a
// process (the tracepoint backend creates its objects twice). Parsing them
// in the background while scanning was tried: no faster start-up under
// emulation, and a higher peak RSS (both BTF parses live at once).

var (
	parsedSpec = sync.OnceValues(bpf.LoadIpftrace)
	sharedBTF  = sync.OnceValue(func() *btf.Cache {
		c := btf.NewCache()
		c.Kernel() // an error shows again where the kernel BTF is needed
		return c
	})
)

// objectSpec returns a copy of the parsed BPF object, which callers may
// change (constants, instructions): the parse stays pristine. A copy costs
// about 1/20 of a parse.
func objectSpec() (*ebpf.CollectionSpec, error) {
	spec, err := parsedSpec()
	if err != nil {
		return nil, err
	}
	return spec.Copy(), nil
}
