//go:build linux

package e2e

import (
	"bufio"
	"bytes"
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
	"testing"
	"time"
)

// Timeouts. Generous: in CI the tests run in TCG-emulated VMs, 10-50x
// slower, where attaching ~1650 fentry programs takes minutes. They only
// cost time when something is wrong.
const (
	readyTimeout   = 5 * time.Minute  // attach
	journeyTimeout = 2 * time.Minute  // an expected journey to show up
	exitTimeout    = 3 * time.Minute  // exit after -c, --duration or a signal
	detachTimeout  = 10 * time.Minute // BPF objects gone after exit
)

// Journey is one line of "-o json".
type Journey struct {
	Flow   Flow    `json:"flow"`
	Skb    string  `json:"skb"`
	Events []Event `json:"events"`
	// DropReason and DropLocation are set when the journey ended in a drop.
	DropReason   string `json:"drop_reason"`
	DropLocation string `json:"drop_location"`
	End          string `json:"end"`
}

type Flow struct {
	IPVersion int    `json:"ipversion"`
	Proto     string `json:"proto"`
	Saddr     string `json:"saddr"`
	Daddr     string `json:"daddr"`
	Sport     int    `json:"sport"`
	Dport     int    `json:"dport"`
}

type Event struct {
	Ts      uint64 `json:"ts"`
	Func    string `json:"func"`
	CPU     int    `json:"cpu"`
	Netns   uint64 `json:"netns"`
	Ifindex int    `json:"ifindex"`
	Len     int    `json:"len"`
	Tuple   *Flow  `json:"tuple"` // only where it differs from the journey's flow
	Skb     string `json:"skb"`   // only on clones
	Clone   bool   `json:"clone"`
	// Data holds the -m module fields (numbers decode as float64).
	Data map[string]any `json:"data"`
}

func (j Journey) Funcs() []string {
	out := make([]string, len(j.Events))
	for i, e := range j.Events {
		out[i] = e.Func
	}
	return out
}

func (j Journey) String() string {
	f := j.Flow
	ev := make([]string, len(j.Events))
	for i, e := range j.Events {
		ev[i] = fmt.Sprintf("%s(%d)", e.Func, e.Len)
		if e.Clone {
			ev[i] += "+clone"
		}
		if u := e.Tuple; u != nil {
			ev[i] += fmt.Sprintf("[%s %s:%d->%s:%d]", u.Proto, u.Saddr, u.Sport, u.Daddr, u.Dport)
		}
		if len(e.Data) > 0 {
			ev[i] += fmt.Sprint(e.Data)
		}
	}
	drop := ""
	if j.DropReason != "" {
		drop = fmt.Sprintf(" dropped %s at %q", j.DropReason, j.DropLocation)
	}
	return fmt.Sprintf("v%d %s %s:%d -> %s:%d skb %s end %s%s: %s", f.IPVersion, f.Proto, f.Saddr, f.Sport,
		f.Daddr, f.Dport, j.Skb, j.End, drop, strings.Join(ev, " "))
}

func dumpJourneys(js []Journey) string {
	if len(js) == 0 {
		return "  (no journeys)"
	}
	var b strings.Builder
	for _, j := range js {
		fmt.Fprintf(&b, "  %s\n", j)
	}
	return b.String()
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tracer is one running ipftrace process.
type tracer struct {
	t       *testing.T
	cmd     *exec.Cmd
	args    []string
	stdout  syncBuffer
	stderr  syncBuffer
	done    chan struct{} // closed when the process has exited
	waitErr error
	exited  time.Time
	backend string // as reported on stderr
	ready   time.Duration
}

// runToExit runs cmd to completion (killed after exitTimeout) and returns
// its output and Wait's error.
func runToExit(cmd *exec.Cmd) (stdout, stderr *bytes.Buffer, err error) {
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err = startChild(cmd); err == nil {
		timer := time.AfterFunc(exitTimeout, func() { cmd.Process.Kill() })
		err = cmd.Wait()
		timer.Stop()
	}
	return &o, &e, err
}

// ipftrace runs the binary to completion (for -ls, gen-manifest, bad input).
func ipftrace(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(ipftraceBin, args...)
	o, e, err := runToExit(cmd)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run ipftrace %s: %v", strings.Join(args, " "), err)
	}
	return o.String(), e.String(), code
}

