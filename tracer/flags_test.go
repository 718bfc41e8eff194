package tracer

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/filter"
)

// TestSetFlag checks the two ways the run sets ipft_disabled and
// ipft_reader_idle: in place through the section's memory mapping, and on a
// kernel without mmapable array maps (before Linux 5.5), where stopping
// the programs rewrites the whole section and the idle flag is given up.
// Either way the variables beside the flag (track_live, written by the
// programs) keep their values.
func TestSetFlag(t *testing.T) {
	requireRoot(t)
	scan := coreScan(t)
	for _, tt := range []struct {
		name    string
		mmap    bool // the data section map is mmapable
		idleErr bool // setReaderIdle fails
	}{
		{"mapped", true, false},
		{"no mapping (before 5.5)", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := newObjects(bpf.Tracepoint, filter.Any(), nil, true, true, 0, sharedBTF(), scan.CORE)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			section := o.spec.Variables["ipft_disabled"].SectionName
			for _, v := range []string{"ipft_reader_idle", "track_live"} {
				if got := o.spec.Variables[v].SectionName; got != section {
					t.Fatalf("%s is in %s, ipft_disabled in %s", v, got, section)
				}
			}
			if _, err := o.maps[section].Memory(); err != nil {
				t.Skipf("%s: SKIPPED, the data section map is not mmapable on this kernel: %v", t.Name(), err)
			}
			if !tt.mmap {
				ms := o.spec.Maps[section].Copy()
				ms.Flags &^= unix.BPF_F_MMAPABLE
				ms.Contents = nil
				m, err := ebpf.NewMap(ms)
				if err != nil {
					t.Fatalf("create %s without BPF_F_MMAPABLE: %v", section, err)
				}
				if _, err := m.Memory(); err == nil {
					t.Fatalf("%s without BPF_F_MMAPABLE still has a memory mapping", section)
				}
				o.maps[section].Close()
				o.maps[section] = m
			}
			m := o.maps[section]
			read := func() []byte {
				t.Helper()
				val := make([]byte, m.ValueSize())
				if err := m.Lookup(uint32(0), &val); err != nil {
					t.Fatal(err)
				}
				return val
			}
			u32 := func(val []byte, name string) uint32 {
				return binary.NativeEndian.Uint32(val[o.spec.Variables[name].Offset:])
			}
			// What the programs would have counted meanwhile.
			val := read()
			binary.NativeEndian.PutUint64(val[o.spec.Variables["track_live"].Offset:], 42)
			if err := m.Update(uint32(0), val, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}

			for _, on := range []bool{true, false} {
				if err := o.setDisabled(on); err != nil {
					t.Fatalf("setDisabled(%v): %v", on, err)
				}
				if got := u32(read(), "ipft_disabled"); got != map[bool]uint32{true: 1}[on] {
					t.Errorf("setDisabled(%v): ipft_disabled = %d", on, got)
				}
				err := o.setReaderIdle(on)
				if (err != nil) != tt.idleErr {
					t.Errorf("setReaderIdle(%v): err = %v, want an error: %v", on, err, tt.idleErr)
				}
				want := map[bool]uint32{true: 1}[on && !tt.idleErr]
				if got := u32(read(), "ipft_reader_idle"); got != want {
					t.Errorf("setReaderIdle(%v): ipft_reader_idle = %d, want %d", on, got, want)
				}
				if live, err := o.readGlobal("track_live"); err != nil || live != 42 {
					t.Errorf("track_live = %d (%v) after setting the flags, want 42", live, err)
				}
			}
		})
	}
}
