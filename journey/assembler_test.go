package journey

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// Function IDs used by the tests.
const (
	fnRecv    uint32 = iota // netif_receive_skb
	fnIP                    // ip_rcv
	fnLocal                 // ip_local_deliver
	fnXmit                  // dev_hard_start_xmit (egress)
	fnConsume               // consume_skb (egress)
	fnKfree                 // __kfree_skb (release)
	fnRelData               // skb_release_data (release)
	fnSkbmem                // kfree_skbmem (release)
	fnQueue                 // net_dev_queue (start)
)

var testNames = []string{
	"netif_receive_skb", "ip_rcv", "ip_local_deliver", "dev_hard_start_xmit",
	"consume_skb", "__kfree_skb", "skb_release_data", "kfree_skbmem",
	"net_dev_queue",
}

func testConfig() Config {
	return Config{
		Length:      80,
		Idle:        time.Second,
		MaxInFlight: 1000,
		Linger:      50 * time.Millisecond,
		Roles:       testRoles(),
	}
}

// testRoles gives testNames their roles: egress at fnXmit and fnConsume,
// release and start as IsReleaseName and IsStartName say.
func testRoles() []Role {
	roles := make([]Role, len(testNames))
	for id, name := range testNames {
		roles[id] = RoleOf(name, uint32(id) == fnXmit || uint32(id) == fnConsume)
	}
	return roles
}

var tupleA = Tuple{
	IPVersion: 4, Proto: 6,
	Saddr: netip.MustParseAddr("10.0.0.1"), Daddr: netip.MustParseAddr("10.0.0.2"),
	Sport: 33696, Dport: 8000,
}

// configWith is testConfig changed by set.
func configWith(set func(c *Config)) Config {
	c := testConfig()
	set(&c)
	return c
}

// ev is a short constructor: timestamp, skb, function, parsed or not.
// ptr returns a pointer to a copy of e, for Add.
func ptr(e Event) *Event { return &e }

func ev(ts, skb uint64, fn uint32) Event {
	return Event{TS: ts, SKB: skb, FuncID: fn, Tuple: tupleA}
}

// op is one step of a scripted test: an event, a tick, or a flush.
type op struct {
	ev    *Event
	tick  uint64
	flush bool
}

func add(e Event) op                     { return op{ev: &e} }
func tick(now uint64) op                 { return op{tick: now} }
func flush() op                          { return op{flush: true} }
func addAt(ts, skb uint64, fn uint32) op { return add(ev(ts, skb, fn)) }

// addDev is addAt on device ifindex in netns.
func addDev(ts, skb uint64, fn uint32, netns, ifindex uint32) op {
	e := ev(ts, skb, fn)
	e.Netns, e.Ifindex = netns, ifindex
	return add(e)
}

// summary is the comparable shape of an emitted journey.
type summary struct {
	SKB   uint64
	Funcs []uint32
	End   End
}

func summarize(j Journey) summary {
	s := summary{SKB: j.SKB, End: j.End}
	for _, e := range j.Events {
		s.Funcs = append(s.Funcs, e.FuncID)
	}
	return s
}

func run(cfg Config, ops []op) ([]summary, *Assembler) {
	a := NewAssembler(cfg)
	var got []summary
	emit := func(j Journey) { got = append(got, summarize(j)) }
	for _, o := range ops {
		switch {
		case o.ev != nil:
			a.Add(o.ev, emit)
		case o.flush:
			a.Flush(emit)
		default:
			a.Tick(o.tick, emit)
		}
	}
	return got, a
}

const ms = uint64(time.Millisecond)

