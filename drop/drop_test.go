package drop

import (
	"testing"

	"github.com/ipftrace/ipftrace/journey"
)

var funcs = []string{"ip_rcv", "nf_hook_slow", "kfree_skb_reason", "sk_skb_reason_drop", "consume_skb", "kfree_skbmem", "kfree_skb"}

func id(name string) uint32 {
	for i, n := range funcs {
		if n == name {
			return uint32(i)
		}
	}
	panic(name)
}

func TestFind(t *testing.T) {
	f := &Finder{
		Reasons:  map[uint64]string{0: "SKB_NOT_DROPPED_YET", 1: "SKB_CONSUMED", 2: "NOT_SPECIFIED", 6: "NETFILTER_DROP", 3: "NO_SOCKET"},
		FuncName: func(i uint32) string { return funcs[i] },
		Symbol: func(addr uint64) (string, bool) {
			switch addr {
			case 0x1000:
				return "__udp4_lib_rcv", true
			case 0x2000:
				return "sk_skb_reason_drop", true
			}
			return "", false
		},
	}
	ev := func(name string, reason uint32, loc uint64) journey.Event {
		return journey.Event{FuncID: id(name), DropReason: reason, Location: loc}
	}
	for _, tc := range []struct {
		name   string
		events []journey.Event
		want   Drop
		ok     bool
	}{
		{"netfilter, previous function", []journey.Event{ev("ip_rcv", 0, 0), ev("nf_hook_slow", 0, 0), ev("sk_skb_reason_drop", 6, 0), ev("kfree_skbmem", 0, 0)},
			Drop{"NETFILTER_DROP", "nf_hook_slow"}, true},
		{"location wins", []journey.Event{ev("ip_rcv", 0, 0), ev("kfree_skb", 3, 0x1000)},
			Drop{"NO_SOCKET", "__udp4_lib_rcv"}, true},
		{"location in a drop function falls back", []journey.Event{ev("nf_hook_slow", 0, 0), ev("kfree_skb", 6, 0x2000)},
			Drop{"NETFILTER_DROP", "nf_hook_slow"}, true},
		{"unknown location falls back", []journey.Event{ev("nf_hook_slow", 0, 0), ev("kfree_skb", 6, 0x9999)},
			Drop{"NETFILTER_DROP", "nf_hook_slow"}, true},
		{"drop functions nested", []journey.Event{ev("ip_rcv", 0, 0), ev("kfree_skb_reason", 2, 0), ev("sk_skb_reason_drop", 2, 0)},
			Drop{"NOT_SPECIFIED", "ip_rcv"}, true},
		{"consumed", []journey.Event{ev("ip_rcv", 0, 0), ev("sk_skb_reason_drop", 1, 0)}, Drop{}, false},
		{"consume_skb", []journey.Event{ev("ip_rcv", 0, 0), ev("consume_skb", 0, 0)}, Drop{}, false},
		{"unknown reason value", []journey.Event{ev("ip_rcv", 0, 0), ev("kfree_skb", 0x10005, 0)},
			Drop{"reason 65541", "ip_rcv"}, true},
		{"nothing before", []journey.Event{ev("kfree_skb", 6, 0)}, Drop{"NETFILTER_DROP", ""}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := f.Find(journey.Journey{Events: tc.events})
			if got != tc.want || ok != tc.ok {
				t.Errorf("Find = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
