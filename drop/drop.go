// Package drop says why and where a journey's skb was dropped, from the
// drop reason the BPF side read (enum skb_drop_reason) and the caller of the
// drop function.
package drop

import (
	"strconv"

	"github.com/ipftrace/ipftrace/journey"
)

// Drop is the end of a dropped skb.
type Drop struct {
	Reason string // enum skb_drop_reason name without SKB_DROP_REASON_, e.g. NETFILTER_DROP
	At     string // the function that dropped it ("" if unknown)
}

// Finder finds drops in journeys.
type Finder struct {
	// Reasons maps enum skb_drop_reason values to names (see
	// btfscan.DropReasons). A value missing from it prints as "reason N".
	Reasons map[uint64]string
	// FuncName resolves an event's function ID.
	FuncName func(funcID uint32) string
	// Symbol resolves a kernel text address to its function (nil: none).
	Symbol func(addr uint64) (string, bool)
}

// notDrops are reason names that end an skb's life normally.
var notDrops = map[string]bool{
	"SKB_NOT_DROPPED_YET": true, // 0: not a drop
	"SKB_CONSUMED":        true, // sk_skb_reason_drop(..., SKB_CONSUMED) is consume_skb
}

// dropFuncs are the functions and the tracepoint that carry a drop reason;
// a location that resolves to one of them says nothing about the caller.
var dropFuncs = map[string]bool{
	"kfree_skb":             true,
	"kfree_skb_reason":      true,
	"kfree_skb_list_reason": true,
	"sk_skb_reason_drop":    true,
	"__sk_skb_reason_drop":  true,
}

// Find returns the drop of j: its last event that carries a drop reason
// other than "not dropped" or "consumed". The place is where that drop
// function was called from when the BPF side saw it (the kfree_skb
// tracepoint's location argument, or the kprobe's return address), and
// otherwise the function of the journey's previous event that is not a
// drop function itself.
func (f *Finder) Find(j journey.Journey) (Drop, bool) {
	for i := len(j.Events) - 1; i >= 0; i-- {
		ev := &j.Events[i]
		if ev.DropReason == 0 {
			continue
		}
		name, known := f.Reasons[uint64(ev.DropReason)]
		if known && notDrops[name] {
			return Drop{}, false
		}
		if !known {
			name = "reason " + strconv.FormatUint(uint64(ev.DropReason), 10)
		}
		return Drop{Reason: name, At: f.place(j.Events[:i+1])}, true
	}
	return Drop{}, false
}

// place returns where the last event of evs, a drop, happened.
func (f *Finder) place(evs []journey.Event) string {
	last := &evs[len(evs)-1]
	if last.Location != 0 && f.Symbol != nil {
		if name, ok := f.Symbol(last.Location); ok && !dropFuncs[name] {
			return name
		}
	}
	if f.FuncName == nil {
		return ""
	}
	for i := len(evs) - 2; i >= 0; i-- {
		if evs[i].DropReason != 0 {
			continue
		}
		if name := f.FuncName(evs[i].FuncID); !dropFuncs[name] {
			return name
		}
	}
	return ""
}