func TestAssembler(t *testing.T) {
	short := testConfig()
	short.Length = 3

	tests := []struct {
		name string
		cfg  Config
		ops  []op
		want []summary
	}{
		{
			name: "egress end after linger",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnIP), addAt(3, 0xa, fnXmit),
				tick(3 + 49*ms),
				tick(3 + 50*ms),
			},
			want: []summary{{0xa, []uint32{fnRecv, fnIP, fnXmit}, EndEgress}},
		},
		{
			name: "closing journey ends by event time",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnConsume), addAt(2, 0xa, fnSkbmem),
				addAt(2+50*ms, 0xb, fnRecv),
			},
			want: []summary{{0xa, []uint32{fnConsume, fnSkbmem}, EndEgress}},
		},
		{
			name: "length end",
			cfg:  short,
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnIP), addAt(3, 0xa, fnLocal),
				addAt(4, 0xa, fnRecv),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnIP, fnLocal}, EndLength},
				{0xa, []uint32{fnRecv}, EndExit},
			},
		},
		{
			name: "egress at length emits at once",
			cfg:  short,
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnIP), addAt(3, 0xa, fnXmit),
			},
			want: []summary{{0xa, []uint32{fnRecv, fnIP, fnXmit}, EndEgress}},
		},
		{
			name: "idle end via tick",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(500*ms, 0xb, fnRecv),
				tick(1000*ms + 0), // a: 1+1s > now, not yet
				tick(1000*ms + 1), // a idle
				tick(1500*ms + 0), // b idle
			},
			want: []summary{
				{0xa, []uint32{fnRecv}, EndIdle},
				{0xb, []uint32{fnRecv}, EndIdle},
			},
		},
		{
			name: "idle end via event time",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnRecv),
				addAt(2000*ms, 0xb, fnRecv),
				addAt(2000*ms+1, 0xa, fnIP),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv}, EndIdle},
				{0xb, []uint32{fnRecv}, EndExit},
				{0xa, []uint32{fnIP}, EndExit},
			},
		},
		{
			name: "exit flush oldest first",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xb, fnRecv), addAt(3, 0xc, fnRecv),
				addAt(4, 0xa, fnIP), // a is now the most recently active
				addAt(5, 0xb, fnXmit),
				flush(),
			},
			want: []summary{
				{0xc, []uint32{fnRecv}, EndExit},
				{0xa, []uint32{fnRecv, fnIP}, EndExit},
				{0xb, []uint32{fnRecv, fnXmit}, EndEgress},
			},
		},
		{
			name: "address reuse after egress starts a new journey",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnXmit),
				addAt(3, 0xa, fnRecv), addAt(4, 0xa, fnIP),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnXmit}, EndEgress},
				{0xa, []uint32{fnRecv, fnIP}, EndExit},
			},
		},
		{
			name: "release path absorbed",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnLocal), addAt(3, 0xa, fnConsume),
				addAt(4, 0xa, fnKfree), addAt(5, 0xa, fnRelData), addAt(6, 0xa, fnSkbmem),
				addAt(7, 0xa, fnRecv), // reused address, new packet
				addAt(8, 0xa, fnConsume),
				addAt(9, 0xa, fnSkbmem),
				tick(9 + 50*ms),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnLocal, fnConsume, fnKfree, fnRelData, fnSkbmem}, EndEgress},
				{0xa, []uint32{fnRecv, fnConsume, fnSkbmem}, EndEgress},
			},
		},
		{
			name: "release path bounded by length",
			cfg:  short,
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnConsume),
				addAt(3, 0xa, fnKfree), addAt(4, 0xa, fnSkbmem),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnConsume, fnKfree}, EndEgress},
				{0xa, []uint32{fnSkbmem}, EndExit},
			},
		},
		{
			name: "late pre-egress event joins the closing journey",
			cfg:  testConfig(),
			ops: []op{
				addAt(10, 0xa, fnRecv), addAt(30, 0xa, fnXmit),
				addAt(20, 0xa, fnIP), // from another CPU, arrived late
				addAt(40, 0xa, fnRecv),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnIP, fnXmit}, EndEgress},
				{0xa, []uint32{fnRecv}, EndExit},
			},
		},
		{
			name: "release event without egress is a plain event",
			cfg:  testConfig(),
			ops: []op{
				addAt(1, 0xa, fnKfree), addAt(2, 0xa, fnSkbmem),
				flush(),
			},
			want: []summary{{0xa, []uint32{fnKfree, fnSkbmem}, EndExit}},
		},
		{
			name: "out of order events are sorted",
			cfg:  testConfig(),
			ops: []op{
				addAt(10, 0xa, fnRecv), addAt(30, 0xa, fnLocal), addAt(20, 0xa, fnIP),
				addAt(5, 0xa, fnKfree),
				flush(),
			},
			want: []summary{{0xa, []uint32{fnKfree, fnRecv, fnIP, fnLocal}, EndExit}},
		},
		{
			name: "eviction prefers closing journeys then least recently active",
			cfg: configWith(func(c *Config) {
				c.MaxInFlight = 2
			}),
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xb, fnRecv), addAt(3, 0xa, fnIP),
				addAt(4, 0xc, fnRecv), // evicts b
				addAt(5, 0xc, fnXmit),
				addAt(6, 0xd, fnRecv), // evicts closing c
				addAt(7, 0xe, fnRecv), // evicts a
				flush(),
			},
			want: []summary{
				{0xb, []uint32{fnRecv}, EndEvict},
				{0xc, []uint32{fnRecv, fnXmit}, EndEgress},
				{0xa, []uint32{fnRecv, fnIP}, EndEvict},
				{0xd, []uint32{fnRecv}, EndExit},
				{0xe, []uint32{fnRecv}, EndExit},
			},
		},
		{
			name: "a start function again on the same skb and device is a new packet",
			cfg:  testConfig(),
			ops: []op{
				addDev(1, 0xa, fnQueue, 1, 2), addDev(2, 0xa, fnRecv, 3, 4),
				addDev(3, 0xa, fnQueue, 1, 2), // freed unseen, address reused
				addDev(4, 0xa, fnRecv, 3, 4),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnQueue, fnRecv}, EndReuse},
				{0xa, []uint32{fnQueue, fnRecv}, EndExit},
			},
		},
		{
			name: "a start function on another device or netns continues the journey",
			cfg:  testConfig(),
			ops: []op{
				addDev(1, 0xa, fnQueue, 1, 2),
				addDev(2, 0xa, fnQueue, 1, 5), // a veth's peer, a bond's slave
				addDev(3, 0xa, fnQueue, 3, 2), // another netns, same ifindex
				addDev(4, 0xa, fnRecv, 1, 2),
				addDev(5, 0xa, fnRecv, 1, 2), // not a start function
				flush(),
			},
			want: []summary{{0xa, []uint32{fnQueue, fnQueue, fnQueue, fnRecv, fnRecv}, EndExit}},
		},
		{
			name: "without Start nothing restarts",
			cfg: configWith(func(c *Config) {
				for i := range c.Roles {
					c.Roles[i] &^= Start
				}
			}),
			ops: []op{
				addDev(1, 0xa, fnQueue, 1, 2), addDev(2, 0xa, fnQueue, 1, 2),
				flush(),
			},
			want: []summary{{0xa, []uint32{fnQueue, fnQueue}, EndExit}},
		},
		{
			name: "the event slot budget evicts like a full table",
			cfg: configWith(func(c *Config) {
				c.Length = 4 // 4 slots per journey
				c.MaxEvents = 8
			}),
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnIP),
				addAt(3, 0xb, fnRecv), // 8 slots
				addAt(4, 0xc, fnRecv), // 12: evicts a
				addAt(5, 0xc, fnXmit), // c closes
				addAt(6, 0xd, fnRecv), // 12: evicts closing c first
				addAt(7, 0xb, fnIP),   // b has room
				addAt(8, 0xe, fnRecv), // 12: evicts d, now least recently active
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnIP}, EndEvict},
				{0xc, []uint32{fnRecv, fnXmit}, EndEgress},
				{0xd, []uint32{fnRecv}, EndEvict},
				{0xb, []uint32{fnRecv, fnIP}, EndExit},
				{0xe, []uint32{fnRecv}, EndExit},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, a := run(tt.cfg, tt.ops)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("journeys:\n got %v\nwant %v", got, tt.want)
			}
			if n, h := a.InFlight(), a.Held(); (n != 0 || h != 0) && tt.ops[len(tt.ops)-1].flush {
				t.Errorf("after Flush: InFlight = %d, Held = %d, want 0", n, h)
			}
		})
	}
}

