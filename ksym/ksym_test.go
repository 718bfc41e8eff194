package ksym

import (
	"strings"
	"testing"
)

const sample = `0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81a00100 t nf_hook_slow
ffffffff81a00000 T ip_rcv
ffffffff81a00300 d some_data
ffffffff81a00400 T __udp4_lib_rcv	[udp]
0000000000000000 T hidden
`

func TestLookup(t *testing.T) {
	tab, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 4 {
		t.Fatalf("kept %d symbols, want 4 (text symbols with an address)", tab.Len())
	}
	for _, tc := range []struct {
		addr uint64
		name string
		ok   bool
	}{
		{0xffffffff80ffffff, "", false},
		{0xffffffff81000000, "_stext", true},
		{0xffffffff81a00000, "ip_rcv", true},
		{0xffffffff81a000ff, "ip_rcv", true},
		{0xffffffff81a00100, "nf_hook_slow", true},
		{0xffffffff81a00350, "nf_hook_slow", true}, // data symbols do not end a function
		{0xffffffff81a00410, "__udp4_lib_rcv", true},
		{0xffffffff81a00400 + 2<<20, "", false}, // far beyond the last symbol
		{0, "", false},
	} {
		name, ok := tab.Lookup(tc.addr)
		if name != tc.name || ok != tc.ok {
			t.Errorf("Lookup(%#x) = %q, %v; want %q, %v", tc.addr, name, ok, tc.name, tc.ok)
		}
	}
}

func TestParseBadAddress(t *testing.T) {
	if _, err := Parse(strings.NewReader("zzzz T foo\n")); err == nil {
		t.Fatal("bad address parsed without error")
	}
}

func TestLazyMissingFile(t *testing.T) {
	l := &Lazy{Path: "/nonexistent/kallsyms"}
	if _, ok := l.Lookup(0xffffffff81000000); ok {
		t.Fatal("lookup succeeded without a table")
	}
	if l.Err() == nil {
		t.Fatal("no error for a missing file")
	}
}
