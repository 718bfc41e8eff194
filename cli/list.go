package cli

import (
	"bytes"
	"fmt"
	"io"
	"strconv"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/ipftrace/ipftrace/btfscan"
)

// listFuncs prints the targets a run would attach to (-ls) as a table.
func listFuncs(o *Options, scan *btfscan.Result, stdout, stderr io.Writer) int {
	entries, sum := selectFuncs(o, scan)
	if s := sum.String(); s != "" {
		fmt.Fprintln(stderr, s)
	}
	tps := selectTracepoints(o, scan)
	if len(entries) == 0 && len(tps) == 0 {
		if o.Regex != nil {
			return fail(stderr, ExitUsage, fmt.Errorf("regex %q matches no skb function or tracepoint", o.Regex))
		}
		return fail(stderr, ExitUsage, fmt.Errorf("no skb functions or tracepoints to list"))
	}

	egress := map[string]bool{}
	for _, e := range entries {
		if e.Egress {
			egress[e.Name] = true
		}
	}
	for _, name := range o.Egress {
		egress[name] = true
	}
	if o.Manifest == nil {
		for _, name := range defaultEgressSet(scan) {
			egress[name] = true
		}
	}

	var buf bytes.Buffer
	table := newTable(&buf)
	table.Header("NAME", "KIND", "SKB_POS", "ARGS", "MODULE", "BACKENDS", "EGRESS")
	for _, e := range entries {
		fn, _ := scan.Func(e.Name)
		table.Append(e.Name, "func", strconv.Itoa(e.SkbPos), strconv.Itoa(fn.NumArgs), moduleName(fn.Module), fn.Backends.String(), yesNo(egress[e.Name]))
	}
	tpEgress := map[string]bool{}
	for _, name := range defaultEgressTracepoints(scan) {
		tpEgress[name] = true
	}
	for _, tp := range tps {
		table.Append(tp.Name, "tracepoint", strconv.Itoa(tp.SkbPos), strconv.Itoa(tp.NumArgs), moduleName(tp.Module), btfscan.BackendTracepoint.String(), yesNo(tpEgress[tp.Name] || egress[tp.Name]))
	}
	if err := table.Render(); err != nil {
		return fail(stderr, ExitRuntime, fmt.Errorf("render table: %w", err))
	}
	if _, err := stdout.Write(trimTable(buf.Bytes())); err != nil {
		return writeFailed(stderr, err)
	}
	fmt.Fprintf(stderr, "%d functions, %d tracepoints\n", len(entries), len(tps))
	return ExitOK
}

// newTable returns a borderless, left-aligned table writer.
func newTable(w io.Writer) *tablewriter.Table {
	return tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Settings: tw.Settings{
				Separators: tw.Separators{BetweenColumns: tw.Off, BetweenRows: tw.Off},
				Lines:      tw.Lines{ShowHeaderLine: tw.Off},
			},
		})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithTrimSpace(tw.Off),
	)
}

// trimTable drops the cell padding at the start and end of each line.
func trimTable(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b))
	for line := range bytes.Lines(b) {
		line = bytes.TrimRight(line, " \n")
		line = bytes.TrimPrefix(line, []byte(" "))
		out.Write(line)
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func moduleName(m string) string {
	if m == "" {
		return "vmlinux"
	}
	return m
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return ""
}
