// Package filter holds the flow filter: which packets the BPF programs keep.
// The filter is evaluated in the kernel; this package parses and validates
// the user's flags and encodes them as load-time constants.
package filter

import "net/netip"

// Filter selects the packets of one flow. Zero values of the optional
// fields mean "any".
type Filter struct {
	IPVersion int          // 0 (any), 4 or 6
	Saddr     netip.Prefix // invalid prefix: any source
	Daddr     netip.Prefix // invalid prefix: any destination
	Proto     int          // -1: any protocol; else the IP protocol number
	Sport     int          // -1: any source port
	Dport     int          // -1: any destination port
}

// Any returns a filter that matches every packet.
func Any() Filter { return Filter{Proto: -1, Sport: -1, Dport: -1} }
