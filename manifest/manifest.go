// Package manifest reads and writes manifest files: YAML lists of the kernel
// functions to trace, where their skb argument is, and which of them end a
// packet's journey.
//
//	functions:
//	  - name: ip_rcv
//	    skb_pos: 1
//	  - name: kfree_skb
//	    skb_pos: 1
//	    egress: true
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxSkbPos is the highest argument position a manifest may name.
const MaxSkbPos = 12

// Entry is one function of a manifest.
type Entry struct {
	Name   string // kernel function name
	SkbPos int    // 1-based position of the struct sk_buff * argument; 0: take it from BTF
	Egress bool   // a journey ends when it reaches this function
}

// Manifest is a parsed manifest file.
type Manifest struct {
	Functions []Entry // in file order
}

// Load reads and parses the manifest file at path.
func Load(path string) (*Manifest, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, cause(err))
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("read manifest %s: is a directory", path)
	}
	if !fi.Mode().IsRegular() {
		// A device or a FIFO: /dev/zero would be read until memory runs
		// out, a FIFO without a writer blocks forever.
		return nil, fmt.Errorf("read manifest %s: not a regular file", path)
	}
	if fi.Size() > MaxFileSize {
		return nil, fmt.Errorf("read manifest %s: larger than %d MiB", path, MaxFileSize>>20)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, cause(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", path, cause(err))
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("read manifest %s: larger than %d MiB", path, MaxFileSize>>20)
	}
	return Parse(data, path)
}

// MaxFileSize bounds a manifest file (one listing every skb function of a
// kernel is about 100 KiB).
const MaxFileSize = 64 << 20

func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse parses manifest YAML; name labels errors (usually the file path).
// Errors name the offending line: "manifest m.yaml:4: unknown key ...".
func Parse(data []byte, name string) (m *Manifest, err error) {
	p := parser{name: name}
	defer func() {
		// The YAML library has panicked on hostile input before; a manifest
		// must never crash the tool.
		if r := recover(); r != nil {
			m, err = nil, p.errorf(0, "not a valid YAML file")
		}
	}()
	return p.parse(data)
}

type parser struct {
	name string
}

// parseError is a manifest problem at a line (0: the whole file).
type parseError struct {
	name string
	line int
	msg  string
}

func (e *parseError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("manifest %s:%d: %s", e.name, e.line, e.msg)
	}
	return fmt.Sprintf("manifest %s: %s", e.name, e.msg)
}

func (p *parser) errorf(line int, format string, args ...any) error {
	return &parseError{name: p.name, line: line, msg: fmt.Sprintf(format, args...)}
}

func (p *parser) parse(data []byte) (*Manifest, error) {
	if bytes.IndexByte(data, 0) >= 0 || !utf8.Valid(data) {
		return nil, p.errorf(0, "not a YAML file (binary data)")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, p.errorf(0, "empty file")
	}

	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, p.errorf(0, "empty file (only comments)")
	}
	root := doc.Content[0]
	if root.Kind == yaml.AliasNode {
		return nil, p.errorf(root.Line, "aliases are not supported")
	}
	if root.Kind != yaml.MappingNode {
		return nil, p.errorf(root.Line, "expected a mapping with a 'functions' key, found %s", describe(root))
	}

	var funcs *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		key, err := p.key(k)
		if err != nil {
			return nil, err
		}
		switch key {
		case "functions":
			if funcs != nil {
				return nil, p.errorf(k.Line, "duplicate key 'functions'")
			}
			funcs = v
		default:
			return nil, p.errorf(k.Line, "unknown key %q (want 'functions')", key)
		}
	}
	if funcs == nil {
		return nil, p.errorf(root.Line, "missing key 'functions'")
	}

	m := &Manifest{}
	if funcs.Kind == yaml.ScalarNode && funcs.ShortTag() == "!!null" {
		return m, nil
	}
	if funcs.Kind != yaml.SequenceNode {
		return nil, p.errorf(funcs.Line, "'functions' must be a list, found %s", describe(funcs))
	}

	m.Functions = make([]Entry, 0, len(funcs.Content))
	seen := make(map[string]int, len(funcs.Content))
	for i, n := range funcs.Content {
		e, err := p.entry(n, i+1)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[e.Name]; dup {
			return nil, p.errorf(n.Line, "duplicate function %s (first listed on line %d)", e.Name, prev)
		}
		seen[e.Name] = n.Line
		m.Functions = append(m.Functions, e)
	}
	return m, nil
}

