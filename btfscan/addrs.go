package btfscan

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// DefaultKallsyms is the kernel's symbol table, where Scan finds the
// address of each function.
const DefaultKallsyms = "/proc/kallsyms"

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
		// "ffffffffc0a01000 t name\t[module]"
		line := sc.Bytes()
		sp := bytes.IndexByte(line, ' ')
		if sp < 0 || len(line) < sp+4 || line[sp+2] != ' ' || (line[sp+1] != 't' && line[sp+1] != 'T') {
			continue
		}
		name, mod := line[sp+3:], []byte(nil)
		if t := bytes.IndexAny(name, "\t "); t >= 0 {
			mod = bytes.Trim(name[t:], "\t []")
			name = name[:t]
		}
		i, ok := idx[string(name)]
		if !ok || string(mod) != funcs[i].Module {
			continue
		}
		a, err := strconv.ParseUint(string(line[:sp]), 16, 64)
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
