package tracer

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/ipftrace/ipftrace/journey"
)

// dyingFuncs free the skb they are given unless someone else holds a
// reference (skb->users > 1): from here on, only release-path functions
// continue its journey. The BPF side checks skb->users.
var dyingFuncs = map[string]bool{
	"consume_skb":               true,
	"kfree_skb":                 true,
	"kfree_skb_reason":          true,
	"sk_skb_reason_drop":        true,
	"kfree_skb_list_reason":     true,
	"__kfree_skb":               true,
	"napi_consume_skb":          true,
	"__napi_kfree_skb":          true,
	"kfree_skb_partial":         true,
	"__consume_stateless_skb":   true,
	"skb_attempt_defer_free":    true,
	"skb_release_head_state":    true,
	"napi_skb_free_stolen_head": true,
	"__dev_kfree_skb_any":       true,
	"__dev_kfree_skb_irq":       true,
	"dev_kfree_skb_any_reason":  true,
	"dev_kfree_skb_irq_reason":  true,
}

// dyingTracepoints fire only when the skb is really freed (after the last
// reference is dropped, before the sk_buff is released), and no tracepoint
// follows on that skb: it is forgotten there. Left tracked as merely dying,
// the next skb at the address was taken into the journey at its own
// kfree_skb or consume_skb, of another flow and netns (e2e
// TestTrackAddressReuse, one run in five on a host with other traffic).
var dyingTracepoints = map[string]bool{"kfree_skb": true, "consume_skb": true}

// freeFuncs release the sk_buff itself: the skb is forgotten there.
var freeFuncs = map[string]bool{"kfree_skbmem": true, "napi_skb_cache_put": true}

// forgetFuncs are attached (quietly, emitting nothing) whenever tracking is
// on with a function backend and the user does not trace them anyway, so
// that a freed skb's address is never inherited by the next skb allocated
// there: kfree_skbmem and napi_skb_cache_put release the sk_buff,
// skb_release_head_state runs on every other free path (bulk frees of
// kfree_skb_list_reason, kfree_skb_partial with a stolen head).
var forgetFuncs = []string{"kfree_skbmem", "napi_skb_cache_put", "skb_release_head_state"}

// cloneFuncs return a clone or copy of their first argument; with tracking,
// the new skb joins the original's journey. pskb_copy is an inline wrapper
// of __pskb_copy_fclone.
var cloneFuncs = []string{"skb_clone", "skb_copy", "__pskb_copy_fclone", "skb_copy_expand"}

// baseName strips a compiler suffix such as ".isra.0".
func baseName(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return name[:i]
	}
	return name
}

// descFlags returns the DESC_* flags of a target from its name.
func descFlags(name string, tracepoint bool) uint64 {
	if tracepoint {
		if dyingTracepoints[name] {
			return descDying | descFree
		}
		return 0
	}
	name = baseName(name)
	var f uint64
	if dyingFuncs[name] {
		f |= descDying
	}
	if freeFuncs[name] {
		f |= descFree
	}
	if journey.IsReleaseName(name) {
		f |= descRelease
	}
	return f
}

// sockArg is the 1-based position of the struct sock * argument of
// functions (and tracepoints, sockArgTP) that see a locally sent skb before
// skb->sk is set: TCP sets it only on the clone it transmits, so the
// socket argument gives the original's flow.
var sockArg = map[string]int{
	"__tcp_transmit_skb":        1,
	"tcp_event_new_data_sent":   1,
	"tcp_rate_skb_sent":         1,
	"tcp_update_skb_after_send": 1,
	"tcp_fragment":              1,
	"tcp_retransmit_skb":        1,
	"__tcp_retransmit_skb":      1,
	"tcp_add_write_queue_tail":  1,
	"tcp_skb_entail":            1,
	"tcp_wmem_free_skb":         1,
	"tcp_v4_send_check":         1,
	"__ip_queue_xmit":           1,
	"ip_queue_xmit":             1,
	"inet6_csk_xmit":            1,
	"ip6_xmit":                  1,
}

// sockArgTP is sockArg for tracepoints.
var sockArgTP = map[string]int{"tcp_sendmsg_locked": 1, "tcp_retransmit_skb": 1}

// desc returns the descriptor of target id.
func (t *tracer) desc(id int) uint64 {
	tg := t.targets[id]
	reason, sock := 0, sockArgTP[tg.Name]
	if !tg.Tracepoint {
		reason = dropReasonArg[tg.Name]
		sock = sockArg[baseName(tg.Name)]
	}
	if t.cfg.NoTrack || sock > tg.NumArgs || sock > 6 {
		sock = 0
	}
	return descriptor(uint32(id), reason) | uint64(sock)<<44 | descSkbPos(tg.slot()) | descFlags(tg.Name, tg.Tracepoint)
}

