package tracer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/btfscan"
)

// Backend names, as given to -b/--backend.
const (
	BackendAuto        = "auto"
	BackendFentry      = "fentry"
	BackendKprobeMulti = "kprobe-multi"
	BackendKprobe      = "kprobe"
	BackendTracepoint  = "tracepoint"
)

// maxKprobeArg is the highest argument position a kprobe can read from
// pt_regs on x86-64.
const maxKprobeArg = 6

// maxFentryArg is the highest skb position the fentry templates cover.
const maxFentryArg = 12

// autoOrder ranks the function backends for --backend auto, best first, by
// what `make bench` measures (6.12 VM, ~1650 skb functions, empty-program
// floor): kprobe-multi attaches in 0.17 s and detaches in 0.13 s with one
// call each, and its per-packet floor is the lowest (2.2x base); fentry
// loads one program per function (13 s) and its detach waits one RCU-tasks
// grace period per function (~150 ms each), at a 3.1x floor, but reaches skb
// arguments up to the 12th; plain kprobes attach one at a time and cost the
// most per hit. The tracepoint backend is the fallback: it sees only the
// ~30 skb tracepoints.
var autoOrder = []string{BackendKprobeMulti, BackendFentry, BackendKprobe}

// autoTolerance is the share of discovered (--auto) functions a better
// ranked backend may leave out of reach and still be chosen: with --auto,
// kprobe-multi misses the ~0.5% of functions whose skb is beyond the sixth
// argument, which is not worth fentry's minutes of attach and detach. For
// functions the user named in a manifest, no function may be left out if
// another backend reaches it.
const autoTolerance = 0.02

// merit says what a backend costs and offers, for the auto explanation.
func merit(name string, reach, total int) string {
	switch name {
	case BackendKprobeMulti:
		return fmt.Sprintf("reaches %d/%d functions, attaches and detaches them in one call each, lowest per-packet cost (make bench)", reach, total)
	case BackendFentry:
		return fmt.Sprintf("reaches %d/%d functions, a small stub program per function to load and one grace period each to detach, cheaper per packet than kprobes", reach, total)
	case BackendKprobe:
		return fmt.Sprintf("reaches %d/%d functions, one kprobe per function", reach, total)
	}
	return ""
}

// reaches reports whether backend b can read the skb argument of tg.
func reaches(b string, tg Target) bool {
	switch b {
	case BackendFentry:
		if tg.Reach != 0 && !tg.Reach.Has(btfscan.BackendFentry) {
			return false
		}
		return tg.slot() <= maxFentryArg
	case BackendKprobeMulti, BackendKprobe:
		if tg.Reach != 0 && !tg.Reach.Has(btfscan.BackendKprobe) {
			return false
		}
		return tg.slot() <= maxKprobeArg
	case BackendTracepoint:
		return tg.Tracepoint && tg.slot() <= 6
	}
	return false
}

// reachCount counts the targets backend b can attach to.
func reachCount(b string, targets []Target) int {
	n := 0
	for _, tg := range targets {
		if reaches(b, tg) {
			n++
		}
	}
	return n
}

// errNoKprobePMU says that the kernel offers no kprobe PMU, which is what
// a kernel built without CONFIG_KPROBES looks like.
var errNoKprobePMU = errors.New("kernel has no kprobes (no kprobe PMU)")

