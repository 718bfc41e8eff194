package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/ipftrace/ipftrace/internal/bpfids"
)

// otherTool is another tracer, run side by side with ipftrace in the same
// boot (-other): the same workload, measured the same way, its ratios taken
// to the same base and floor.
type otherTool struct {
	name    string
	command string         // a shell command line; {daddr} becomes the case's destination address
	ready   *regexp.Regexp // a line of its stdout or stderr that says it is tracing
}

// newOtherTool checks the -other flags.
func newOtherTool(command, name, ready string) (*otherTool, error) {
	if strings.TrimSpace(command) == "" {
		return nil, nil
	}
	if !strings.Contains(command, "{daddr}") {
		return nil, errors.New("-other: the command must contain {daddr}, the address its filter is to match")
	}
	if ready == "" {
		return nil, errors.New("-other needs -other-ready, a regular expression for the line that says it is tracing")
	}
	re, err := regexp.Compile(ready)
	if err != nil {
		return nil, fmt.Errorf("-other-ready: %w", err)
	}
	if name == "" {
		name = filepath.Base(strings.Fields(command)[0])
	}
	return &otherTool{name: name, command: command, ready: re}, nil
}

// otherRun is one measured run of the other tool.
type otherRun struct {
	measured
	outBytes int64
	outLines int64
}

// readyPoll is how often the other tool's output is searched for its ready
// line: a read of a buffer and of a file's head, no process started.
const readyPoll = 50 * time.Millisecond

// runOther runs the other tool for daddr as runTracer runs ipftrace: until
// its ready line, optionally idle for b.idleFor, during the ping, then
// SIGINT, until it exits and until its links are gone. Its stdout goes to
// a file, whose lines are counted.
func (b *bench) runOther(o *otherTool, daddr string, idle bool, tag string) (*otherRun, error) {
	r := &otherRun{measured: measured{idleCPU: -1}}
	before, err := bpfids.Links()
	if err != nil {
		return nil, err
	}
	outPath := filepath.Join(b.tmp, tag+".out")
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	// exec: the shell becomes the tool, which gets the SIGINT itself.
	cmd := exec.Command("sh", "-c", "exec "+strings.ReplaceAll(o.command, "{daddr}", daddr))
	t, err := b.startTraced(o.name, cmd, out)
	if err != nil {
		return nil, err
	}
	defer b.setChild(nil)
	fail := func(err error) (*otherRun, error) {
		err = t.abort(err)
		r.stderr = t.stderr.String()
		return r, err
	}

	timeout := time.After(b.attachTimeout)
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for !o.ready.MatchString(t.stderr.String()) && !o.ready.Match(fileHead(outPath, 1<<20)) {
		select {
		case <-tick.C:
		case err := <-t.exited:
			r.stderr = t.stderr.String()
			return r, fmt.Errorf("%s exited before its ready line (%v):\n%s", o.name, err, strings.TrimSpace(r.stderr))
		case <-b.ctx.Done():
			return fail(b.ctx.Err())
		case <-timeout:
			return fail(fmt.Errorf("no line matching %q after %s", o.ready, b.attachTimeout))
		}
	}
	r.attach = time.Since(t.start)

	if err := b.measure(t, &r.measured, before, idle, tag); err != nil {
		return r, err
	}
	if r.waitErr != nil {
		// Tools differ in the status they exit with after SIGINT.
		b.notef("%s: %s exited with %v after SIGINT", tag, o.name, r.waitErr)
	}
	out.Close()
	r.outBytes, r.outLines, err = countLines(outPath)
	if err != nil {
		return r, err
	}
	if !b.keep {
		os.Remove(outPath)
	}
	return r, nil
}

// fileHead returns up to n bytes from the start of path (nil on error).
func fileHead(path string, n int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return b
}

// countLines returns the size of path and its number of lines.
func countLines(path string) (size, lines int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	for {
		chunk, err := br.ReadSlice('\n')
		size += int64(len(chunk))
		if len(chunk) > 0 && chunk[len(chunk)-1] == '\n' {
			lines++
		}
		switch {
		case err == bufio.ErrBufferFull:
		case err == io.EOF:
			return size, lines, nil
		case err != nil:
			return size, lines, err
		}
	}
}

// recordOther adds one run of the other tool to r, as case cs.
func (r *results) recordOther(cs string, or *otherRun, o *otherTool) {
	r.other = fmt.Sprintf("%s: %s", o.name, o.command)
	r.add("other.ping."+cs, or.ping.ms)
	r.add("other.attach", secs(or.attach))
	r.add("other.detach."+cs, secs(or.detach))
	if or.goneErr == nil {
		r.add("other.gone."+cs, secs(or.gone.after))
	} else {
		r.note("%s %s: links not gone after %s: %v (left: %v)", o.name, cs, or.gone.after.Round(time.Millisecond), or.goneErr, or.gone.left)
	}
	if or.idleCPU >= 0 {
		r.add("other.idle", or.idleCPU)
	}
	r.add("other.rss."+cs, float64(or.hwmKB)/1024)
	r.add("other.lines."+cs, float64(or.outLines))
	r.add("other.mb."+cs, float64(or.outBytes)/(1<<20))
	logf("  %s %s: %.0f ms, attach %.2fs, detach %.2fs, links gone %.2fs, rss %.1f MB, output %d lines",
		o.name, cs, or.ping.ms, secs(or.attach), secs(or.detach), secs(or.gone.after), float64(or.hwmKB)/1024, or.outLines)
}

// otherRows are the table's lines for the other tool.
var otherRows = []row{
	{"other.ping.nomatch", "other: ping nomatch (ms)", "%.0f", true, "ping.floor"},
	{"other.ping.match", "other: ping match (ms)", "%.0f", true, "ping.floor"},
	{"other.attach", "other: attach, start→ready line (s)", "%.3f", false, "floor.attach"},
	{"other.detach.nomatch", "other: detach nomatch, SIGINT→exit (s)", "%.3f", false, "floor.detach"},
	{"other.detach.match", "other: detach match, SIGINT→exit (s)", "%.3f", false, "floor.detach"},
	{"other.gone.nomatch", "other: links gone nomatch, SIGINT→ (s)", "%.3f", false, "floor.gone"},
	{"other.gone.match", "other: links gone match, SIGINT→ (s)", "%.3f", false, "floor.gone"},
	{"other.idle", "other: idle CPU, nomatch (% of 1 CPU)", "%.2f", false, ""},
	{"other.rss.nomatch", "other: peak RSS nomatch (MB)", "%.1f", false, ""},
	{"other.rss.match", "other: peak RSS match (MB)", "%.1f", false, ""},
	{"other.lines.nomatch", "other: output lines nomatch", "%.0f", false, ""},
	{"other.lines.match", "other: output lines match", "%.0f", false, ""},
	{"other.mb.match", "other: output match (MiB)", "%.1f", false, ""},
}
