package gen

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/manifest"
)

func fakeScan() *btfscan.Result {
	return &btfscan.Result{Funcs: []btfscan.Func{
		{Name: "consume_skb", SkbPos: 1, NumArgs: 1},
		{Name: "ip_output", SkbPos: 3, NumArgs: 3},
		{Name: "ip_rcv", SkbPos: 1, NumArgs: 4},
		{Name: "tcp_v4_rcv", SkbPos: 1, NumArgs: 1},
	}}
}

func TestManifest(t *testing.T) {
	for _, tc := range []struct {
		name string
		re   string
		want []manifest.Entry
	}{
		{"all", "", []manifest.Entry{
			{Name: "consume_skb", SkbPos: 1, Egress: true},
			{Name: "ip_output", SkbPos: 3},
			{Name: "ip_rcv", SkbPos: 1},
			{Name: "tcp_v4_rcv", SkbPos: 1},
		}},
		{"ip", "^ip_", []manifest.Entry{{Name: "ip_output", SkbPos: 3}, {Name: "ip_rcv", SkbPos: 1}}},
		{"none", "^nothing$", []manifest.Entry{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var re *regexp.Regexp
			if tc.re != "" {
				re = regexp.MustCompile(tc.re)
			}
			m := Manifest(fakeScan(), re)
			if !slices.Equal(m.Functions, tc.want) {
				t.Errorf("got %+v, want %+v", m.Functions, tc.want)
			}
			roundTrip(t, m)
		})
	}
}

func roundTrip(t *testing.T, m *manifest.Manifest) {
	t.Helper()
	var buf bytes.Buffer
	if err := manifest.Write(&buf, m); err != nil {
		t.Fatal(err)
	}
	got, err := manifest.Parse(buf.Bytes(), "generated")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Functions) != len(m.Functions) || (len(m.Functions) > 0 && !slices.Equal(got.Functions, m.Functions)) {
		t.Errorf("round trip differs")
	}
}

func TestManifestHost(t *testing.T) {
	if _, err := os.Stat(btfscan.DefaultBTFPath); err != nil {
		t.Skipf("SKIPPING: %s not readable (%v); needs kernel BTF", btfscan.DefaultBTFPath, err)
	}
	scan, err := btfscan.Scan(btfscan.Options{Kmods: true})
	if err != nil {
		t.Fatal(err)
	}
	m := Manifest(scan, nil)
	if len(m.Functions) != len(scan.Funcs) {
		t.Errorf("%d entries for %d functions", len(m.Functions), len(scan.Funcs))
	}
	roundTrip(t, m)
	targets, sum := manifest.Reconcile(m, scan)
	if !sum.Empty() || len(targets) != len(m.Functions) {
		t.Errorf("generated manifest does not reconcile cleanly: %s", sum)
	}
}
