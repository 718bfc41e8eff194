package tracer

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/drop"
	"github.com/ipftrace/ipftrace/internal/phase"
	"github.com/ipftrace/ipftrace/journey"
	"github.com/ipftrace/ipftrace/ksym"
	"github.com/ipftrace/ipftrace/module"
	"github.com/ipftrace/ipftrace/output"
)

// tracer is the state of one Run.
type tracer struct {
	cfg     Config
	objs    *objects
	backend string
	targets []Target // the targets of the chosen backend; index = function ID
	helpers []helper // tracking helpers; IDs follow the targets'
	share   sharing  // what the fentry attach shared (attachGroup)
	split   bool     // fentry: the _split shared handlers (chooseFentrySplit)
	stubs   bool     // fentry: stubs chained to fentry_chain (attachChain)
	att     *attachment
}

func (t *tracer) verbosef(format string, args ...any) {
	fmt.Fprintf(t.cfg.Stderr, "ipftrace: "+format+"\n", args...)
}

// Run checks privileges, picks and probes the backend, attaches, traces
// until ctx is done or a stop condition is met, prints every journey still
// in flight, and detaches. It returns after every journey has been written.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Format == "" {
		cfg.Format = "text"
	}
	if err := CheckPrivileges(); err != nil {
		return err
	}
	raiseMemlock()
	start := time.Now()

	var fill asm.Instructions
	if cfg.Modules != nil {
		fill = cfg.Modules.Instructions()
	}
	var core *btfscan.CORE
	if cfg.Scan != nil {
		core = cfg.Scan.CORE
	}
	objs, err := newObjects(firstGroup(cfg.Backend), cfg.Filter, fill, !cfg.NoTrack, false, cfg.RingSize, sharedBTF(), core)
	if err != nil {
		return err
	}
	defer func() { objs.Close() }() // objs may be replaced below
	t := &tracer{cfg: cfg, objs: objs}

	if err := ctx.Err(); err != nil {
		return interruptedEarly(cfg.Stderr, err)
	}
	backend, why, err := t.chooseBackend()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return interruptedEarly(cfg.Stderr, err) // the probes closed what they loaded
	}
	t.backend = backend
	if backend == BackendTracepoint && !cfg.NoTrack {
		// Recreate the objects with track_validate set: a load-time
		// constant, and the probes above needed objects to run.
		fresh, err := newObjects(bpf.Tracepoint, cfg.Filter, fill, true, true, cfg.RingSize, objs.cache, core)
		if err != nil {
			return err
		}
		objs.Close()
		objs, t.objs = fresh, fresh
	}
	t.targets = cfg.Funcs
	if backend == BackendTracepoint {
		t.targets = cfg.Tracepoints
	}
	fmt.Fprintf(cfg.Stderr, "ipftrace: backend %s: %s\n", backend, why)
	for _, note := range objs.consts.hooks.notes() {
		t.verbosef("%s", note)
	}
	if note := pendingDetachNote(backend, "/proc"); note != "" {
		fmt.Fprintf(cfg.Stderr, "ipftrace: %s\n", note)
	}
	if note := t.planHelpers(); cfg.Verbose {
		t.verbosef("%s", note)
	}
	t.preloadShared()
	if err := raiseFileLimit(fdsNeeded(len(t.targets) + len(t.helpers))); err != nil {
		fmt.Fprintf(cfg.Stderr, "ipftrace: %v\n", err)
	}

	names := make(output.NameList, len(t.targets), len(t.targets)+len(t.helpers))
	for i, tg := range t.targets {
		names[i] = tg.Name
	}
	for _, h := range t.helpers {
		names = append(names, h.name)
	}
	// Journeys are written through a 64 KiB buffer, flushed when full, at
	// every poll (250 ms, the latency events already have: the BPF side
	// wakes the reader only once 64 KiB of them wait) and at exit. Under a
	// flood, one write(2) per journey was a sixth of the reader's CPU, and
	// a flush whenever the ring buffer was read empty still a fifth of it in
	// a VM, where the reader catches up all the time.
	out := bufio.NewWriterSize(cfg.Stdout, 64<<10)
	w, err := output.New(cfg.Format, out, names)
	if err != nil {
		return err
	}
	decorate(w, t.dropFinder(names), cfg.Modules)

	// The programs stay disabled until every target and tracking helper is
	// attached. A packet seen while only some are would be tracked by an
	// attached function and freed where no program sees it yet: the next
	// skb allocated at its address, of any flow, would then inherit its
	// journey (an IPv4 packet in a -iv 6 trace, say). Journeys would also
	// miss the functions not attached yet.
	if err := objs.setDisabled(true); err != nil {
		return fmt.Errorf("disable programs while attaching: %w", err)
	}
	att := &attachment{}
	t.att = att
	prog := &progress{w: cfg.Stderr, tty: isTerminal(cfg.Stderr), total: len(t.targets)}
	phase.Mark(cfg.Stderr, "attach 0/%d", len(t.targets))
	attachErr := t.attach(ctx, att, prog)
	prog.finish()
	// From here on, every path detaches.
	defer t.detach(att)
	if attachErr != nil {
		if errors.Is(attachErr, context.Canceled) {
			fmt.Fprintf(cfg.Stderr, "ipftrace: interrupted while attaching (%d/%d targets done, %d links); detaching\n",
				prog.done.Load(), len(t.targets), len(att.links))
			return nil
		}
		return attachErr
	}
	if len(att.links) == 0 {
		return fmt.Errorf("attach: nothing could be attached (%s)", att.summary())
	}
	t.attachHelpers(att)
	// Nothing is loaded from here on. The parsed objects were most of
	// what stayed live: in the 6.12 VM (fentry --auto), 4.4 of the 5.4 MB
	// live at the ready file. Releasing them took the heap in use there
	// from 9.9 to 4.9 MB and the resident memory from 40.4 to 36.8 MB; and
	// the garbage collector lets the heap grow to twice what is live. The
	// kernel's BTF goes too: in a 6.1 VM (fentry --auto, a fresh boot) it
	// was ~11 MB of the ~17 MB live while 20000 flood pings were traced.
	objs.releaseTemplates()
	// The attach leaves garbage (each clone's instructions, the scan's
	// reads) that the Go runtime would hand back to the kernel only over
	// minutes; the trace's own memory then comes on top of it. Return it
	// now. In the 6.12 VM (fentry --auto, 20000 flood pings matched) the
	// resident memory at the ready file fell from 43-46 to 37-40 MB, and
	// the run's peak from 51.2 to 49.2 MB (issue 6's target is 50 MB).
	debug.FreeOSMemory()
	// Map the ring buffer only now: its 16 MiB (8 MiB of data, mapped
	// twice) count as resident from the mmap on, and on top of the
	// attach's garbage they made the run's peak. The programs are still
	// disabled, so nothing was written to it yet.
	rd, err := ringbuf.NewReader(objs.maps["events"])
	if err != nil {
		return fmt.Errorf("open ring buffer: %w", err)
	}
	defer rd.Close()
	if err := objs.setDisabled(false); err != nil {
		return fmt.Errorf("enable programs: %w", err)
	}
	attached := len(t.targets) - len(att.skipped)
	summary := fmt.Sprintf("ipftrace: attached %d/%d", attached, len(t.targets))
	if s := att.summary(); s != "" {
		summary += " (" + s + ")"
	}
	fmt.Fprintf(cfg.Stderr, "%s in %.2fs\n", summary, time.Since(start).Seconds())
	if cfg.Verbose {
		if !objs.consts.cast {
			t.verbosef("no bpf_rdonly_cast in this kernel (before 6.2): packet headers are read with probe reads")
		}
		for _, s := range att.skipped {
			t.verbosef("skipped %s: %s", s.Name, s.Reason)
		}
	}
	if cfg.ReadyFile != "" {
		if err := createReadyFile(cfg.ReadyFile); err != nil {
			return err
		}
	}

	roles := make([]journey.Role, len(names))
	for i, tg := range t.targets {
		roles[i] = journey.RoleOf(tg.Name, tg.Egress)
	}
	for _, h := range t.helpers {
		roles[h.id] = journey.RoleOf(h.name, false)
	}
	asm := journey.NewAssembler(journey.Config{
		Length: cfg.Length,
		Idle:   cfg.Idle,
		Roles:  roles,
	})
	return t.loop(ctx, rd, asm, w, out)
}

