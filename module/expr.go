package module

import (
	"fmt"
	"strconv"
	"strings"
)

// Roots are the names a field expression may start with.
var Roots = []string{"skb", "shinfo"}

// StepKind is how one step of an expression goes deeper.
type StepKind uint8

// The step kinds.
const (
	Arrow StepKind = iota // ->member: through a pointer
	Dot                   // .member: into a nested struct or union
	Index                 // [N]: an array element
)

// Step is one member access or index of an expression.
type Step struct {
	Kind   StepKind
	Member string // Arrow, Dot
	Index  int    // Index
}

// Expr is a parsed field expression such as skb->dev->name or
// shinfo->frags[0].len.
type Expr struct {
	Root  string // skb or shinfo
	Steps []Step
}

// String returns the expression in its canonical spelling.
func (e Expr) String() string {
	return e.prefix(len(e.Steps))
}

// prefix returns the canonical spelling of the root and the first n steps.
func (e Expr) prefix(n int) string {
	var b strings.Builder
	b.WriteString(e.Root)
	for _, s := range e.Steps[:n] {
		switch s.Kind {
		case Arrow:
			b.WriteString("->")
			b.WriteString(s.Member)
		case Dot:
			b.WriteByte('.')
			b.WriteString(s.Member)
		case Index:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.Index))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// maxSteps bounds the length of an expression.
const maxSteps = 16

// maxIndex bounds an array index.
const maxIndex = 1 << 16

// ParseExpr parses a field expression: a root (skb or shinfo) followed by
// ->member, .member and [N] steps, with optional spaces between them.
func ParseExpr(s string) (Expr, error) {
	p := exprParser{s: s}
	p.space()
	root := p.ident()
	if root == "" {
		return Expr{}, fmt.Errorf("%q: want an expression starting with %s", s, strings.Join(Roots, " or "))
	}
	if root != "skb" && root != "shinfo" {
		return Expr{}, fmt.Errorf("%q: unknown root %s, want %s", s, root, strings.Join(Roots, " or "))
	}
	e := Expr{Root: root}
	for {
		p.space()
		if p.done() {
			break
		}
		if len(e.Steps) == maxSteps {
			return Expr{}, fmt.Errorf("%q: more than %d steps", s, maxSteps)
		}
		var st Step
		switch {
		case p.eat("->"):
			st.Kind = Arrow
		case p.eat("."):
			st.Kind = Dot
		case p.eat("["):
			p.space()
			n := p.number()
			p.space()
			if n < 0 || !p.eat("]") {
				return Expr{}, fmt.Errorf("%q: want [N] with N a number from 0 to %d at offset %d", s, maxIndex-1, p.pos)
			}
			e.Steps = append(e.Steps, Step{Kind: Index, Index: n})
			continue
		default:
			return Expr{}, fmt.Errorf("%q: unexpected %q at offset %d, want ->, . or [", s, p.rest(), p.pos)
		}
		p.space()
		st.Member = p.ident()
		if st.Member == "" {
			return Expr{}, fmt.Errorf("%q: want a member name at offset %d", s, p.pos)
		}
		e.Steps = append(e.Steps, st)
	}
	if len(e.Steps) == 0 {
		return Expr{}, fmt.Errorf("%q: want at least one member, such as %s->len", s, root)
	}
	return e, nil
}

type exprParser struct {
	s   string
	pos int
}

func (p *exprParser) done() bool { return p.pos >= len(p.s) }

func (p *exprParser) rest() string {
	r := p.s[p.pos:]
	if len(r) > 8 {
		r = r[:8]
	}
	return r
}

func (p *exprParser) space() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func (p *exprParser) eat(tok string) bool {
	if strings.HasPrefix(p.s[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

// ident reads a C identifier ("" if there is none).
func (p *exprParser) ident() string {
	start := p.pos
	for p.pos < len(p.s) && isIdentByte(p.s[p.pos], p.pos == start) {
		p.pos++
	}
	return p.s[start:p.pos]
}

// number reads a decimal index below maxIndex (-1 if there is none).
func (p *exprParser) number() int {
	start := p.pos
	n := 0
	for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
		n = n*10 + int(p.s[p.pos]-'0')
		p.pos++
		if n >= maxIndex {
			return -1
		}
	}
	if p.pos == start {
		return -1
	}
	return n
}
