package btfscan

import (
	"bufio"
	"os"
	"strconv"

	"github.com/ipftrace/ipftrace/ksym"
)

// setAddrs sets the Addr of each function from the kallsyms file at path:
// the address of its text symbol, in vmlinux or in its module. A name with
// more than one such symbol (static functions of the same name, ~1% of the
// skb functions) gets the first, which is the one the kernel picks for a
// kprobe-multi attach by name unless it is not traceable (the attach by
// address then fails, and the tracer falls back to names). No function gets
// one if the file cannot be read or hides the addresses (kptr_restrict).
// kprobe-multi attaches by address when it can: by name, the kernel walks
// its whole symbol table for every link.
func setAddrs(funcs []Func, path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	idx := make(map[string]int, len(funcs))
	for i := range funcs {
		idx[funcs[i].Name] = i
	}
	addrs := make([]uint64, len(funcs))
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		hex, name, mod, ok := ksym.SplitText(sc.Bytes())
		if !ok {
			continue
		}
		i, ok := idx[string(name)]
		if !ok || string(mod) != funcs[i].Module {
			continue
		}
		a, err := strconv.ParseUint(string(hex), 16, 64)
		if err != nil || a == 0 {
			return // not kallsyms, or addresses hidden: none at all
		}
		if addrs[i] == 0 {
			addrs[i] = a
		}
	}
	if sc.Err() != nil {
		return
	}
	for i, a := range addrs {
		funcs[i].Addr = a
	}
}
