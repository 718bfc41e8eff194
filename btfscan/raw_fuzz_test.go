package btfscan

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// fuzzBase is a small valid base for split BTF inputs.
var fuzzBase = func() *rawSpec {
	b, err := btf.NewBuilder(syntheticTypes(), nil)
	if err != nil {
		panic(err)
	}
	raw, err := b.Marshal(nil, nil)
	if err != nil {
		panic(err)
	}
	s, err := parseRaw(raw, nil)
	if err != nil {
		panic(err)
	}
	return s
}()

func marshalTypes(tb testing.TB, types []btf.Type, opts *btf.MarshalOptions) []byte {
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := b.Marshal(nil, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// FuzzParseRaw feeds arbitrary bytes to the raw reader, as base and as split
// BTF, and classifies whatever parses: it must never panic, and errors must
// be one line.
func FuzzParseRaw(f *testing.F) {
	le := marshalTypes(f, append(syntheticTypes(), edgeTypes()...), nil)
	be := marshalTypes(f, edgeTypes(), &btf.MarshalOptions{Order: binary.BigEndian})
	f.Add(le)
	f.Add(be)
	f.Add(le[:len(le)/2])
	f.Add(le[:30])
	f.Add([]byte("\x9f\xeb\x01\x00garbage"))
	f.Add([]byte("\x9f\xeb\x01\x00\x18\x00\x00\x00\x00\x00\x00\x00\x0c\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00" +
		"\x01\x00\x00\x00\x00\x00\x00\x0c\x05\x00\x00\x00\x00"))
	f.Add([]byte{})
	f.Add([]byte("this is not BTF"))
	if raw, err := os.ReadFile(DefaultBTFPath); err == nil && len(raw) > 1<<12 {
		f.Add(raw[:1<<12])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, base := range []*rawSpec{nil, fuzzBase} {
			sp, err := parseRaw(data, base)
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("multi-line error %q", err)
				}
				continue
			}
			s := scanner{funcs: map[string]*funcCands{}, tps: map[string]Tracepoint{}}
			s.walk(sp, "m")
			s.resolve(12, traceLists{})
			for _, id := range s.dropEnums {
				sp.enumValues(id)
			}
			dropReasonsRaw(sp, s.dropEnums)
			for id := uint32(0); id <= sp.lastID()+1 && id < 1000; id++ {
				sp.isSkbPointer(id)
				sp.isVoidPointer(id)
				sp.classifyParams([]uint32{id, id + 1})
				sp.enumValues(id)
				sp.typeName(id)
			}
			if base == nil {
				// Copying any named types gives BTF that parses.
				var names []string
				for id := uint32(1); id <= sp.lastID() && len(names) < 20; id++ {
					if n := sp.typeName(id); n != "" {
						names = append(names, n)
					}
				}
				if c, err := rawCORE(sp, names, names); err == nil {
					if _, err := parseRaw(c.BTF, nil); err != nil {
						t.Fatalf("rawCORE(%q) gave BTF that does not parse: %v", names, err)
					}
				}
			}
		}
	})
}

// FuzzELF feeds arbitrary bytes to the ELF .BTF extraction.
func FuzzELF(f *testing.F) {
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Add([]byte("\x7fELFgarbage garbage garbage garbage garbage garbage garbage garbage"))
	if raw, err := os.ReadFile("/proc/self/exe"); err == nil && len(raw) > 1<<12 {
		f.Add(raw[:1<<12])
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		btf, err := elfBTF(bytes.NewReader(data))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		parseRaw(btf, nil)
	})
}