func TestAssemblerFlow(t *testing.T) {
	unparsed := Event{TS: 1, SKB: 0xa, FuncID: fnRecv}
	parsed := ev(2, 0xa, fnIP)
	other := ev(3, 0xa, fnLocal)
	other.Tuple.Sport = 1

	tests := []struct {
		name string
		evs  []Event
		want Tuple
	}{
		{"first parsed tuple", []Event{unparsed, parsed, other}, tupleA},
		{"none parsed", []Event{unparsed}, Tuple{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAssembler(testConfig())
			var got []Journey
			for _, e := range tt.evs {
				a.Add(&e, func(j Journey) { got = append(got, j) })
			}
			a.Flush(func(j Journey) { got = append(got, j) })
			if len(got) != 1 {
				t.Fatalf("got %d journeys, want 1", len(got))
			}
			if got[0].Flow != tt.want {
				t.Errorf("Flow = %+v, want %+v", got[0].Flow, tt.want)
			}
		})
	}
}

func TestAssemblerDefaults(t *testing.T) {
	a := NewAssembler(Config{})
	if a.length != DefaultLength || a.idle != uint64(DefaultIdle) ||
		a.max != DefaultMaxInFlight || a.linger != uint64(DefaultLinger) {
		t.Errorf("defaults not applied: %+v", a)
	}
	// Nil predicates: nothing is egress, nothing is release.
	var n int
	for i := 0; i < DefaultLength; i++ {
		a.Add(ptr(ev(uint64(i), 1, 0)), func(Journey) { n++ })
	}
	if n != 1 {
		t.Errorf("got %d journeys after Length events, want 1", n)
	}
}

