package journey

import (
	"net/netip"
	"reflect"
	"testing"
)

// tev is an event of a tracked journey: journey ID id, on skb.
func tev(ts, skb uint64, fn uint32, id uint64, clone bool) op {
	e := ev(ts, skb, fn)
	e.ID, e.Clone = id, clone
	return add(e)
}

func TestAssemblerTracked(t *testing.T) {
	tests := []struct {
		name string
		ops  []op
		want []summary
	}{
		{
			name: "clone in the same journey; closing only when both reached egress",
			ops: []op{
				tev(1, 0xa, fnRecv, 7, false),
				tev(2, 0xb, fnIP, 7, true),
				tev(3, 0xa, fnConsume, 7, false), // the original is freed, the clone lives on
				tick(3 + 100*ms),                 // beyond the linger: not closing yet
				tev(4+100*ms, 0xb, fnLocal, 7, true),
				tev(5+100*ms, 0xb, fnConsume, 7, true),
				tick(5 + 200*ms),
			},
			want: []summary{{0xa, []uint32{fnRecv, fnIP, fnConsume, fnLocal, fnConsume}, EndEgress}},
		},
		{
			name: "a reused address with a new ID is a new journey even while the old one is in flight",
			ops: []op{
				tev(1, 0xa, fnRecv, 7, false),
				tev(2, 0xb, fnIP, 7, true),
				tev(3, 0xa, fnConsume, 7, false),
				tev(4, 0xa, fnRecv, 8, false), // 0xa reused by another packet
				tev(5, 0xb, fnConsume, 7, true),
				tev(6, 0xa, fnConsume, 8, false),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnIP, fnConsume, fnConsume}, EndEgress},
				{0xa, []uint32{fnRecv, fnConsume}, EndEgress},
			},
		},
		{
			name: "a new packet inheriting the ID at a reused address starts a new journey",
			ops: []op{
				tev(1, 0xa, fnQueue, 7, false),
				tev(2, 0xa, fnRecv, 7, false),
				tev(3, 0xa, fnQueue, 7, false), // freed unseen; same flow, same ID
				tev(4, 0xa, fnRecv, 7, false),
				tev(5, 0xa, fnConsume, 7, false),
				tev(6, 0xa, fnQueue, 7, false), // after egress: not a reopening
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnQueue, fnRecv}, EndReuse},
				{0xa, []uint32{fnQueue, fnRecv, fnConsume}, EndEgress},
				{0xa, []uint32{fnQueue}, EndExit},
			},
		},
		{
			name: "an event of the ID after egress reopens the journey (shared skb)",
			ops: []op{
				tev(1, 0xa, fnRecv, 7, false),
				tev(2, 0xa, fnConsume, 7, false),
				tev(3, 0xa, fnIP, 7, false),
				tick(3 + 100*ms),
				tev(4+100*ms, 0xa, fnXmit, 7, false),
				flush(),
			},
			want: []summary{{0xa, []uint32{fnRecv, fnConsume, fnIP, fnXmit}, EndEgress}},
		},
		{
			name: "without IDs, events group by skb as before",
			ops: []op{
				addAt(1, 0xa, fnRecv), addAt(2, 0xa, fnConsume), addAt(3, 0xa, fnRecv),
				flush(),
			},
			want: []summary{
				{0xa, []uint32{fnRecv, fnConsume}, EndEgress},
				{0xa, []uint32{fnRecv}, EndExit},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, a := run(testConfig(), tt.ops)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			if a.InFlight() != 0 && tt.ops[len(tt.ops)-1].flush {
				t.Errorf("%d journeys left after flush", a.InFlight())
			}
		})
	}
}

// A later part of a tracked journey whose events have no tuple (its headers
// are gone) gets the flow of the earlier part.
func TestAssemblerTrackedFlowMemory(t *testing.T) {
	a := NewAssembler(testConfig())
	var got []Journey
	emit := func(j Journey) { got = append(got, j) }
	first := ev(1, 0xa, fnRecv)
	first.ID = 9
	a.Add(&first, emit)
	a.Tick(1+2*uint64(DefaultIdle), emit) // idle end
	late := Event{TS: 5 + 2*uint64(DefaultIdle), SKB: 0xa, FuncID: fnConsume, ID: 9, Tracked: true}
	a.Add(&late, emit)
	other := Event{TS: 6 + 2*uint64(DefaultIdle), SKB: 0xc, FuncID: fnConsume, ID: 10, Tracked: true}
	a.Add(&other, emit)
	a.Flush(emit)
	if len(got) != 3 {
		t.Fatalf("%d journeys, want 3: %+v", len(got), got)
	}
	if got[0].End != EndIdle || got[0].Flow != tupleA {
		t.Errorf("first part: %+v", got[0])
	}
	if got[1].Flow != tupleA || got[1].Events[0].FuncID != fnConsume {
		t.Errorf("later part of journey 9 has flow %+v, want the first part's %+v", got[1].Flow, tupleA)
	}
	if got[2].Flow.IPVersion != 0 || got[2].Flow.Saddr != (netip.Addr{}) {
		t.Errorf("journey 10 was never seen with a tuple but has flow %+v", got[2].Flow)
	}
}