// backendArgs are the arguments that select the backend under test.
func backendArgs() []string {
	if wantBackend == "" {
		return nil
	}
	return []string{"-b", wantBackend}
}

var backendLineRE = regexp.MustCompile(`(?m)^ipftrace: backend (\S+): `)
var attachedLineRE = regexp.MustCompile(`(?m)^ipftrace: attached (\d+)/(\d+)(?: \(.*\))? in ([0-9.]+)s$`)

// startTracer starts ipftrace with args plus the backend and a ready file,
// waits until it is attached and checks the backend it reports. The process
// is killed when the test ends if it still runs.
func startTracer(t *testing.T, args ...string) *tracer {
	t.Helper()
	requireRoot(t)
	ready := filepath.Join(t.TempDir(), "ready")
	full := append(append(backendArgs(), args...), "--ready-file", ready)
	tr := &tracer{t: t, args: full, done: make(chan struct{})}
	tr.cmd = exec.Command(ipftraceBin, full...)
	tr.cmd.Stdout = &tr.stdout
	tr.cmd.Stderr = &tr.stderr
	start := time.Now()
	if err := startChild(tr.cmd); err != nil {
		t.Fatalf("start ipftrace: %v", err)
	}
	go func() {
		tr.waitErr = tr.cmd.Wait()
		tr.exited = time.Now()
		close(tr.done)
	}()
	t.Cleanup(tr.kill)
	t.Logf("started: ipftrace %s", strings.Join(full, " "))

	deadline := time.After(readyTimeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-tr.done:
			t.Fatalf("ipftrace exited before it was ready (%v); stderr:\n%s", tr.waitErr, tr.stderr.String())
		case <-deadline:
			t.Fatalf("ipftrace not ready after %v; stderr:\n%s", readyTimeout, tr.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	tr.ready = time.Since(start)
	// ipftrace writes its backend and attached lines before it creates the
	// ready file, but they reach tr.stderr through exec's copying goroutine,
	// which may not have run yet: wait for them.
	stderr := tr.stderr.String()
	for wait := time.Now().Add(10 * time.Second); attachedLineRE.FindStringSubmatch(stderr) == nil && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
		stderr = tr.stderr.String()
	}
	m := backendLineRE.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no \"ipftrace: backend NAME: ...\" line on stderr:\n%s", stderr)
	}
	tr.backend = m[1]
	if wantBackend != "" && tr.backend != wantBackend {
		t.Fatalf("ipftrace used backend %q, want %q (IPFTRACE_BACKEND); stderr:\n%s", tr.backend, wantBackend, stderr)
	}
	if !contains(validBackends, tr.backend) {
		t.Fatalf("unknown backend %q on stderr:\n%s", tr.backend, stderr)
	}
	if attachedLineRE.FindStringSubmatch(stderr) == nil {
		t.Fatalf("no \"ipftrace: attached N/M ... in X.XXs\" line on stderr:\n%s", stderr)
	}
	// Skips for the kernel's reasons are fine; running out of descriptors
	// is ours (it skipped 294 of 1652 functions with fentry --auto).
	if strings.Contains(stderr, "EMFILE") || strings.Contains(stderr, "too many open files") {
		t.Fatalf("ipftrace ran out of file descriptors while attaching; stderr:\n%s", stderr)
	}
	return tr
}

// attached returns N, M and the seconds of the "attached N/M in Xs" line.
func (tr *tracer) attached() (n, m int, secs float64) {
	mm := attachedLineRE.FindStringSubmatch(tr.stderr.String())
	if mm == nil {
		tr.t.Fatalf("no attached line on stderr:\n%s", tr.stderr.String())
	}
	n, _ = strconv.Atoi(mm[1])
	m, _ = strconv.Atoi(mm[2])
	secs, _ = strconv.ParseFloat(mm[3], 64)
	return n, m, secs
}

func (tr *tracer) exitedNow() bool {
	select {
	case <-tr.done:
		return true
	default:
		return false
	}
}

