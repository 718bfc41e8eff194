package tracer

import "os"

// Hidden test hooks, not a user interface. Each makes a run take a path
// that no kernel the tests boot would take, and the run says so on stderr
// (testHooks.notes), so that a test can check the hook reached the run.
const (
	// SkFieldsEnv set to "each": the programs read a socket's addresses
	// and ports field by field, as on a kernel whose struct sock_common
	// has another layout than every kernel since 4.x (bpf/ipftrace.c,
	// sk_fields_read).
	SkFieldsEnv = "IPFTRACE_TEST_SK_FIELDS"
	// NoMmapEnv set to "1": the run sets its flags in the data section as
	// it does where the section's map has no memory mapping (before Linux
	// 5.5): stopping the programs rewrites the whole section
	// (objects.setFlag) and the reader polls while idle instead of
	// sleeping (tracer.sleep). TestSetFlag runs the rewrite on a map
	// really created without BPF_F_MMAPABLE; cilium/ebpf maps every data
	// section where the kernel can, so a run cannot be given one.
	NoMmapEnv = "IPFTRACE_TEST_NO_MMAP"
	// NoChainEnv set to "1": the fentry backend does not attach
	// fentry_chain, as on a kernel where array_map_delete_elem cannot be
	// traced, and falls back to shared handlers (tracer/fentry.go).
	NoChainEnv = "IPFTRACE_TEST_NO_CHAIN"
)

// testHooks are the hooks set in the environment.
type testHooks struct {
	skEachField bool
	noMmap      bool
	noChain     bool
}

func readTestHooks() testHooks {
	return testHooks{
		skEachField: os.Getenv(SkFieldsEnv) == "each",
		noMmap:      os.Getenv(NoMmapEnv) == "1",
		noChain:     os.Getenv(NoChainEnv) == "1",
	}
}

// notes are the lines a run prints on stderr for the hooks that are set.
func (h testHooks) notes() []string {
	var n []string
	if h.skEachField {
		n = append(n, "test hook "+SkFieldsEnv+": socket fields read one by one")
	}
	if h.noMmap {
		n = append(n, "test hook "+NoMmapEnv+": flags set without the data section's memory mapping")
	}
	if h.noChain {
		n = append(n, "test hook "+NoChainEnv+": fentry without chained stubs")
	}
	return n
}
