package main

import (
	"strings"
	"testing"
)

func TestParsePing(t *testing.T) {
	out := `PING 10.0.0.2 (10.0.0.2) 56(84) bytes of data.

--- 10.0.0.2 ping statistics ---
20000 packets transmitted, 19998 received, 0.01% packet loss, time 1520ms
rtt min/avg/max/mdev = 0.010/0.020/0.300/0.005 ms, ipg/ewma 0.076/0.021 ms
`
	r, err := parsePing(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.sent != 20000 || r.received != 19998 || r.ms != 1520 {
		t.Fatalf("got %+v", r)
	}
	if _, err := parsePing("ping: connect: Network is unreachable"); err == nil {
		t.Fatal("no error for output without a summary")
	}
}

func TestParseSummary(t *testing.T) {
	s := parseSummary("ipftrace: backend fentry: requested with --backend\nipftrace: 2000 journeys, 140000 events received, lost 12 events\n")
	if !s.ok || s.journeys != 2000 || s.received != 140000 || s.lost != 12 || s.matched != 140012 || s.unaccountedLine {
		t.Fatalf("got %+v", s)
	}
	s = parseSummary("ipftrace: 5 journeys, 10 events received, lost 0 events\nipftrace: 13 events matched in the kernel, 10 received + 0 lost: 3 unaccounted for\n")
	if s.matched != 13 || !s.unaccountedLine {
		t.Fatalf("got %+v", s)
	}
	m := attachedRe.FindStringSubmatch("ipftrace: attached 1645/1654 (9 skipped: 9 skb argument out of reach) in 2.22s")
	if m == nil || m[1] != "1645" || m[2] != "1654" || m[3] != "9 skipped: 9 skb argument out of reach" {
		t.Fatalf("attached: %q", m)
	}
}

func TestParseTargets(t *testing.T) {
	out := `NAME                  KIND        SKB_POS  ARGS  MODULE   BACKENDS                    EGRESS
ip_rcv                func        1        4     vmlinux  fentry,kprobe-multi,kprobe
__bpf_sk_lookup_many  func        8        9     vmlinux  fentry
wide_struct_fn        func        2        9     vmlinux  kprobe-multi,kprobe
consume_skb           tracepoint  1        2     vmlinux  tracepoint                  yes
qdisc_far             tracepoint  7        7     vmlinux  tracepoint
`
	ts, err := parseTargets(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ backend, want string }{
		{"fentry", "ip_rcv,__bpf_sk_lookup_many"},
		{"kprobe-multi", "ip_rcv,wide_struct_fn"},
		{"kprobe", "ip_rcv,wide_struct_fn"},
		{"tracepoint", "consume_skb"},
	} {
		if got := strings.Join(floorTargets(ts, c.backend), ","); got != c.want {
			t.Errorf("%s: got %s, want %s", c.backend, got, c.want)
		}
	}
}

func TestParseBench(t *testing.T) {
	out := `pkg: github.com/ipftrace/ipftrace/journey
BenchmarkAssembler/interleave=64         	  934182	       648.7 ns/op	   1541591 events/s	     460 B/op	       0 allocs/op
pkg: github.com/ipftrace/ipftrace/output
BenchmarkWrite/json         	   48577	      8915 ns/op	    112165 journeys/s	       0 B/op	       0 allocs/op
pkg: github.com/ipftrace/ipftrace/tracer
BenchmarkLoadClone
BenchmarkLoadClone/any
BenchmarkLoadClone/any-2         	     200	   2233213 ns/op	      2277 cpu-us/op	      1740 verified-insns
BenchmarkLoadClone/any/fentry
    load_bench_test.go:94: SKIPPED: fentry programs do not load on this kernel: load program: operation not permitted
--- SKIP: BenchmarkLoadClone/any/fentry
`
	res := parseBench(strings.NewReader(out))
	if len(res) != 4 || res[0].metrics["events/s"] != 1541591 || res[1].metrics["journeys/s"] != 112165 || res[1].pkg != "github.com/ipftrace/ipftrace/output" {
		t.Fatalf("got %+v", res)
	}
	if res[2].metrics["verified-insns"] != 1740 || res[2].skipped != "" {
		t.Fatalf("LoadClone/any: got %+v", res[2])
	}
	if res[3].name != "BenchmarkLoadClone/any/fentry" || !strings.Contains(res[3].skipped, "fentry programs do not load") {
		t.Fatalf("skipped benchmark: got %+v", res[3])
	}
}
