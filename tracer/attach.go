package tracer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/internal/phase"
)

// dropReasonArg is the 1-based position of the enum skb_drop_reason
// argument of the drop functions.
var dropReasonArg = map[string]int{
	"kfree_skb_reason":      2, // 5.17 .. 6.10
	"kfree_skb_list_reason": 2,
	"sk_skb_reason_drop":    3, // 6.11+
}

// skip is a target that could not be attached.
type skip struct {
	Name   string
	Reason string
}

// attachment is what an attach produced: links to close, and the targets
// that were skipped.
type attachment struct {
	mu      sync.Mutex
	links   []link.Link
	progs   []*ebpf.Program // the per-function clones, kept for their statistics
	maps    []*ebpf.Map     // the shared handlers' program arrays (emptied when closed)
	skipped []skip
}

func (a *attachment) addLink(l link.Link) {
	a.mu.Lock()
	a.links = append(a.links, l)
	a.mu.Unlock()
}

// addClone records a link and the clone it attached, which this process
// keeps open until it exits to read its statistics (skippedRuns). It keeps
// the program's descriptor only: a loaded *ebpf.Program also holds its BTF
// handle open, a third descriptor per function, which with --auto ran into
// a hard open-file limit of 4096. If the descriptor cannot be duplicated,
// the program is kept as it is.
func (a *attachment) addClone(l link.Link, prog *ebpf.Program) {
	if bare, err := withoutBTF(prog); err == nil {
		prog.Close()
		prog = bare
	}
	a.mu.Lock()
	a.links = append(a.links, l)
	a.progs = append(a.progs, prog)
	a.mu.Unlock()
}

// addMap records a map to keep open until exit.
func (a *attachment) addMap(m *ebpf.Map) {
	a.mu.Lock()
	a.maps = append(a.maps, m)
	a.mu.Unlock()
}

// withoutBTF returns the program through a new descriptor of its own, with
// no BTF handle.
func withoutBTF(prog *ebpf.Program) (*ebpf.Program, error) {
	fd, err := unix.FcntlInt(uintptr(prog.FD()), unix.F_DUPFD_CLOEXEC, 1)
	if err != nil {
		return nil, err
	}
	return ebpf.NewProgramFromFD(fd) // closes fd on error
}

func (a *attachment) addSkip(name string, err error) {
	a.mu.Lock()
	a.skipped = append(a.skipped, skip{name, describeErr(err)})
	a.mu.Unlock()
}

// summary returns "52 skipped: 40 not traceable, 12 EINVAL" (or "").
func (a *attachment) summary() string {
	if len(a.skipped) == 0 {
		return ""
	}
	counts := map[string]int{}
	for _, s := range a.skipped {
		counts[s.Reason]++
	}
	reasons := make([]string, 0, len(counts))
	for r := range counts {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool {
		if counts[reasons[i]] != counts[reasons[j]] {
			return counts[reasons[i]] > counts[reasons[j]]
		}
		return reasons[i] < reasons[j]
	})
	parts := make([]string, len(reasons))
	for i, r := range reasons {
		parts[i] = fmt.Sprintf("%d %s", counts[r], r)
	}
	return fmt.Sprintf("%d skipped: %s", len(a.skipped), strings.Join(parts, ", "))
}

// progress prints "attaching 812/1484" on a terminal.
type progress struct {
	w     io.Writer
	tty   bool
	total int
	done  atomic.Int64
	last  atomic.Int64
}

func (p *progress) step() {
	n := p.done.Add(1)
	phase.Mark(p.w, "attach %d/%d", n, p.total)
	if !p.tty {
		return
	}
	now := time.Now().UnixMilli()
	if last := p.last.Load(); now-last < 100 && int(n) != p.total {
		return
	}
	p.last.Store(now)
	fmt.Fprintf(p.w, "\ripftrace: attaching %d/%d", n, p.total)
}

