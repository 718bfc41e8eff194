package filter

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "10.0.0.1", want: "10.0.0.1/32"},
		{in: " 10.0.0.1 ", want: "10.0.0.1/32"},
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "fd00::1", want: "fd00::1/128"},
		{in: "fd00::/64", want: "fd00::/64"},
		{in: "::ffff:10.0.0.1", want: "::ffff:10.0.0.1/128"},
		{in: "10.0.0.1/33", err: "invalid address or CIDR"},
		{in: "fd00::/129", err: "invalid address or CIDR"},
		{in: "10.0.0.1/-1", err: "invalid"},
		{in: "10.0.0", err: "invalid address \"10.0.0\""},
		{in: "256.0.0.1", err: "invalid address"},
		{in: "example.com", err: "invalid address"},
		{in: "fe80::1%eth0", err: "zones are not supported"},
		{in: "", err: "empty address"},
		{in: "/24", err: "invalid"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePrefix(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p != netip.MustParsePrefix(tc.want) {
				t.Errorf("got %s, want %s", p, tc.want)
			}
		})
	}
}

func TestParseProto(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  bool
	}{
		{"icmp", 1, false}, {"ICMP", 1, false}, {"Tcp", 6, false}, {"udp", 17, false},
		{"icmpv6", 58, false}, {"ipv6-icmp", 58, false}, {"ICMPv6", 58, false}, {"sctp", 132, false},
		{"0", 0, false}, {"6", 6, false}, {"255", 255, false},
		{"256", 0, true}, {"-1", 0, true}, {"tcpp", 0, true}, {"", 0, true}, {"0x6", 0, true}, {"6.0", 0, true},
	} {
		got, err := ParseProto(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseProto(%q) = %d, %v; want %d, err %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		err  string
	}{
		{"0", 0, ""}, {"80", 80, ""}, {"65535", 65535, ""}, {"080", 80, ""},
		{"65536", 0, "outside 0-65535"}, {"99999999999", 0, "outside 0-65535"},
		{"-1", 0, "invalid port"}, {"http", 0, "invalid port"}, {"", 0, "invalid port"}, {"1e3", 0, "invalid port"},
	} {
		got, err := ParsePort(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePort(%q): error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePort(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseIPVersion(t *testing.T) {
	for in, want := range map[string]int{"4": 4, "6": 6, "5": 0, "": 0, "v4": 0} {
		got, err := ParseIPVersion(in)
		if (err != nil) != (want == 0) || got != want {
			t.Errorf("ParseIPVersion(%q) = %d, %v", in, got, err)
		}
	}
}

func TestValidate(t *testing.T) {
	v4 := netip.MustParsePrefix("10.0.0.1/32")
	v6 := netip.MustParsePrefix("fd00::1/128")
	with := func(mod func(*Filter)) Filter {
		f := Any()
		mod(&f)
		return f
	}
	for _, tc := range []struct {
		name string
		f    Filter
		err  string
	}{
		{"any", Any(), ""},
		{"v4 addrs", with(func(f *Filter) { f.IPVersion = 4; f.Saddr = v4; f.Daddr = v4 }), ""},
		{"v6 addrs", with(func(f *Filter) { f.IPVersion = 6; f.Saddr = v6 }), ""},
		{"tcp ports", with(func(f *Filter) { f.Proto = ProtoTCP; f.Sport = 80; f.Dport = 0 }), ""},
		{"ports any proto", with(func(f *Filter) { f.Dport = 53 }), ""},
		{"icmp v4", with(func(f *Filter) { f.Proto = ProtoICMP; f.Daddr = v4 }), ""},
		{"icmpv6 v6", with(func(f *Filter) { f.Proto = ProtoICMPv6; f.IPVersion = 6 }), ""},
		{"bad version", with(func(f *Filter) { f.IPVersion = 5 }), "invalid IP version 5"},
		{"v4 with v6 saddr", with(func(f *Filter) { f.IPVersion = 4; f.Saddr = v6 }), "source address fd00::1/128 is IPv6 but the IP version is 4"},
		{"v6 with v4 daddr", with(func(f *Filter) { f.IPVersion = 6; f.Daddr = v4 }), "destination address 10.0.0.1/32 is IPv4 but the IP version is 6"},
		{"mixed addrs", with(func(f *Filter) { f.Saddr = v4; f.Daddr = v6 }), "different IP versions"},
		{"icmp v6", with(func(f *Filter) { f.Proto = ProtoICMP; f.IPVersion = 6 }), "icmp is IPv4 only"},
		{"icmp v6 addr", with(func(f *Filter) { f.Proto = ProtoICMP; f.Saddr = v6 }), "icmp is IPv4 only"},
		{"icmpv6 v4", with(func(f *Filter) { f.Proto = ProtoICMPv6; f.IPVersion = 4 }), "icmpv6 is IPv6 only"},
		{"icmpv6 v4 addr", with(func(f *Filter) { f.Proto = ProtoICMPv6; f.Daddr = v4 }), "icmpv6 is IPv6 only"},
		{"icmp ports", with(func(f *Filter) { f.Proto = ProtoICMP; f.Dport = 80 }), "ports need tcp, udp or sctp, not icmp"},
		{"proto range", with(func(f *Filter) { f.Proto = 300 }), "protocol 300"},
		{"port range", with(func(f *Filter) { f.Sport = 70000 }), "source port 70000 outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestFamily(t *testing.T) {
	f := Any()
	if f.Family() != 0 {
		t.Error("any: family not 0")
	}
	f.Proto = ProtoICMPv6
	if f.Family() != 6 {
		t.Error("icmpv6: family not 6")
	}
	f.Saddr = netip.MustParsePrefix("10.0.0.0/8")
	if f.Family() != 4 {
		t.Error("v4 saddr: family not 4")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "fd00::/64", "tcp", "65535", "1/33", "%", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParsePrefix(s); err == nil && !p.IsValid() {
			t.Errorf("ParsePrefix(%q) returned invalid prefix without error", s)
		}
		if n, err := ParseProto(s); err == nil && (n < 0 || n > 255) {
			t.Errorf("ParseProto(%q) = %d", s, n)
		}
		if n, err := ParsePort(s); err == nil && (n < 0 || n > 65535) {
			t.Errorf("ParsePort(%q) = %d", s, n)
		}
	})
}
