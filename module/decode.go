package module

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/ipftrace/ipftrace/journey"
	"github.com/ipftrace/ipftrace/output"
)

// Decode appends the fields of ev's data area to dst, in module order: "-"
// (JSON null) for a field that could not be read. It implements
// output.JSON's Data hook.
func (p *Program) Decode(ev *journey.Event, dst []output.Field) []output.Field {
	for i, s := range p.slots {
		f := output.Field{Name: s.name}
		if ev.DataValid&(1<<i) == 0 {
			f.Text, f.JSON = "-", "null"
			dst = append(dst, f)
			continue
		}
		raw := ev.Data[s.dataOff : s.dataOff+s.size]
		if s.str {
			if n := bytes.IndexByte(raw, 0); n >= 0 {
				raw = raw[:n]
			}
			f.Text = strings.ToValidUTF8(string(raw), "\ufffd")
			f.JSON = string(appendJSONString(nil, f.Text))
			dst = append(dst, f)
			continue
		}
		v := readUint(raw)
		if s.signed && s.size < 8 {
			sh := 64 - 8*s.size
			v = uint64(int64(v<<sh) >> sh)
		}
		switch s.format {
		case fmtHex:
			f.Text = "0x" + strconv.FormatUint(v, 16)
			f.JSON = strconv.FormatUint(v, 10)
			if s.ptr {
				f.JSON = `"` + f.Text + `"`
			}
		case fmtBool:
			f.Text = strconv.FormatBool(v != 0)
			f.JSON = f.Text
		case fmtEnum:
			if name, ok := s.names.byValue[v]; ok {
				f.Text = name
				f.JSON = string(appendJSONString(nil, name))
			} else {
				f.Text = number(v, s.signed)
				f.JSON = f.Text
			}
		case fmtFlags:
			f.Text = s.names.flags(v)
			f.JSON = string(appendJSONString(nil, f.Text))
		default:
			f.Text = number(v, s.signed)
			f.JSON = f.Text
		}
		dst = append(dst, f)
	}
	return dst
}

// Names returns the output names of the fields, in order.
func (p *Program) Names() []string {
	out := make([]string, len(p.slots))
	for i, s := range p.slots {
		out[i] = s.name
	}
	return out
}

func number(v uint64, signed bool) string {
	if signed {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatUint(v, 10)
}

func readUint(b []byte) uint64 {
	switch len(b) {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	case 8:
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// flags spells v as its bit names joined by |, in ascending bit order;
// bits without a name are appended in hex. 0 is "".
func (n *names) flags(v uint64) string {
	var parts []string
	for _, b := range n.bits {
		if v&b.bit != 0 {
			parts = append(parts, b.name)
			v &^= b.bit
		}
	}
	if v != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(v, 16))
	}
	return strings.Join(parts, "|")
}

// appendJSONString appends s as a JSON string (s is valid UTF-8).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
