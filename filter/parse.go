package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// IP protocol numbers the filter knows by name.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
	ProtoSCTP   = 132
)

var protoNames = map[string]int{
	"icmp":      ProtoICMP,
	"igmp":      2,
	"tcp":       ProtoTCP,
	"udp":       ProtoUDP,
	"gre":       47,
	"esp":       50,
	"ah":        51,
	"icmpv6":    ProtoICMPv6,
	"ipv6-icmp": ProtoICMPv6,
	"icmp6":     ProtoICMPv6,
	"sctp":      ProtoSCTP,
	"udplite":   136,
}

// ProtoName returns the conventional name of an IP protocol number, or the
// number itself.
func ProtoName(proto int) string {
	switch proto {
	case ProtoICMP:
		return "icmp"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMPv6:
		return "icmpv6"
	case ProtoSCTP:
		return "sctp"
	case -1:
		return "any"
	}
	for name, n := range protoNames {
		if n == proto && !strings.Contains(name, "icmp") {
			return name
		}
	}
	return strconv.Itoa(proto)
}

// ParsePrefix parses an address ("10.0.0.1", "fd00::1": a /32 or /128) or a
// CIDR prefix ("10.0.0.0/8"). Host bits of a prefix are cleared.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty address")
	}
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Errorf("address %q: zones are not supported", s)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address or CIDR %q", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseProto parses a protocol name (icmp, tcp, udp, icmpv6, ipv6-icmp,
// sctp, ...; any case) or number (0-255).
func ParseProto(s string) (int, error) {
	s = strings.TrimSpace(s)
	if n, ok := protoNames[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("unknown protocol %q (want icmp, tcp, udp, icmpv6, sctp or a number 0-255)", s)
	}
	return int(n), nil
}

// ParsePort parses a decimal port number 0-65535.
func ParsePort(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			return 0, fmt.Errorf("port %s outside 0-65535", s)
		}
		return 0, fmt.Errorf("invalid port %q (want a number 0-65535)", s)
	}
	return int(n), nil
}

// ParseIPVersion parses "4" or "6".
func ParseIPVersion(s string) (int, error) {
	switch strings.TrimSpace(s) {
	case "4":
		return 4, nil
	case "6":
		return 6, nil
	}
	return 0, fmt.Errorf("invalid IP version %q (want 4 or 6)", s)
}

// Family returns the IP version the filter implies: IPVersion if set, else
// the family of an address or of ICMP/ICMPv6, else 0.
func (f Filter) Family() int {
	if f.IPVersion != 0 {
		return f.IPVersion
	}
	for _, p := range []netip.Prefix{f.Saddr, f.Daddr} {
		if p.IsValid() {
			return prefixFamily(p)
		}
	}
	switch f.Proto {
	case ProtoICMP:
		return 4
	case ProtoICMPv6:
		return 6
	}
	return 0
}

func prefixFamily(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 4
	}
	return 6
}

// Validate checks that the fields are in range and agree with each other.
func (f Filter) Validate() error {
	switch f.IPVersion {
	case 0, 4, 6:
	default:
		return fmt.Errorf("invalid IP version %d (want 4 or 6)", f.IPVersion)
	}
	if f.Proto < -1 || f.Proto > 255 {
		return fmt.Errorf("protocol %d outside 0-255", f.Proto)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"source port", f.Sport}, {"destination port", f.Dport}} {
		if p.v < -1 || p.v > 65535 {
			return fmt.Errorf("%s %d outside 0-65535", p.name, p.v)
		}
	}

	version := f.IPVersion
	for _, a := range []struct {
		name string
		p    netip.Prefix
	}{{"source", f.Saddr}, {"destination", f.Daddr}} {
		if !a.p.IsValid() {
			continue
		}
		fam := prefixFamily(a.p)
		if version != 0 && fam != version {
			if f.IPVersion != 0 {
				return fmt.Errorf("%s address %s is IPv%d but the IP version is %d", a.name, a.p, fam, f.IPVersion)
			}
			return fmt.Errorf("source address %s and destination address %s are of different IP versions", f.Saddr, f.Daddr)
		}
		version = fam
	}

	switch {
	case f.Proto == ProtoICMP && version == 6:
		return errors.New("protocol icmp is IPv4 only (use icmpv6 for IPv6)")
	case f.Proto == ProtoICMPv6 && version == 4:
		return errors.New("protocol icmpv6 is IPv6 only (use icmp for IPv4)")
	}

	if (f.Sport >= 0 || f.Dport >= 0) && f.Proto >= 0 && !hasPorts(f.Proto) {
		return fmt.Errorf("ports need tcp, udp or sctp, not %s", ProtoName(f.Proto))
	}
	return nil
}

// hasPorts reports whether proto carries 16-bit ports at the start of its header.
func hasPorts(proto int) bool {
	switch proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP, 136:
		return true
	}
	return false
}