// loop reads events until ctx is done, the duration passed or the count was
// reached; then it stops the programs, drains the ring buffer and flushes
// every journey still in flight.
func (t *tracer) loop(ctx context.Context, rd *ringbuf.Reader, asm *journey.Assembler, w output.Writer, out *bufio.Writer) error {
	var deadline <-chan time.Time
	if t.cfg.Duration > 0 {
		timer := time.NewTimer(t.cfg.Duration)
		defer timer.Stop()
		deadline = timer.C
	}
	// The user's interrupt or the end of --duration sets stop and wakes the
	// reader, so the poll period below does not delay the exit. The loop
	// checks the flag at every event: a select on the channels there was a
	// tenth of the reader's CPU under a flood.
	var stop atomic.Bool
	loopDone := make(chan struct{})
	defer close(loopDone)
	go func() {
		select {
		case <-ctx.Done():
		case <-deadline:
		case <-loopDone:
			return
		}
		stop.Store(true)
		rd.Flush()
	}()
	journeys := 0
	var writeErr error
	emit := func(j journey.Journey) {
		if writeErr != nil || (t.cfg.Count > 0 && journeys >= t.cfg.Count) {
			return
		}
		if err := w.Write(j); err != nil {
			writeErr = fmt.Errorf("write output: %w", err)
		}
		journeys++
		asm.Recycle(j)
	}
	flush := func() {
		if err := out.Flush(); err != nil && writeErr == nil {
			writeErr = fmt.Errorf("write output: %w", err)
		}
	}
	acct := newAccounting(t.objs.maps["counters"], t.cfg.Stderr)

	var rec ringbuf.Record
	var ev journey.Event
	// Events are batched in the ring buffer (the BPF side wakes us only
	// once 64 KiB are waiting), so low-rate traffic is read at this period.
	// The clock is read once per clockEvery events or per poll, not per
	// event: under a flood, time.Now was a fifth of the reader's CPU.
	//
	// With no journey in flight and the output flushed, the reader sleeps
	// (asleep): it sets ipft_reader_idle, which makes the programs wake it
	// at the next event, and polls only every idlePoll, a safety net (the
	// e2e TestIdleReader would see a missed wakeup as a late journey).
	// Polling at 250 ms while idle cost ~0.5% of a CPU in the VM (a ring
	// buffer wait, a counter read and the Go runtime's thread wakeups, four
	// times a second).
	const poll = 250 * time.Millisecond
	const idlePoll = 30 * time.Second
	const clockEvery = 256
	nextTick := time.Now().Add(poll)
	rd.SetDeadline(nextTick)
	stopping := false
	sinceClock := 0
	asleep, canSleep := false, true
	for {
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			if asleep {
				// Woken by an event: back to batched wakeups and polling.
				asleep = false
				t.objs.setReaderIdle(false)
				nextTick = time.Now().Add(poll)
				rd.SetDeadline(nextTick)
			}
			acct.received++
			if derr := decodeEvent(rec.RawSample, &ev); derr != nil {
				acct.malformed++
			} else {
				asm.Add(&ev, emit)
			}
			sinceClock++
		case errors.Is(err, ringbuf.ErrFlushed):
			// Woken by the goroutine above: the checks below see stop.
		case errors.Is(err, os.ErrDeadlineExceeded):
			if stopping {
				asm.Flush(emit)
				flush()
				acct.final(journeys)
				t.reportSkippedRuns()
				t.trackStats(acct)
				return writeErr
			}
			sinceClock = clockEvery
		default:
			flush()
			return fmt.Errorf("read ring buffer: %w", err)
		}
		if !stopping {
			if stop.Load() || writeErr != nil || (t.cfg.Count > 0 && journeys >= t.cfg.Count) {
				stopping = true
			}
			if stopping {
				// Stop every program at once, then drain what they wrote.
				t.disable()
				rd.SetDeadline(time.Now())
			}
		}
		if sinceClock < clockEvery {
			continue
		}
		sinceClock = 0
		if now := time.Now(); !now.Before(nextTick) {
			nextTick = now.Add(poll)
			asm.Tick(ktimeNow(), emit)
			flush()
			acct.poll()
			if !stopping && canSleep && asm.InFlight() == 0 {
				asleep, canSleep = t.sleep(rd)
				if asleep {
					nextTick = now.Add(idlePoll)
				}
			}
			if !stopping {
				rd.SetDeadline(nextTick)
			}
		}
	}
}

