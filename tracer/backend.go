package tracer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Backend names, as given to -b/--backend.
const (
	BackendAuto        = "auto"
	BackendFentry      = "fentry"
	BackendKprobeMulti = "kprobe-multi"
	BackendKprobe      = "kprobe"
	BackendTracepoint  = "tracepoint"
)

// maxKprobeArg is the highest argument position a kprobe can read from
// pt_regs on x86-64.
const maxKprobeArg = 6

// maxFentryArg is the highest skb position the fentry templates cover.
const maxFentryArg = 12

// autoOrder is the order --backend auto tries the backends in, best first.
//
// kprobe-multi attaches and detaches the whole set in one call each and has
// the lowest per-packet floor in the 6.12 VM measurements (`make bench`), so
// it wins whenever the kernel has it. fentry comes next: its per-function
// load and its serialized detach (one RCU-tasks grace period per function)
// cost time, but it is cheaper per hit than a plain kprobe and reaches skb
// arguments beyond the sixth. The tracepoint backend is the fallback: it
// only sees the ~30 skb tracepoints.
var autoOrder = []string{BackendKprobeMulti, BackendFentry, BackendKprobe, BackendTracepoint}

// whyBest says why a backend was preferred over the ones after it.
var whyBest = map[string]string{
	BackendKprobeMulti: "attaches and detaches all functions in one call, lowest per-packet cost",
	BackendFentry:      "no kprobe-multi; fentry is cheaper per packet than kprobes",
	BackendKprobe:      "no kprobe-multi or fentry",
	BackendTracepoint:  "no function backend is usable; tracing the skb tracepoints only",
}

// describeErr turns an attach or load error into a short reason such as
// "not permitted (EPERM)".
func describeErr(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ebpf.ErrNotSupported):
		return "not supported by this kernel"
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return "not permitted (" + errnoName(err) + ")"
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return "not found (" + errnoName(err) + ")"
	}
	if name := errnoName(err); name != "" {
		return name
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// errnoName returns the symbolic name of the errno wrapped in err, or "".
func errnoName(err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	if errno == 524 {
		return "ENOTSUPP"
	}
	name := unix.ErrnoName(errno)
	if name == "" {
		return fmt.Sprintf("errno %d", int(errno))
	}
	return name
}

// probeBackend checks that the kernel lets us load and attach a program of
// the given backend, using one real target.
func (t *tracer) probeBackend(name string) error {
	switch name {
	case BackendFentry:
		f, ok := t.probeFunc(maxFentryArg)
		if !ok {
			return errors.New("no function to probe")
		}
		prog, err := t.objs.loadProgram(fentryTemplate(f), f.Name, descriptor(0, 0), true)
		if err != nil {
			return err
		}
		prog.Close()
		return nil
	case BackendKprobeMulti, BackendKprobe:
		f, ok := t.probeFunc(maxKprobeArg)
		if !ok {
			return errors.New("no function with its skb in the first 6 arguments")
		}
		tmpl := fmt.Sprintf("kprobe_skb%d", f.slot())
		if name == BackendKprobeMulti {
			tmpl = fmt.Sprintf("kprobe_multi_skb%d", f.slot())
		}
		prog, err := t.objs.loadProgram(tmpl, "", 0, false)
		if err != nil {
			return err
		}
		defer prog.Close()
		var l link.Link
		if name == BackendKprobeMulti {
			l, err = link.KprobeMulti(prog, link.KprobeMultiOptions{Symbols: []string{f.Name}, Cookies: []uint64{0}})
		} else {
			l, err = link.Kprobe(f.Name, prog, &link.KprobeOptions{Cookie: 0})
		}
		if err != nil {
			return err
		}
		return l.Close()
	case BackendTracepoint:
		if len(t.cfg.Tracepoints) == 0 {
			return errors.New("no skb tracepoints found")
		}
		tp := t.cfg.Tracepoints[0]
		prog, err := t.objs.loadProgram(tpTemplate(tp), tp.Name, descriptor(0, 0), true)
		if err != nil {
			return err
		}
		prog.Close()
		return nil
	}
	return fmt.Errorf("unknown backend %q", name)
}

// probeFunc picks a function to probe a backend with: a common one if the job
// has it, otherwise the first one within reach.
func (t *tracer) probeFunc(maxPos int) (Target, bool) {
	var first *Target
	for i := range t.cfg.Funcs {
		f := &t.cfg.Funcs[i]
		if f.slot() > maxPos || f.Module != "" {
			continue
		}
		switch f.Name {
		case "consume_skb", "ip_rcv", "__dev_queue_xmit", "kfree_skb_partial":
			return *f, true
		}
		if first == nil {
			first = f
		}
	}
	if first == nil {
		return Target{}, false
	}
	return *first, true
}

// chooseBackend resolves --backend. For auto it probes the candidates in
// autoOrder and returns the first that works, with a one-line explanation
// that names why each better one was skipped.
func (t *tracer) chooseBackend() (string, string, error) {
	want := t.cfg.Backend
	if want == "" {
		want = BackendAuto
	}
	if want != BackendAuto {
		if want != BackendTracepoint && len(t.cfg.Funcs) == 0 {
			return "", "", fmt.Errorf("backend %s: no functions to trace", want)
		}
		if err := t.probeBackend(want); err != nil {
			return "", "", fmt.Errorf("backend %s: %s", want, describeErr(err))
		}
		return want, "requested with --backend", nil
	}
	var skipped []string
	for _, name := range autoOrder {
		if name != BackendTracepoint && len(t.cfg.Funcs) == 0 {
			skipped = append(skipped, name+": no functions to trace")
			continue
		}
		err := t.probeBackend(name)
		if err != nil {
			skipped = append(skipped, name+": "+describeErr(err))
			if t.cfg.Verbose {
				fmt.Fprintf(t.cfg.Stderr, "ipftrace: probe %s: %v\n", name, err)
			}
			continue
		}
		why := whyBest[name]
		if len(skipped) > 0 {
			why += "; skipped " + strings.Join(skipped, ", ")
		}
		return name, why, nil
	}
	return "", "", fmt.Errorf("no usable backend: %s", strings.Join(skipped, ", "))
}
