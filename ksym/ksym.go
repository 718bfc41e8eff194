// Package ksym resolves kernel text addresses to function names with
// /proc/kallsyms.
package ksym

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"sync"
)

// DefaultPath is the kernel's symbol table.
const DefaultPath = "/proc/kallsyms"

// maxFuncSize bounds how far past a symbol's start an address may lie and
// still be attributed to it: the last symbol of the table has no successor
// to bound it.
const maxFuncSize = 1 << 20

// Table is a sorted table of kernel text symbols.
type Table struct {
	addrs []uint64
	names []string
}

// Parse reads a kallsyms file: "ffffffff81000000 T _stext [module]" lines.
// Only text symbols (t, T) are kept; addresses of 0 (hidden by
// kptr_restrict) are skipped.
func Parse(r io.Reader) (*Table, error) {
	type sym struct {
		addr uint64
		name string
	}
	var syms []sym
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		hex, name, _, ok := SplitText(line)
		if !ok {
			continue
		}
		addr, err := strconv.ParseUint(string(hex), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("kallsyms line %q: %w", line, err)
		}
		if addr == 0 {
			continue
		}
		syms = append(syms, sym{addr, string(name)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read kallsyms: %w", err)
	}
	sort.SliceStable(syms, func(i, j int) bool { return syms[i].addr < syms[j].addr })
	t := &Table{addrs: make([]uint64, len(syms)), names: make([]string, len(syms))}
	for i, s := range syms {
		t.addrs[i], t.names[i] = s.addr, s.name
	}
	return t, nil
}

// SplitText splits a kallsyms line of a text symbol (type t or T),
// "ffffffffc0a01000 t name\t[module]", into its address (hex, not parsed),
// name and module (nil in vmlinux). ok is false for any other line.
func SplitText(line []byte) (addr, name, module []byte, ok bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 || len(line) < sp+4 || line[sp+2] != ' ' || (line[sp+1] != 't' && line[sp+1] != 'T') {
		return nil, nil, nil, false
	}
	name = line[sp+3:]
	if t := bytes.IndexAny(name, "\t "); t >= 0 {
		module = bytes.Trim(name[t:], "\t []")
		name = name[:t]
	}
	return line[:sp], name, module, true
}

// Lookup returns the name of the function that contains addr: the text
// symbol with the highest address at or below addr.
func (t *Table) Lookup(addr uint64) (string, bool) {
	if t == nil || addr == 0 {
		return "", false
	}
	i := sort.Search(len(t.addrs), func(i int) bool { return t.addrs[i] > addr }) - 1
	if i < 0 {
		return "", false
	}
	if i == len(t.addrs)-1 && addr-t.addrs[i] > maxFuncSize {
		return "", false
	}
	return t.names[i], true
}

// Len returns the number of symbols.
func (t *Table) Len() int { return len(t.addrs) }

// Lazy loads a kallsyms file on first use, once.
type Lazy struct {
	Path string // DefaultPath if empty

	once sync.Once
	tab  *Table
	err  error
}

// Lookup is Table.Lookup on the table loaded from Path; it returns false if
// the file cannot be read.
func (l *Lazy) Lookup(addr uint64) (string, bool) {
	l.once.Do(func() {
		path := l.Path
		if path == "" {
			path = DefaultPath
		}
		f, err := os.Open(path)
		if err != nil {
			l.err = err
			return
		}
		defer f.Close()
		l.tab, l.err = Parse(f)
	})
	if l.err != nil {
		return "", false
	}
	return l.tab.Lookup(addr)
}

// Err returns the error loading the table, if Lookup was called and failed.
func (l *Lazy) Err() error { return l.err }
