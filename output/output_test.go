package output

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/ipftrace/ipftrace/journey"
)

var testNames = NameList{"ip_output", "nf_hook_slow", "dev_queue_xmit", "we\"ird\\\n\x01name\xff\u2028"}

func tuple(proto uint8, src, dst string, sport, dport uint16) journey.Tuple {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	v := uint8(4)
	if s.Is6() {
		v = 6
	}
	return journey.Tuple{IPVersion: v, Proto: proto, Saddr: s, Daddr: d, Sport: sport, Dport: dport}
}

func events(ts ...uint64) []journey.Event {
	evs := make([]journey.Event, len(ts))
	for i, t := range ts {
		evs[i] = journey.Event{TS: t, SKB: 0xffff888003a1b200, FuncID: uint32(i % 3),
			CPU: 1, Netns: 4026532200, Ifindex: 2, Len: 84}
	}
	return evs
}

func TestText(t *testing.T) {
	icmp := journey.Journey{
		Flow:   tuple(1, "10.0.0.1", "10.0.0.2", 0, 0),
		SKB:    0xffff888003a1b200,
		Events: events(495406078818070, 495406078949359),
		End:    journey.EndEgress,
	}
	tests := []struct {
		name     string
		journeys []journey.Journey
		decorate func(journey.Event) string
		trailer  func(journey.Journey) string
		want     string
	}{
		{
			name:     "icmp egress",
			journeys: []journey.Journey{icmp},
			want: "" +
				"ICMP    10.0.0.1    ->    10.0.0.2\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"495406078818070        0.0   ip_output\n" +
				"495406078949359      131.3   nf_hook_slow\n",
		},
		{
			name: "tcp v4 idle, then v6 udp length, blank line between",
			journeys: []journey.Journey{
				{Flow: tuple(6, "10.0.0.1", "10.0.0.2", 33696, 8000), Events: events(1000, 1049), End: journey.EndIdle},
				{Flow: tuple(17, "fd00::1", "fd00::2", 33696, 53), Events: events(5, 1000005, 1000055), End: journey.EndLength},
			},
			want: "" +
				"TCP     10.0.0.1:33696    ->    10.0.0.2:8000\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"           1000        0.0   ip_output\n" +
				"           1049        0.0   nf_hook_slow\n" +
				"(ended: idle)\n" +
				"\n" +
				"UDP     [fd00::1]:33696    ->    [fd00::2]:53\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"              5        0.0   ip_output\n" +
				"        1000005     1000.0   nf_hook_slow\n" +
				"        1000055        0.1   dev_queue_xmit\n" +
				"(ended: length 3)\n",
		},
		{
			name: "unknown proto, unknown flow, exit, evict and reuse",
			journeys: []journey.Journey{
				{Flow: tuple(47, "10.0.0.1", "10.0.0.2", 0, 0), Events: events(1), End: journey.EndExit},
				{Events: events(2), End: journey.EndEvict},
				{Flow: tuple(58, "fd00::1", "fd00::2", 0, 0), Events: events(3), End: journey.EndEgress},
				{Flow: tuple(17, "10.0.0.1", "10.0.0.2", 5, 6), Events: events(1), End: journey.EndReuse},
			},
			want: "" +
				"proto 47 10.0.0.1    ->    10.0.0.2\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"              1        0.0   ip_output\n" +
				"(ended: exit, in flight)\n" +
				"\n" +
				"unknown flow\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"              2        0.0   ip_output\n" +
				"(ended: evicted, table full)\n" +
				"\n" +
				"ICMPv6  fd00::1    ->    fd00::2\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"              3        0.0   ip_output\n" +
				"\n" +
				"UDP     10.0.0.1:5    ->    10.0.0.2:6\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"              1        0.0   ip_output\n" +
				"(ended: freed unseen, address reused by a new packet)\n",
		},
		{
			name: "long ipv6 header wraps",
			journeys: []journey.Journey{{
				Flow:   tuple(6, "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1", 65535, 443),
				Events: events(1),
				End:    journey.EndEgress,
			}},
			want: "" +
				"TCP     [2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535\n" +
				"    ->  [2001:db8:aaaa:bbbb:cccc:dddd:eeee:1]:443\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"              1        0.0   ip_output\n",
		},
		{
			name:     "decorate and trailer",
			journeys: []journey.Journey{icmp},
			decorate: func(ev journey.Event) string {
				if ev.FuncID == 1 {
					return "verdict=ACCEPT"
				}
				return ""
			},
			trailer: func(journey.Journey) string { return "drop reason: none" },
			want: "" +
				"ICMP    10.0.0.1    ->    10.0.0.2\n" +
				"     Time Stamp   Delta(us)  Function      Custom Data\n" +
				"495406078818070        0.0   ip_output\n" +
				"495406078949359      131.3   nf_hook_slow  verdict=ACCEPT\n" +
				"drop reason: none\n",
		},
		{
			name: "unknown function id and nil names",
			journeys: []journey.Journey{{
				Flow:   tuple(1, "10.0.0.1", "10.0.0.2", 0, 0),
				Events: []journey.Event{{TS: 7, FuncID: 99}},
				End:    journey.EndEgress,
			}},
			want: "" +
				"ICMP    10.0.0.1    ->    10.0.0.2\n" +
				"     Time Stamp   Delta(us)  Function\n" +
				"              7        0.0   func#99\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewText(&buf, testNames)
			w.Decorate = tt.decorate
			w.Trailer = tt.trailer
			for _, j := range tt.journeys {
				if err := w.Write(j); err != nil {
					t.Fatal(err)
				}
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
			for _, line := range strings.Split(buf.String(), "\n") {
				if len(line) > 80 {
					t.Errorf("line longer than 80 columns: %q", line)
				}
			}
		})
	}
}

