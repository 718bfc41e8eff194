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
	"github.com/cilium/ebpf/link"

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
	skipped []skip
}

func (a *attachment) addLink(l link.Link) {
	a.mu.Lock()
	a.links = append(a.links, l)
	a.mu.Unlock()
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
// attaches each (fentry or tp_btf).
func (t *tracer) attachTracing(ctx context.Context, a *attachment, p *progress) error {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				t.attachOneTracing(id, a)
				p.step()
			}
		}()
	}
	var err error
loop:
	for id := range t.targets {
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
		desc = t.desc(id)
	}
	prog, err := t.objs.loadProgram(tmpl, tg.Name, tg.Module != "", desc, true)
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
	prog.Close() // the link holds the program
	if err != nil {
		a.addSkip(tg.Name, err)
		return
	}
	a.addLink(l)
}

// errPosition marks a target whose skb argument the backend cannot read.
var errPosition = errors.New("skb argument out of reach")

// attachKprobeMulti attaches one kprobe-multi link per skb position, with
// each function's descriptor as its cookie. If the kernel refuses a set, it
// is split in halves until the functions it refuses are found and skipped.
func (t *tracer) attachKprobeMulti(ctx context.Context, a *attachment, p *progress) error {
	byPos := map[int][]int{}
	for id, tg := range t.targets {
		if !reaches(BackendKprobeMulti, tg) {
			a.addSkip(tg.Name, errPosition)
			p.step()
			continue
		}
		byPos[tg.slot()] = append(byPos[tg.slot()], id)
	}
	positions := make([]int, 0, len(byPos))
	for pos := range byPos {
		positions = append(positions, pos)
	}
	slices.Sort(positions)
	for _, pos := range positions {
		prog, err := t.objs.loadKprobe(true, pos)
		if err != nil {
			return fmt.Errorf("load kprobe-multi program for skb position %d: %w", pos, err)
		}
		err = t.attachMultiSet(ctx, prog, byPos[pos], a, p)
		prog.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *tracer) attachMultiSet(ctx context.Context, prog *ebpf.Program, ids []int, a *attachment, p *progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	syms := make([]string, len(ids))
	cookies := make([]uint64, len(ids))
	for i, id := range ids {
		syms[i] = t.targets[id].Name
		cookies[i] = t.desc(id)
	}
	l, err := link.KprobeMulti(prog, link.KprobeMultiOptions{Symbols: syms, Cookies: cookies})
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

// attachKprobes attaches one kprobe per function, with its descriptor as the
// cookie; the six per-position programs are shared by all functions.
func (t *tracer) attachKprobes(ctx context.Context, a *attachment, p *progress) error {
	progs := map[int]*ebpf.Program{}
	defer func() {
		for _, prog := range progs {
			prog.Close()
		}
	}()
	for pos := 1; pos <= maxKprobeArg; pos++ {
		prog, err := t.objs.loadKprobe(false, pos)
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