func (p *progress) finish() {
	if p.tty && p.total > 0 {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func fentryTemplate(t Target) string { return fmt.Sprintf("fentry_skb%d", t.slot()) }

func tpTemplate(t Target) string {
	if t.Name == "kfree_skb" && t.SkbPos == 1 && t.NumArgs >= 3 {
		return "tp_kfree_skb"
	}
	return fmt.Sprintf("tp_skb%d", t.slot())
}

// attach attaches every target with the chosen backend. It stops early, and
// returns ctx.Err(), when ctx is cancelled; the caller then closes what was
// attached.
func (t *tracer) attach(ctx context.Context, a *attachment, p *progress) error {
	switch t.backend {
	case BackendFentry, BackendTracepoint:
		return t.attachTracing(ctx, a, p)
	case BackendKprobeMulti:
		return t.attachKprobeMulti(ctx, a, p)
	case BackendKprobe:
		return t.attachKprobes(ctx, a, p)
	}
	return fmt.Errorf("unknown backend %q", t.backend)
}

// workers is the number of parallel loaders. Loading is mostly verifier
// work, so one per CPU keeps every CPU busy.
func workers() int { return max(2, runtime.NumCPU()) }

// attachTracing loads one clone of the template per target, in parallel, and
// attaches each (fentry or tp_btf). fentry functions of one prototype share
// a handler where the kernel allows it (attachGroup).
func (t *tracer) attachTracing(ctx context.Context, a *attachment, p *progress) error {
	t.setAttachIDs()
	var groups [][]int
	rest := make([]int, len(t.targets))
	for id := range rest {
		rest[id] = id
	}
	if t.backend == BackendFentry {
		err := t.attachChain(a)
		t.stubs = err == nil
		if t.cfg.Verbose {
			if t.stubs {
				t.verbosef("fentry: a stub per function, chained to %s on %s", chainTemplate, chainFunc)
			} else {
				t.verbosef("fentry: no chained stubs (%v); shared handlers", err)
			}
		}
	}
	if t.backend == BackendFentry && !t.stubs {
		if ok, err := t.sharedHandlers(); ok {
			groups, rest = t.fentryGroups()
			var why string
			t.split, why = t.chooseFentrySplit()
			if t.cfg.Verbose {
				t.verbosef("fentry: %s", why)
			}
		} else if t.cfg.Verbose {
			t.verbosef("fentry: no shared handlers (%v); one clone per function", err)
		}
	}
	jobs := make(chan func())
	var wg sync.WaitGroup
	for range workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for job := range jobs {
				job()
			}
		}()
	}
	var work []func()
	for _, ids := range groups {
		work = append(work, func() { t.attachGroup(ctx, ids, a, p) })
	}
	for _, id := range rest {
		work = append(work, func() {
			t.attachOneTracing(id, a)
			p.step()
		})
	}
	var err error
loop:
	for _, job := range work {
		if err = ctx.Err(); err != nil {
			break // select picks at random among ready cases
		}
		select {
		case jobs <- job:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	if n, first := t.objs.rawFailures(); n > 0 && t.cfg.Verbose {
		t.verbosef("%d clones went through cilium/ebpf's loader: no raw template (first: %v)", n, first)
	}
	if t.stubs && t.cfg.Verbose {
		t.verbosef("fentry: %d stubs chained to %s", t.share.stubs.Load(), chainTemplate)
	}
	if len(groups) > 0 && t.cfg.Verbose {
		t.verbosef("fentry: %d functions in %d prototype groups: %d handlers, %d tail calls",
			len(t.targets)-len(rest), len(groups), t.share.handlers.Load(), t.share.tails.Load())
	}
	if n := t.share.fellBack.Load(); n > 0 {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: %d fentry handlers could not be shared (first: %v); their functions got one each\n", n, t.share.firstErr.Load())
	}
	return err
}

// setAttachIDs reads the BTF IDs of the targets (and the functions'
// prototypes) for the raw clone loads, from vmlinux's BTF and each module's.
// A target without one (no BTF file, say) goes through cilium/ebpf's
// loader, which looks it up itself.
func (t *tracer) setAttachIDs() {
	tps := t.backend == BackendTracepoint
	var names []string
	mods := map[string]btfscan.Names{}
	for _, tg := range t.targets {
		switch {
		case tg.Module == "":
			names = append(names, tg.Name)
		case tps:
			n := mods[tg.Module]
			n.Tracepoints = append(n.Tracepoints, tg.Name)
			mods[tg.Module] = n
		default:
			n := mods[tg.Module]
			n.Funcs = append(n.Funcs, tg.Name)
			mods[tg.Module] = n
		}
	}
	if t.backend == BackendFentry {
		for _, h := range t.helpers { // vmlinux functions
			names = append(names, h.name)
		}
		names = append(names, chainFunc)
	}
	vm := btfscan.Names{Funcs: names}
	if tps {
		vm = btfscan.Names{Tracepoints: names}
	}
	ids, byMod, err := btfscan.KernelAttachIDs(btfscan.DefaultBTFPath, btfscan.DefaultModulesDir, vm, mods)
	if ids == nil {
		if t.cfg.Verbose {
			t.verbosef("attach targets' BTF IDs: %v; loading every clone through cilium/ebpf", err)
		}
		return
	}
	if err != nil && t.cfg.Verbose {
		t.verbosef("module targets' BTF IDs: %v; loading those clones through cilium/ebpf", err)
	}
	t.objs.attachIDs, t.objs.protos = ids.Funcs, ids.Protos
	if tps {
		t.objs.attachIDs = ids.Tracepoints
	}
	for _, ids := range byMod {
		for name, id := range ids.Funcs {
			t.objs.attachIDs[name], t.objs.protos[name] = id, ids.Protos[name]
		}
		for name, id := range ids.Tracepoints {
			t.objs.attachIDs[name] = id
		}
	}
}

// attachIDs returns the vmlinux BTF IDs of names, tracepoints' or
// functions', and the functions' prototypes.
func attachIDs(tracepoints bool, names []string) (ids, protos map[string]btf.TypeID, err error) {
	if tracepoints {
		r, err := btfscan.AttachIDs(btfscan.DefaultBTFPath, nil, names)
		if err != nil {
			return nil, nil, err
		}
		return r.Tracepoints, map[string]btf.TypeID{}, nil
	}
	r, err := btfscan.AttachIDs(btfscan.DefaultBTFPath, names, nil)
	if err != nil {
		return nil, nil, err
	}
	return r.Funcs, r.Protos, nil
}

func (t *tracer) attachOneTracing(id int, a *attachment) {
	tg := t.targets[id]
	var tmpl string
	var desc uint64
	if t.backend == BackendTracepoint {
		if !reaches(BackendTracepoint, tg) {
			a.addSkip(tg.Name, fmt.Errorf("skb is argument %d: %w", tg.SkbPos, errPosition))
			return
		}
		tmpl = tpTemplate(tg)
		desc = t.desc(id)
	} else {
		if !reaches(BackendFentry, tg) {
			a.addSkip(tg.Name, errPosition)
			return
		}
		tmpl = fentryTemplate(tg)
		if t.stubs {
			tmpl = stubTemplate(tg)
		}
		desc = t.desc(id)
	}
	prog, err := t.objs.loadClone(tmpl, tg.Name, tg.Module, desc)
	if err != nil {
		if t.cfg.Verbose {
			t.verbosef("skip %s: %v", tg.Name, err)
		}
		a.addSkip(tg.Name, err)
		return
	}
	attachType := ebpf.AttachTraceFEntry
	if t.backend == BackendTracepoint {
		attachType = ebpf.AttachTraceRawTp
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: attachType})
	if err != nil {
		prog.Close()
		a.addSkip(tg.Name, err)
		return
	}
	a.addClone(l, prog)
	if t.stubs {
		t.share.stubs.Add(1)
	}
}

// errPosition marks a target whose skb argument the backend cannot read.
var errPosition = errors.New("skb argument out of reach")

// errNoSymbol marks a function that has no kallsyms symbol of its name.
var errNoSymbol = fmt.Errorf("no symbol of this name in kallsyms: %w", unix.ENOENT)

// attachKprobeMulti attaches the functions with one kprobe-multi link per
// program, each function's descriptor as its cookie: skb positions 1..3
// have a program each, 4..6 share one that reads the position from the
// cookie. Each link costs the kernel a pass over every traceable function
// to attach and another to detach. If the kernel refuses a set, it is split
// in halves until the functions it refuses are found and skipped.
func (t *tracer) attachKprobeMulti(ctx context.Context, a *attachment, p *progress) error {
	sets := make([][]int, multiOwnProgs+1) // by program: positions 1..3, then the rest
	byAddr := t.multiByAddr()
	for id, tg := range t.targets {
		i, err := multiSet(tg, byAddr)
		if err != nil {
			a.addSkip(tg.Name, err)
			p.step()
			continue
		}
		sets[i] = append(sets[i], id)
	}
	for i, ids := range sets {
		if len(ids) == 0 {
			continue
		}
		prog, err := t.objs.kprobeProgram(true, i+1)
		if err != nil {
			return fmt.Errorf("load kprobe-multi program: %w", err)
		}
		if err := t.attachMultiSet(ctx, prog, ids, a, p); err != nil {
			return err
		}
	}
	return nil
}

// multiByAddr reports whether the kprobe-multi links name functions by
// address: when the scan read them from kallsyms. A function without one
// then has no symbol of its name (only compiler clones such as
// validate_xmit_skb.isra.0, whose arguments may differ from its BTF): by
// name, the kernel would refuse it as well.
func (t *tracer) multiByAddr() bool {
	return slices.ContainsFunc(t.targets, func(tg Target) bool { return tg.Addr != 0 })
}

// multiSet returns the index of the kprobe-multi program (and link) that
// attaches tg, the skb position less one with the last shared by the
// positions from multiOwnProgs+1 on, or why tg cannot be attached.
func multiSet(tg Target, byAddr bool) (int, error) {
	switch {
	case !reaches(BackendKprobeMulti, tg):
		return 0, errPosition
	case byAddr && tg.Addr == 0:
		return 0, errNoSymbol
	}
	return min(tg.slot(), multiOwnProgs+1) - 1, nil
}

// preloadShared starts loading, in the background, the shared programs the
// attach will take (see objects.preload).
func (t *tracer) preloadShared() {
	if tmpls := t.sharedTemplates(); len(tmpls) > 0 {
		t.objs.preload(tmpls)
	}
}

// sharedTemplates returns the templates of the shared programs the kprobe
// backends attach, in the order they take them: the targets' by skb
// position, then the tracking helpers'. Other backends load a program per
// function, in parallel already.
func (t *tracer) sharedTemplates() []string {
	multi := t.backend == BackendKprobeMulti
	if !multi && t.backend != BackendKprobe {
		return nil
	}
	var tmpls []string
	add := func(name string) {
		if !slices.Contains(tmpls, name) {
			tmpls = append(tmpls, name)
		}
	}
	byAddr := t.multiByAddr()
	for _, tg := range t.targets {
		switch {
		case !multi && reaches(BackendKprobe, tg):
			add(kprobeTemplate(false, tg.slot()))
		case multi:
			if i, err := multiSet(tg, byAddr); err == nil {
				add(kprobeTemplate(true, i+1))
			}
		}
	}
	for _, h := range t.helpers {
		for _, tmpl := range helperTemplates(h.kind, multi) {
			add(tmpl)
		}
	}
	return tmpls
}

func (t *tracer) attachMultiSet(ctx context.Context, prog *ebpf.Program, ids []int, a *attachment, p *progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	syms := make([]string, len(ids))
	addrs := make([]uint64, len(ids))
	cookies := make([]uint64, len(ids))
	for i, id := range ids {
		syms[i] = t.targets[id].Name
		addrs[i] = t.targets[id].Addr
		cookies[i] = t.desc(id)
	}
	l, err := kprobeMulti(prog, syms, addrs, cookies, false)
	if err == nil {
		a.addLink(l)
		for range ids {
			p.step()
		}
		return nil
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	if len(ids) == 1 {
		a.addSkip(syms[0], err)
		p.step()
		return nil
	}
	half := len(ids) / 2
	if err := t.attachMultiSet(ctx, prog, ids[:half], a, p); err != nil {
		return err
	}
	return t.attachMultiSet(ctx, prog, ids[half:], a, p)
}

// kprobeMulti attaches prog to the functions in one kprobe-multi (ret:
// kretprobe-multi) link, each with its cookie. It names them by address if
// every one has one (the scan read them from kallsyms): by symbol, the
// kernel walks its whole symbol table once per link, which was a third of
// the attach time under emulation. If the kernel refuses the addresses (the
// first of two static functions of the same name may not be traceable) it
// tries the names, with which the kernel picks the first that is.
func kprobeMulti(prog *ebpf.Program, syms []string, addrs, cookies []uint64, ret bool) (link.Link, error) {
	attach := link.KprobeMulti
	if ret {
		attach = link.KretprobeMulti
	}
	if !slices.Contains(addrs, 0) {
		a := make([]uintptr, len(addrs))
		for i, v := range addrs {
			a[i] = uintptr(v)
		}
		l, err := attach(prog, link.KprobeMultiOptions{Addresses: a, Cookies: cookies})
		if err == nil || errors.Is(err, ebpf.ErrNotSupported) {
			return l, err
		}
	}
	return attach(prog, link.KprobeMultiOptions{Symbols: syms, Cookies: cookies})
}

// attachKprobes attaches one kprobe per function, with its descriptor as the
// cookie; the per-position programs (only those of the positions the targets
// have) are shared by all functions.
func (t *tracer) attachKprobes(ctx context.Context, a *attachment, p *progress) error {
	progs := map[int]*ebpf.Program{}
	for _, tg := range t.targets {
		pos := tg.slot()
		if _, ok := progs[pos]; ok || !reaches(BackendKprobe, tg) {
			continue
		}
		prog, err := t.objs.kprobeProgram(false, pos)
		if err != nil {
			return fmt.Errorf("load kprobe program for skb position %d: %w", pos, err)
		}
		progs[pos] = prog
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				tg := t.targets[id]
				desc := t.desc(id)
				l, err := link.Kprobe(tg.Name, progs[tg.slot()], &link.KprobeOptions{Cookie: desc})
				if err != nil {
					a.addSkip(tg.Name, err)
				} else {
					a.addLink(l)
				}
				p.step()
			}
		}()
	}
	var err error
loop:
	for id, tg := range t.targets {
		if !reaches(BackendKprobe, tg) {
			a.addSkip(tg.Name, errPosition)
			p.step()
			continue
		}
		if err = ctx.Err(); err != nil {
			break // select picks at random among ready cases
		}
		select {
		case jobs <- id:
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
	}
	close(jobs)
	wg.Wait()
	return err
}
