// Package journey assembles per-packet journeys from the events the BPF
// programs emit: every event carries an skb address, and a journey is the
// ordered list of functions one skb passed through.
package journey

import (
	"net/netip"
)

// DataSize is the size in bytes of the per-event data area that modules fill.
const DataSize = 64

// Tuple is a flow identity as the BPF program parsed it from the packet.
type Tuple struct {
	IPVersion uint8      // 4 or 6; 0 if the packet could not be parsed
	Proto     uint8      // IP protocol number (1 ICMP, 6 TCP, 17 UDP, 58 ICMPv6)
	Saddr     netip.Addr // source address
	Daddr     netip.Addr // destination address
	Sport     uint16     // source port (0 for ICMP)
	Dport     uint16     // destination port (0 for ICMP)
}

// Event is one hit of one traced function on one skb.
type Event struct {
	TS         uint64         // ktime in nanoseconds
	SKB        uint64         // skb address
	FuncID     uint32         // index into the tracer's function table
	CPU        uint32         // CPU the function ran on
	Netns      uint32         // netns inode of skb->dev (or skb->sk), 0 if unknown
	Ifindex    uint32         // skb->dev->ifindex, 0 if no device
	Len        uint32         // skb->len
	DropReason uint32         // enum skb_drop_reason value for drop functions, else 0
	Tuple      Tuple          // flow tuple as parsed at this point (IPVersion 0: none)
	Data       [DataSize]byte // module data area
	Location   uint64         // kernel address a drop function was called from, 0 if unknown
	DataValid  uint64         // bit i: module field i was read (a NULL pointer on its path clears it)
	ID         uint64         // journey ID from skb tracking; 0 with tracking off
	Clone      bool           // the skb is a clone or copy of the journey's skb
	Tracked    bool           // in the journey by tracking; its headers did not match the filter
	SockTuple  bool           // Tuple comes from the skb's socket, not its headers
}

// Key returns what events are grouped into journeys by: the journey ID
// when tracking assigned one, else the skb address.
func (e *Event) Key() uint64 {
	if e.ID != 0 {
		return e.ID
	}
	return e.SKB
}

// End says why a journey ended.
type End string

// The reasons a journey ends.
const (
	EndEgress End = "egress" // an egress function ran
	EndLength End = "length" // -l/--length functions were recorded
	EndIdle   End = "idle"   // the skb was idle for the idle timeout
	EndExit   End = "exit"   // the tracer exited while the journey was in flight
	EndEvict  End = "evict"  // the in-flight table was full and this was the oldest journey
	EndReuse  End = "reuse"  // a new packet started at the skb's address; its free was not seen
)

// Journey is the ordered list of events of one skb (and, with tracking, of
// its clones and copies), from its first matching hit until it ended.
type Journey struct {
	Flow   Tuple   // the tuple of the first event with a tuple
	SKB    uint64  // skb address of the first event
	Events []Event // in timestamp order
	End    End     // why it ended
}
