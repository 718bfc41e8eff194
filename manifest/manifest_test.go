package manifest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ipftrace/ipftrace/btfscan"
)

const example = `# the classic example
functions:
  - name: ip_rcv
    skb_pos: 1

  - name: ip_local_out
    skb_pos: 3

  - name: ip_local_deliver_finish
    skb_pos: 3
    egress: true
  - {name: ip_forward}
`

func TestParse(t *testing.T) {
	m, err := Parse([]byte(example), "example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{Name: "ip_rcv", SkbPos: 1},
		{Name: "ip_local_out", SkbPos: 3},
		{Name: "ip_local_deliver_finish", SkbPos: 3, Egress: true},
		{Name: "ip_forward"},
	}
	if !slices.Equal(m.Functions, want) {
		t.Errorf("got %+v, want %+v", m.Functions, want)
	}
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Entry
	}{
		{"empty list", "functions: []", []Entry{}},
		{"null list", "functions:", nil},
		{"flow style", "{functions: [{name: a, skb_pos: 2, egress: false}]}", []Entry{{Name: "a", SkbPos: 2}}},
		{"hex pos", "functions: [{name: a, skb_pos: 0x3}]", []Entry{{Name: "a", SkbPos: 3}}},
		{"quoted name", `functions: [{name: "a_b"}]`, []Entry{{Name: "a_b"}}},
		{"egress True", "functions: [{name: a, egress: True}]", []Entry{{Name: "a", Egress: true}}},
		{"document marker", "---\nfunctions: [{name: a}]\n...\n", []Entry{{Name: "a"}}},
		{"crlf", "functions:\r\n  - name: a\r\n    skb_pos: 12\r\n", []Entry{{Name: "a", SkbPos: 12}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.in), "m")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Functions, tc.want) {
				t.Errorf("got %+v, want %+v", m.Functions, tc.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"empty", "", "manifest m: empty file"},
		{"whitespace", " \n\t\n", "manifest m: empty file"},
		{"comments only", "# nothing\n", "manifest m: empty file (only comments)"},
		{"binary", "\x7fELF\x02\x01\x01\x00\x00", "manifest m: not a YAML file (binary data)"},
		{"invalid utf8", "functions: [{name: \xff\xfe}]", "binary data"},
		{"scalar", "hello", "manifest m:1: expected a mapping with a 'functions' key, found the string \"hello\""},
		{"list root", "- name: ip_rcv\n", "manifest m:1: expected a mapping"},
		{"bad yaml", "functions:\n  - name: a\n   skb_pos: 1\n", "manifest m:1: not valid YAML: did not find expected"},
		{"tab indent", "functions:\n\t- name: a\n", "not valid YAML"},
		{"unknown top key", "functions: []\nfunctons: []\n", "manifest m:2: unknown key \"functons\""},
		{"missing functions", "other: 1\n", "unknown key \"other\""},
		{"missing functions empty map", "{}", "manifest m:1: missing key 'functions'"},
		{"functions scalar", "functions: ip_rcv\n", "manifest m:1: 'functions' must be a list, found the string \"ip_rcv\""},
		{"functions map", "functions:\n  name: ip_rcv\n", "manifest m:2: 'functions' must be a list, found a mapping"},
		{"entry scalar", "functions:\n  - ip_rcv\n", "manifest m:2: function 1: expected a mapping"},
		{"entry list", "functions:\n  - [ip_rcv]\n", "function 1: expected a mapping"},
		{"unknown key", "functions:\n  - name: a\n    skbpos: 1\n", "manifest m:3: function 1: unknown key \"skbpos\""},
		{"missing name", "functions:\n  - name: a\n  - skb_pos: 1\n", "manifest m:3: function 2: missing 'name'"},
		{"empty name", "functions:\n  - name: ''\n", "manifest m:2: function 1: empty function name"},
		{"null name", "functions:\n  - name:\n", "function 1: name must be a string, found nothing"},
		{"int name", "functions:\n  - name: 42\n", "function 1: name must be a string, found int \"42\""},
		{"bool name", "functions:\n  - name: yes\n", ""}, // YAML 1.2: "yes" is a string
		{"space in name", "functions:\n  - name: ip rcv\n", "invalid function name \"ip rcv\""},
		{"list name", "functions:\n  - name: [a]\n", "name must be a string, found a list"},
		{"pos zero", "functions:\n  - name: a\n    skb_pos: 0\n", "manifest m:3: function 1: skb_pos 0 out of range 1..12"},
		{"pos 13", "functions:\n  - name: a\n    skb_pos: 13\n", "skb_pos 13 out of range 1..12"},
		{"pos negative", "functions:\n  - name: a\n    skb_pos: -1\n", "skb_pos -1 out of range"},
		{"pos huge", "functions:\n  - name: a\n    skb_pos: 99999999999999999999999\n", "skb_pos"},
		{"pos string", "functions:\n  - name: a\n    skb_pos: one\n", "skb_pos must be an integer, found the string \"one\""},
		{"pos float", "functions:\n  - name: a\n    skb_pos: 1.5\n", "skb_pos must be an integer, found float \"1.5\""},
		{"pos quoted", "functions:\n  - name: a\n    skb_pos: \"1\"\n", "skb_pos must be an integer"},
		{"egress string", "functions:\n  - name: a\n    egress: maybe\n", "manifest m:3: function 1: egress must be true or false, found the string \"maybe\""},
		{"egress int", "functions:\n  - name: a\n    egress: 1\n", "egress must be true or false"},
		{"duplicate function", "functions:\n  - name: a\n  - name: b\n  - name: a\n", "manifest m:4: duplicate function a (first listed on line 2)"},
		{"duplicate key", "functions:\n  - name: a\n    name: b\n", "manifest m:3: function 1: duplicate key 'name'"},
		{"duplicate functions", "functions: []\nfunctions: []\n", "duplicate key 'functions'"},
		{"non-string key", "functions:\n  - 1: a\n", "keys must be strings"},
		{"alias", "x: &a [1]\nfunctions: *a\n", "unknown key \"x\""},
		{"alias entry", "functions:\n  - &a {name: a}\n  - *a\n", "function 2: expected a mapping"},
		{"merge key", "functions:\n  - <<: {name: a}\n", "keys must be strings"},
		{"bad yaml open", "functions: [", "not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), "m")
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n  does not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.yaml")
	if err := os.WriteFile(huge, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, MaxFileSize+1); err != nil { // sparse
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.yaml"), "read manifest " + filepath.Join(dir, "nope.yaml") + ": no such file or directory"},
		{"directory", dir, "read manifest " + dir + ": is a directory"},
		{"device", "/dev/zero", "read manifest /dev/zero: not a regular file"},
		{"fifo", fifo, "read manifest " + fifo + ": not a regular file"},
		{"too large", huge, "read manifest " + huge + ": larger than 64 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
	p := filepath.Join(dir, "ok.yaml")
	os.WriteFile(p, []byte(example), 0o644)
	m, err := Load(p)
	if err != nil || len(m.Functions) != 4 {
		t.Errorf("Load: %v, %+v", err, m)
	}
}

func TestWriteRoundTrip(t *testing.T) {
	for _, m := range []*Manifest{
		{},
		{Functions: []Entry{{Name: "ip_rcv", SkbPos: 1}, {Name: "kfree_skb", SkbPos: 1, Egress: true}, {Name: "x"}}},
		{Functions: []Entry{{Name: "true"}, {Name: "null"}, {Name: "No"}, {Name: "a.isra.0", SkbPos: 12}}},
	} {
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			t.Fatal(err)
		}
		got, err := Parse(buf.Bytes(), "roundtrip")
		if err != nil {
			t.Fatalf("%v\n%s", err, buf.String())
		}
		if len(got.Functions) != len(m.Functions) || (len(m.Functions) > 0 && !slices.Equal(got.Functions, m.Functions)) {
			t.Errorf("got %+v, want %+v\n%s", got.Functions, m.Functions, buf.String())
		}
	}
}

func TestLargeManifest(t *testing.T) {
	m := &Manifest{Functions: make([]Entry, 200_000)}
	for i := range m.Functions {
		m.Functions[i] = Entry{Name: fmt.Sprintf("func_%d", i), SkbPos: i%12 + 1, Egress: i%7 == 0}
	}
	var buf bytes.Buffer
	if err := Write(&buf, m); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := Parse(buf.Bytes(), "large")
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	t.Logf("parsed %d entries (%d bytes) in %v", len(got.Functions), buf.Len(), d)
	if !slices.Equal(got.Functions, m.Functions) {
		t.Error("round trip differs")
	}
	if d > 20*time.Second {
		t.Errorf("too slow: %v", d)
	}
}

func fakeScan() *btfscan.Result {
	return &btfscan.Result{
		Funcs: []btfscan.Func{
			{Name: "consume_skb", SkbPos: 1, NumArgs: 1},
			{Name: "ip_output", SkbPos: 3, NumArgs: 3},
			{Name: "ip_rcv", SkbPos: 1, NumArgs: 4},
			{Name: "kfree_skb_partial", SkbPos: 1, NumArgs: 2},
			{Name: "sk_skb_reason_drop", SkbPos: 2, NumArgs: 3},
		},
		Tracepoints: []btfscan.Tracepoint{
			{Name: "consume_skb", SkbPos: 1, NumArgs: 2},
			{Name: "kfree_skb", SkbPos: 1, NumArgs: 4},
			{Name: "net_dev_queue", SkbPos: 1, NumArgs: 1},
		},
	}
}

func TestReconcile(t *testing.T) {
	m := &Manifest{Functions: []Entry{
		{Name: "ip_rcv", SkbPos: 1},
		{Name: "foo", SkbPos: 1},
		{Name: "ip_output", SkbPos: 1, Egress: true},
		{Name: "bar"},
		{Name: "consume_skb"},
	}}
	targets, sum := Reconcile(m, fakeScan())
	want := []Entry{{Name: "ip_rcv", SkbPos: 1}, {Name: "ip_output", SkbPos: 3, Egress: true}, {Name: "consume_skb", SkbPos: 1}}
	if !slices.Equal(targets, want) {
		t.Errorf("targets %+v, want %+v", targets, want)
	}
	if got, w := sum.String(), "manifest: skipped 2 unknown functions (foo, bar); corrected skb_pos of 1 (ip_output 1→3)"; got != w {
		t.Errorf("summary %q\n      want %q", got, w)
	}
	_, sum = Reconcile(&Manifest{Functions: []Entry{{Name: "ip_rcv", SkbPos: 1}}}, fakeScan())
	if !sum.Empty() || sum.String() != "" {
		t.Errorf("summary %q, want empty", sum)
	}
}

func TestSummaryCap(t *testing.T) {
	var s Summary
	for i := range 13 {
		s.Skipped = append(s.Skipped, fmt.Sprintf("f%d", i))
	}
	want := "manifest: skipped 13 unknown functions (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, …and 3 more)"
	if s.String() != want {
		t.Errorf("got %q\nwant %q", s.String(), want)
	}
	s = Summary{Skipped: []string{"a"}}
	if s.String() != "manifest: skipped 1 unknown function (a)" {
		t.Errorf("got %q", s.String())
	}
}

func TestDefaultEgress(t *testing.T) {
	scan := fakeScan()
	if got, want := DefaultEgress(scan), []string{"sk_skb_reason_drop", "consume_skb", "kfree_skb_partial"}; !slices.Equal(got, want) {
		t.Errorf("DefaultEgress %v, want %v", got, want)
	}
	if got, want := DefaultEgressTracepoints(scan), []string{"kfree_skb", "consume_skb"}; !slices.Equal(got, want) {
		t.Errorf("DefaultEgressTracepoints %v, want %v", got, want)
	}
}

func TestDefaultEgressHost(t *testing.T) {
	if _, err := os.Stat(btfscan.DefaultBTFPath); err != nil {
		t.Skipf("SKIPPING: %s not readable (%v); needs kernel BTF", btfscan.DefaultBTFPath, err)
	}
	scan, err := btfscan.Scan(btfscan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eg := DefaultEgress(scan)
	t.Logf("default egress on this kernel: %v", eg)
	if !slices.Contains(eg, "consume_skb") {
		t.Errorf("consume_skb missing from %v", eg)
	}
	if !slices.Contains(eg, "sk_skb_reason_drop") && !slices.Contains(eg, "kfree_skb_reason") && !slices.Contains(eg, "kfree_skb") {
		t.Errorf("no drop function in %v", eg)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(example))
	f.Add([]byte("functions: []"))
	f.Add([]byte("functions:\n  - name: a\n    skb_pos: 13\n"))
	f.Add([]byte("x: &a [1]\nfunctions: *a\n"))
	f.Add([]byte("\x7fELF"))
	f.Add([]byte("functions: [{name: \"true\", egress: yes}]"))
	f.Add([]byte("functions:\n  - <<: {name: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data, "fuzz")
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := Write(&buf, m); err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(buf.Bytes(), "rewritten")
		if err != nil {
			t.Fatalf("rewritten manifest does not parse: %v\n%s", err, buf.String())
		}
		if len(m.Functions) != len(m2.Functions) || (len(m.Functions) > 0 && !slices.Equal(m.Functions, m2.Functions)) {
			t.Fatalf("round trip differs: %+v vs %+v", m.Functions, m2.Functions)
		}
	})
}