// kill ends the process if it still runs (test cleanup).
func (tr *tracer) kill() {
	if tr.exitedNow() {
		return
	}
	tr.cmd.Process.Kill()
	select {
	case <-tr.done:
	case <-time.After(exitTimeout):
		tr.t.Errorf("ipftrace (pid %d) did not die after SIGKILL within %v", tr.cmd.Process.Pid, exitTimeout)
	}
}

// signal sends sig and returns when it was sent.
func (tr *tracer) signal(sig os.Signal) time.Time {
	tr.t.Helper()
	now := time.Now()
	if err := tr.cmd.Process.Signal(sig); err != nil {
		tr.t.Fatalf("signal %v: %v", sig, err)
	}
	return now
}

// wait waits for the process to exit and checks its exit status.
func (tr *tracer) wait(wantCode int) {
	tr.t.Helper()
	select {
	case <-tr.done:
	case <-time.After(exitTimeout):
		tr.t.Fatalf("ipftrace did not exit within %v; stderr:\n%s", exitTimeout, tr.stderr.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(tr.waitErr, &ee) {
		code = ee.ExitCode()
		if ee.ExitCode() == -1 {
			tr.t.Fatalf("ipftrace died: %v; stderr:\n%s", tr.waitErr, tr.stderr.String())
		}
	} else if tr.waitErr != nil {
		tr.t.Fatalf("ipftrace: %v", tr.waitErr)
	}
	if code != wantCode {
		tr.t.Fatalf("ipftrace exited with %d, want %d; stderr:\n%s", code, wantCode, tr.stderr.String())
	}
}

// stop sends SIGINT, waits for exit status 0 and returns how long exiting
// took.
func (tr *tracer) stop() time.Duration {
	tr.t.Helper()
	sent := tr.signal(os.Interrupt)
	tr.wait(0)
	return tr.exited.Sub(sent)
}

// journeys parses the complete JSON lines written so far.
func (tr *tracer) journeys() []Journey {
	tr.t.Helper()
	out := tr.stdout.String()
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[:i+1]
	} else {
		return nil
	}
	var js []Journey
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var j Journey
		dec := json.NewDecoder(bytes.NewReader(line))
		if err := dec.Decode(&j); err != nil {
			tr.t.Fatalf("stdout line is not a journey: %v\n%s", err, line)
		}
		if dec.More() {
			tr.t.Fatalf("stdout line has more than one JSON value:\n%s", line)
		}
		checkJourney(tr.t, j, line)
		js = append(js, j)
	}
	return js
}

// startTracepoints are where a packet starts a pass through a device
// (README, Tracking).
var startTracepoints = map[string]bool{
	"net_dev_queue": true, "netif_rx_entry": true, "netif_receive_skb_entry": true,
	"netif_receive_skb_list_entry": true, "napi_gro_receive_entry": true, "napi_gro_frags_entry": true,
}

// checkJourney checks the invariants of every journey.
func checkJourney(t *testing.T, j Journey, line []byte) {
	t.Helper()
	if len(j.Events) == 0 {
		t.Errorf("journey without events: %s", line)
	}
	if !contains([]string{"egress", "length", "idle", "exit", "evict", "reuse"}, j.End) {
		t.Errorf("journey end %q not one of egress, length, idle, exit, evict, reuse: %s", j.End, line)
	}
	// One packet passes a device once: a start tracepoint twice on the
	// same skb, netns and device is the next packet at a reused address,
	// which starts a journey of its own (end reuse).
	type pass struct {
		fn, skb        string
		netns, ifindex uint64
	}
	passes := map[pass]bool{}
	for _, e := range j.Events {
		if !startTracepoints[e.Func] {
			continue
		}
		k := pass{e.Func, e.Skb, e.Netns, uint64(e.Ifindex)}
		if passes[k] {
			t.Errorf("journey passes %s on netns %d ifindex %d twice: two packets in one journey: %s", e.Func, e.Netns, e.Ifindex, line)
			break
		}
		passes[k] = true
	}
	if !strings.HasPrefix(j.Skb, "0x") {
		t.Errorf("journey skb %q is not a hex address: %s", j.Skb, line)
	}
	if j.Flow.IPVersion != 4 && j.Flow.IPVersion != 6 {
		t.Errorf("journey ipversion %d: %s", j.Flow.IPVersion, line)
	}
	for i, e := range j.Events {
		if e.Func == "" {
			t.Errorf("event %d without func: %s", i, line)
		}
		if i > 0 && e.Ts < j.Events[i-1].Ts {
			t.Errorf("event %d ts %d before event %d ts %d: %s", i, e.Ts, i-1, j.Events[i-1].Ts, line)
		}
	}
}