// dropFinder returns the drop finder of this run, or nil if the kernel has
// no drop reasons.
func (t *tracer) dropFinder(names output.NameList) *drop.Finder {
	if len(t.cfg.DropReasons) == 0 {
		return nil
	}
	syms := &ksym.Lazy{}
	return &drop.Finder{Reasons: t.cfg.DropReasons, FuncName: names.Name, Symbol: syms.Lookup}
}

// decorate sets the output hooks: the drop line or fields, and the
// modules' Custom Data.
func decorate(w output.Writer, drops *drop.Finder, mods *module.Program) {
	dropOf := func(j journey.Journey) (string, string, bool) {
		d, ok := drops.Find(j)
		return d.Reason, d.At, ok
	}
	switch w := w.(type) {
	case *output.Text:
		if drops != nil {
			w.Trailer = func(j journey.Journey) string {
				d, ok := drops.Find(j)
				switch {
				case !ok:
					return ""
				case d.At == "":
					return "dropped: " + d.Reason
				}
				return "dropped: " + d.Reason + " at " + d.At
			}
		}
		if mods != nil {
			var fields []output.Field
			w.Decorate = func(ev journey.Event) string {
				fields = mods.Decode(&ev, fields[:0])
				return string(output.AppendFields(nil, fields))
			}
		}
	case *output.JSON:
		if drops != nil {
			w.Drop = dropOf
		}
		if mods != nil {
			w.Data = mods.Decode
		}
	}
}