func TestAppendMicros(t *testing.T) {
	tests := []struct {
		ns   uint64
		want string
	}{
		{0, "0.0"}, {49, "0.0"}, {50, "0.1"}, {131289, "131.3"}, {1_000_000, "1000.0"}, {999_949, "999.9"}, {999_950, "1000.0"},
	}
	for _, tt := range tests {
		if got := string(appendMicros(nil, tt.ns)); got != tt.want {
			t.Errorf("appendMicros(%d) = %q, want %q", tt.ns, got, tt.want)
		}
	}
}

// Reference structs: what the hand-written encoder must match byte for byte
// when marshalled by encoding/json (without HTML escaping).
type refFlow struct {
	IPVersion uint8  `json:"ipversion"`
	Proto     string `json:"proto"`
	Saddr     string `json:"saddr"`
	Daddr     string `json:"daddr"`
	Sport     uint16 `json:"sport"`
	Dport     uint16 `json:"dport"`
}

type refEvent struct {
	TS      uint64   `json:"ts"`
	Func    string   `json:"func"`
	CPU     uint32   `json:"cpu"`
	Netns   uint32   `json:"netns"`
	Ifindex uint32   `json:"ifindex"`
	Len     uint32   `json:"len"`
	Tuple   *refFlow `json:"tuple,omitempty"`
	SKB     string   `json:"skb,omitempty"`
	Clone   bool     `json:"clone,omitempty"`
	// Data is the ordered "data" object, built by refData.
	Data json.RawMessage `json:"data,omitempty"`
}

type refJourney struct {
	Flow         refFlow    `json:"flow"`
	SKB          string     `json:"skb"`
	Events       []refEvent `json:"events"`
	DropReason   string     `json:"drop_reason,omitempty"`
	DropLocation string     `json:"drop_location,omitempty"`
	End          string     `json:"end"`
}

