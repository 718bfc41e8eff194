package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

type syscallUtsname struct{}

func (syscallUtsname) release() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

func numCPU() int { return runtime.NumCPU() }

// results holds the samples of one backend.
type results struct {
	backend     string // as requested
	used        string // ipftrace's backend line
	ipftTargets string // "attached N/M (skipped ...)"
	floorDesc   string
	other       string // "NAME: COMMAND" of the other tool (-other)
	samples     map[string][]float64
	notes       []string
	start       time.Time
	elapsed     time.Duration
}

func (r *results) add(key string, v float64) { r.samples[key] = append(r.samples[key], v) }

func (r *results) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func secs(d time.Duration) float64 { return d.Seconds() }

// settleBefore waits for idle CPUs before the base ping named what
// (settle), records how long, and notes a wait that ran out.
func (b *bench) settleBefore(r *results, what string) {
	if b.settleMax <= 0 {
		return
	}
	waited, ok, err := settle(b.ctx, b.settleMax)
	if err != nil {
		r.note("%s: waiting for idle CPUs: %v", what, err)
		return
	}
	r.add("settle."+what, secs(waited))
	if !ok {
		r.note("%s: the CPUs were still busy after %.0f s; pinged anyway", what, secs(waited))
	}
}

// runBackend runs every case reps times for one backend, interleaved (base,
// nomatch, match, the other tool's nomatch and match, floor, base-after per
// repetition) so that slow drift of a noisy host affects all cases alike.
func (b *bench) runBackend(backend string, all []target) (*results, error) {
	r := &results{backend: backend, samples: map[string][]float64{}, start: time.Now()}
	defer func() { r.elapsed = time.Since(r.start) }()
	var floorNames []string
	floorBackend := backend
	for rep := 1; rep <= b.reps; rep++ {
		logf("backend %s: repetition %d/%d", backend, rep, b.reps)
		if b.ctx.Err() != nil {
			return r, b.ctx.Err()
		}
		// base
		b.settleBefore(r, "base")
		p, err := b.ping()
		if err != nil {
			return r, fmt.Errorf("base: %w", err)
		}
		r.add("ping.base", p.ms)
		logf("  base: %.0f ms", p.ms)

		// nomatch
		// The first repetition's runs scan afresh (as the first run of a
		// boot does), the others read the scan cached in /run/ipftrace.
		// A fresh scan costs memory too, so each peak RSS row has a
		// first run (a 6.1 fentry match run in a fresh boot went over
		// 50 MB while the cached runs stayed under).
		tr, err := b.runTracer(backend, noMatchIP, true, rep == 1, fmt.Sprintf("%s-nomatch-%d", backend, rep))
		if tr != nil && b.verbose {
			logf("  ipftrace stderr:\n%s", tr.stderr)
		}
		if err != nil {
			return r, fmt.Errorf("nomatch: %w", err)
		}
		r.recordTracer("nomatch", tr, b)
		if floorBackend == "auto" {
			if f := strings.Fields(strings.TrimPrefix(tr.backendLine, "ipftrace: backend ")); len(f) > 0 {
				floorBackend = strings.TrimSuffix(f[0], ":")
			}
		}

		// match
		tr, err = b.runTracer(backend, addrB, false, rep == 1, fmt.Sprintf("%s-match-%d", backend, rep))
		if tr != nil && b.verbose {
			logf("  ipftrace stderr:\n%s", tr.stderr)
		}
		if err != nil {
			return r, fmt.Errorf("match: %w", err)
		}
		r.recordTracer("match", tr, b)

		// the other tool, nomatch and match, right after ipftrace's
		if o := b.other; o != nil {
			for _, c := range []struct {
				cs, daddr string
				idle      bool
			}{{"nomatch", noMatchIP, true}, {"match", addrB, false}} {
				or, err := b.runOther(o, c.daddr, c.idle, fmt.Sprintf("%s-%s-%d", o.name, c.cs, rep))
				if or != nil && b.verbose {
					logf("  %s stderr:\n%s", o.name, or.stderr)
				}
				if err != nil {
					return r, fmt.Errorf("%s %s: %w", o.name, c.cs, err)
				}
				r.recordOther(c.cs, or, o)
			}
		}

		// floor
		if b.floor {
			if floorNames == nil {
				floorNames = floorTargets(all, floorBackend)
			}
			fr, err := b.runFloor(floorBackend, floorNames)
			if err != nil {
				return r, fmt.Errorf("floor: %w", err)
			}
			r.add("ping.floor", fr.ping.ms)
			r.add("floor.attach", secs(fr.attach))
			r.add("floor.attached", float64(fr.attached))
			r.add("floor.detach", secs(fr.detach))
			r.add("floor.gone", secs(fr.gone.after))
			r.floorDesc = fmt.Sprintf("empty program (r0 = 0; exit) on %d/%d %s targets", fr.attached, fr.tried, floorBackend)
			if s := fr.skippedString(); s != "" {
				r.floorDesc += " (skipped: " + s + ")"
			}
			if fr.goneErr != nil {
				r.note("floor rep %d: links not gone: %v %v", rep, fr.goneErr, fr.gone.left)
			}
			logf("  floor: %.0f ms, attach %.2fs (%d/%d), detach %.2fs", fr.ping.ms, secs(fr.attach), fr.attached, fr.tried, secs(fr.detach))
		}

		// base-after: everything detached (waited for above)
		b.settleBefore(r, "base-after")
		p, err = b.ping()
		if err != nil {
			return r, fmt.Errorf("base-after: %w", err)
		}
		r.add("ping.after", p.ms)
		logf("  base-after: %.0f ms", p.ms)
	}
	return r, nil
}