// sleep sets ipft_reader_idle, so that the next event wakes the reader,
// unless an event is already in the ring buffer: one reserved before the
// programs could see the flag. asleep says whether the reader may now wait
// without polling; ok is false if the flag cannot be set (no memory-mapped
// globals), and the reader then keeps polling.
func (t *tracer) sleep(rd *ringbuf.Reader) (asleep, ok bool) {
	if err := t.objs.setReaderIdle(true); err != nil {
		if t.cfg.Verbose {
			t.verbosef("reader: polling while idle: %v", err)
		}
		return false, false
	}
	if rd.AvailableBytes() > 0 {
		t.objs.setReaderIdle(false)
		return false, true
	}
	return true, true
}

// disable sets the flag that makes every program return at once.
func (t *tracer) disable() {
	if err := t.objs.setDisabled(true); err != nil && t.cfg.Verbose {
		t.verbosef("disable programs: %v", err)
	}
}

// interruptedEarly reports an interrupt that came before attaching began.
func interruptedEarly(w io.Writer, err error) error {
	fmt.Fprintln(w, "ipftrace: interrupted before attaching; nothing was attached")
	return err
}

// raiseMemlock lifts RLIMIT_MEMLOCK, which kernels before 5.11 charge BPF
// maps and programs to (later ones use memcg accounting and ignore it). If
// raising the hard limit is not permitted (no CAP_SYS_RESOURCE), the soft
// limit is raised to the hard one, and a kernel that still runs short says
// so when loading. cilium/ebpf's rlimit package is not used: its init
// creates a BPF map to probe the kernel in every process that links it, so
// ipftrace --help, bad command lines and the detacher would call bpf(2).
func raiseMemlock() {
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf) == nil {
		return
	}
	var cur unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &cur) == nil && cur.Cur < cur.Max {
		cur.Cur = cur.Max
		unix.Setrlimit(unix.RLIMIT_MEMLOCK, &cur) //nolint:errcheck // best effort, see above
	}
}

// fdsNeeded is how many descriptors a run with n attach points may hold at
// once: per function a link and its program (kept for its statistics, see
// skippedRuns), a program array per shared fentry handler (at most one per
// two functions), and a margin for the maps, BTF handles and the loads in
// flight.
func fdsNeeded(n int) uint64 { return uint64(2*n+n/2) + 512 }

// raiseFileLimit raises RLIMIT_NOFILE to need if it is lower. Go lifts the
// soft limit to the hard one at start, but a hard limit of 4096 (the
// kernel's default for init, kept by containers and minimal systems) runs
// out at about 2000 functions; root may raise the hard limit too. It
// returns an error, for a warning, if the limit stays below need.
func raiseFileLimit(need uint64) error {
	var cur syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	if cur.Cur >= need {
		return nil
	}
	// syscall.Setrlimit, not unix's: it tells os/exec that the limit is
	// ours, so the detacher inherits it.
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: need, Max: max(need, cur.Max)}) == nil {
		return nil
	}
	if cur.Cur < cur.Max {
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: cur.Max, Max: cur.Max}) //nolint:errcheck // checked below
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur); err != nil || cur.Cur < need {
		return fmt.Errorf("open-file limit %d is below the %d this run may need, and raising it was refused; functions past it are skipped as EMFILE (raise ulimit -n)", cur.Cur, need)
	}
	return nil
}

// ktimeNow returns CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func ktimeNow() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return uint64(ts.Nano())
}

// createReadyFile creates path exclusively, mode 0644, without following a
// symlink at path.
func createReadyFile(path string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create ready file %s: %w", path, err)
	}
	return unix.Close(fd)
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