// refData builds the "data" object with encoding/json for the names and
// the values as given (checked to be valid JSON by json.Compact).
func refData(t testing.TB, fields []Field) json.RawMessage {
	if len(fields) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		name, err := json.Marshal(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(name)
		b.WriteByte(':')
		b.WriteString(f.JSON)
	}
	b.WriteByte('}')
	var out bytes.Buffer
	if err := json.Compact(&out, b.Bytes()); err != nil {
		t.Fatalf("data %s: %v", b.String(), err)
	}
	return out.Bytes()
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func toRefFlow(f journey.Tuple) refFlow {
	return refFlow{
		IPVersion: f.IPVersion, Proto: ProtoName(f.Proto),
		Saddr: addrString(f.Saddr), Daddr: addrString(f.Daddr),
		Sport: f.Sport, Dport: f.Dport,
	}
}

func toRef(t testing.TB, j journey.Journey, names Names, data func(*journey.Event, []Field) []Field,
	drop func(journey.Journey) (string, string, bool)) refJourney {
	r := refJourney{
		Flow:   toRefFlow(j.Flow),
		SKB:    "0x" + strconv.FormatUint(j.SKB, 16),
		Events: []refEvent{},
		End:    string(j.End),
	}
	for _, e := range j.Events {
		re := refEvent{TS: e.TS, Func: nameOf(names, e.FuncID), CPU: e.CPU, Netns: e.Netns, Ifindex: e.Ifindex, Len: e.Len}
		if e.Tuple.IPVersion != 0 && e.Tuple != j.Flow {
			f := toRefFlow(e.Tuple)
			re.Tuple = &f
		}
		if e.Clone {
			re.SKB, re.Clone = "0x"+strconv.FormatUint(e.SKB, 16), true
		}
		if data != nil {
			re.Data = refData(t, data(&e, nil))
		}
		r.Events = append(r.Events, re)
	}
	if drop != nil {
		if reason, at, ok := drop(j); ok {
			r.DropReason, r.DropLocation = reason, at
		}
	}
	return r
}

func refMarshal(t testing.TB, r refJourney) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestJSON(t *testing.T) {
	weird := events(10, 20)
	weird[1].FuncID = 3
	tests := []struct {
		name string
		j    journey.Journey
		data func(*journey.Event, []Field) []Field
		drop func(journey.Journey) (string, string, bool)
		want string // exact line, if set
	}{
		{
			name: "spec example",
			j: journey.Journey{
				Flow: tuple(1, "10.0.0.1", "10.0.0.2", 0, 0), SKB: 0xffff888003a1b200,
				Events: events(123), End: journey.EndEgress,
			},
			want: `{"flow":{"ipversion":4,"proto":"ICMP","saddr":"10.0.0.1","daddr":"10.0.0.2","sport":0,"dport":0},"skb":"0xffff888003a1b200","events":[{"ts":123,"func":"ip_output","cpu":1,"netns":4026532200,"ifindex":2,"len":84}],"end":"egress"}` + "\n",
		},
		{
			name: "tcp v6",
			j:    journey.Journey{Flow: tuple(6, "fd00::1", "fd00::2", 33696, 8000), SKB: 1, Events: events(1, 2, 3), End: journey.EndIdle},
		},
		{
			name: "unparsed flow, no events",
			j:    journey.Journey{SKB: 0, End: journey.EndExit},
			want: `{"flow":{"ipversion":0,"proto":"0","saddr":"","daddr":"","sport":0,"dport":0},"skb":"0x0","events":[],"end":"exit"}` + "\n",
		},
		{
			name: "sctp and unknown proto",
			j:    journey.Journey{Flow: tuple(132, "10.0.0.1", "10.0.0.2", 1, 2), SKB: 0xabc, Events: events(5), End: journey.EndEvict},
		},
		{
			name: "proto number",
			j:    journey.Journey{Flow: tuple(47, "10.0.0.1", "10.0.0.2", 0, 0), SKB: 0xabc, Events: events(5), End: journey.EndLength},
		},
		{
			name: "escaping of function names and data",
			j:    journey.Journey{Flow: tuple(17, "10.0.0.1", "10.0.0.2", 1, 2), SKB: 0xabc, Events: weird, End: journey.EndEgress},
			data: func(ev *journey.Event, dst []Field) []Field {
				if ev.FuncID == 3 {
					return append(dst, Field{Name: "dev", JSON: string(appendJSONString(nil, "<a&b>\t\"q\"\x7f\xc3\x28 é 日本"))})
				}
				return dst
			},
		},
		{
			name: "typed data and drop reason",
			j:    journey.Journey{Flow: tuple(6, "10.0.0.1", "10.0.0.2", 33696, 8000), SKB: 0xabc, Events: events(5, 6), End: journey.EndEgress},
			data: func(ev *journey.Event, dst []Field) []Field {
				if ev.TS == 6 {
					return dst
				}
				return append(dst, Field{Name: "len", JSON: "2101"}, Field{Name: "gso_type", JSON: `"SKB_GSO_TCPV4"`},
					Field{Name: "cloned", JSON: "false"}, Field{Name: "sk", JSON: "null"})
			},
			drop: func(journey.Journey) (string, string, bool) { return "NETFILTER_DROP", "nf_hook_slow", true },
			want: `{"flow":{"ipversion":4,"proto":"TCP","saddr":"10.0.0.1","daddr":"10.0.0.2","sport":33696,"dport":8000},"skb":"0xabc","events":[` +
				`{"ts":5,"func":"ip_output","cpu":1,"netns":4026532200,"ifindex":2,"len":84,"data":{"len":2101,"gso_type":"SKB_GSO_TCPV4","cloned":false,"sk":null}},` +
				`{"ts":6,"func":"nf_hook_slow","cpu":1,"netns":4026532200,"ifindex":2,"len":84}],"drop_reason":"NETFILTER_DROP","drop_location":"nf_hook_slow","end":"egress"}` + "\n",
		},
		{
			name: "drop without location, not dropped",
			j:    journey.Journey{Flow: tuple(17, "10.0.0.1", "10.0.0.2", 1, 2), SKB: 0xabc, Events: events(5), End: journey.EndEgress},
			drop: func(j journey.Journey) (string, string, bool) { return "NO_SOCKET", "", true },
		},
		{
			name: "not dropped",
			j:    journey.Journey{Flow: tuple(17, "10.0.0.1", "10.0.0.2", 1, 2), SKB: 0xabc, Events: events(5), End: journey.EndEgress},
			drop: func(j journey.Journey) (string, string, bool) { return "", "", false },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewJSON(&buf, testNames)
			w.Data, w.Drop = tt.data, tt.drop
			if err := w.Write(tt.j); err != nil {
				t.Fatal(err)
			}
			got := buf.String()
			if tt.want != "" && got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if ref := refMarshal(t, toRef(t, tt.j, testNames, tt.data, tt.drop)); got != ref {
				t.Errorf("differs from encoding/json:\n got %s\nwant %s", got, ref)
			}
			if strings.Count(got, "\n") != 1 || !strings.HasSuffix(got, "\n") {
				t.Errorf("not exactly one line: %q", got)
			}
			var back refJourney
			if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
				t.Fatalf("invalid JSON: %v\n%s", err, got)
			}
			if back.End != string(tt.j.End) || len(back.Events) != len(tt.j.Events) ||
				back.Flow.Sport != tt.j.Flow.Sport || back.Flow.Proto != ProtoName(tt.j.Flow.Proto) {
				t.Errorf("round trip mismatch: %+v", back)
			}
			for i, e := range back.Events {
				if want := nameOf(testNames, tt.j.Events[i].FuncID); e.Func != strings.ToValidUTF8(want, "\ufffd") {
					t.Errorf("event %d func = %q, want %q", i, e.Func, want)
				}
			}
		})
	}
}

