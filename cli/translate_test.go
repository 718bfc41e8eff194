package cli

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestTranslateArgs(t *testing.T) {
	for _, tc := range []struct {
		in, want string // space-separated
	}{
		{"-iv 4", "--ipversion 4"},
		{"-iv=4", "--ipversion=4"},
		{"-sp 80 -dp 443", "--sport 80 --dport 443"},
		{"-sp=80 -dp=443", "--sport=80 --dport=443"},
		{"-ls", "--list-func"},
		{"-ls=true", "--list-func=true"},
		{"-ls -r ^ip_", "--list-func -r ^ip_"},
		{"-r -ls", "-r -ls"},                       // -ls is the regex
		{"--regex -ls", "--regex -ls"},             // same, long form
		{"--regex=x -ls", "--regex=x --list-func"}, // value was inline
		{"-rfoo -ls", "-rfoo --list-func"},         // value was inline
		{"-vr -ls", "-vr -ls"},                     // cluster ending in -r
		{"-v -ls", "-v --list-func"},               // -v takes no value
		{"-iv -ls", "--ipversion -ls"},             // -ls is -iv's (bad) value
		{"-sp -dp", "--sport -dp"},                 // -dp is --sport's (bad) value
		{"-e -sp -dp 1", "-e -sp --dport 1"},       // -e takes a value
		{"--auto -ls", "--auto --list-func"},       // --auto takes none
		{"-- -ls -iv", "-- -ls -iv"},               // after --: positional
		{"-ls -- -iv", "--list-func -- -iv"},       //
		{"m.yaml -iv 6", "m.yaml --ipversion 6"},   // flags after positionals
		{"- -ls", "- --list-func"},                 // lone dash
		{"-lsx -ivv --iv", "-lsx -ivv --iv"},       // not legacy flags
		{"-s -iv -d -sp", "-s -iv -d -sp"},         // values of -s and -d
		{"--saddr -iv -iv 4", "--saddr -iv --ipversion 4"},
		{"-p tcp -iv 4 -s 10.0.0.1 -dp 80 m.yaml", "-p tcp --ipversion 4 -s 10.0.0.1 --dport 80 m.yaml"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got := TranslateArgs(strings.Fields(tc.in))
			if want := strings.Fields(tc.want); !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
	if got := TranslateArgs(nil); len(got) != 0 {
		t.Errorf("nil: %q", got)
	}
}

func FuzzTranslate(f *testing.F) {
	for _, s := range []string{"-iv 4", "-r -ls", "-- -ls", "-vr -sp -dp=1", "-iv=4 m.yaml -ls", "-", "--regex= -ls"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, " ")
		out := TranslateArgs(args)
		if len(out) != len(args) {
			t.Fatalf("length changed: %q → %q", args, out)
		}
		for i := range args {
			if out[i] == args[i] {
				continue
			}
			name, _, _ := strings.Cut(args[i], "=")
			if _, ok := legacyFlags[name]; !ok {
				t.Fatalf("changed non-legacy %q to %q", args[i], out[i])
			}
		}
		if again := TranslateArgs(out); !slices.Equal(again, out) {
			t.Fatalf("not idempotent: %q → %q → %q", args, out, again)
		}
		// Parsing never panics.
		_, _ = ParseArgs(args)
	})
}

// FuzzParseArgs parses arbitrary command lines (arguments separated by NUL,
// so they may contain spaces): it must never panic, every error must be one
// line, and whatever it accepts must be within the documented ranges.
func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"-iv\x004\x00-s\x0010.0.0.1/24\x00-dp\x00443\x00-p\x00tcp\x00m.yaml",
		"--auto\x00-r\x00^ip_\x00-l\x001\x00-c\x005\x00--duration\x001m\x00-o\x00json",
		"gen-manifest\x00-r\x00tcp",
		"-ls\x00--auto\x00-b\x00fentry",
		"--auto\x00-e\x00kfree_skb,consume_skb\x00--idle\x00250ms",
		"--auto\x00-d\x00fd00::/129",
		"--auto\x00-sp=-1",
		"--\x00-ls",
		"--auto\x00--ready-file\x00/tmp/x\x00--btf\x00/dev/null\x00--no-kmods\x00-v",
		"-m\x00mod\x00--auto",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, "\x00")
		o, err := ParseArgs(args)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error for %q: %q", args, err)
			}
			return
		}
		if o.Help || o.Version {
			return
		}
		if o.Length < 1 || o.Count < 0 || o.Duration < 0 || o.Idle <= 0 {
			t.Fatalf("%q: out of range: length %d, count %d, duration %v, idle %v", args, o.Length, o.Count, o.Duration, o.Idle)
		}
		if !slices.Contains(Backends, o.Backend) || !slices.Contains(Formats, o.Format) {
			t.Fatalf("%q: backend %q, format %q", args, o.Backend, o.Format)
		}
		if !o.GenManifest && !o.ListFunc && o.Auto == (o.ManifestPath != "") {
			t.Fatalf("%q: accepted with auto %v and manifest %q", args, o.Auto, o.ManifestPath)
		}
		if err := o.Filter.Validate(); err != nil {
			t.Fatalf("%q: accepted an invalid filter: %v", args, err)
		}
	})
}

// TestValueFlagLists checks the lists TranslateArgs uses to skip a flag's
// value against the flag set: every flag that takes a value, and no other,
// is in valueLongFlags, and likewise for the one-letter shorthands.
func TestValueFlagLists(t *testing.T) {
	var r rawFlags
	fs := newFlagSet(&r)
	fs.VisitAll(func(f *pflag.Flag) {
		takes := f.Value.Type() != "bool"
		if valueLongFlags[f.Name] != takes {
			t.Errorf("--%s takes a value: %v, in valueLongFlags: %v", f.Name, takes, valueLongFlags[f.Name])
		}
		if f.Shorthand == "" {
			return
		}
		if inValue, inBool := strings.Contains(valueShorthands, f.Shorthand), strings.Contains(boolShorthands, f.Shorthand); inValue != takes || inBool == takes {
			t.Errorf("-%s (--%s) takes a value: %v, in valueShorthands: %v, in boolShorthands: %v", f.Shorthand, f.Name, takes, inValue, inBool)
		}
	})
}
