// Package tracer loads the BPF programs, attaches them with one of the
// backends, reads events from the ring buffer and turns them into journeys.
package tracer

import (
	"io"
	"time"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/filter"
	"github.com/ipftrace/ipftrace/module"
)

// Target is one function or tracepoint to attach to. Its index in
// Config.Targets is its function ID in events.
type Target struct {
	Name       string           // function or tracepoint name
	SkbPos     int              // 1-based position of the skb argument
	SkbSlot    int              // 1-based 8-byte argument slot of the skb (differs from SkbPos after a struct passed by value); 0 means SkbPos
	NumArgs    int              // number of arguments
	Module     string           // kernel module, "" for vmlinux
	Tracepoint bool             // a raw tracepoint rather than a function
	Egress     bool             // a journey ends when it reaches this target
	Reach      btfscan.Backends // backends that can attach to it, from the scan (0: decide by position alone)
	Addr       uint64           // its address (kallsyms), for kprobe-multi; 0: attach by name
}

// slot returns the 8-byte argument slot the skb is read from.
func (t Target) slot() int {
	if t.SkbSlot > 0 {
		return t.SkbSlot
	}
	return t.SkbPos
}

// Config is everything a tracing run needs.
type Config struct {
	Backend     string            // auto, fentry, kprobe-multi, kprobe or tracepoint
	Funcs       []Target          // functions to trace (fentry, kprobe-multi, kprobe)
	Tracepoints []Target          // tracepoints to trace (tracepoint backend)
	Named       bool              // Funcs were named by the user (a manifest), not discovered by --auto
	Scan        *btfscan.Result   // the BTF scan the targets came from
	Filter      filter.Filter     // flow filter, evaluated in BPF
	Length      int               // a journey ends after this many events
	Idle        time.Duration     // a journey ends after the skb is idle this long
	RingSize    int               // the events ring buffer in bytes (a power of two pages); 0: the object's (8 MiB)
	Count       int               // stop after this many journeys (0: no limit)
	Duration    time.Duration     // stop after this long (0: no limit)
	ReadyFile   string            // created once everything is attached
	Format      string            // text or json
	NoTrack     bool              // follow packets by their headers only (no skb tracking)
	Verbose     bool              // list skipped functions, show verifier logs
	DropReasons map[uint64]string // enum skb_drop_reason names (btfscan.DropReasons); nil: drops are not named
	Modules     *module.Program   // the -m modules' fields and match conditions; nil: none
	Stdout      io.Writer         // journeys
	Stderr      io.Writer         // progress, summaries, warnings
}
