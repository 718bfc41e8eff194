// Package module implements ipftrace's custom data modules (-m): named
// fields read from each traced skb, with optional match conditions that
// decide in BPF whether an event is sent at all.
//
// A module is YAML:
//
//	name: gso
//	fields:
//	  - {name: len,      expr: skb->len}
//	  - {name: gso_type, expr: shinfo->gso_type, format: "flags:SKB_GSO_*"}
//	  - {name: mark,     expr: skb->mark, format: hex, match: "== 0x10"}
//
// The built-in modules (gso, mark, dev, netns, meta) are such files,
// embedded. Expressions are resolved against the running kernel's BTF into
// offsets and pointer loads (Build), and compiled into the BPF instructions
// of the fill_data subprogram of bpf/ipftrace.c, with cilium/ebpf's asm
// package: no compiler is needed where ipftrace runs.
package module

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Field is one field of a module as written.
type Field struct {
	Name   string `yaml:"name"`
	Expr   string `yaml:"expr"`
	Format string `yaml:"format"`
	Match  string `yaml:"match"`
}

// Module is a parsed module file.
type Module struct {
	Name   string  `yaml:"name"`
	Fields []Field `yaml:"fields"`

	source string // the -m argument it came from
}

// Builtins returns the names of the built-in modules, sorted.
func Builtins() []string {
	ents, err := builtinFS.ReadDir("builtin")
	if err != nil {
		panic(err) // embedded at build time
	}
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(names)
	return names
}

// isPath reports whether a -m argument names a file rather than a built-in.
func isPath(arg string) bool {
	return strings.ContainsRune(arg, '/') || strings.HasSuffix(arg, ".yaml") || strings.HasSuffix(arg, ".yml")
}

// Load reads the module named by a -m argument: a built-in name or a path
// to a YAML file.
func Load(arg string) (*Module, error) {
	if !isPath(arg) {
		b, err := builtinFS.ReadFile("builtin/" + arg + ".yaml")
		if err != nil {
			return nil, fmt.Errorf("module %s: no such built-in module (built-ins: %s; a file needs a / or a .yaml suffix)",
				arg, strings.Join(Builtins(), ", "))
		}
		return Parse(arg, b)
	}
	b, err := os.ReadFile(arg)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("module %s: %w", arg, err)
	}
	return Parse(arg, b)
}

// maxFileSize bounds a module file.
const maxFileSize = 1 << 20

// Parse parses a module file; source names it in errors.
func Parse(source string, b []byte) (*Module, error) {
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("module %s: file larger than %d bytes", source, maxFileSize)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var m Module
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("module %s: empty file", source)
		}
		return nil, fmt.Errorf("module %s: %s", source, oneLine(err.Error()))
	}
	m.source = source
	if m.Name == "" {
		m.Name = strings.TrimSuffix(strings.TrimSuffix(path.Base(source), ".yaml"), ".yml")
	}
	if !validName(m.Name) {
		return nil, fmt.Errorf("module %s: name %q: want letters, digits, _ or -", source, m.Name)
	}
	if len(m.Fields) == 0 {
		return nil, fmt.Errorf("module %s: no fields", source)
	}
	if len(m.Fields) > MaxFields {
		return nil, fmt.Errorf("module %s: too many fields: %d, at most %d", source, len(m.Fields), MaxFields)
	}
	seen := map[string]bool{}
	for i, f := range m.Fields {
		switch {
		case f.Name == "":
			return nil, fmt.Errorf("module %s: field %d: no name", source, i+1)
		case !validName(f.Name):
			return nil, fmt.Errorf("module %s: field %q: name: want letters, digits, _ or -", source, f.Name)
		case seen[f.Name]:
			return nil, fmt.Errorf("module %s: field %s: defined twice", source, f.Name)
		case f.Expr == "":
			return nil, fmt.Errorf("module %s: field %s: no expr", source, f.Name)
		}
		seen[f.Name] = true
	}
	return &m, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
