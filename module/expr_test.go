package module

import (
	"strings"
	"testing"
)

func TestParseExpr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // canonical spelling; "" for an error
		err  string // substring of the error
	}{
		{"skb->len", "skb->len", ""},
		{" skb -> dev -> name ", "skb->dev->name", ""},
		{"skb->sk->__sk_common.skc_family", "skb->sk->__sk_common.skc_family", ""},
		{"shinfo->frags[1].len", "shinfo->frags[1].len", ""},
		{"shinfo->frags[ 0 ]", "shinfo->frags[0]", ""},
		{"skb", "", "want at least one member"},
		{"", "", "want an expression starting with skb or shinfo"},
		{"sk->len", "", "unknown root sk"},
		{"skb->", "", "want a member name"},
		{"skb->1x", "", "want a member name"},
		{"skb.", "", "want a member name"},
		{"skb->len+1", "", `unexpected "+1"`},
		{"skb->a[", "", "want [N]"},
		{"skb->a[-1]", "", "want [N]"},
		{"skb->a[99999999999]", "", "want [N]"},
		{"skb->a[1", "", "want [N]"},
		{"skb" + strings.Repeat("->a", 17), "", "more than 16 steps"},
	} {
		e, err := ParseExpr(tc.in)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseExpr(%q) = %v, %v; want error containing %q", tc.in, e, err, tc.err)
			}
			continue
		}
		if err != nil || e.String() != tc.want {
			t.Errorf("ParseExpr(%q) = %q, %v; want %q", tc.in, e.String(), err, tc.want)
		}
	}
}

// FuzzParseExpr: ParseExpr never panics, and what it accepts prints in a
// canonical form that parses back to the same expression.
func FuzzParseExpr(f *testing.F) {
	for _, s := range []string{"skb->len", "shinfo->gso_type", "skb->dev->name", "skb->sk->__sk_common.skc_family",
		"shinfo->frags[0].len", "skb->a[1][2].b", "skb", "skb->", "skb.len", "skb->a[", "x->y", " skb -> len "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseExpr(s)
		if err != nil {
			return
		}
		back, err := ParseExpr(e.String())
		if err != nil {
			t.Fatalf("%q parsed as %q, which does not parse: %v", s, e.String(), err)
		}
		if back.String() != e.String() || len(back.Steps) != len(e.Steps) {
			t.Fatalf("%q: %q re-parses as %q", s, e.String(), back.String())
		}
	})
}

func TestParseMatch(t *testing.T) {
	for _, tc := range []struct {
		in     string
		op     Op
		opnd   string
		quoted bool
		err    string
	}{
		{"== 0x10", OpEq, "0x10", false, ""},
		{"!=3", OpNe, "3", false, ""},
		{"<= -1", OpLe, "-1", false, ""},
		{">= 2", OpGe, "2", false, ""},
		{"< 5", OpLt, "5", false, ""},
		{"> 5", OpGt, "5", false, ""},
		{"& 0x4", OpAnd, "0x4", false, ""},
		{`== "eth0"`, OpEq, "eth0", true, ""},
		{`!= 'lo'`, OpNe, "lo", true, ""},
		{"== veth0", OpEq, "veth0", false, ""},
		{"== SKB_GSO_TCPV4", OpEq, "SKB_GSO_TCPV4", false, ""},
		{"", "", "", false, "want an operator"},
		{"~ 3", "", "", false, "want an operator"},
		{"==", "", "", false, "no value"},
		{"== 1 2", "", "", false, "want one value"},
		{`== "abc`, "", "", false, "bad quoted string"},
	} {
		m, err := ParseMatch(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMatch(%q) = %+v, %v; want error containing %q", tc.in, m, err, tc.err)
			}
			continue
		}
		if err != nil || m.Op != tc.op || m.Operand != tc.opnd || m.Quoted != tc.quoted {
			t.Errorf("ParseMatch(%q) = %+v, %v; want %s %q quoted=%v", tc.in, m, err, tc.op, tc.opnd, tc.quoted)
		}
	}
}

func TestParseInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true}, {"16", 16, true}, {"0x10", 16, true}, {"-1", 1<<64 - 1, true}, {"0b101", 5, true},
		{"18446744073709551615", 1<<64 - 1, true}, {"18446744073709551616", 0, false}, {"abc", 0, false}, {"-", 0, false},
	} {
		got, ok := parseInt(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
