// Package bpf holds ipftrace's BPF programs, compiled by bpf2go. The
// generated Go files and objects are committed so that building ipftrace
// needs no clang; `make generate` rebuilds them.
//
// ipftrace.c is compiled once per Group, each object holding the programs of
// one backend and the same maps and globals, so that a run parses only the
// programs it may load.
package bpf

import (
	"errors"

	"github.com/cilium/ebpf"
)

//go:generate go tool bpf2go -cc clang -no-global-types -type event -target amd64 IpftraceTp ipftrace.c -- -I. -O2 -g -Wall -Werror -DPROGS_TP
//go:generate go tool bpf2go -cc clang -no-global-types -target amd64 IpftraceFentry ipftrace.c -- -I. -O2 -g -Wall -Werror -DPROGS_FENTRY
//go:generate go tool bpf2go -cc clang -no-global-types -target amd64 IpftraceKprobe ipftrace.c -- -I. -O2 -g -Wall -Werror -DPROGS_KPROBE
//go:generate go tool bpf2go -cc clang -no-global-types -target amd64 IpftraceKprobeMulti ipftrace.c -- -I. -O2 -g -Wall -Werror -DPROGS_KPROBE_MULTI

// Group is one compiled object of ipftrace.c.
type Group int

// The program groups.
const (
	Tracepoint  Group = iota // tp_btf programs: tp_skbN, tp_kfree_skb
	Fentry                   // fentry_skbN, fentry_sharedN, fexit_clone
	Kprobe                   // kprobe_skbN, kprobe_clone, kretprobe_clone
	KprobeMulti              // kprobe_multi_skbN and the kprobe-multi clone pair
)

// Groups lists every group.
var Groups = []Group{Tracepoint, Fentry, Kprobe, KprobeMulti}

// groups holds each group's name and loader, indexed by Group.
var groups = [...]struct {
	name string
	load func() (*ebpf.CollectionSpec, error)
}{
	Tracepoint:  {"tracepoint", LoadIpftraceTp},
	Fentry:      {"fentry", LoadIpftraceFentry},
	Kprobe:      {"kprobe", LoadIpftraceKprobe},
	KprobeMulti: {"kprobe-multi", LoadIpftraceKprobeMulti},
}

// String returns the group's name.
func (g Group) String() string {
	if g < 0 || int(g) >= len(groups) {
		return "unknown"
	}
	return groups[g].name
}

// Load parses the object of group g.
func Load(g Group) (*ebpf.CollectionSpec, error) {
	if g < 0 || int(g) >= len(groups) {
		return nil, errUnknownGroup
	}
	return groups[g].load()
}

// Event is the record the programs write to the ring buffer.
type Event = IpftraceTpEvent

var errUnknownGroup = errors.New("bpf: unknown program group")
