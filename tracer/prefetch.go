package tracer

import (
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/bpf"
)

// Parsing the BPF object and the kernel's BTF are the two largest CPU costs
// of starting up after the BTF scan (a few hundred ms each under
// emulation). Prefetch starts both while the caller scans; Run then finds
// them ready.

var (
	parsedSpec = sync.OnceValues(bpf.LoadIpftrace)
	sharedBTF  = sync.OnceValue(func() *btf.Cache {
		c := btf.NewCache()
		c.Kernel() // an error shows again where the kernel BTF is needed
		return c
	})

	specMu    sync.Mutex
	specTaken bool
)

// Prefetch starts parsing the BPF object and loading the kernel's BTF in
// the background, for a Run that follows. It makes no bpf(2) calls.
func Prefetch() {
	go parsedSpec()
	go sharedBTF()
}

// objectSpec returns the parsed BPF object: the first caller gets the
// parsed spec itself, later ones a copy (callers set constants in it).
func objectSpec() (*ebpf.CollectionSpec, error) {
	spec, err := parsedSpec()
	if err != nil {
		return nil, err
	}
	specMu.Lock()
	defer specMu.Unlock()
	if !specTaken {
		specTaken = true
		return spec, nil
	}
	return spec.Copy(), nil
}