// TestAssemblerChurn feeds many distinct skbs through a small table and
// checks the bound and that every event comes out in exactly one journey.
func TestAssemblerChurn(t *testing.T) {
	tests := []struct {
		name     string
		skbs     int
		perSKB   int
		max      int
		interlve int  // skbs interleaved at once
		recycle  bool // hand event slices back with Recycle
	}{
		{"1e6 single-event skbs", 1_000_000, 1, 1000, 1, false},
		{"interleaved journeys", 100_000, 10, 1000, 3000, false},
		{"interleaved journeys with recycle", 100_000, 10, 1000, 700, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.skbs > 100_000 {
				t.Skip("short")
			}
			cfg := testConfig()
			cfg.MaxInFlight = tt.max
			a := NewAssembler(cfg)
			seen := make(map[[2]uint64]int) // (skb, ts) → times emitted
			var in, out int
			emit := func(j Journey) {
				out += len(j.Events)
				for _, e := range j.Events {
					if e.SKB != j.SKB {
						t.Fatalf("event of skb %#x in journey of %#x", e.SKB, j.SKB)
					}
					seen[[2]uint64{e.SKB, e.TS}]++
				}
				if tt.recycle {
					a.Recycle(j)
				}
			}
			var ts uint64
			for base := 0; base < tt.skbs; base += tt.interlve {
				for k := 0; k < tt.perSKB; k++ {
					for s := base; s < base+tt.interlve && s < tt.skbs; s++ {
						ts++
						fn := fnIP
						if k == tt.perSKB-1 && s%2 == 0 {
							fn = fnXmit
						}
						a.Add(ptr(ev(ts, 0xffff000000000000+uint64(s), fn)), emit)
						in++
						if a.InFlight() > tt.max {
							t.Fatalf("InFlight = %d > %d", a.InFlight(), tt.max)
						}
					}
				}
			}
			a.Flush(emit)
			if in != out {
				t.Errorf("events in %d, out %d", in, out)
			}
			if len(seen) != in {
				t.Errorf("distinct events out %d, want %d", len(seen), in)
			}
			for k, n := range seen {
				if n != 1 {
					t.Fatalf("event %x emitted %d times", k, n)
				}
			}
		})
	}
}

