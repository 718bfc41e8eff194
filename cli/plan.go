package cli

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/manifest"
	"github.com/ipftrace/ipftrace/tracer"
)

// Plan turns validated options and a scan into a tracer configuration.
//
// With --auto, Funcs are the scanned functions matching -r; with a manifest,
// they are its entries matching -r, reconciled with the scan (the Summary
// says what was skipped or corrected). Tracepoints are the scanned
// tracepoints matching -r. Egress functions (the kernel's defaults, the
// manifest's, and -e) are always traced, even if -r filtered them out, so
// that journeys end where the skb dies. Stdout and Stderr are left unset.
func Plan(o *Options, scan *btfscan.Result) (tracer.Config, manifest.Summary, error) {
	cfg := tracer.Config{
		Backend:   o.Backend,
		Scan:      scan,
		Filter:    o.Filter,
		Length:    o.Length,
		Idle:      o.Idle,
		RingSize:  o.RingSize << 20,
		Count:     o.Count,
		Duration:  o.Duration,
		ReadyFile: o.ReadyFile,
		Format:    o.Format,
		NoTrack:   o.NoTrack,
		Verbose:   o.Verbose,
		Named:     o.Manifest != nil,
	}
	reasons, err := scan.DropReasons()
	if err != nil {
		return cfg, manifest.Summary{}, err
	}
	cfg.DropReasons = reasons
	entries, sum := selectFuncs(o, scan)
	tps := selectTracepoints(o, scan)
	if o.Manifest != nil && len(o.Manifest.Functions) > 0 && len(sum.Skipped) == len(o.Manifest.Functions) {
		return cfg, sum, fmt.Errorf("manifest %s: none of its functions exist on this kernel (%s)",
			o.ManifestPath, strings.TrimPrefix(sum.String(), "manifest: "))
	}
	if len(entries) == 0 && len(tps) == 0 {
		if o.Regex != nil {
			return cfg, sum, fmt.Errorf("regex %q matches no skb function or tracepoint", o.Regex)
		}
		return cfg, sum, errors.New("nothing to trace: no skb functions or tracepoints")
	}

	// Egress functions: defaults, the manifest's, -e.
	egress := map[string]bool{}
	var egressOrder []string
	addEgress := func(name string) {
		if !egress[name] {
			egress[name] = true
			egressOrder = append(egressOrder, name)
		}
	}
	for _, name := range manifest.DefaultEgress(scan) {
		addEgress(name)
	}
	for _, e := range entries {
		if e.Egress {
			addEgress(e.Name)
		}
	}
	tpEgress := map[string]bool{}
	var tpEgressOrder []string
	for _, name := range manifest.DefaultEgressTracepoints(scan) {
		tpEgress[name] = true
		tpEgressOrder = append(tpEgressOrder, name)
	}
	for _, name := range o.Egress {
		_, isFunc := scan.Func(name)
		_, isTP := scan.Tracepoint(name)
		switch {
		case isFunc:
			addEgress(name)
		case isTP:
			if !tpEgress[name] {
				tpEgress[name] = true
				tpEgressOrder = append(tpEgressOrder, name)
			}
		default:
			return cfg, sum, fmt.Errorf("unknown egress function %s (not an skb function or tracepoint in BTF)", name)
		}
	}

	seen := map[string]bool{}
	for _, e := range entries {
		fn, _ := scan.Func(e.Name)
		cfg.Funcs = append(cfg.Funcs, funcTarget(fn, e.SkbPos, egress[e.Name]))
		seen[e.Name] = true
	}
	for _, name := range egressOrder {
		if !seen[name] {
			fn, _ := scan.Func(name)
			cfg.Funcs = append(cfg.Funcs, funcTarget(fn, fn.SkbPos, true))
			seen[name] = true
		}
	}

	seenTP := map[string]bool{}
	for _, tp := range tps {
		cfg.Tracepoints = append(cfg.Tracepoints, tpTarget(tp, tpEgress[tp.Name]))
		seenTP[tp.Name] = true
	}
	for _, name := range tpEgressOrder {
		if !seenTP[name] {
			tp, _ := scan.Tracepoint(name)
			cfg.Tracepoints = append(cfg.Tracepoints, tpTarget(tp, true))
		}
	}
	return cfg, sum, nil
}

func funcTarget(fn btfscan.Func, skbPos int, egress bool) tracer.Target {
	return tracer.Target{
		Name:    fn.Name,
		SkbPos:  skbPos,
		SkbSlot: fn.SkbSlot,
		NumArgs: fn.NumArgs,
		Module:  fn.Module,
		Egress:  egress,
		Reach:   fn.Backends,
		Addr:    fn.Addr,
	}
}

func tpTarget(tp btfscan.Tracepoint, egress bool) tracer.Target {
	return tracer.Target{
		Name:       tp.Name,
		SkbPos:     tp.SkbPos,
		NumArgs:    tp.NumArgs,
		Module:     tp.Module,
		Tracepoint: true,
		Egress:     egress,
	}
}

// selectFuncs returns the functions to trace before egress functions are
// added: the manifest's (reconciled) or, without one, the scan's; filtered
// by -r.
func selectFuncs(o *Options, scan *btfscan.Result) ([]manifest.Entry, manifest.Summary) {
	var entries []manifest.Entry
	var sum manifest.Summary
	if o.Manifest != nil {
		entries, sum = manifest.Reconcile(o.Manifest, scan)
	} else {
		entries = make([]manifest.Entry, 0, len(scan.Funcs))
		for _, fn := range scan.Funcs {
			entries = append(entries, manifest.Entry{Name: fn.Name, SkbPos: fn.SkbPos})
		}
	}
	if o.Regex != nil {
		entries = slices.DeleteFunc(entries, func(e manifest.Entry) bool { return !o.Regex.MatchString(e.Name) })
	}
	return entries, sum
}

// selectTracepoints returns the scanned tracepoints matching -r.
func selectTracepoints(o *Options, scan *btfscan.Result) []btfscan.Tracepoint {
	var out []btfscan.Tracepoint
	for _, tp := range scan.Tracepoints {
		if o.Regex == nil || o.Regex.MatchString(tp.Name) {
			out = append(out, tp)
		}
	}
	return out
}

func defaultEgressSet(scan *btfscan.Result) []string { return manifest.DefaultEgress(scan) }

func defaultEgressTracepoints(scan *btfscan.Result) []string {
	return manifest.DefaultEgressTracepoints(scan)
}
