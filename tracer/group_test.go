package tracer

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/filter"
)

// TestGroupConstants creates the maps of a run with a filter and tracking
// set, then every program group, and checks that each group's own .rodata
// holds the same value for every constant as the maps' object's, although
// clang lays .rodata out differently in each object.
func TestGroupConstants(t *testing.T) {
	requireRoot(t)
	f := filter.Filter{
		Daddr: netip.MustParsePrefix("10.0.0.2/32"),
		Proto: 17,
		Sport: -1,
		Dport: 53,
	}
	// The maps come from the object of the backend's group: each in turn.
	for _, mg := range bpf.Groups {
		t.Run(mg.String(), func(t *testing.T) { checkGroupConstants(t, mg, f) })
	}
}

func checkGroupConstants(t *testing.T, mg bpf.Group, f filter.Filter) {
	o, err := newObjects(mg, f, nil, true, true, 0, sharedBTF(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	read := func(m *ebpf.Map) []byte {
		t.Helper()
		val := make([]byte, m.ValueSize())
		if err := m.Lookup(uint32(0), &val); err != nil {
			t.Fatal(err)
		}
		return val
	}
	base := read(o.maps[".rodata"])
	set := 0
	for _, g := range bpf.Groups {
		gr, err := o.group(g)
		if err != nil {
			t.Fatalf("%v: %v", g, err)
		}
		got := read(gr.maps[".rodata"])
		for name, v := range gr.spec.Variables {
			if v.SectionName != ".rodata" {
				continue
			}
			bv := o.spec.Variables[name]
			want := base[bv.Offset : bv.Offset+bv.Size()]
			if have := got[v.Offset : v.Offset+v.Size()]; !bytes.Equal(have, want) {
				t.Errorf("%v: %s = %x, want %x", g, name, have, want)
			}
			if g == bpf.Tracepoint && bytes.ContainsFunc(want, func(r rune) bool { return r != 0 }) {
				set++
			}
		}
	}
	if set < 5 {
		t.Errorf("only %d constants are non-zero: the filter did not reach .rodata?", set)
	}
}