func (r *results) recordTracer(cs string, tr *tracerRun, b *bench) {
	if r.used == "" {
		r.used = tr.backendLine
	}
	r.ipftTargets = fmt.Sprintf("attached %d/%d", tr.attached, tr.targets)
	if tr.skipped != "" {
		r.ipftTargets += " (" + tr.skipped + ")"
	}
	r.add("ping."+cs, tr.ping.ms)
	if tr.fresh {
		r.add("attach.fresh", secs(tr.attach))
	} else {
		r.add("attach", secs(tr.attach))
	}
	r.add("attached", float64(tr.attached))
	r.add("detach."+cs, secs(tr.detach))
	if tr.goneErr == nil {
		r.add("gone."+cs, secs(tr.gone.after))
	} else {
		r.note("%s: ipftrace's links not gone after %s: %v (left: %v)", cs, tr.gone.after.Round(time.Millisecond), tr.goneErr, tr.gone.left)
	}
	if len(tr.gone.extra) > 0 || len(tr.gone.missing) > 0 {
		r.note("%s: when ipftrace's links were gone the link set differed from before: %d new %v, %d gone %v (other BPF users?)",
			cs, len(tr.gone.extra), tr.gone.extra, len(tr.gone.missing), tr.gone.missing)
	}
	if tr.idleCPU >= 0 {
		r.add("idle", tr.idleCPU)
	}
	r.add("rss."+cs, float64(tr.hwmKB)/1024)
	// Every other line ipftrace printed (background detach, warnings, errors).
	for _, l := range strings.Split(tr.stderr, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || backendRe.MatchString(l) || attachedRe.MatchString(l) || summaryRe.MatchString(l) || matchedRe.MatchString(l) {
			continue
		}
		r.note("%s: %s", cs, l)
	}
	s := tr.sum
	idle := ""
	if tr.idleCPU >= 0 {
		idle = fmt.Sprintf(", idle %.2f%%", tr.idleCPU)
	}
	logf("  %s: %.0f ms, attach %.2fs (%d/%d), detach %.2fs, links gone %.2fs, rss %.1f MB%s, %d journeys, %d received, %d lost, %d matched, json %d events",
		cs, tr.ping.ms, secs(tr.attach), tr.attached, tr.targets, secs(tr.detach), secs(tr.gone.after), float64(tr.hwmKB)/1024, idle,
		s.journeys, s.received, s.lost, s.matched, tr.json.events)
	if cs == "nomatch" {
		if s.received > 0 || tr.json.journeys > 0 {
			r.note("nomatch: %d events received, %d journeys printed for a filter that matches nothing", s.received, tr.json.journeys)
		}
		return
	}
	// match: accounting.
	r.add("ev.matched", float64(s.matched))
	r.add("ev.received", float64(s.received))
	r.add("ev.lost", float64(s.lost))
	r.add("ev.json", float64(tr.json.events))
	unexplained := s.matched - tr.json.events - s.lost
	r.add("ev.unexplained", float64(unexplained))
	r.add("ev.recvjson", float64(s.received-tr.json.events))
	if s.matched > 0 {
		r.add("ev.unexplainedpct", float64(unexplained)/float64(s.matched)*100)
		r.add("ev.lostpct", float64(s.lost)/float64(s.matched)*100)
	}
	r.add("journeys.json", float64(tr.json.journeys))
	r.add("journeys.ours", float64(tr.json.ours))
	if tr.json.ours > 0 {
		r.add("ev.perpkt", float64(tr.json.oursEvents)/float64(tr.json.ours))
	}
	if tr.cpuPerEvent > 0 {
		r.add("cpu.perevent", float64(tr.cpuPerEvent.Nanoseconds())/1000)
		r.add("cpu.evps", 1e9/float64(tr.cpuPerEvent.Nanoseconds()))
	}
	if !s.ok {
		r.note("match: no exit summary")
	}
	if s.unaccountedLine {
		r.note("match: ipftrace reports %s", grepLine(tr.stderr, "unaccounted"))
	}
	if unexplained != 0 || s.received != tr.json.events {
		r.note("match: matched %d, received %d, lost %d, JSON events %d: %d unexplained (matched - JSON - lost), received - JSON = %d",
			s.matched, s.received, s.lost, tr.json.events, unexplained, s.received-tr.json.events)
	}
	if tr.json.bad > 0 {
		r.note("match: %d JSON lines did not decode", tr.json.bad)
	}
	if tr.json.journeys != tr.json.ours {
		r.note("match: %d of %d journeys were not in the benchmark's namespaces (other traffic to %s)", tr.json.journeys-tr.json.ours, tr.json.journeys, addrB)
	}
}

func grepLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// row describes one line of the table.
type row struct {
	key, label, format string
	base               bool   // print ratios to ping.base
	floor              string // print the ratio to this key's median
}

var rows = []row{
	{"ping.base", "ping base (ms)", "%.0f", true, ""},
	{"ping.nomatch", "ping nomatch (ms)", "%.0f", true, "ping.floor"},
	{"ping.match", "ping match (ms)", "%.0f", true, "ping.floor"},
	{"ping.floor", "ping floor, empty prog (ms)", "%.0f", true, ""},
	{"ping.after", "ping base-after (ms)", "%.0f", true, ""},
	{"settle.base", "wait for idle CPUs before base (s)", "%.1f", false, ""},
	{"settle.base-after", "wait for idle CPUs before base-after (s)", "%.1f", false, ""},
	{"attach.fresh", "attach, fresh scan, start→ready (s)", "%.3f", false, "floor.attach"},
	{"attach", "attach, cached scan, start→ready (s)", "%.3f", false, "floor.attach"},
	{"attached", "functions attached", "%.0f", false, "floor.attached"},
	{"floor.attach", "floor attach (s)", "%.3f", false, ""},
	{"floor.attached", "floor functions attached", "%.0f", false, ""},
	{"detach.nomatch", "detach nomatch, SIGINT→exit (s)", "%.3f", false, "floor.detach"},
	{"detach.match", "detach match, SIGINT→exit (s)", "%.3f", false, "floor.detach"},
	{"gone.nomatch", "links gone nomatch, SIGINT→ (s)", "%.3f", false, "floor.gone"},
	{"gone.match", "links gone match, SIGINT→ (s)", "%.3f", false, "floor.gone"},
	{"floor.detach", "floor detach, close all (s)", "%.3f", false, ""},
	{"floor.gone", "floor links gone (s)", "%.3f", false, ""},
	{"idle", "idle CPU, nomatch (% of 1 CPU)", "%.2f", false, ""},
	{"rss.nomatch", "peak RSS nomatch (MB)", "%.1f", false, ""},
	{"rss.match", "peak RSS match (MB)", "%.1f", false, ""},
	{"ev.matched", "match: events matched (kernel)", "%.0f", false, ""},
	{"ev.received", "match: events received", "%.0f", false, ""},
	{"ev.json", "match: events in JSON output", "%.0f", false, ""},
	{"ev.lost", "match: events lost (reported)", "%.0f", false, ""},
	{"ev.lostpct", "match: lost (% of matched)", "%.2f", false, ""},
	{"ev.unexplained", "match: unexplained (matched-JSON-lost)", "%.0f", false, ""},
	{"ev.unexplainedpct", "match: unexplained (% of matched)", "%.3f", false, ""},
	{"ev.recvjson", "match: received - JSON events", "%.0f", false, ""},
	{"journeys.json", "match: journeys in JSON", "%.0f", false, ""},
	{"journeys.ours", "match: journeys in a/b", "%.0f", false, ""},
	{"ev.perpkt", "match: events per journey (a/b)", "%.1f", false, ""},
	{"cpu.perevent", "match: ipftrace CPU/event, ping→SIGINT (µs)", "%.2f", false, ""},
	{"cpu.evps", "match: events/s per CPU (ipftrace)", "%.0f", false, ""},
}

