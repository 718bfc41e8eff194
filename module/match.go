package module

import (
	"fmt"
	"strconv"
	"strings"
)

// Op is a match operator.
type Op string

// The match operators.
const (
	OpEq  Op = "=="
	OpNe  Op = "!="
	OpLt  Op = "<"
	OpLe  Op = "<="
	OpGt  Op = ">"
	OpGe  Op = ">="
	OpAnd Op = "&" // value & MASK is non-zero
)

// Match is a parsed match condition, such as "== 0x10" or "& 4". Its
// operand is resolved against the field's type when the module is built.
type Match struct {
	Op      Op
	Operand string // as written, unquoted if it was a quoted string
	Quoted  bool   // the operand was a quoted string
}

// ParseMatch parses "OP OPERAND". The operand is a number (decimal, 0x
// hex, negative), a quoted string ("eth0") or a name (an enum constant, or
// a string for a string field).
func ParseMatch(s string) (Match, error) {
	t := strings.TrimSpace(s)
	var m Match
	for _, op := range []Op{OpEq, OpNe, OpLe, OpGe, OpLt, OpGt, OpAnd} {
		if strings.HasPrefix(t, string(op)) {
			m.Op = op
			t = strings.TrimSpace(t[len(op):])
			break
		}
	}
	if m.Op == "" {
		return Match{}, fmt.Errorf("match %q: want an operator (== != < <= > >= &) and a value", s)
	}
	if t == "" {
		return Match{}, fmt.Errorf("match %q: no value after %s", s, m.Op)
	}
	if t[0] == '"' || t[0] == '\'' {
		u, err := strconv.Unquote(`"` + strings.Trim(t, `"'`) + `"`)
		if err != nil || len(t) < 2 || t[len(t)-1] != t[0] {
			return Match{}, fmt.Errorf("match %q: bad quoted string", s)
		}
		m.Operand, m.Quoted = u, true
		return m, nil
	}
	if strings.ContainsAny(t, " \t") {
		return Match{}, fmt.Errorf("match %q: want one value after %s", s, m.Op)
	}
	m.Operand = t
	return m, nil
}

// parseInt parses a decimal, 0x hex, 0o octal or 0b binary integer,
// possibly negative, as the 64 bits a comparison uses.
func parseInt(s string) (uint64, bool) {
	neg := strings.HasPrefix(s, "-")
	u, err := strconv.ParseUint(strings.TrimPrefix(s, "-"), 0, 64)
	if err != nil {
		return 0, false
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -u, true
	}
	return u, true
}
