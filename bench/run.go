package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ipftrace/ipftrace/internal/bpfids"
)

// pingResult is ping's own summary.
type pingResult struct {
	sent, received int
	ms             float64 // ping's "time NNNms"
}

var pingRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received.*time (\d+(?:\.\d+)?)\s*ms`)

func parsePing(out string) (pingResult, error) {
	m := pingRe.FindStringSubmatch(out)
	if m == nil {
		return pingResult{}, fmt.Errorf("no summary in ping output: %q", strings.TrimSpace(out))
	}
	var r pingResult
	r.sent, _ = strconv.Atoi(m[1])
	r.received, _ = strconv.Atoi(m[2])
	r.ms, _ = strconv.ParseFloat(m[3], 64)
	return r, nil
}

// ping runs the workload: ip netns exec a ping -f -q -c COUNT 10.0.0.2.
func (b *bench) ping() (pingResult, error) {
	ctx, cancel := context.WithTimeout(b.ctx, b.pingTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", b.net.a, "ping", "-f", "-q", "-c", strconv.Itoa(b.count), addrB)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	r, perr := parsePing(string(out))
	if perr != nil {
		if err != nil {
			return r, fmt.Errorf("ping: %v: %s", err, strings.TrimSpace(string(out)))
		}
		return r, perr
	}
	if r.received != r.sent || r.sent != b.count {
		b.notef("ping: %d sent, %d received (of %d)", r.sent, r.received, b.count)
	}
	return r, nil
}

// summary is ipftrace's exit summary.
type summary struct {
	ok                       bool
	journeys, received, lost int64
	matched                  int64 // from the "unaccounted" line, else received+lost
	unaccountedLine          bool
}

var (
	attachedRe = regexp.MustCompile(`ipftrace: attached (\d+)/(\d+)(?: \(([^)]*)\))? in ([0-9.]+)s`)
	backendRe  = regexp.MustCompile(`ipftrace: backend (\S+): (.*)`)
	summaryRe  = regexp.MustCompile(`ipftrace: (\d+) journeys, (\d+) events received, lost (\d+) events`)
	matchedRe  = regexp.MustCompile(`ipftrace: (\d+) events matched in the kernel`)
)

func parseSummary(stderr string) summary {
	var s summary
	if m := summaryRe.FindStringSubmatch(stderr); m != nil {
		s.ok = true
		s.journeys, _ = strconv.ParseInt(m[1], 10, 64)
		s.received, _ = strconv.ParseInt(m[2], 10, 64)
		s.lost, _ = strconv.ParseInt(m[3], 10, 64)
		s.matched = s.received + s.lost
	}
	if m := matchedRe.FindStringSubmatch(stderr); m != nil {
		s.matched, _ = strconv.ParseInt(m[1], 10, 64)
		s.unaccountedLine = true
	}
	return s
}

// jsonCount is what the JSON output holds.
type jsonCount struct {
	journeys, events int64
	ours             int64 // journeys in the benchmark's namespaces
	oursEvents       int64
	bad              int64 // lines that did not decode
}

func countJSON(path string, p *netPair) (jsonCount, error) {
	var c jsonCount
	f, err := os.Open(path)
	if err != nil {
		return c, err
	}
	defer f.Close()
	type ev struct {
		Netns uint64 `json:"netns"`
	}
	var j struct {
		Events []ev `json:"events"`
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		j.Events = j.Events[:0]
		if err := json.Unmarshal(line, &j); err != nil {
			c.bad++
			continue
		}
		c.journeys++
		c.events += int64(len(j.Events))
		mine, foreign := false, false
		for _, e := range j.Events {
			switch e.Netns {
			case p.inoA, p.inoB:
				mine = true
			case 0:
			default:
				foreign = true
			}
		}
		if mine && !foreign {
			c.ours++
			c.oursEvents += int64(len(j.Events))
		}
	}
	return c, sc.Err()
}

// tracerRun is one measured ipftrace run.
type tracerRun struct {
	measured
	fresh       bool // run with --no-scan-cache
	attached    int
	targets     int
	skipped     string
	backendLine string
	sum         summary
	json        jsonCount
	cpuPerEvent time.Duration // userspace CPU from ping start to exit, per received event
}

// syncBuf is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// procCPU returns utime+stime of pid in clock ticks.
func procCPU(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	// Fields after the comm: state(0) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad utime/stime")
	}
	return u + st, nil
}

const clkTck = 100 // USER_HZ on Linux

// procHWM returns VmHWM of pid in kB.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmHWM")
}

// runTracer runs ipftrace --auto -b BACKEND -d DADDR -o json, measures attach,
// optionally idle CPU, runs the ping, and measures detach and link removal.
// fresh adds --no-scan-cache: the attach of a first run in a boot.
func (b *bench) runTracer(backend, daddr string, idle, fresh bool, tag string) (*tracerRun, error) {
	r := &tracerRun{measured: measured{idleCPU: -1}, fresh: fresh}
	before, err := bpfids.Links()
	if err != nil {
		return nil, err
	}
	ready := filepath.Join(b.tmp, "ready")
	os.Remove(ready)
	outPath := filepath.Join(b.tmp, tag+".json")
	out, err := os.Create(outPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	args := []string{"--auto", "-d", daddr, "-o", "json", "--ready-file", ready}
	if backend != "auto" {
		args = append(args, "--backend", backend)
	}
	if fresh {
		args = append(args, "--no-scan-cache")
	}
	args = append(args, b.extra...)
	watch, err := watchReady(ready)
	if err != nil {
		return nil, err
	}
	defer watch.Close()
	t, err := b.startTraced("ipftrace", exec.Command(b.ipftrace, args...), out)
	if err != nil {
		return nil, err
	}
	defer b.setChild(nil)
	fail := func(err error) (*tracerRun, error) {
		err = t.abort(err)
		r.stderr = t.stderr.String()
		return r, err
	}

	// Attach: process start until the ready file exists.
	timeout := time.NewTimer(b.attachTimeout)
	defer timeout.Stop()
	select {
	case <-watch.created:
		r.attach = time.Since(t.start)
	case err := <-t.exited:
		r.stderr = t.stderr.String()
		return r, fmt.Errorf("ipftrace exited before it was ready (%v):\n%s", err, strings.TrimSpace(r.stderr))
	case <-b.ctx.Done():
		return fail(b.ctx.Err())
	case <-timeout.C:
		return fail(fmt.Errorf("not ready after %s", b.attachTimeout))
	}
	if _, err := os.Stat(ready); err != nil {
		return fail(fmt.Errorf("ready file: %w", err))
	}
	// The attached line is written before the ready file is created.
	for i := 0; i < 200; i++ {
		if attachedRe.MatchString(t.stderr.String()) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	se := t.stderr.String()
	if m := attachedRe.FindStringSubmatch(se); m != nil {
		r.attached, _ = strconv.Atoi(m[1])
		r.targets, _ = strconv.Atoi(m[2])
		r.skipped = m[3]
	}
	if m := backendRe.FindStringSubmatch(se); m != nil {
		r.backendLine = m[0]
		if backend != "auto" && m[1] != backend {
			return fail(fmt.Errorf("ipftrace used backend %s, want %s", m[1], backend))
		}
	}

	// Detach: SIGINT until the process exits; links gone: until none of its
	// links exists any more.
	if err := b.measure(t, &r.measured, before, idle, tag); err != nil {
		return r, err
	}
	if r.waitErr != nil {
		return r, fmt.Errorf("ipftrace: %v; stderr:\n%s", r.waitErr, strings.TrimSpace(r.stderr))
	}
	r.sum = parseSummary(r.stderr)
	// CPU from the ping's start to SIGINT: the tracing itself, not the
	// detach (a foreground kprobe detach burns minutes of CPU). Events still
	// queued at SIGINT are not counted, so this slightly flatters ipftrace
	// if it lagged behind the ping.
	if used := time.Duration(r.cpuSig-r.cpuPing) * time.Second / clkTck; r.sum.received > 0 && used > 0 {
		r.cpuPerEvent = used / time.Duration(r.sum.received)
	}
	if !r.sum.ok {
		b.notef("%s: no exit summary in ipftrace's stderr:\n%s", tag, strings.TrimSpace(r.stderr))
	}
	out.Close()
	r.json, err = countJSON(outPath, b.net)
	if err != nil {
		return r, err
	}
	if !b.keep {
		os.Remove(outPath)
	}
	return r, nil
}