func minMed(v []float64) (float64, float64) {
	mn, md, _ := stats(v)
	return mn, md
}

// stats returns the minimum, median and maximum of v.
func stats(v []float64) (mn, med, mx float64) {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	med = s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return s[0], med, s[n-1]
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return ""
	}
	if q := a / b; q < 0.1 {
		return fmt.Sprintf("%.3f×", q)
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// print writes the table of one backend.
func (r *results) print(w io.Writer, env envInfo, b *bench) {
	fmt.Fprintf(w, "\n=== ipftrace bench: %s, kernel %s, backend %s — %s, ping -f -c %d, %d reps, %d CPUs, %s (%s)\n",
		env.label, env.kernel, r.backend, r.start.UTC().Format("2006-01-02 15:04 UTC"), b.count, b.reps, env.cpus, env.version, r.elapsed.Round(time.Second))
	if r.used != "" {
		fmt.Fprintf(w, "%s\n", strings.TrimPrefix(r.used, "ipftrace: "))
	}
	if len(b.extra) > 0 {
		fmt.Fprintf(w, "ipftrace flags added (-args): %s\n", strings.Join(b.extra, " "))
	}
	if r.ipftTargets != "" {
		fmt.Fprintf(w, "ipftrace %s; ", r.ipftTargets)
	}
	if r.floorDesc != "" {
		fmt.Fprintf(w, "floor: %s", r.floorDesc)
	}
	fmt.Fprintln(w)
	if r.other != "" {
		fmt.Fprintf(w, "other: %s\n", r.other)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// max shows the worst repetition, which matters for losses.
	// The (min) ratios compare the fastest repetitions, the ones least
	// disturbed by the rest of a shared machine.
	fmt.Fprintln(tw, "measure\tn\tmin\tmedian\tmax\t×base (med)\t×base (min)\t×floor (med)\t×floor (min)\t")
	bmin, bmed := math.NaN(), math.NaN()
	if v := r.samples["ping.base"]; len(v) > 0 {
		bmin, bmed = minMed(v)
	}
	for _, rw := range append(slices.Clone(rows), otherRows...) {
		v := r.samples[rw.key]
		if len(v) == 0 {
			continue
		}
		mn, md, mx := stats(v)
		var rb, rbm, rf, rfm string
		if rw.base {
			rb, rbm = ratio(md, bmed), ratio(mn, bmin)
		}
		if rw.floor != "" {
			if fv := r.samples[rw.floor]; len(fv) > 0 {
				fmn, fmd := minMed(fv)
				rf, rfm = ratio(md, fmd), ratio(mn, fmn)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t"+rw.format+"\t"+rw.format+"\t"+rw.format+"\t%s\t%s\t%s\t%s\t\n", rw.label, len(v), mn, md, mx, rb, rbm, rf, rfm)
	}
	tw.Flush()
	notes := append(slices.Clone(r.notes), b.takeNotes()...)
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func (b *bench) takeNotes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.notes
	b.notes = nil
	return n
}