// describeErr turns an attach or load error into a short reason such as
// "not permitted (EPERM)".
func describeErr(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, errNoKprobePMU):
		return errNoKprobePMU.Error()
	case errors.Is(err, ebpf.ErrNotSupported):
		return "not supported by this kernel"
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return "not permitted (" + errnoName(err) + ")"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return "not found (" + errnoName(err) + ")"
	}
	if name := errnoName(err); name != "" {
		return name
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// errnoName returns the symbolic name of the errno wrapped in err, or "".
func errnoName(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	if errno == 524 {
		return "ENOTSUPP"
	}
	name := unix.ErrnoName(errno)
	if name == "" {
		return fmt.Sprintf("errno %d", int(errno))
	}
	return name
}

// probeBackend checks that the kernel lets us load and attach a program of
// the given backend, using one real target.
func (t *tracer) probeBackend(name string) error {
	switch name {
	case BackendFentry:
		f, ok := t.probeFunc(maxFentryArg)
		if !ok {
			return errors.New("no function to probe")
		}
		prog, err := t.loadProbe(fentryTemplate(f), f)
		if err != nil {
			return err
		}
		prog.Close()
		return nil
	case BackendKprobeMulti, BackendKprobe:
		f, ok := t.probeFunc(maxKprobeArg)
		if !ok {
			return errors.New("no function with its skb in the first 6 arguments")
		}
		prog, err := t.objs.kprobeProgram(name == BackendKprobeMulti, f.slot()) // kept for the attach
		if err != nil {
			return err
		}
		// Quiet, with the skb's position: a packet that meets the probe
		// emits no event under a function ID that is not its own.
		cookie := descQuiet | descSkbPos(f.slot())
		var l link.Link
		if name == BackendKprobeMulti {
			l, err = kprobeMulti(prog, []string{f.Name}, []uint64{f.Addr}, []uint64{cookie}, false)
		} else {
			l, err = link.Kprobe(f.Name, prog, &link.KprobeOptions{Cookie: cookie})
		}
		if err != nil {
			if _, serr := os.Stat("/sys/bus/event_source/devices/kprobe"); serr != nil && !errors.Is(err, unix.EPERM) {
				return fmt.Errorf("%w: %w", errNoKprobePMU, err)
			}
			return err
		}
		// Detaching waits for an RCU grace period (half a second under
		// emulation): let it run while the real attach goes on. If the
		// process exits first, the kernel closes the link.
		go l.Close()
		return nil
	case BackendTracepoint:
		if len(t.cfg.Tracepoints) == 0 {
			return errors.New("no skb tracepoints found")
		}
		tp := t.cfg.Tracepoints[0]
		prog, err := t.loadProbe(tpTemplate(tp), tp)
		if err != nil {
			return err
		}
		prog.Close()
		return nil
	}
	return fmt.Errorf("unknown backend %q", name)
}

// loadProbe loads the clone of template for tg that probes a backend, the
// way the attach will load it (a raw clone if it can): through cilium/ebpf,
// the lookup of the target alone grew the process by tens of MB.
func (t *tracer) loadProbe(template string, tg Target) (*ebpf.Program, error) {
	var ids map[string]btf.TypeID
	if tg.Module == "" {
		ids, _, _ = attachIDs(tg.Tracepoint, []string{tg.Name})
	}
	id, ok := ids[tg.Name] // a failed lookup: loadProgram's own
	return t.objs.loadCloneID(template, tg.Name, tg.Module, descriptor(0, 0), id, ok)
}

// probeFunc picks a function to probe a backend with: a common one if the job
// has it, otherwise the first one within reach.
func (t *tracer) probeFunc(maxPos int) (Target, bool) {
	var first *Target
	for i := range t.cfg.Funcs {
		f := &t.cfg.Funcs[i]
		if f.slot() > maxPos || f.Module != "" {
			continue
		}
		switch f.Name {
		case "consume_skb", "ip_rcv", "__dev_queue_xmit", "kfree_skb_partial":
			return *f, true
		}
		if first == nil {
			first = f
		}
	}
	if first == nil {
		return Target{}, false
	}
	return *first, true
}

// chooseBackend resolves --backend. For auto it probes every function
// backend on this kernel and lets pickAuto choose, falling back to the
// tracepoint backend. It returns the backend and a one-line explanation.
func (t *tracer) chooseBackend() (string, string, error) {
	want := t.cfg.Backend
	if want == "" {
		want = BackendAuto
	}
	if want != BackendAuto {
		if want != BackendTracepoint && len(t.cfg.Funcs) == 0 {
			return "", "", fmt.Errorf("backend %s: no functions to trace", want)
		}
		if err := t.probeBackend(want); err != nil {
			return "", "", fmt.Errorf("backend %s: %s", want, describeErr(err))
		}
		return want, "requested with --backend", nil
	}

	job := autoJob{total: len(t.cfg.Funcs), named: t.cfg.Named, tracepoints: len(t.cfg.Tracepoints)}
	job.probe = func(name string) string {
		err := t.probeBackend(name)
		if err == nil {
			return ""
		}
		if t.cfg.Verbose {
			fmt.Fprintf(t.cfg.Stderr, "ipftrace: probe %s: %v\n", name, err)
		}
		return describeErr(err)
	}
	for _, name := range autoOrder {
		c := candidate{name: name}
		switch {
		case job.total == 0:
			c.unusable, c.probed = "no functions to trace", true
		default:
			c.reach = reachCount(name, t.cfg.Funcs)
			if c.reach == 0 {
				c.unusable, c.probed = fmt.Sprintf("reaches none of the %d functions", job.total), true
			}
		}
		job.candidates = append(job.candidates, c)
	}
	chosen, why := job.pick()
	if chosen != BackendTracepoint {
		return chosen, why, nil
	}
	if job.tracepoints == 0 {
		return "", "", fmt.Errorf("no usable backend: %s", why)
	}
	if err := t.probeBackend(BackendTracepoint); err != nil {
		return "", "", fmt.Errorf("no usable backend: %s, %s: %s", why, BackendTracepoint, describeErr(err))
	}
	msg := fmt.Sprintf("no function backend is usable; tracing the %d skb tracepoints only", job.tracepoints)
	if job.total > 0 {
		msg += fmt.Sprintf(" (the %d requested functions cannot be traced)", job.total)
	}
	return BackendTracepoint, msg + "; skipped " + why, nil
}

// candidate is a function backend as --backend auto sees it.
type candidate struct {
	name     string
	reach    int    // how many of the job's functions it can attach to
	probed   bool   // unusable is known
	unusable string // why it cannot be used on this kernel ("" if it can)
}

// autoJob is what --backend auto decides on: the job's size and kind, and
// the function backends in autoOrder.
type autoJob struct {
	total       int  // functions requested
	named       bool // named in a manifest rather than discovered by --auto
	tracepoints int  // skb tracepoints available to the fallback
	candidates  []candidate
	// probe tries a backend on this kernel and says why it cannot be used
	// ("" if it can). Probing costs a program load (and for kprobes an
	// attach), so pick calls it only for the backends it must know about.
	probe func(name string) string
}

// usable probes c once.
func (j autoJob) usable(c *candidate) bool {
	if !c.probed {
		c.unusable, c.probed = j.probe(c.name), true
	}
	return c.unusable == ""
}

// enough is the reach a backend needs to be chosen when another usable one
// reaches r: all of r for a manifest, all but autoTolerance for --auto.
func (j autoJob) enough(r int) int {
	if j.named {
		return r
	}
	return int(float64(r) * (1 - autoTolerance))
}

// pick returns the best ranked usable backend that reaches enough of the
// job's functions compared with every other usable one, with a one-line
// explanation naming why each other backend was not chosen. It probes a
// backend only if the decision depends on it: the better ranked ones, and
// worse ranked ones that reach more. If no function backend is usable it
// returns BackendTracepoint and the reasons the others were skipped.
func (j autoJob) pick() (string, string) {
	cs := j.candidates
	chosen := -1
	for i := range cs {
		if cs[i].reach == 0 || !j.usable(&cs[i]) {
			continue
		}
		beaten := false
		for k := i + 1; k < len(cs); k++ {
			if cs[i].reach < j.enough(cs[k].reach) && j.usable(&cs[k]) {
				beaten = true
				break
			}
		}
		if !beaten {
			chosen = i
			break
		}
	}
	var others []string
	for i, c := range cs {
		switch {
		case i == chosen:
		case c.probed && c.unusable != "":
			others = append(others, c.name+": "+c.unusable)
		case chosen >= 0 && c.reach < j.enough(cs[chosen].reach):
			others = append(others, fmt.Sprintf("%s: reaches only %d/%d functions", c.name, c.reach, j.total))
		default:
			others = append(others, c.name+": "+merit(c.name, c.reach, j.total))
		}
	}
	if chosen < 0 {
		return BackendTracepoint, strings.Join(others, ", ")
	}
	c := cs[chosen]
	msg := merit(c.name, c.reach, j.total)
	for _, better := range cs[:chosen] {
		if better.probed && better.unusable == "" {
			msg += fmt.Sprintf("; chosen over %s, which reaches only %d", better.name, better.reach)
			break
		}
	}
	others = append(others, fmt.Sprintf("%s: sees only the %d skb tracepoints", BackendTracepoint, j.tracepoints))
	return c.name, msg + "; skipped " + strings.Join(others, ", ")
}
