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
}

func parseBench(r io.Reader) []microResult {
	var res []microResult
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
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

// runMicro runs the userspace microbenchmarks on one core and prints their
// throughput in events per second per core.
func runMicro(gocmd, benchtime, out string) int {
	args := []string{"test", "-run", "XXX", "-bench", ".", "-benchmem", "-benchtime", benchtime, "-cpu", "1",
		"./journey", "./output", "./tracer"}
	logf("%s %s", gocmd, strings.Join(args, " "))
	cmd := exec.Command(gocmd, args...)
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	os.Stderr.Write(raw)
	if err != nil {
		logf("go test -bench: %v", err)
		return 1
	}
	res := parseBench(strings.NewReader(string(raw)))
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n=== ipftrace userspace microbenchmarks (go test -bench, -cpu 1, -benchtime %s), %s\n", benchtime, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "benchmark\tns/op\tB/op\tallocs/op\tevents/s/core\t")
	for _, m := range res {
		evps := ""
		switch {
		case m.metrics["events/s"] > 0:
			evps = fmt.Sprintf("%.3g", m.metrics["events/s"])
		case m.metrics["journeys/s"] > 0:
			evps = fmt.Sprintf("%.3g (%.3g journeys/s × %d)", m.metrics["journeys/s"]*eventsPerJourney, m.metrics["journeys/s"], eventsPerJourney)
		case strings.HasPrefix(m.name, "BenchmarkLoadClone") && m.metrics["ns/op"] > 0:
			evps = fmt.Sprintf("(%.0f program loads/s)", 1e9/m.metrics["ns/op"])
		}
		name := strings.TrimPrefix(m.pkg, "github.com/ipftrace/ipftrace/") + "." + strings.TrimPrefix(m.name, "Benchmark")
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.0f\t%s\t\n", name, m.metrics["ns/op"], m.metrics["B/op"], m.metrics["allocs/op"], evps)
	}
	tw.Flush()
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