func TestIsReleaseName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"__kfree_skb", true},
		{"kfree_skbmem", true},
		{"skb_release_head_state", true},
		{"skb_release_data", true},
		{"skb_release_data.isra.0", true},
		{"skb_free_head", true},
		{"skb_ext_put", true},
		{"skb_orphan_frags_rx", true},
		{"sock_wfree", true},
		{"tcp_wfree", true},
		{"dst_release", true},
		{"consume_skb", false},
		{"kfree_skb_reason", false},
		{"ip_rcv", false},
		{"dev_hard_start_xmit", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			if got := IsReleaseName(tt.name); got != tt.want {
				t.Errorf("IsReleaseName(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

// TestAssemblerClosingBound checks that at most maxClosing journeys linger
// after egress: a flood of journeys ending within the linger writes the
// oldest ones early, in the order they reached egress, each complete.
func TestAssemblerClosingBound(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInFlight = 4 * maxClosing
	a := NewAssembler(cfg)
	var got []Journey
	emit := func(j Journey) { got = append(got, j) }
	const extra = 10
	for i := uint64(0); i < maxClosing+extra; i++ {
		skb := 0x1000 + i
		ts := 1000 + i // all within the 50 ms linger
		a.Add(ptr(ev(ts, skb, fnIP)), emit)
		a.Add(ptr(ev(ts, skb, fnXmit)), emit)
	}
	if len(got) != extra {
		t.Fatalf("%d journeys written before their linger, want %d", len(got), extra)
	}
	for i, j := range got {
		if want := uint64(0x1000 + i); j.SKB != want || j.End != EndEgress || len(j.Events) != 2 {
			t.Errorf("early journey %d: skb %#x end %s, %d events; want skb %#x, egress, 2 events",
				i, j.SKB, j.End, len(j.Events), want)
		}
	}
	if n := a.InFlight(); n != maxClosing {
		t.Errorf("%d journeys in flight, want %d lingering", n, maxClosing)
	}
	// A late event on a lingering journey still joins it.
	a.Add(ptr(ev(1000+maxClosing+extra-1, 0x1000+maxClosing+extra-1, fnSkbmem)), emit)
	a.Flush(emit)
	last := got[len(got)-1]
	if len(got) != maxClosing+extra || len(last.Events) != 3 {
		t.Errorf("after flush: %d journeys (want %d), last has %d events (want 3)", len(got), maxClosing+extra, len(last.Events))
	}
}

// TestAssemblerEventBound drives many interleaved journeys of random length
// with recycling, as the tracer does, and checks after every Add that the
// slots held stay within MaxEvents and equal the capacity of the journeys
// held; and that no event is lost or duplicated on the way.
func TestAssemblerEventBound(t *testing.T) {
	cfg := testConfig()
	cfg.MaxEvents = 1500
	a := NewAssembler(cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	out := 0
	emit := func(j Journey) { out += len(j.Events); a.Recycle(j) }
	const n = 200000
	for i := uint64(0); i < n; i++ {
		skb := 0x1000 + uint64(rng.IntN(30))
		fn := fnRecv
		if rng.IntN(60) == 0 {
			fn = fnConsume
		}
		a.Add(ptr(ev(1000+i, skb, fn)), emit)
		if a.Held() > cfg.MaxEvents {
			t.Fatalf("after event %d: %d slots held, bound %d", i, a.Held(), cfg.MaxEvents)
		}
		if i%997 == 0 {
			slots := 0
			for _, e := range a.table {
				slots += cap(e.events)
			}
			if slots != a.Held() {
				t.Fatalf("after event %d: Held() = %d, journeys hold %d slots", i, a.Held(), slots)
			}
		}
	}
	a.Flush(emit)
	if out != n || a.Held() != 0 {
		t.Errorf("%d events out of %d in, %d slots held after Flush", out, n, a.Held())
	}
}

func TestIsStartName(t *testing.T) {
	for name, want := range map[string]bool{
		"net_dev_queue": true, "netif_receive_skb_entry": true, "napi_gro_receive_entry": true,
		"netif_rx_entry": true, "netif_receive_skb": false, "net_dev_start_xmit": false,
		"__dev_queue_xmit": false, "": false,
	} {
		if got := IsStartName(name); got != want {
			t.Errorf("IsStartName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRoleOf(t *testing.T) {
	for _, tt := range []struct {
		name   string
		egress bool
		want   Role
	}{
		{"ip_rcv", false, 0},
		{"consume_skb", true, Egress},
		{"kfree_skbmem", false, Release},
		{"skb_release_data", true, Egress | Release},
		{"net_dev_queue", false, Start},
		{"net_dev_queue", true, Egress | Start},
	} {
		if got := RoleOf(tt.name, tt.egress); got != tt.want {
			t.Errorf("RoleOf(%q, %v) = %b, want %b", tt.name, tt.egress, got, tt.want)
		}
	}
}