// helperKind says what a helper program does.
type helperKind int

const (
	helperForget helperKind = iota // quiet entry probe: forget freed skbs
	helperClone                    // exit probe: a clone joins the journey
)

// helper is a program the tracer attaches for tracking, on top of the
// user's targets. Its function ID is len(targets) + its index.
type helper struct {
	kind helperKind
	name string
	id   int
	desc uint64
	addr uint64 // its address (kallsyms), 0 if unknown
}

// helperTemplates returns the shared kprobe (multi: kprobe-multi) templates
// a helper of kind attaches: the forget helpers' entry program, or the
// clone helpers' entry and return programs, in that order.
func helperTemplates(kind helperKind, multi bool) []string {
	switch {
	case kind == helperForget:
		return []string{kprobeTemplate(multi, 1)}
	case multi:
		return []string{"kprobe_multi_clone", "kretprobe_multi_clone"}
	}
	return []string{"kprobe_clone", "kretprobe_clone"}
}

// planHelpers picks the tracking helpers for the chosen backend. It returns
// a note for -v saying what tracking can and cannot do here.
func (t *tracer) planHelpers() string {
	if t.cfg.NoTrack {
		return "tracking off (--no-track): a packet is followed only while its headers match"
	}
	if t.backend == BackendTracepoint {
		return "tracking skbs by address; clones and copies are not followed: the tracepoint backend has no function-exit hooks (use fentry or kprobe-multi)"
	}
	traced := map[string]bool{}
	for _, tg := range t.targets {
		traced[tg.Name] = true
	}
	inScan := func(name string) bool {
		if t.cfg.Scan == nil {
			return false
		}
		fn, ok := t.cfg.Scan.Func(name)
		return ok && fn.SkbPos == 1 && fn.Module == ""
	}
	next := len(t.targets)
	add := func(kind helperKind, name string, flags uint64) {
		fn, _ := t.cfg.Scan.Func(name)
		t.helpers = append(t.helpers, helper{kind: kind, name: name, id: next,
			desc: descriptor(uint32(next), 0) | flags | descSkbPos(1), // the skb is argument 1
			addr: fn.Addr})
		next++
	}
	var forget, clones []string
	for _, name := range forgetFuncs {
		if !traced[name] && inScan(name) {
			add(helperForget, name, descQuiet|descFlags(name, false))
			forget = append(forget, name)
		}
	}
	for _, name := range cloneFuncs {
		if inScan(name) {
			add(helperClone, name, 0)
			clones = append(clones, name)
		}
	}
	note := "tracking skbs by address"
	if len(clones) > 0 {
		note += "; following clones and copies from " + strings.Join(clones, ", ")
	} else {
		note += "; clones and copies are not followed (no clone function found in BTF)"
	}
	if len(forget) > 0 {
		note += "; also watching " + strings.Join(forget, ", ") + " for frees"
	}
	return note
}