// waitJourneys polls the output until cond holds for the journeys of the
// test's namespaces, or fails the test after journeyTimeout (or when the
// process exits without cond).
func (tr *tracer) waitJourneys(p *netPair, what string, cond func([]Journey) bool) []Journey {
	tr.t.Helper()
	deadline := time.Now().Add(journeyTimeout)
	for {
		exited := tr.exitedNow()
		js := p.filterOurs(tr.journeys())
		if cond(js) {
			return js
		}
		if exited {
			tr.t.Fatalf("ipftrace exited (%v) without %s; journeys:\n%s\nstderr:\n%s", tr.waitErr, what, dumpJourneys(js), tr.stderr.String())
		}
		if time.Now().After(deadline) {
			// Stop it for its exit report (lost events, skipped runs), and
			// show what it wrote outside the test's namespaces too.
			tr.cmd.Process.Signal(os.Interrupt)
			select {
			case <-tr.done:
			case <-time.After(30 * time.Second):
			}
			var others []Journey
			js = js[:0]
			for _, j := range tr.journeys() {
				switch {
				case p.ours(j):
					js = append(js, j)
				case len(others) < 20:
					others = append(others, j)
				}
			}
			tr.t.Fatalf("no %s within %v; journeys:\n%s\nother journeys (first 20):\n%s\nstderr:\n%s", what, journeyTimeout,
				dumpJourneys(js), dumpJourneys(others), tr.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// path is a sequence of steps; a step is satisfied by any of its names.
type path [][]string

func (p path) String() string {
	parts := make([]string, len(p))
	for i, s := range p {
		parts[i] = strings.Join(s, "|")
	}
	return strings.Join(parts, " … ")
}

// matchPath reports whether funcs contains the steps of p in order (not
// necessarily adjacent). Greedy earliest matching is exact for this.
func matchPath(funcs []string, p path) bool {
	i := 0
	for _, step := range p {
		for i < len(funcs) && !contains(step, funcs[i]) {
			i++
		}
		if i == len(funcs) {
			return false
		}
		i++
	}
	return true
}

// lastIn reports whether the journey's last event is one of names.
func lastIn(j Journey, names []string) bool {
	return len(j.Events) > 0 && contains(names, j.Events[len(j.Events)-1].Func)
}

// isFuncBackend reports whether the backend traces kernel functions (as
// opposed to tracepoints).
func isFuncBackend(b string) bool { return b != "tracepoint" }

// Tracepoint paths of a packet from a to b over the veth pair.
var (
	tpXmitRecv = path{{"net_dev_queue"}, {"net_dev_start_xmit"}, {"net_dev_xmit"}, {"netif_rx", "netif_receive_skb"}}
	tpRelease  = []string{"consume_skb", "kfree_skb"}
)

// requestPath is the path a packet of the given protocol from a to b must
// take, for the backend in use.
func requestPath(backend, proto string, ipv int) path {
	if !isFuncBackend(backend) {
		return tpXmitRecv
	}
	rcv := map[string]string{"ICMP": "icmp_rcv", "TCP": "tcp_v4_rcv", "UDP": "udp_rcv", "ICMPv6": "icmpv6_rcv"}[proto]
	if ipv == 6 {
		rcv = map[string]string{"TCP": "tcp_v6_rcv", "UDP": "udpv6_rcv", "ICMPv6": "icmpv6_rcv"}[proto]
		return path{{"ip6_output"}, {"__dev_queue_xmit"}, {"ipv6_rcv"}, {rcv}}
	}
	return path{{"ip_output"}, {"__dev_queue_xmit"}, {"ip_rcv"}, {rcv}}
}

// manifestFuncs are the functions of the small manifest the tests trace
// with function backends (the ones missing on a kernel are left out by
// gen-manifest).
var manifestFuncs = []string{
	"ip_local_out", "__ip_local_out", "ip_output", "ip_finish_output", "ip_finish_output2",
	"__dev_queue_xmit", "dev_hard_start_xmit", "veth_xmit", "__dev_forward_skb",
	"netif_rx", "__netif_rx", "__netif_receive_skb", "__netif_receive_skb_one_core",
	"ip_rcv", "ip_rcv_finish", "ip_local_deliver", "ip_local_deliver_finish", "ip_protocol_deliver_rcu",
	"icmp_rcv", "tcp_v4_rcv", "udp_rcv", "__udp4_lib_rcv",
	"ip6_output", "ip6_finish_output", "ipv6_rcv", "ip6_rcv_finish", "ip6_input",
	"icmpv6_rcv", "udpv6_rcv", "tcp_v6_rcv",
	"consume_skb", "kfree_skb", "kfree_skb_reason", "sk_skb_reason_drop", "nf_hook_slow",
}

// Drop functions, newest kernels first.
var dropFuncs = []string{"sk_skb_reason_drop", "kfree_skb_reason", "kfree_skb"}

var (
	manifestOnce  sync.Once
	manifestFile  string
	manifestNames map[string]int // name -> skb_pos
	manifestErr   error
)

// manifest writes (once) the small manifest with "ipftrace gen-manifest"
// and returns its path and its functions.
func manifest(t *testing.T) (string, map[string]int) {
	t.Helper()
	requireRoot(t)
	manifestOnce.Do(func() {
		re := "^(" + strings.Join(quoteMeta(manifestFuncs), "|") + ")$"
		cmd := exec.Command(ipftraceBin, "gen-manifest", "-r", re)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			manifestErr = fmt.Errorf("ipftrace gen-manifest -r %q: %v\n%s", re, err, e.String())
			return
		}
		manifestNames, manifestErr = parseManifest(o.String())
		if manifestErr != nil {
			manifestErr = fmt.Errorf("gen-manifest output: %v\n%s", manifestErr, o.String())
			return
		}
		manifestFile = filepath.Join(tmpRoot, "manifest.yaml")
		manifestErr = os.WriteFile(manifestFile, o.Bytes(), 0o644)
	})
	if manifestErr != nil {
		t.Fatal(manifestErr)
	}
	return manifestFile, manifestNames
}

func quoteMeta(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = regexp.QuoteMeta(n)
	}
	return out
}

// parseManifest reads the names and skb positions of a gen-manifest output:
//
//	functions:
//	  - name: ip_output
//	    skb_pos: 3
func parseManifest(s string) (map[string]int, error) {
	names := map[string]int{}
	cur := ""
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "-" && f[1] == "name:":
			cur = f[2]
			names[cur] = 0
		case len(f) == 2 && f[0] == "skb_pos:" && cur != "":
			n, err := strconv.Atoi(f[1])
			if err != nil {
				return nil, fmt.Errorf("skb_pos of %s: %v", cur, err)
			}
			names[cur] = n
		}
	}
	if len(names) == 0 {
		return nil, errors.New("no functions")
	}
	return names, nil
}

// tracerArgs are the arguments that say what to trace: the small manifest.
// With the tracepoint backend ipftrace traces the skb tracepoints whatever
// the manifest says.
func tracerArgs(t *testing.T, args ...string) []string {
	t.Helper()
	file, _ := manifest(t)
	return append(args, file)
}

// hasTracepoint reports whether this kernel has the skb tracepoint name,
// as "ipftrace -ls" lists it.
func hasTracepoint(t *testing.T, name string) bool {
	t.Helper()
	stdout, stderr, code := ipftrace(t, "-ls", "-r", "^"+regexp.QuoteMeta(name)+"$")
	switch {
	case code == 2 && strings.Contains(stderr, "matches no skb function or tracepoint"):
		return false
	case code != 0:
		t.Fatalf("ipftrace -ls -r %s: exit %d\n%s", name, code, stderr)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == name && f[1] == "tracepoint" {
			return true
		}
	}
	return false
}

// presentDrops returns the drop functions of this kernel (in the manifest).
func presentDrops(t *testing.T) []string {
	_, names := manifest(t)
	var out []string
	for _, d := range dropFuncs {
		if _, ok := names[d]; ok {
			out = append(out, d)
		}
	}
	return out
}
