package module

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/journey"
	"github.com/ipftrace/ipftrace/output"
)

func mod(name string, fields ...Field) *Module {
	return &Module{Name: name, Fields: fields, source: name + ".yaml"}
}

func TestResolve(t *testing.T) {
	spec := syntheticSpec(t)
	r, err := newResolver(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		expr string
		want string // derefs/off/size/flags, or "error: ..."
	}{
		{"skb->len", "root skb derefs [] off 24 size 4"},
		{"skb->data_len", "root skb derefs [] off 28 size 4"},
		{"skb->mark", "root skb derefs [] off 32 size 4"},
		{"skb->reserved_tailroom", "root skb derefs [] off 32 size 4"},
		{"skb->protocol", "root skb derefs [] off 40 size 2 be"},
		{"skb->priority", "root skb derefs [] off 42 size 2 signed"},
		{"skb->cloned", "root skb derefs [] off 36 size 1 bits 0+1"},
		{"skb->pkt_type", "root skb derefs [] off 36 size 1 bits 1+3"},
		{"skb->more", "root skb derefs [] off 36 size 2 bits 4+12"},
		{"skb->dev->ifindex", "root skb derefs [8] off 16 size 4 signed"},
		{"skb->dev->name", "root skb derefs [8] off 0 size 16 string"},
		{"skb->dev->nd_net.net->ns.inum", "root skb derefs [8 24] off 8 size 4"},
		{"skb->next->next->len", "root skb derefs [0 0] off 24 size 4"},
		{"skb->sk", "root skb derefs [] off 16 size 8 ptr"},
		{"skb->sk->__sk_common.skc_family", "root skb derefs [16] off 0 size 2"},
		{"skb->sk->sk_state", "root skb derefs [16] off 4 size 1 bool"},
		{"shinfo->gso_type", "root shinfo derefs [] off 8 size 4"},
		{"shinfo->frags[1].off", "root shinfo derefs [] off 28 size 4"},
		{"skb->lenn", "error: skb->lenn: struct sk_buff has no member lenn"},
		{"skb->len->x", "error: skb->len->x: skb->len is unsigned int, not a pointer"},
		{"skb->len.x", "error: skb->len.x: unsigned int is not a struct or union"},
		{"skb.len", "error: skb.len: skb is a pointer (struct sk_buff *); use ->"},
		{"skb->dev.name", "error: skb->dev.name: skb->dev is a pointer (struct net_device *); use ->"},
		{"skb->dev", "root skb derefs [] off 8 size 8 ptr"},
		{"skb->dev->nd_net", "error: skb->dev->nd_net: possible_net_t is not a scalar or string"},
		{"shinfo->frags", "error: shinfo->frags: struct skb_frag[2] is not a scalar or string"},
		{"shinfo->frags[2].len", "error: shinfo->frags[2]: index 2 out of range, shinfo->frags has 2 elements"},
		{"skb->len[0]", "error: skb->len[0]: skb->len is unsigned int, not an array"},
		{"skb->cloned.x", "error: skb->cloned.x: skb->cloned is a bitfield"},
	} {
		e, err := ParseExpr(tc.expr)
		if err != nil {
			t.Fatalf("ParseExpr(%q): %v", tc.expr, err)
		}
		s, err := r.resolve(e)
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			got = fmt.Sprintf("root %s derefs %v off %d size %d", s.root, s.derefs, s.off, s.size)
			if s.nbits != 0 {
				got += fmt.Sprintf(" bits %d+%d", s.shift, s.nbits)
			}
			for _, f := range []struct {
				on   bool
				name string
			}{{s.signed, "signed"}, {s.be, "be"}, {s.str, "string"}, {s.ptr, "ptr"}, {s.format == fmtBool, "bool"}} {
				if f.on {
					got += " " + f.name
				}
			}
		}
		if tc.want != got && !(strings.HasPrefix(tc.want, "error: ") && strings.HasPrefix(got, tc.want)) {
			t.Errorf("%s:\n got %s\nwant %s", tc.expr, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	spec := syntheticSpec(t)
	many := make([]Field, MaxFields+1)
	for i := range many {
		many[i] = Field{Name: fmt.Sprintf("f%d", i), Expr: "skb->len", Match: "!= 1"}
	}
	big := []Field{{Name: "a", Expr: "skb->dev->name"}, {Name: "b", Expr: "skb->sk->sk_state"}, {Name: "c", Expr: "skb->dev->name"},
		{Name: "d", Expr: "skb->dev->name"}, {Name: "e", Expr: "skb->dev->name"}}
	for _, tc := range []struct {
		name string
		mods []*Module
		err  string
	}{
		{"unknown member", []*Module{mod("m", Field{Name: "x", Expr: "skb->lenn"})},
			"module m.yaml: field x: skb->lenn: struct sk_buff has no member lenn"},
		{"bad expr", []*Module{mod("m", Field{Name: "x", Expr: "skb->"})}, "module m.yaml: field x: \"skb->\": want a member name"},
		{"too many fields", []*Module{mod("m", many...)}, "too many fields: 17, at most 16"},
		{"too large", []*Module{mod("m", big...)}, "data area too large: the fields need 65 bytes, the budget is 64 bytes per event"},
		{"bad format", []*Module{mod("m", Field{Name: "x", Expr: "skb->len", Format: "octal"})}, `format "octal": want dec, hex`},
		{"string format on int", []*Module{mod("m", Field{Name: "x", Expr: "skb->len", Format: "string"})}, "format string: skb->len is not an array of char"},
		{"hex on string", []*Module{mod("m", Field{Name: "x", Expr: "skb->dev->name", Format: "hex"})}, "is a string (char array)"},
		{"enum without name", []*Module{mod("m", Field{Name: "x", Expr: "skb->len", Format: "enum"})}, "want dec, hex"},
		{"flags without prefix", []*Module{mod("m", Field{Name: "x", Expr: "skb->len", Format: "flags:*"})}, "empty enum constant prefix"},
		{"string match op", []*Module{mod("m", Field{Name: "x", Expr: "skb->dev->name", Match: "> a"})}, "strings support == and != only"},
		{"string match too long", []*Module{mod("m", Field{Name: "x", Expr: "skb->dev->name", Match: "== 12345678901234567"})}, "longer than the 16 bytes read"},
		{"int match on string", []*Module{mod("m", Field{Name: "x", Expr: "skb->len", Match: `== "a"`})}, "skb->len is not a string"},
		{"int match not a number", []*Module{mod("m", Field{Name: "x", Expr: "skb->len", Match: "== ten"})}, "want a number"},
		{"true on a number", []*Module{mod("m", Field{Name: "x", Expr: "skb->len", Match: "== true"})}, "match == true: want a number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compile(tc.mods, spec, nil)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Compile: %v; want error containing %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

// skbMem is fake kernel memory: an skb, its device, netns, socket and
// shared info.
type skbMem struct {
	skb, dev, net, sk, head []byte
}

const (
	addrSkb  = 0xffff888000001000
	addrDev  = 0xffff888000002000
	addrNet  = 0xffff888000003000
	addrSk   = 0xffff888000004000
	addrHead = 0xffff888000010000
	endOff   = 0x200 // skb->end: shinfo is at head + 0x200
)

func newSkbMem() *skbMem {
	m := &skbMem{skb: make([]byte, skbSize), dev: make([]byte, devSize), net: make([]byte, 16), sk: make([]byte, 8), head: make([]byte, endOff+shinfoSize)}
	le := binary.LittleEndian
	le.PutUint64(m.skb[offDev:], addrDev)
	le.PutUint64(m.skb[offSk:], addrSk)
	le.PutUint32(m.skb[offLen:], 2101)
	le.PutUint32(m.skb[offDataLen:], 2035)
	le.PutUint32(m.skb[offMark:], 0x10)
	m.skb[offFlags] = 1 | 3<<1 | 0x5<<4 // cloned, pkt_type 3, more low bits
	m.skb[offFlags+1] = 0xab            // more high bits: more = 0xab5
	m.skb[offProtocol], m.skb[offProtocol+1] = 0x08, 0x00
	le.PutUint16(m.skb[offPriority:], 0xfffe) // -2
	le.PutUint64(m.skb[offHead:], addrHead)
	le.PutUint32(m.skb[offEnd:], endOff)
	copy(m.dev[offDevName:], "veth0")
	le.PutUint32(m.dev[offDevIfindex:], 7)
	le.PutUint64(m.dev[offDevNet:], addrNet)
	le.PutUint32(m.net[offNetInum:], 4026532200)
	le.PutUint16(m.sk[0:], 2) // AF_INET
	m.sk[4] = 1
	sh := m.head[endOff:]
	le.PutUint16(sh[offGsoSize:], 1448)
	le.PutUint16(sh[offGsoSegs:], 2)
	le.PutUint32(sh[offGsoType:], 1|1<<13|1<<20) // TCPV4|PARTIAL|an unnamed bit
	le.PutUint32(sh[offFrags+8+4:], 99)          // frags[1].off
	return m
}

func (m *skbMem) kmem() kmem {
	return kmem{addrSkb: m.skb, addrDev: m.dev, addrNet: m.net, addrSk: m.sk, addrHead: m.head}
}

// exec runs p's code on m and decodes the result like the tracer does.
func exec(t *testing.T, p *Program, m kmem) (bool, []output.Field) {
	t.Helper()
	r0, buf, err := run(p.Instructions(), m, addrSkb)
	if err != nil {
		t.Fatalf("run: %v\n%v", err, p.Instructions())
	}
	ev := journey.Event{DataValid: binary.LittleEndian.Uint64(buf[DataSize:])}
	copy(ev.Data[:], buf[:DataSize])
	return r0 != 0, p.Decode(&ev, nil)
}

func text(fields []output.Field) string { return string(output.AppendFields(nil, fields)) }

func jsonOf(fields []output.Field) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f.Name + "=" + f.JSON
	}
	return strings.Join(parts, " ")
}

func TestBuiltinsRun(t *testing.T) {
	spec := syntheticSpec(t)
	p, err := Build([]string{"gso", "mark", "dev", "netns", "meta"}, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := newSkbMem()
	ok, fields := exec(t, p, m.kmem())
	if !ok {
		t.Fatal("no match condition, yet fill_data returned 0")
	}
	want := "(len: 2101 gso_size: 1448 gso_segs: 2 gso_type: SKB_GSO_TCPV4|SKB_GSO_PARTIAL|0x100000 mark: 0x10 dev: veth0 ifindex: 7 " +
		"netns: 4026532200 data_len: 2035 protocol: 0x800 pkt_type: 3 cloned: true)"
	if got := text(fields); got != want {
		t.Errorf("text:\n got %s\nwant %s", got, want)
	}
	wantJSON := `len=2101 gso_size=1448 gso_segs=2 gso_type="SKB_GSO_TCPV4|SKB_GSO_PARTIAL|0x100000" mark=16 dev="veth0" ifindex=7 ` +
		`netns=4026532200 data_len=2035 protocol=2048 pkt_type=3 cloned=true`
	if got := jsonOf(fields); got != wantJSON {
		t.Errorf("json:\n got %s\nwant %s", got, wantJSON)
	}

	// No device: the fields behind skb->dev are "-" (JSON null), the rest
	// are read. No gso_type bits: empty, as the original printed it.
	binary.LittleEndian.PutUint64(m.skb[offDev:], 0)
	binary.LittleEndian.PutUint32(m.head[endOff+offGsoType:], 0)
	_, fields = exec(t, p, m.kmem())
	want = "(len: 2101 gso_size: 1448 gso_segs: 2 gso_type:  mark: 0x10 dev: - ifindex: - netns: - data_len: 2035 protocol: 0x800 pkt_type: 3 cloned: true)"
	if got := text(fields); got != want {
		t.Errorf("without a device:\n got %s\nwant %s", got, want)
	}
	if got := jsonOf(fields); !strings.Contains(got, "dev=null ifindex=null netns=null") {
		t.Errorf("without a device, JSON %s lacks nulls", got)
	}

	// Unreadable head: the shinfo fields are "-".
	binary.LittleEndian.PutUint64(m.skb[offHead:], 0)
	_, fields = exec(t, p, m.kmem())
	if got := text(fields); !strings.HasPrefix(got, "(len: 2101 gso_size: - gso_segs: - gso_type: - mark: 0x10") {
		t.Errorf("without a head: %s", got)
	}
}

func TestUserModuleRun(t *testing.T) {
	spec := syntheticSpec(t)
	p, err := Compile([]*Module{mod("sockinfo",
		Field{Name: "len", Expr: "skb->len"},
		Field{Name: "family", Expr: "skb->sk->__sk_common.skc_family", Format: "enum:address_families"},
		Field{Name: "state", Expr: "skb->sk->sk_state"},
		Field{Name: "prio", Expr: "skb->priority"},
		Field{Name: "more", Expr: "skb->more", Format: "hex"},
		Field{Name: "off", Expr: "shinfo->frags[1].off"},
		Field{Name: "sk", Expr: "skb->sk"},
	)}, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, fields := exec(t, p, newSkbMem().kmem())
	want := fmt.Sprintf("(len: 2101 family: AF_INET state: true prio: -2 more: 0xab5 off: 99 sk: %#x)", uint64(addrSk))
	if got := text(fields); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := jsonOf(fields); !strings.Contains(got, `family="AF_INET"`) || !strings.Contains(got, `prio=-2`) ||
		!strings.Contains(got, fmt.Sprintf(`sk="%#x"`, uint64(addrSk))) {
		t.Errorf("json %s", got)
	}
}

func TestMatch(t *testing.T) {
	spec := syntheticSpec(t)
	for _, tc := range []struct {
		expr, format, match string
		want                bool
	}{
		{"skb->mark", "hex", "== 0x10", true},
		{"skb->mark", "hex", "== 0x11", false},
		{"skb->mark", "", "!= 16", false},
		{"skb->mark", "", "!= 17", true},
		{"skb->len", "", "> 2100", true},
		{"skb->len", "", "> 2101", false},
		{"skb->len", "", ">= 2101", true},
		{"skb->len", "", "< 2101", false},
		{"skb->len", "", "<= 2101", true},
		{"skb->priority", "", "< 0", true},  // signed: -2
		{"skb->priority", "", "> 0", false}, // not 65534
		{"skb->priority", "", "== -2", true},
		{"skb->len", "", "< -1", true}, // unsigned: -1 is the largest value
		{"shinfo->gso_segs", "", ">= 2", true},
		{"shinfo->gso_segs", "", ">= 3", false},
		{"shinfo->gso_type", "flags:SKB_GSO_*", "& SKB_GSO_PARTIAL", true},
		{"shinfo->gso_type", "flags:SKB_GSO_*", "& SKB_GSO_TCPV6", false},
		{"shinfo->gso_type", "", "& 0x3", true},
		{"skb->pkt_type", "", "== 3", true},
		{"skb->cloned", "", "== 1", true},
		{"skb->cloned", "bool", "== true", true},
		{"skb->cloned", "bool", "!= true", false},
		{"skb->sk->sk_state", "", "== false", false},
		{"skb->sk", "", "!= 0", true},
		{"skb->protocol", "hex", "== 0x800", true}, // host order after the byte swap
		{"skb->dev->name", "", `== "veth0"`, true},
		{"skb->dev->name", "", "== veth0", true},
		{"skb->dev->name", "", "== veth", false}, // a prefix is not equal
		{"skb->dev->name", "", "== veth00", false},
		{"skb->dev->name", "", "!= veth0", false},
		{"skb->dev->name", "", "!= eth0", true},
		{"skb->sk->__sk_common.skc_family", "enum:address_families", "== AF_INET", true},
		{"skb->sk->__sk_common.skc_family", "enum:address_families", "== AF_INET6", false},
	} {
		name := tc.expr + " " + tc.match
		p, err := Compile([]*Module{mod("m", Field{Name: "x", Expr: tc.expr, Format: tc.format, Match: tc.match})}, spec, nil)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		ok, _ := exec(t, p, newSkbMem().kmem())
		if ok != tc.want {
			t.Errorf("%s: match %v, want %v", name, ok, tc.want)
		}
	}
	// A NULL pointer on the path of a match field does not match, however
	// the condition reads.
	m := newSkbMem()
	binary.LittleEndian.PutUint64(m.skb[offDev:], 0)
	for _, cond := range []string{"== veth0", "!= veth0"} {
		p, err := Compile([]*Module{mod("m", Field{Name: "x", Expr: "skb->dev->name", Match: cond})}, spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := exec(t, p, m.kmem()); ok {
			t.Errorf("no device, %s: matched", cond)
		}
	}
	// All conditions must hold.
	p, err := Compile([]*Module{mod("m",
		Field{Name: "mark", Expr: "skb->mark", Match: "== 0x10"},
		Field{Name: "segs", Expr: "shinfo->gso_segs", Match: ">= 3"})}, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := exec(t, p, newSkbMem().kmem()); ok {
		t.Error("two conditions, one false: matched")
	}
}

// TestMissingEnum: an enum the kernel's BTF lacks is a warning, and the
// field prints numbers.
func TestMissingEnum(t *testing.T) {
	spec := syntheticSpec(t)
	p, err := Compile([]*Module{mod("m",
		Field{Name: "x", Expr: "skb->len", Format: "enum:nosuch"},
		Field{Name: "y", Expr: "skb->mark", Format: "flags:NOPE_*"})}, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"module m.yaml: field x: format enum:nosuch: no enum nosuch in kernel BTF; printing numbers",
		"module m.yaml: field y: format flags:NOPE_*: no enum constants named NOPE_* in kernel BTF; printing numbers",
	}
	if got := p.Warnings(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, fields := exec(t, p, newSkbMem().kmem()); text(fields) != "(x: 2101 y: 16)" {
		t.Errorf("fields %s", text(fields))
	}
}

func TestSharedAndQualifiedNames(t *testing.T) {
	spec := syntheticSpec(t)
	p, err := Compile([]*Module{
		mod("gso", Field{Name: "len", Expr: "skb->len"}, Field{Name: "segs", Expr: "shinfo->gso_segs"}),
		mod("meta", Field{Name: "len", Expr: "skb->len"}, Field{Name: "segs", Expr: "skb->data_len"}),
	}, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(p.Names(), " "); got != "len segs meta.segs" {
		t.Errorf("names %q, want the shared len once and meta.segs qualified", got)
	}
}

func TestLoad(t *testing.T) {
	for _, name := range Builtins() {
		m, err := Load(name)
		if err != nil || m.Name != name {
			t.Errorf("built-in %s: %v, name %q", name, err, m.Name)
		}
	}
	if got := strings.Join(Builtins(), " "); got != "dev gso mark meta netns" {
		t.Errorf("built-ins %q", got)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("sockinfo.yaml", "fields:\n  - {name: len, expr: skb->len}\n")
	if m, err := Load(good); err != nil || m.Name != "sockinfo" || len(m.Fields) != 1 {
		t.Errorf("Load(%s) = %+v, %v; want module sockinfo (named after the file) with one field", good, m, err)
	}
	for _, tc := range []struct{ arg, err string }{
		{"nosuch", "module nosuch: no such built-in module (built-ins: dev, gso, mark, meta, netns"},
		{filepath.Join(dir, "missing.yaml"), "no such file or directory"},
		{write("empty.yaml", ""), "empty file"},
		{write("nofields.yaml", "name: x\n"), "no fields"},
		{write("unknown.yaml", "name: x\nfieldz: []\n"), "field fieldz not found"},
		{write("syntax.yaml", "fields: [\n"), "module " + dir},
		{write("noname.yaml", "fields:\n  - {expr: skb->len}\n"), "field 1: no name"},
		{write("noexpr.yaml", "fields:\n  - {name: a}\n"), "field a: no expr"},
		{write("twice.yaml", "fields:\n  - {name: a, expr: skb->len}\n  - {name: a, expr: skb->mark}\n"), "field a: defined twice"},
		{write("badname.yaml", "name: \"a b\"\nfields:\n  - {name: a, expr: skb->len}\n"), `name "a b"`},
		{write("badkey.yaml", "fields:\n  - {name: a, expr: skb->len, fmt: hex}\n"), "field fmt not found"},
	} {
		_, err := Load(tc.arg)
		if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Load(%s) = %v; want one line containing %q", tc.arg, err, tc.err)
		}
	}
}

// TestKernelBTF builds every built-in module against this machine's kernel
// BTF, which is what -m does at run time.
func TestKernelBTF(t *testing.T) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF (%v): the built-ins are only checked against the synthetic BTF", err)
	}
	p, err := Build([]string{"gso", "mark", "dev", "netns", "meta"}, spec, nil)
	if err != nil {
		t.Fatalf("built-ins against the kernel BTF: %v", err)
	}
	if p.Size() > DataSize {
		t.Errorf("size %d", p.Size())
	}
	var gsoType *slot
	for _, s := range p.slots {
		if s.name == "gso_type" {
			gsoType = s
		}
	}
	if gsoType == nil || gsoType.names == nil || gsoType.names.flags(1) != "SKB_GSO_TCPV4" {
		t.Fatalf("gso_type flags from the kernel's enum: %+v", gsoType)
	}
	// The raw BTF scan finds the same enum as walking the whole spec.
	find := func(prefix string) ([]btf.TypeID, error) {
		return btfscan.EnumsWithPrefix(btfscan.DefaultBTFPath, prefix)
	}
	fast, err := Build([]string{"gso"}, spec, find)
	if err != nil {
		t.Fatal(err)
	}
	slow, fastNames := gsoType.names, fast.slots[3].names
	if fast.slots[3].name != "gso_type" || fmt.Sprint(fastNames.bits) != fmt.Sprint(slow.bits) || len(fastNames.byValue) != len(slow.byValue) {
		t.Errorf("SKB_GSO_* from the raw scan %v, from the spec %v", fastNames.bits, slow.bits)
	}
}