// attachHelpers attaches the tracking helpers. A helper that cannot be
// attached weakens tracking but does not stop tracing: it is reported.
func (t *tracer) attachHelpers(a *attachment) {
	var failed []string
	seen := map[string]bool{}
	fail := func(name string, err error) {
		if t.cfg.Verbose {
			t.verbosef("tracking helper %s: %v", name, err)
		}
		if !seen[name] {
			seen[name] = true
			failed = append(failed, fmt.Sprintf("%s (%s)", name, describeErr(err)))
		}
	}
	if t.backend == BackendKprobeMulti {
		t.attachMultiHelpers(a, fail)
	} else {
		for _, h := range t.helpers {
			if err := t.attachHelper(h, a); err != nil {
				fail(h.name, err)
			}
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: tracking: could not attach %s; clones or frees there are not seen\n", strings.Join(failed, ", "))
	}
}

// attachMultiHelpers attaches the helpers with kprobe-multi in at most
// three links (the forget helpers; the clone functions' entries; their
// returns), as attachKprobeMulti does the targets. A set the kernel refuses
// is attached helper by helper, so that the report names the ones that
// failed.
func (t *tracer) attachMultiHelpers(a *attachment, fail func(string, error)) {
	var forget, clones []helper
	for _, h := range t.helpers {
		if h.kind == helperForget {
			forget = append(forget, h)
		} else {
			clones = append(clones, h)
		}
	}
	forgetTmpl, cloneTmpls := helperTemplates(helperForget, true), helperTemplates(helperClone, true)
	for _, set := range []struct {
		template string
		ret      bool
		hs       []helper
	}{
		{forgetTmpl[0], false, forget},
		{cloneTmpls[0], false, clones},
		{cloneTmpls[1], true, clones},
	} {
		if len(set.hs) == 0 {
			continue
		}
		prog, err := t.objs.sharedProgram(set.template)
		if err == nil {
			err = multiHelperLink(prog, set.hs, set.ret, a)
		}
		if err == nil {
			continue
		}
		if len(set.hs) == 1 || prog == nil {
			for _, h := range set.hs {
				fail(h.name, err)
			}
			continue
		}
		for _, h := range set.hs {
			if err := multiHelperLink(prog, []helper{h}, set.ret, a); err != nil {
				fail(h.name, err)
			}
		}
	}
}

// multiHelperLink attaches prog to the helpers' functions in one
// kprobe-multi (ret: kretprobe-multi) link, each helper's descriptor as its
// cookie.
func multiHelperLink(prog *ebpf.Program, hs []helper, ret bool, a *attachment) error {
	var syms []string
	var addrs, cookies []uint64
	for _, h := range hs {
		syms = append(syms, h.name)
		addrs = append(addrs, h.addr)
		cookies = append(cookies, h.desc)
	}
	l, err := kprobeMulti(prog, syms, addrs, cookies, ret)
	if err != nil {
		return err
	}
	a.addLink(l)
	return nil
}

func (t *tracer) attachHelper(h helper, a *attachment) error {
	switch t.backend {
	case BackendFentry:
		tmpl, typ := "fentry_skb1", ebpf.AttachTraceFEntry
		if t.stubs {
			tmpl = "fentry_stub1"
		}
		if h.kind == helperClone {
			tmpl, typ = "fexit_clone", ebpf.AttachTraceFExit
		}
		// Helpers are vmlinux functions: raw clones, as the targets. Through
		// cilium/ebpf, one helper made it decode the kernel's whole BTF
		// (18 MB of the heap at the ready file).
		prog, err := t.objs.loadClone(tmpl, h.name, "", h.desc)
		if err != nil {
			return err
		}
		l, err := link.AttachTracing(link.TracingOptions{Program: prog, AttachType: typ})
		if err != nil {
			prog.Close()
			return err
		}
		a.addClone(l, prog)
		return nil
	case BackendKprobe:
		for i, tmpl := range helperTemplates(h.kind, false) {
			prog, err := t.objs.sharedProgram(tmpl)
			if err != nil {
				return err
			}
			var l link.Link
			if i == 1 {
				l, err = link.Kretprobe(h.name, prog, &link.KprobeOptions{Cookie: h.desc})
			} else {
				l, err = link.Kprobe(h.name, prog, &link.KprobeOptions{Cookie: h.desc})
			}
			if err != nil {
				return err
			}
			a.addLink(l)
		}
		return nil
	}
	return fmt.Errorf("no tracking helpers for backend %s", t.backend)
}

// trackStats reports what tracking could not keep: skbs the track table had
// no room for, and tracked skbs evicted by newer ones (both mean a journey
// may miss events after NAT or encapsulation). Call it with the programs
// disabled.
func (t *tracer) trackStats(acct *accounting) {
	if t.cfg.NoTrack {
		return
	}
	failed, err := acct.read(countTrackFail)
	if err != nil {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: tracking: %v\n", err)
		return
	}
	live, err := t.objs.readGlobal("track_live")
	if err != nil {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: tracking: %v\n", err)
		return
	}
	m := t.objs.maps["track"]
	if m == nil {
		fmt.Fprintln(t.cfg.Stderr, "ipftrace: tracking: no track map")
		return
	}
	left, err := countEntries(m)
	if err != nil {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: tracking: count tracked skbs: %v\n", err)
		return
	}
	evicted := live - int64(left)
	if failed > 0 || evicted > 0 {
		fmt.Fprintf(t.cfg.Stderr, "ipftrace: tracking: %d skbs evicted from the track table (%d entries), %d not tracked (no room); their journeys may miss events after a rewrite\n",
			max(evicted, 0), m.MaxEntries(), failed)
	}
	if t.cfg.Verbose {
		t.verbosef("tracking: %d skbs still tracked at exit", left)
	}
}

// countEntries counts the keys of a hash map.
func countEntries(m *ebpf.Map) (int, error) {
	var key, next uint64
	n := 0
	err := m.NextKey(nil, &next)
	for err == nil {
		n++
		key = next
		err = m.NextKey(&key, &next)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return n, nil
	}
	return n, err
}
