package main

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/internal/bpfids"
)

// The floor: a do-nothing BPF program (r0 = 0; exit) attached with the same
// mechanism to the same functions as ipftrace. No tracer can be cheaper than
// its own mechanism.

// target is one row of `ipftrace --auto -ls`.
type target struct {
	name     string
	kind     string // func or tracepoint
	skbPos   int
	module   string
	backends []string
}

// listTargets runs `ipftrace --auto -ls` and parses its table.
func listTargets(ipftrace string) ([]target, error) {
	out, err := exec.Command(ipftrace, "--auto", "-ls").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s --auto -ls: %v: %s", ipftrace, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, err
	}
	return parseTargets(string(out))
}

func parseTargets(out string) ([]target, error) {
	var ts []target
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || (i == 0 && f[0] == "NAME") {
			continue
		}
		if len(f) < 6 {
			return nil, fmt.Errorf("-ls line %d: %q: want NAME KIND SKB_POS ARGS MODULE BACKENDS [EGRESS]", i+1, line)
		}
		pos, err := strconv.Atoi(f[2])
		if err != nil {
			return nil, fmt.Errorf("-ls line %d: SKB_POS %q", i+1, f[2])
		}
		ts = append(ts, target{name: f[0], kind: f[1], skbPos: pos, module: f[4], backends: strings.Split(f[5], ",")})
	}
	if len(ts) == 0 {
		return nil, errors.New("-ls listed nothing")
	}
	return ts, nil
}

// floorTargets applies ipftrace's backend rules: the functions -ls says the
// backend can reach, or, for the tracepoint backend, the tracepoints whose
// skb is among the first six arguments.
func floorTargets(all []target, backend string) []string {
	var names []string
	for _, t := range all {
		if backend == "tracepoint" {
			if t.kind == "tracepoint" && t.skbPos <= 6 {
				names = append(names, t.name)
			}
			continue
		}
		if t.kind != "func" {
			continue
		}
		for _, b := range t.backends {
			if b == backend {
				names = append(names, t.name)
				break
			}
		}
	}
	return names
}

var emptyInsns = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}

// floorRun is one floor measurement.
type floorRun struct {
	tried, attached int
	skipped         map[string]int
	attach, detach  time.Duration
	ping            pingResult
	gone            goneResult
	goneErr         error
}

func errName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if errno == 524 {
			return "ENOTSUPP"
		}
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return "not supported"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

func (f *floorRun) skippedString() string {
	if len(f.skipped) == 0 {
		return ""
	}
	var parts []string
	for k, v := range f.skipped {
		parts = append(parts, fmt.Sprintf("%d %s", v, k))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

type floorAttacher struct {
	mu      sync.Mutex
	links   []link.Link
	skipped map[string]int
}

func (a *floorAttacher) add(l link.Link) {
	a.mu.Lock()
	a.links = append(a.links, l)
	a.mu.Unlock()
}

func (a *floorAttacher) skip(err error) {
	a.mu.Lock()
	a.skipped[errName(err)]++
	a.mu.Unlock()
}

// attachFloor attaches the empty program to names with the backend's
// mechanism:
//   - fentry / tracepoint: one program per function (tp_btf per tracepoint),
//     loaded by 2 loaders in parallel with one shared btf.Cache;
//   - kprobe-multi: one link for the whole set (split in halves only if the
//     kernel refuses it);
//   - kprobe: one kprobe per function sharing one program, as many attachers
//     as ipftrace uses (one per CPU, at least 2).
func attachFloor(backend string, names []string) (*floorAttacher, error) {
	a := &floorAttacher{skipped: map[string]int{}}
	switch backend {
	case "fentry", "tracepoint":
		attachType := ebpf.AttachTraceFEntry
		if backend == "tracepoint" {
			attachType = ebpf.AttachTraceRawTp
		}
		cache := btf.NewCache()
		jobs := make(chan string)
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range jobs {
					cs := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"floor": {
						Name:         "ipftb_floor",
						Type:         ebpf.Tracing,
						AttachType:   attachType,
						AttachTo:     name,
						Instructions: emptyInsns,
						License:      "GPL",
					}}}
					coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{Cache: cache})
					if err != nil {
						a.skip(err)
						continue
					}
					prog := coll.DetachProgram("floor")
					coll.Close()
					l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: attachType})
					prog.Close()
					if err != nil {
						a.skip(err)
						continue
					}
					a.add(l)
				}
			}()
		}
		for _, n := range names {
			jobs <- n
		}
		close(jobs)
		wg.Wait()
	case "kprobe-multi":
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "ipftb_floor", Type: ebpf.Kprobe, AttachType: ebpf.AttachTraceKprobeMulti,
			Instructions: emptyInsns, License: "GPL",
		})
		if err != nil {
			return a, fmt.Errorf("load kprobe-multi floor program: %w", err)
		}
		defer prog.Close()
		var attachSet func(syms []string) error
		attachSet = func(syms []string) error {
			if len(syms) == 0 {
				return nil
			}
			l, err := link.KprobeMulti(prog, link.KprobeMultiOptions{Symbols: syms})
			if err == nil {
				a.add(l)
				return nil
			}
			if errors.Is(err, ebpf.ErrNotSupported) {
				return err
			}
			if len(syms) == 1 {
				a.skip(err)
				return nil
			}
			h := len(syms) / 2
			if err := attachSet(syms[:h]); err != nil {
				return err
			}
			return attachSet(syms[h:])
		}
		if err := attachSet(names); err != nil {
			return a, err
		}
	case "kprobe":
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "ipftb_floor", Type: ebpf.Kprobe, Instructions: emptyInsns, License: "GPL",
		})
		if err != nil {
			return a, fmt.Errorf("load kprobe floor program: %w", err)
		}
		defer prog.Close()
		jobs := make(chan string)
		var wg sync.WaitGroup
		for range max(2, runtime.NumCPU()) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range jobs {
					l, err := link.Kprobe(name, prog, nil)
					if err != nil {
						a.skip(err)
						continue
					}
					a.add(l)
				}
			}()
		}
		for _, n := range names {
			jobs <- n
		}
		close(jobs)
		wg.Wait()
	default:
		return a, fmt.Errorf("no floor for backend %q", backend)
	}
	return a, nil
}

// close closes every link, one after the other.
func (a *floorAttacher) close() {
	for _, l := range a.links {
		l.Close()
	}
	a.links = nil
}

// linkIDsOf returns the IDs of the floor's links.
func (a *floorAttacher) linkIDsOf() bpfids.Set {
	s := bpfids.Set{}
	for _, l := range a.links {
		if info, err := l.Info(); err == nil {
			s[uint32(info.ID)] = true
		}
	}
	return s
}

// runFloor attaches the floor, runs the ping and detaches.
func (b *bench) runFloor(backend string, names []string) (*floorRun, error) {
	r := &floorRun{tried: len(names)}
	before, err := bpfids.Links()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	a, err := attachFloor(backend, names)
	r.attach = time.Since(start)
	r.skipped = a.skipped
	// kprobe-multi: one link holds many functions.
	r.attached = len(names)
	for _, n := range a.skipped {
		r.attached -= n
	}
	if err != nil {
		a.close()
		return r, err
	}
	ours := a.linkIDsOf()
	r.ping, err = b.ping()
	if err != nil {
		a.close()
		return r, err
	}
	t0 := time.Now()
	a.close()
	r.detach = time.Since(t0)
	r.gone, r.goneErr = waitLinksGone(before, ours, t0, b.goneTimeout)
	return r, nil
}