func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "ip_rcv", "a\"b\\c", "\x00\x1f\x7f", "\xff\xfe", "\u2028\u2029", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := appendJSONString(nil, s)
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSuffix(buf.String(), "\n"); string(got) != want {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

func TestNew(t *testing.T) {
	tests := []struct {
		format string
		want   string // type name, "" for an error
	}{
		{"text", "*output.Text"},
		{"json", "*output.JSON"},
		{"yaml", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			w, err := New(tt.format, io.Discard, nil)
			if tt.want == "" {
				if err == nil || !strings.Contains(err.Error(), "text, json") {
					t.Errorf("New(%q) err = %v, want list of formats", tt.format, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%T", w); got != tt.want {
				t.Errorf("New(%q) = %s, want %s", tt.format, got, tt.want)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	j := journey.Journey{SKB: 0x1, Events: events(1)}
	tests := []struct {
		name  string
		write func(journey.Journey) error
	}{
		{"text", NewText(failWriter{}, nil).Write},
		{"json", NewJSON(failWriter{}, nil).Write},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.write(j)
			if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "0x1") {
				t.Errorf("err = %v, want wrapped disk full with skb", err)
			}
		})
	}
}

func TestAppendFields(t *testing.T) {
	for _, tt := range []struct {
		fields []Field
		want   string
	}{
		{nil, "()"},
		{[]Field{{Name: "len", Text: "2101"}, {Name: "gso_size", Text: "1448"}, {Name: "gso_segs", Text: "2"}, {Name: "gso_type", Text: "SKB_GSO_TCPV4"}},
			"(len: 2101 gso_size: 1448 gso_segs: 2 gso_type: SKB_GSO_TCPV4)"},
		{[]Field{{Name: "len", Text: "1514"}, {Name: "gso_type", Text: ""}}, "(len: 1514 gso_type: )"},
		{[]Field{{Name: "dev", Text: "-"}}, "(dev: -)"},
	} {
		if got := string(AppendFields(nil, tt.fields)); got != tt.want {
			t.Errorf("AppendFields(%v) = %q, want %q", tt.fields, got, tt.want)
		}
	}
}

// natJourney is a tracked journey: DNAT rewrites the destination at the
// third event, a clone follows, and the last event has no tuple.
func natJourney() journey.Journey {
	flow := tuple(6, "10.0.0.1", "10.0.0.2", 33696, 80)
	nat := tuple(6, "10.0.0.1", "10.0.0.3", 33696, 8080)
	evs := events(1000, 2000, 3000, 4000, 5000)
	evs[0].Tuple, evs[1].Tuple, evs[2].Tuple, evs[3].Tuple = flow, flow, nat, nat
	evs[3].Clone, evs[3].SKB = true, 0xffff888003a1b300
	evs[4].Tracked = true
	return journey.Journey{Flow: flow, SKB: 0xffff888003a1b200, Events: evs, End: journey.EndEgress}
}

func TestTextTrackedMarks(t *testing.T) {
	var buf bytes.Buffer
	if err := NewText(&buf, testNames).Write(natJourney()); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"TCP     10.0.0.1:33696    ->    10.0.0.2:80\n" +
		"     Time Stamp   Delta(us)  Function\n" +
		"           1000        0.0   ip_output\n" +
		"           2000        1.0   nf_hook_slow\n" +
		"           3000        1.0   dev_queue_xmit  [10.0.0.1:33696 -> 10.0.0.3:8080]\n" +
		"           4000        1.0   ip_output  (clone)\n" +
		"           5000        1.0   nf_hook_slow\n"
	if got := buf.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// An outer header of another protocol names it; going back to the
	// flow's tuple is a change too.
	j := natJourney()
	j.Events[2].Tuple = tuple(4, "192.0.2.1", "192.0.2.2", 0, 0)
	j.Events[3].Tuple = j.Flow
	j.Events[3].Clone = false
	buf.Reset()
	if err := NewText(&buf, testNames).Write(j); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{
		"dev_queue_xmit  [proto 4 192.0.2.1 -> 192.0.2.2]\n",
		"ip_output  [10.0.0.1:33696 -> 10.0.0.2:80]\n",
	} {
		if !strings.Contains(buf.String(), line) {
			t.Errorf("no %q in\n%s", line, buf.String())
		}
	}
}

func TestJSONTracked(t *testing.T) {
	j := natJourney()
	var buf bytes.Buffer
	if err := NewJSON(&buf, testNames).Write(j); err != nil {
		t.Fatal(err)
	}
	got := buf.String()
	if ref := refMarshal(t, toRef(t, j, testNames, nil, nil)); got != ref {
		t.Errorf("differs from encoding/json:\n got %s\nwant %s", got, ref)
	}
	var back refJourney
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for i, e := range back.Events {
		wantTuple := i == 2 || i == 3
		if (e.Tuple != nil) != wantTuple {
			t.Errorf("event %d: tuple %+v, want one: %v", i, e.Tuple, wantTuple)
		}
		if e.Tuple != nil && (e.Tuple.Daddr != "10.0.0.3" || e.Tuple.Dport != 8080) {
			t.Errorf("event %d: tuple %+v, want the DNAT one", i, e.Tuple)
		}
		if e.Clone != (i == 3) || (e.Clone && e.SKB != "0xffff888003a1b300") {
			t.Errorf("event %d: clone %v skb %q", i, e.Clone, e.SKB)
		}
	}
}

// TestJSONCaches writes journeys one after another with one writer, whose
// caches (quoted names, the last netns, the last timestamp's seconds) must
// not leak from one event or journey into the next.
func TestJSONCaches(t *testing.T) {
	evs := func(specs ...journey.Event) []journey.Event {
		for i := range specs {
			specs[i].SKB, specs[i].CPU, specs[i].Ifindex, specs[i].Len = 0xabc, 1, 2, 84
		}
		return specs
	}
	journeys := []journey.Journey{
		{Events: evs(
			journey.Event{TS: 999_999, FuncID: 0, Netns: 4026532200},
			journey.Event{TS: 1_000_000_000, FuncID: 1, Netns: 4026532200},
			journey.Event{TS: 1_000_000_007, FuncID: 0, Netns: 0},
			journey.Event{TS: 1_999_999_999, FuncID: 3, Netns: 4026531840},
		)},
		{Events: evs(
			journey.Event{TS: 2_000_000_000, FuncID: 3, Netns: 4026531840},
			journey.Event{TS: 495406078818070, FuncID: maxCachedFuncs + 5, Netns: 4026531840},
			journey.Event{TS: 495406078818070, FuncID: 2, Netns: 0},
			journey.Event{TS: 1<<64 - 1, FuncID: maxCachedFuncs + 5, Netns: 1<<32 - 1},
		)},
		{Events: evs(
			journey.Event{TS: 1, FuncID: 1, Netns: 1},
			journey.Event{TS: 495406078818070, FuncID: 0, Netns: 4026532200},
		)},
	}
	var buf bytes.Buffer
	w := NewJSON(&buf, testNames)
	for i, j := range journeys {
		j.Flow, j.SKB, j.End = tuple(1, "10.0.0.1", "10.0.0.2", 0, 0), 0xabc, journey.EndEgress
		buf.Reset()
		if err := w.Write(j); err != nil {
			t.Fatal(err)
		}
		if ref := refMarshal(t, toRef(t, j, testNames, nil, nil)); buf.String() != ref {
			t.Errorf("journey %d differs from encoding/json:\n got %s\nwant %s", i, buf.String(), ref)
		}
	}
}

func TestAppendTS(t *testing.T) {
	vals := []uint64{0, 1, 9, 10, 99, 100, 999_999_999, 1_000_000_000, 1_000_000_001, 1_000_000_010, 999_999, 1_000_000, 1_000_001, 1_999_999, 2_000_000,
		1_099_999_999, 1_999_999_999, 495406078818070, 1e18, 1<<64 - 1}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		vals = append(vals, rng.Uint64()>>rng.IntN(64))
	}
	o := &JSON{}
	for _, v := range vals {
		if got, want := string(o.appendTS(nil, v)), strconv.FormatUint(v, 10); got != want {
			t.Fatalf("appendTS(%d) = %s, want %s", v, got, want)
		}
	}
}