func (p *parser) key(k *yaml.Node) (string, error) {
	if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
		return "", p.errorf(k.Line, "keys must be strings, found %s", describe(k))
	}
	return k.Value, nil
}

func (p *parser) entry(n *yaml.Node, idx int) (Entry, error) {
	if n.Kind != yaml.MappingNode {
		return Entry{}, p.errorf(n.Line, "function %d: expected a mapping like {name: ip_rcv, skb_pos: 1}, found %s", idx, describe(n))
	}
	var e Entry
	var haveName, havePos, haveEgress bool
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, err := p.key(k)
		if err != nil {
			return Entry{}, err
		}
		if v.Kind == yaml.AliasNode {
			return Entry{}, p.errorf(v.Line, "function %d: aliases are not supported", idx)
		}
		switch key {
		case "name":
			if haveName {
				return Entry{}, p.errorf(k.Line, "function %d: duplicate key 'name'", idx)
			}
			haveName = true
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
				return Entry{}, p.errorf(v.Line, "function %d: name must be a string, found %s", idx, describe(v))
			}
			if err := ValidName(v.Value); err != nil {
				return Entry{}, p.errorf(v.Line, "function %d: %v", idx, err)
			}
			e.Name = v.Value
		case "skb_pos":
			if havePos {
				return Entry{}, p.errorf(k.Line, "function %d: duplicate key 'skb_pos'", idx)
			}
			havePos = true
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
				return Entry{}, p.errorf(v.Line, "function %d: skb_pos must be an integer, found %s", idx, describe(v))
			}
			pos, err := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 0, 64)
			if err != nil {
				if derr := v.Decode(&pos); derr != nil {
					return Entry{}, p.errorf(v.Line, "function %d: skb_pos %q is not an integer", idx, v.Value)
				}
			}
			if pos < 1 || pos > MaxSkbPos {
				return Entry{}, p.errorf(v.Line, "function %d: skb_pos %s out of range 1..%d", idx, v.Value, MaxSkbPos)
			}
			e.SkbPos = int(pos)
		case "egress":
			if haveEgress {
				return Entry{}, p.errorf(k.Line, "function %d: duplicate key 'egress'", idx)
			}
			haveEgress = true
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
				return Entry{}, p.errorf(v.Line, "function %d: egress must be true or false, found %s", idx, describe(v))
			}
			var b bool
			if err := v.Decode(&b); err != nil {
				return Entry{}, p.errorf(v.Line, "function %d: egress must be true or false, found %s", idx, describe(v))
			}
			e.Egress = b
		default:
			return Entry{}, p.errorf(k.Line, "function %d: unknown key %q (want name, skb_pos, egress)", idx, key)
		}
	}
	if !haveName {
		return Entry{}, p.errorf(n.Line, "function %d: missing 'name'", idx)
	}
	return e, nil
}

// ValidName checks that name looks like a kernel symbol: letters, digits,
// underscores and dots, not starting with a digit or dot.
func ValidName(name string) error {
	if name == "" {
		return errors.New("empty function name")
	}
	if len(name) > 256 {
		return fmt.Errorf("function name %.20q… too long", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case (c >= '0' && c <= '9' || c == '.') && i > 0:
		default:
			return fmt.Errorf("invalid function name %q", name)
		}
	}
	return nil
}

// yamlError turns "yaml: line 3: did not find expected key" into a manifest
// error for line 3.
func (p *parser) yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	msg = strings.ReplaceAll(msg, "\n", "; ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				return p.errorf(line, "not valid YAML: %s", text)
			}
		}
	}
	return p.errorf(0, "not valid YAML: %s", msg)
}

// describe names a node's kind for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!str":
			return fmt.Sprintf("the string %s", quoteShort(n.Value))
		default:
			tag := n.ShortTag()
			if t, ok := strings.CutPrefix(tag, "!!"); ok && isWord(t) {
				return fmt.Sprintf("%s %s", t, quoteShort(n.Value))
			}
			// A tag of the user's own can hold anything, a newline too
			// (fuzzing found "!\n"): quote it.
			return fmt.Sprintf("a value tagged %s: %s", quoteShort(tag), quoteShort(n.Value))
		}
	}
	return "something else"
}

// isWord reports whether s is a non-empty run of ASCII letters and digits.
func isWord(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return s != ""
}

func quoteShort(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}
