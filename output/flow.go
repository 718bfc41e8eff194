package output

import (
	"net/netip"
	"strconv"

	"github.com/ipftrace/ipftrace/journey"
)

// IP protocol numbers with names.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// ProtoName returns the name of IP protocol proto: ICMP, TCP, UDP, ICMPv6,
// SCTP, else the decimal number.
func ProtoName(proto uint8) string {
	switch proto {
	case protoICMP:
		return "ICMP"
	case protoTCP:
		return "TCP"
	case protoUDP:
		return "UDP"
	case protoICMPv6:
		return "ICMPv6"
	case protoSCTP:
		return "SCTP"
	}
	return strconv.FormatUint(uint64(proto), 10)
}

// hasPorts reports whether a flow's endpoints are printed with ports: for
// TCP, UDP and SCTP, and for any protocol the tracer parsed ports for.
func hasPorts(t journey.Tuple) bool {
	switch t.Proto {
	case protoTCP, protoUDP, protoSCTP:
		return true
	}
	return t.Sport != 0 || t.Dport != 0
}

// appendEndpoint appends addr, or addr:port (IPv6: [addr]:port) if withPort.
func appendEndpoint(b []byte, addr netip.Addr, port uint16, withPort bool) []byte {
	if !withPort {
		return addr.AppendTo(b)
	}
	if addr.Is6() {
		b = append(b, '[')
		b = addr.AppendTo(b)
		b = append(b, ']')
	} else {
		b = addr.AppendTo(b)
	}
	b = append(b, ':')
	return strconv.AppendUint(b, uint64(port), 10)
}
