package btfscan

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSetAddrs(t *testing.T) {
	const kallsyms = `ffffffff81000000 T _stext
ffffffff81a538d0 T consume_skb
ffffffff81a53900 t skb_put_data
ffffffff81a53a00 D consume_skb_data
ffffffff81b2c6b0 T ip_rcv
ffffffff81c00000 t skb_put_data
ffffffffc0a01000 t veth_xmit	[veth]
ffffffffc0a02000 t ip_rcv	[other]
`
	tests := []struct {
		name  string
		file  string
		funcs []Func
		want  []uint64
	}{
		{
			name: "vmlinux, module, first of duplicates, data symbols ignored",
			file: kallsyms,
			funcs: []Func{
				{Name: "consume_skb"}, {Name: "ip_rcv"}, {Name: "skb_put_data"},
				{Name: "veth_xmit", Module: "veth"}, {Name: "missing"},
			},
			want: []uint64{0xffffffff81a538d0, 0xffffffff81b2c6b0, 0xffffffff81a53900, 0xffffffffc0a01000, 0},
		},
		{
			name:  "a module's function is not a vmlinux symbol of the same name",
			file:  kallsyms,
			funcs: []Func{{Name: "veth_xmit"}, {Name: "ip_rcv", Module: "other"}},
			want:  []uint64{0, 0xffffffffc0a02000},
		},
		{
			name:  "hidden addresses (kptr_restrict): none",
			file:  "0000000000000000 T consume_skb\n0000000000000000 T ip_rcv\n",
			funcs: []Func{{Name: "consume_skb"}, {Name: "ip_rcv"}},
			want:  []uint64{0, 0},
		},
		{
			name:  "not a kallsyms file: none",
			file:  "consume_skb\nip_rcv [x]\nzzzz T ip_rcv\n",
			funcs: []Func{{Name: "consume_skb"}, {Name: "ip_rcv"}},
			want:  []uint64{0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kallsyms")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			setAddrs(tt.funcs, path)
			for i, f := range tt.funcs {
				if f.Addr != tt.want[i] {
					t.Errorf("%s [%s]: address %#x, want %#x", f.Name, f.Module, f.Addr, tt.want[i])
				}
			}
		})
	}
	t.Run("unreadable file: none", func(t *testing.T) {
		funcs := []Func{{Name: "consume_skb"}}
		setAddrs(funcs, filepath.Join(t.TempDir(), "absent"))
		if funcs[0].Addr != 0 {
			t.Errorf("address %#x from a missing file", funcs[0].Addr)
		}
	})
}
