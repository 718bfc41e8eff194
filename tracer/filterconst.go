package tracer

import (
	"encoding/binary"
	"net/netip"

	"github.com/ipftrace/ipftrace/filter"
)

// prefixConst is an address prefix as the BPF side compares it: two
// little-endian u64 words of the address bytes and of the mask.
type prefixConst struct {
	ver  uint8
	addr [2]uint64
	mask [2]uint64
}

// filterConsts are the values of the f_* constants in bpf/ipftrace.c.
type filterConsts struct {
	ipversion uint8
	protoSet  uint8
	proto     uint8
	saddr     prefixConst
	daddr     prefixConst
	sportSet  uint8
	sport     uint16
	dportSet  uint8
	dport     uint16
}

func encodePrefix(p netip.Prefix) prefixConst {
	if !p.IsValid() {
		return prefixConst{}
	}
	var c prefixConst
	var addr, mask [16]byte
	a := p.Masked().Addr()
	if a.Is4() {
		c.ver = 4
		b := a.As4()
		copy(addr[:], b[:])
	} else {
		c.ver = 6
		b := a.As16()
		copy(addr[:], b[:])
	}
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	c.addr[0] = binary.LittleEndian.Uint64(addr[0:8])
	c.addr[1] = binary.LittleEndian.Uint64(addr[8:16])
	c.mask[0] = binary.LittleEndian.Uint64(mask[0:8])
	c.mask[1] = binary.LittleEndian.Uint64(mask[8:16])
	return c
}

func encodeFilter(f filter.Filter) filterConsts {
	c := filterConsts{
		ipversion: uint8(f.IPVersion),
		saddr:     encodePrefix(f.Saddr),
		daddr:     encodePrefix(f.Daddr),
	}
	if f.Proto >= 0 {
		c.protoSet, c.proto = 1, uint8(f.Proto)
	}
	if f.Sport >= 0 {
		c.sportSet, c.sport = 1, uint16(f.Sport)
	}
	if f.Dport >= 0 {
		c.dportSet, c.dport = 1, uint16(f.Dport)
	}
	return c
}
