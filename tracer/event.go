package tracer

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/ipftrace/ipftrace/journey"
)

// trackOff is the offset of the tracking fields (id, flags) of struct event.
const trackOff = 96

// eventShort is the size of an event without module data (no -m): the BPF
// side reserves only that much, since the data area comes last.
const eventShort = trackOff + 16

// eventSize is the size of struct event in bpf/ipftrace.c, module data
// included.
const eventSize = eventShort + journey.DataSize

// Event flags, the EV_* of bpf/ipftrace.c.
const (
	evClone   = 1 // a clone or copy of the journey's skb
	evTracked = 2 // in the journey by tracking, its headers did not match
	evSock    = 4 // the tuple comes from the socket
)

// decodeEvent decodes one ring buffer record into ev.
func decodeEvent(b []byte, ev *journey.Event) error {
	if len(b) < eventShort {
		return fmt.Errorf("short event: %d bytes, want %d", len(b), eventShort)
	}
	le := binary.LittleEndian
	ev.TS = le.Uint64(b[0:])
	ev.SKB = le.Uint64(b[8:])
	ev.FuncID = le.Uint32(b[16:])
	ev.CPU = le.Uint32(b[20:])
	ev.Netns = le.Uint32(b[24:])
	ev.Ifindex = le.Uint32(b[28:])
	ev.Len = le.Uint32(b[32:])
	ev.DropReason = le.Uint32(b[36:])
	t := &ev.Tuple
	t.IPVersion = b[76]
	t.Proto = b[77]
	switch t.IPVersion {
	case 4:
		t.Saddr = netip.AddrFrom4([4]byte(b[40:44]))
		t.Daddr = netip.AddrFrom4([4]byte(b[56:60]))
	case 6:
		t.Saddr = netip.AddrFrom16([16]byte(b[40:56]))
		t.Daddr = netip.AddrFrom16([16]byte(b[56:72]))
	default:
		t.Saddr, t.Daddr = netip.Addr{}, netip.Addr{}
	}
	// Ports are stored in host byte order by the BPF side.
	t.Sport = le.Uint16(b[72:])
	t.Dport = le.Uint16(b[74:])
	ev.Location = le.Uint64(b[80:])
	ev.DataValid = le.Uint64(b[88:])
	ev.ID = le.Uint64(b[trackOff:])
	fl := le.Uint32(b[trackOff+8:])
	ev.Clone = fl&evClone != 0
	ev.Tracked = fl&evTracked != 0
	ev.SockTuple = fl&evSock != 0
	if len(b) >= eventSize {
		copy(ev.Data[:], b[eventShort:eventSize])
	} else {
		ev.Data = [journey.DataSize]byte{}
	}
	return nil
}
