package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// eventsPerJourney is the size of output's benchmark journey (benchJourney
// in output/bench_test.go: 80 events), to turn journeys/s into events/s.
const eventsPerJourney = 80

// microResult is one benchmark line of go test -bench.
type microResult struct {
	pkg, name string
	metrics   map[string]float64 // unit -> value
	skipped   string             // why the benchmark skipped itself, if it did
}

// parseBench reads the output of go test -bench -v: a result per benchmark
// line, and per "--- SKIP" its last log line, the reason.
func parseBench(r io.Reader) []microResult {
	var res []microResult
	pkg, lastLog := "", ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		if strings.HasPrefix(line, "    ") {
			// "    file_test.go:94: message"
			if _, msg, ok := strings.Cut(strings.TrimSpace(line), ": "); ok {
				lastLog = msg
			}
			continue
		}
		if name, ok := strings.CutPrefix(line, "--- SKIP: "); ok {
			name, _, _ = strings.Cut(name, " ")
			res = append(res, microResult{pkg: pkg, name: name, skipped: lastLog})
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		m := microResult{pkg: pkg, name: f[0], metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m.metrics[f[i+1]] = v
		}
		res = append(res, m)
	}
	return res
}

// microRun says which microbenchmarks runMicro runs, and how.
type microRun struct {
	gocmd     string // the go command (go test -bench)
	testbin   string // a prebuilt test binary to run instead, "" for go test
	bench     string // -bench regexp
	benchtime string
	label     string // where it runs, for the title ("" for the host's userspace run)
}

// runMicro runs the microbenchmarks on one core and prints their throughput
// in events per second per core (program loads per second for LoadClone).
func runMicro(r microRun, out string) int {
	cmd := exec.Command(r.gocmd, "test", "-run", "XXX", "-bench", r.bench, "-v", "-benchmem", "-benchtime", r.benchtime, "-cpu", "1",
		"./journey", "./output", "./tracer")
	if r.testbin != "" {
		cmd = exec.Command(r.testbin, "-test.run", "XXX", "-test.bench", r.bench, "-test.v", "-test.benchmem",
			"-test.benchtime", r.benchtime, "-test.cpu", "1")
	}
	logf("%s", strings.Join(cmd.Args, " "))
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	os.Stderr.Write(raw)
	if err != nil {
		logf("%s: %v", cmd.Args[0], err)
		return 1
	}
	res := parseBench(strings.NewReader(string(raw)))
	var sb strings.Builder
	title := "userspace microbenchmarks"
	if r.label != "" {
		title = fmt.Sprintf("microbenchmarks %s, %s, kernel %s", r.bench, r.label, syscallUtsname{}.release())
	}
	fmt.Fprintf(&sb, "\n=== ipftrace %s (go test -bench, -cpu 1, -benchtime %s), %s\n", title, r.benchtime, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tns/op\tB/op\tallocs/op\tevents/s/core\t")
	var skipped []string
	for _, m := range res {
		evps := ""
		switch {
		case m.metrics["events/s"] > 0:
			evps = fmt.Sprintf("%.3g", m.metrics["events/s"])
		case m.metrics["journeys/s"] > 0:
			evps = fmt.Sprintf("%.3g (%.3g journeys/s × %d)", m.metrics["journeys/s"]*eventsPerJourney, m.metrics["journeys/s"], eventsPerJourney)
		case strings.HasPrefix(m.name, "BenchmarkLoadClone") && m.metrics["ns/op"] > 0:
			evps = fmt.Sprintf("(%.0f program loads/s, %.0f instructions verified)", 1e9/m.metrics["ns/op"], m.metrics["verified-insns"])
		}
		name := strings.TrimPrefix(m.pkg, "github.com/ipftrace/ipftrace/") + "." + strings.TrimPrefix(m.name, "Benchmark")
		if m.skipped != "" {
			skipped = append(skipped, fmt.Sprintf("skipped: %s: %s\n", name, strings.TrimPrefix(m.skipped, "SKIPPED: ")))
			continue
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%s\t\n", name, m.metrics["ns/op"], m.metrics["B/op"], m.metrics["allocs/op"], evps)
	}
	tw.Flush()
	for _, l := range skipped {
		sb.WriteString(l)
	}
	fmt.Print(sb.String())
	if out != "" {
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			logf("%v", err)
			return 1
		}
		defer f.Close()
		io.WriteString(f, sb.String())
	}
	return 0
}
