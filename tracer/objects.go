package tracer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/btfscan"
	"github.com/ipftrace/ipftrace/filter"
)

// descMarker is the ld_imm64 constant in the fentry and tp_btf templates that
// each clone replaces with its function's descriptor (see bpf/ipftrace.c).
const descMarker = 0x1badc0de5eedf00d

// descriptor packs a function ID and the position of its drop-reason
// argument (0: none) the way the BPF side unpacks them. tracer.desc adds
// the flags below, the socket argument's position (bits 44..47) and the
// skb's (bits 48..51, read by kprobe_multi_skb_any).
func descriptor(id uint32, reasonPos int) uint64 {
	return uint64(id) | uint64(reasonPos&0xff)<<32
}

// descSkbPos is the descriptor field holding the skb's 1-based argument
// position (bits 48..51), which kprobe_multi_skb_any reads.
func descSkbPos(pos int) uint64 { return uint64(pos&0xf) << 48 }

// Descriptor flags, the DESC_* of bpf/ipftrace.c.
const (
	descDying   uint64 = 1 << 40 // the skb is freed here unless shared
	descFree    uint64 = 1 << 41 // the sk_buff is released here: forget it
	descRelease uint64 = 1 << 42 // a release-path function (journey.IsReleaseName)
	descQuiet   uint64 = 1 << 43 // only forget skbs, emit no event
)

// objects holds the maps every program shares and the specs the programs
// are cloned from.
type objects struct {
	spec      *ebpf.CollectionSpec // the maps' object: maps, globals, and the mapsGroup programs
	mapsGroup bpf.Group            // the group spec is of: the maps and globals are created from it
	maps      map[string]*ebpf.Map
	cache     *btf.Cache

	consts   constants     // the run's load-time constants (consts.cast: the kernel has bpf_rdonly_cast)
	core     *btfscan.CORE // the scan's kernel types and kfuncs; nil: cilium/ebpf reads the kernel's BTF
	coreSpec *btf.Spec     // core.BTF, parsed
	btfMu    sync.RWMutex  // held exclusively by loads that read module BTF (see loadProgram)
	mu       sync.Mutex
	groups   map[bpf.Group]*group // prepared program groups, by first use
	released bool                 // under mu: releaseTemplates was called, no more loads (group)

	fill asm.Instructions // body of fill_data from the -m modules; nil: the compiled stub

	progMu  sync.Mutex
	progs   map[string]*ebpf.Program // shared programs, by template (sharedProgram)
	loading map[string]*sharedLoad   // shared programs being loaded, by template
	loads   sync.WaitGroup           // the loads of sharedProgram in flight (Close, releaseTemplates wait)

	rawMu       sync.Mutex
	raw         map[string]*rawTemplate // per-function templates marshalled for cloning (loadClone); nil entry: not possible
	rawFailed   int                     // clones whose raw template could not be built, loaded by loadProgram
	rawFirstErr error                   // the first of them
	attachIDs   map[string]btf.TypeID   // vmlinux BTF IDs of the attach targets (btfscan.AttachIDs); a name not in it is loaded by loadProgram
	protos      map[string]btf.TypeID   // the FUNC_PROTO ID of each function in attachIDs (fentry: shared handlers)
	modBTF      map[string]*btf.Handle  // loaded modules' BTF objects, by module (moduleBTF); nil: not found
}

// newObjects loads the collection spec of group g (the first the run
// will load programs of: it is parsed anyway), sets the filter and tracking
// constants and creates the shared maps (ring buffer, lost counters, the
// track table, constants, the stop flag). fill is the body of fill_data
// generated from the -m modules (nil: none). validate sets track_validate
// (the tracepoint backend, which does not see every free, needs it);
// ringSize is the ring buffer's size in bytes (0: the object's, 8 MiB).
//
// core is the scan's copy of the kernel types and kfuncs (nil: none): with
// it, the programs are relocated here, once per template, and no load
// parses the kernel's whole BTF unless it names a function or tracepoint
// to attach to (fentry, tp_btf).
func newObjects(g bpf.Group, f filter.Filter, fill asm.Instructions, track, validate bool, ringSize int, cache *btf.Cache, core *btfscan.CORE) (*objects, error) {
	var coreSpec *btf.Spec
	var cast bool
	if core != nil {
		var err error
		if coreSpec, err = core.Spec(); err != nil {
			return nil, err
		}
		_, cast = core.Kfuncs["bpf_rdonly_cast"]
		cast = cast && hasStructs(coreSpec, castTypes)
	} else {
		cast = kernelCanCast(cache)
	}
	spec, err := groupSpec(g)
	if err != nil {
		return nil, err
	}
	c := constants{filter: f, track: track, validate: validate, cast: cast, modules: fill != nil,
		ringSize: ringSize, hooks: readTestHooks()}
	if err := c.apply(spec); err != nil {
		return nil, err
	}
	prepare(spec, c.cast)
	if err := relocateCORE(spec, core, coreSpec); err != nil {
		return nil, fmt.Errorf("BPF object of the %v programs: %w", g, err)
	}
	mapsOnly := &ebpf.CollectionSpec{
		Maps:      spec.Maps,
		Variables: spec.Variables,
		Types:     spec.Types,
		ByteOrder: spec.ByteOrder,
	}
	coll, err := ebpf.NewCollectionWithOptions(mapsOnly, ebpf.CollectionOptions{Cache: cache})
	if err != nil {
		return nil, fmt.Errorf("create BPF maps: %w", err)
	}
	return &objects{
		spec: spec, maps: coll.Maps, cache: cache, consts: c, fill: fill,
		core: core, coreSpec: coreSpec, mapsGroup: g,
		groups: map[bpf.Group]*group{g: {spec: spec, maps: coll.Maps}},
		raw:    map[string]*rawTemplate{},
	}, nil
}

// constants are what a run sets in a BPF object before it loads it: the
// load-time constants (.rodata) and the ring buffer's size.
type constants struct {
	filter                         filter.Filter
	track, validate, cast, modules bool
	ringSize                       int       // the events ring buffer in bytes; 0: the object's
	hooks                          testHooks // hidden test hooks (sk_each_field; setFlag)
}

// apply sets the constants in spec.
func (c constants) apply(spec *ebpf.CollectionSpec) error {
	if err := setFilter(spec, c.filter); err != nil {
		return err
	}
	if err := setTrack(spec, c.track, c.validate); err != nil {
		return err
	}
	if err := setBool(spec, "use_cast", c.cast); err != nil {
		return err
	}
	if err := setBool(spec, "sk_each_field", c.hooks.skEachField); err != nil {
		return err
	}
	if c.ringSize > 0 {
		ms := spec.Maps["events"]
		if ms == nil {
			return errors.New("BPF object has no map events")
		}
		ms.MaxEntries = uint32(c.ringSize)
	}
	return setBool(spec, "modules_on", c.modules)
}

// prepare readies the programs of spec for cloning: without use_cast, kfunc
// calls become r0 = 0 (dead code then, but cilium/ebpf would look each
// missing kfunc up in every BTF object of the kernel at every load); and the
// BTF line info goes, which every clone would otherwise carry into its own
// BTF blob for the kernel to parse and check.
func prepare(spec *ebpf.CollectionSpec, cast bool) {
	if !cast {
		dropKfuncCalls(spec)
	}
	for _, ps := range spec.Programs {
		for i := range ps.Instructions {
			ps.Instructions[i] = ps.Instructions[i].WithSource(nil)
		}
	}
}

// group returns program group g, ready for cloning, parsing its object
// and creating its .rodata map on first use.
func (o *objects) group(g bpf.Group) (*group, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.released {
		return nil, errReleased
	}
	if gr, ok := o.groups[g]; ok {
		return gr, nil
	}
	spec, err := groupSpec(g)
	if err != nil {
		return nil, err
	}
	// After apply, which sizes the ring buffer as the maps' object's.
	if err := o.consts.apply(spec); err != nil {
		return nil, fmt.Errorf("BPF object of the %v programs: %w", g, err)
	}
	if err := sameLayout(o.spec, spec); err != nil {
		return nil, fmt.Errorf("BPF object of the %v programs: %w", g, err)
	}
	prepare(spec, o.consts.cast)
	if err := relocateCORE(spec, o.core, o.coreSpec); err != nil {
		return nil, fmt.Errorf("BPF object of the %v programs: %w", g, err)
	}
	rodata, ok := spec.Maps[".rodata"]
	if !ok {
		return nil, fmt.Errorf("BPF object of the %v programs has no .rodata", g)
	}
	// Created as a collection, so that cilium/ebpf sets the flags it sets
	// on data sections and later checks the replacement for.
	vars := make(map[string]*ebpf.VariableSpec)
	for name, v := range spec.Variables {
		if v.SectionName == ".rodata" {
			vars[name] = v
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(&ebpf.CollectionSpec{
		Maps:      map[string]*ebpf.MapSpec{".rodata": rodata},
		Variables: vars,
		Types:     spec.Types,
		ByteOrder: spec.ByteOrder,
	}, ebpf.CollectionOptions{Cache: o.cache})
	if err != nil {
		return nil, fmt.Errorf("create .rodata of the %v programs: %w", g, err)
	}
	m := coll.Maps[".rodata"]
	ms := maps.Clone(o.maps)
	ms[".rodata"] = m
	gr := &group{spec: spec, maps: ms}
	o.groups[g] = gr
	return gr, nil
}

// group is a program group ready for cloning: its spec, with the
// constants set, and the maps its programs use. Those are o.maps, but for
// the constants: clang lays .rodata out in a different order in each object
// (by first use), so each group has a .rodata map of its own, with the same
// values.
type group struct {
	spec *ebpf.CollectionSpec
	maps map[string]*ebpf.Map
}

// errReleased is the error of a load after releaseTemplates.
var errReleased = errors.New("program templates already released")

// releaseTemplates drops what only loads need: the groups' programs and
// types, the raw templates, the kernel's BTF, and the process's parsed
// objects. The run calls it once every program is loaded and attached;
// what stays (the maps, the globals' offsets) is what the trace needs. Any
// later load fails with errReleased: every load, raw template or not,
// passes through group, and reads o.cache only after it.
func (o *objects) releaseTemplates() {
	o.loads.Wait()
	o.mu.Lock()
	o.released = true
	o.cache = nil
	for _, gr := range o.groups {
		gr.spec.Programs = nil
		gr.spec.Types = nil
	}
	o.mu.Unlock()
	o.rawMu.Lock()
	for _, rt := range o.raw {
		rt.close()
	}
	o.raw = nil
	o.rawMu.Unlock()
	forgetShared()
}

// Close releases the maps and the shared programs. Links keep their own
// references.
func (o *objects) Close() {
	o.loads.Wait()
	o.progMu.Lock()
	for _, p := range o.progs {
		p.Close()
	}
	o.progs = nil
	o.progMu.Unlock()
	o.rawMu.Lock()
	for _, rt := range o.raw {
		rt.close()
	}
	o.raw = nil
	for _, h := range o.modBTF {
		if h != nil {
			h.Close()
		}
	}
	o.modBTF = nil
	o.rawMu.Unlock()
	for _, m := range o.maps {
		m.Close()
	}
	for g, gr := range o.groups {
		if g != o.mapsGroup {
			gr.maps[".rodata"].Close()
		}
	}
}

// loadClone loads a clone of an fentry or tp_btf template for target
// attachTo with descriptor desc. A target in vmlinux with an ID in
// attachIDs is loaded from the template's raw form (rawTemplate) when the
// run has the scan's types, and a refusal is reported with the verifier's
// last line, as cilium/ebpf words it. Anything else goes through
// loadProgram.
func (o *objects) loadClone(template, attachTo, module string, desc uint64) (*ebpf.Program, error) {
	id, ok := o.attachIDs[attachTo]
	return o.loadCloneID(template, attachTo, module, desc, id, ok)
}

// loadCloneID is loadClone with the target's BTF ID given (ok: known); a
// target in a module has an ID in the module's split BTF.
func (o *objects) loadCloneID(template, attachTo, module string, desc uint64, id btf.TypeID, ok bool) (*ebpf.Program, error) {
	var obj *btf.Handle
	if ok && module != "" {
		var err error
		if obj, err = o.moduleBTF(module); err != nil {
			ok = false // cilium/ebpf finds the module itself, or says why not
		}
	}
	if ok && o.core != nil {
		rt, err := o.rawTemplate(template)
		if err == nil && rt != nil {
			// The kernel's answer stands: through cilium/ebpf a refused
			// clone was refused again, after decoding its target's types
			// (tens of MB for the few functions fentry cannot attach).
			p, err := rt.load(desc, id, obj)
			if err != nil {
				return nil, fmt.Errorf("program %s: %w", template, err)
			}
			return p, nil
		}
		if err != nil {
			o.rawMu.Lock()
			if o.rawFailed++; o.rawFirstErr == nil {
				o.rawFirstErr = err
			}
			o.rawMu.Unlock()
		}
	}
	return o.loadProgram(template, attachTo, module != "", desc, !unpatchedTemplate(template))
}

// moduleBTF returns the BTF object of a loaded kernel module, which a load
// for a target in the module names besides the target's ID. It is opened
// on first use and closed by Close.
func (o *objects) moduleBTF(module string) (*btf.Handle, error) {
	o.rawMu.Lock()
	defer o.rawMu.Unlock()
	if h, ok := o.modBTF[module]; ok {
		if h == nil {
			return nil, fmt.Errorf("no BTF object for module %s", module)
		}
		return h, nil
	}
	h, err := btf.FindHandle(func(info *btf.HandleInfo) bool { return info.IsModule() && info.Name == module })
	if o.modBTF == nil {
		o.modBTF = map[string]*btf.Handle{}
	}
	o.modBTF[module] = h // nil after an error: not searched again
	if err != nil {
		return nil, fmt.Errorf("BTF object of module %s: %w", module, err)
	}
	return h, nil
}

// rawFailures returns how many clones could not use their raw template
// (each then went through loadProgram), and the first error.
func (o *objects) rawFailures() (int, error) {
	o.rawMu.Lock()
	defer o.rawMu.Unlock()
	return o.rawFailed, o.rawFirstErr
}

// loadProgram loads a clone of the named template. For fentry and tp_btf,
// attachTo names the target, inModule says whether it is in a kernel
// module, and desc is patched in; for kprobes they are unused.
//
// Loads run in parallel, except those whose target is in a module: with
// cilium/ebpf v0.22 a module's split BTF inflates types of the shared
// vmlinux BTF without holding the vmlinux decoder's lock (btf/unmarshal.go,
// inflateType: the split decoder calls base.inflateType directly, and the
// deferred typeIDs write happens even for a cached type), which crashed a
// 6.1 fentry --auto run with "concurrent map writes". Those loads take
// btfMu exclusively; all others share it. The report for upstream, with a
// reproducer: docs/upstream/cilium-ebpf-split-btf-race.md.
func (o *objects) loadProgram(template, attachTo string, inModule bool, desc uint64, patch bool) (*ebpf.Program, error) {
	gr, ps, err := o.cloneSpec(template)
	if err != nil {
		return nil, err
	}
	if attachTo != "" {
		ps.AttachTo = attachTo
	}
	if patch {
		if err := patchDescriptor(ps.Instructions, desc); err != nil {
			return nil, fmt.Errorf("%s: %w", template, err)
		}
	}
	gs := gr.spec
	cs := &ebpf.CollectionSpec{
		Maps:      gs.Maps,
		Programs:  map[string]*ebpf.ProgramSpec{template: ps},
		Types:     gs.Types,
		ByteOrder: gs.ByteOrder,
	}
	if inModule {
		o.btfMu.Lock()
		defer o.btfMu.Unlock()
	} else {
		o.btfMu.RLock()
		defer o.btfMu.RUnlock()
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{
		MapReplacements: gr.maps,
		Cache:           o.cache,
	})
	if err != nil {
		return nil, err
	}
	defer coll.Close()
	return coll.DetachProgram(template), nil
}

// cloneSpec returns the group of template and a copy of the template's
// spec with fill_data set for this run (the -m modules' body, or removed).
func (o *objects) cloneSpec(template string) (*group, *ebpf.ProgramSpec, error) {
	gr, err := o.group(templateGroup(template))
	if err != nil {
		return nil, nil, err
	}
	tmpl, ok := gr.spec.Programs[template]
	if !ok {
		return nil, nil, fmt.Errorf("no BPF program template %s", template)
	}
	ps := tmpl.Copy()
	insns := ps.Instructions
	switch {
	case !hasFunc(insns, fillFunc):
		// A program that emits no event (the kprobe clone stash).
	case o.fill != nil:
		insns, err = replaceFunc(ps.Instructions, fillFunc, o.fill)
	default:
		insns, err = removeFunc(ps.Instructions, fillFunc, asm.Mov.Imm(asm.R0, 1))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", template, err)
	}
	ps.Instructions = insns
	return gr, ps, nil
}

// multiOwnProgs is how many skb positions (1..) have a kprobe-multi program
// of their own; the others share kprobe_multi_skb_any (see bpf/ipftrace.c).
const multiOwnProgs = 3

// kprobeProgram returns the kprobe or kprobe-multi program for skb position
// pos. It is shared: see sharedProgram.
func (o *objects) kprobeProgram(multi bool, pos int) (*ebpf.Program, error) {
	return o.sharedProgram(kprobeTemplate(multi, pos))
}

// kprobeTemplate names the kprobe or kprobe-multi template for skb
// position pos.
func kprobeTemplate(multi bool, pos int) string {
	switch {
	case multi && pos <= multiOwnProgs:
		return fmt.Sprintf("kprobe_multi_skb%d", pos)
	case multi:
		return "kprobe_multi_skb_any"
	}
	return fmt.Sprintf("kprobe_skb%d", pos)
}

// sharedProgram returns the program of a template that takes everything
// per function from the attach cookie (the kprobe templates), loaded on
// first use: the backend probe, the targets and the tracking helpers all
// attach the same program. A call for a template that is being loaded (see
// preload) waits for that load. Close closes it; callers must not.
func (o *objects) sharedProgram(template string) (*ebpf.Program, error) {
	p, l, mine := o.claimShared(template)
	if p != nil {
		return p, nil
	}
	if mine {
		o.loadShared(template, l)
	}
	<-l.done
	return l.prog, l.err
}

// sharedLoad is a load of a shared program, in flight or queued.
type sharedLoad struct {
	done chan struct{} // closed when prog and err are set
	prog *ebpf.Program
	err  error
}

// claimShared returns template's shared program if it is loaded, else its
// load: one in flight, or a new one that the caller must run (mine) with
// loadShared.
func (o *objects) claimShared(template string) (p *ebpf.Program, l *sharedLoad, mine bool) {
	o.progMu.Lock()
	defer o.progMu.Unlock()
	if p, ok := o.progs[template]; ok {
		return p, nil, false
	}
	if l, ok := o.loading[template]; ok {
		return nil, l, false
	}
	l = &sharedLoad{done: make(chan struct{})}
	if o.loading == nil {
		o.loading = map[string]*sharedLoad{}
	}
	o.loading[template] = l
	o.loads.Add(1)
	return nil, l, true
}

// loadShared runs a load claimShared returned. A failed load is not kept:
// the next call tries again.
func (o *objects) loadShared(template string, l *sharedLoad) {
	defer o.loads.Done()
	l.prog, l.err = o.loadProgram(template, "", false, 0, false)
	o.progMu.Lock()
	delete(o.loading, template)
	if l.err == nil {
		if o.progs == nil {
			o.progs = map[string]*ebpf.Program{}
		}
		o.progs[template] = l.prog
	}
	o.progMu.Unlock()
	close(l.done)
}

// preload starts loading the shared programs of templates in the
// background, at most workers() at a time, in the order given; a
// sharedProgram call for one of them waits for its load from the moment
// preload returns. The attach takes them with sharedProgram, and reports
// an error there. Each load is tens of milliseconds of verifier work under
// emulation, and a kprobe-multi attach needs six of them: loaded one after
// the other, between its link attaches, they kept all but one CPU idle.
//
// Close and releaseTemplates wait for the loads.
func (o *objects) preload(templates []string) {
	type queued struct {
		template string
		l        *sharedLoad
	}
	var queue []queued
	for _, tmpl := range templates {
		if _, l, mine := o.claimShared(tmpl); mine {
			queue = append(queue, queued{tmpl, l})
		}
	}
	go func() {
		sem := make(chan struct{}, workers())
		for _, q := range queue {
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				o.loadShared(q.template, q.l)
			}()
		}
	}()
}

// castTypes are the kernel structs read_hdr casts packet headers to
// (bpf/ipftrace.c): use_cast needs them as well as the kfunc.
var castTypes = []string{"in6_addr", "kernel_cpustat"}

// hasStructs reports whether spec has a struct of each of names.
func hasStructs(spec *btf.Spec, names []string) bool {
	if spec == nil {
		return false
	}
	for _, n := range names {
		var s *btf.Struct
		if spec.TypeByName(n, &s) != nil {
			return false
		}
	}
	return true
}

// kernelCanCast reports whether the kernel's BTF has the kfunc
// bpf_rdonly_cast and the castTypes (false if the BTF cannot be read: the
// loads that need it will say why).
func kernelCanCast(cache *btf.Cache) bool {
	spec, err := cache.Kernel()
	if err != nil {
		return false
	}
	var fn *btf.Func
	return spec.TypeByName("bpf_rdonly_cast", &fn) == nil && hasStructs(spec, castTypes)
}

// fillFunc is the subprogram of bpf/ipftrace.c whose body the module code
// replaces.
const fillFunc = "fill_data"

// replaceFunc returns insns with the body of subprogram name replaced by
// body. The first instruction keeps the symbol and the BTF function info.
func replaceFunc(insns asm.Instructions, name string, body asm.Instructions) (asm.Instructions, error) {
	start, end, err := funcRange(insns, name)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, fmt.Errorf("empty body for %s", name)
	}
	out := make(asm.Instructions, 0, len(insns)-(end-start)+len(body))
	out = append(out, insns[:start]...)
	first := body[0]
	first.Metadata = insns[start].Metadata
	out = append(out, first)
	out = append(out, body[1:]...)
	return append(out, insns[end:]...), nil
}

// removeFunc returns insns without subprogram name, each call to it
// replaced by ret (an instruction that sets R0 as the call would). It
// keeps programs that do not need a subprogram a single function: the
// kernel JITs each function of a program separately.
func removeFunc(insns asm.Instructions, name string, ret asm.Instruction) (asm.Instructions, error) {
	start, end, err := funcRange(insns, name)
	if err != nil {
		return nil, err
	}
	out := make(asm.Instructions, 0, len(insns)-(end-start))
	for i, ins := range insns {
		if i >= start && i < end {
			continue
		}
		if ins.IsFunctionCall() && ins.Reference() == name {
			r := ret
			r.Metadata = ins.Metadata
			ins = r.WithReference("")
		}
		out = append(out, ins)
	}
	return out, nil
}

// funcRange returns the instructions [start, end) of subprogram name.
// hasFunc reports whether insns contain the subprogram name.
func hasFunc(insns asm.Instructions, name string) bool {
	_, _, err := funcRange(insns, name)
	return err == nil
}

func funcRange(insns asm.Instructions, name string) (int, int, error) {
	start := -1
	for i := range insns {
		if insns[i].Symbol() == name {
			start = i
			break
		}
	}
	if start < 0 {
		return 0, 0, fmt.Errorf("no subprogram %s", name)
	}
	end := len(insns)
	for i := start + 1; i < len(insns); i++ {
		if insns[i].Symbol() != "" {
			end = i
			break
		}
	}
	return start, end, nil
}

// isDescMarker reports whether ins is the ld_imm64 of descMarker.
func isDescMarker(ins *asm.Instruction) bool {
	return ins.OpCode.IsDWordLoad() && ins.Src == 0 && uint64(ins.Constant) == descMarker
}

// patchDescriptor replaces every descMarker ld_imm64 constant with desc.
func patchDescriptor(insns asm.Instructions, desc uint64) error {
	n := 0
	for i := range insns {
		if isDescMarker(&insns[i]) {
			insns[i].Constant = int64(desc)
			n++
		}
	}
	if n == 0 {
		return errors.New("descriptor marker not found")
	}
	return nil
}

// setFilter writes the flow filter into the load-time constants.
func setFilter(spec *ebpf.CollectionSpec, f filter.Filter) error {
	set := func(name string, v any) error {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("BPF object has no variable %s", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	}
	c := encodeFilter(f)
	for _, kv := range []struct {
		name string
		v    any
	}{
		{"f_ipversion", c.ipversion},
		{"f_proto_set", c.protoSet},
		{"f_proto", c.proto},
		{"f_saddr_ver", c.saddr.ver},
		{"f_saddr", c.saddr.addr},
		{"f_saddr_mask", c.saddr.mask},
		{"f_daddr_ver", c.daddr.ver},
		{"f_daddr", c.daddr.addr},
		{"f_daddr_mask", c.daddr.mask},
		{"f_sport_set", c.sportSet},
		{"f_sport", c.sport},
		{"f_dport_set", c.dportSet},
		{"f_dport", c.dport},
	} {
		if err := set(kv.name, kv.v); err != nil {
			return err
		}
	}
	return nil
}

// dropKfuncCalls replaces every kfunc call of the programs with r0 = 0.
// Without use_cast they are dead code the verifier never visits, but
// cilium/ebpf would look each missing kfunc up at every load, and that
// lookup walks every BTF object in the kernel, one per loaded program
// among them: fentry loads on 6.1 took twice as long.
func dropKfuncCalls(spec *ebpf.CollectionSpec) {
	for _, ps := range spec.Programs {
		for i, ins := range ps.Instructions {
			if ins.IsKfuncCall() {
				ps.Instructions[i] = asm.Mov.Imm(asm.R0, 0).WithSymbol(ins.Symbol())
			}
		}
	}
}

// setBool sets the u8 load-time constant name to b.
func setBool(spec *ebpf.CollectionSpec, name string, b bool) error {
	vs, ok := spec.Variables[name]
	if !ok {
		return fmt.Errorf("BPF object has no variable %s", name)
	}
	var v uint8
	if b {
		v = 1
	}
	if err := vs.Set(v); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}

// setTrack sets the track_enabled (--no-track clears it) and
// track_validate constants.
func setTrack(spec *ebpf.CollectionSpec, on, validate bool) error {
	if err := setBool(spec, "track_enabled", on); err != nil {
		return err
	}
	return setBool(spec, "track_validate", validate)
}

// readGlobal reads the 8-byte global variable name from its data section map.
func (o *objects) readGlobal(name string) (int64, error) {
	v, ok := o.spec.Variables[name]
	if !ok {
		return 0, fmt.Errorf("BPF object has no variable %s", name)
	}
	m := o.maps[v.SectionName]
	if m == nil {
		return 0, fmt.Errorf("no map for section %s", v.SectionName)
	}
	val := make([]byte, m.ValueSize())
	if err := m.Lookup(uint32(0), &val); err != nil {
		return 0, fmt.Errorf("read %s: %w", v.SectionName, err)
	}
	off := int(v.Offset)
	if off+8 > len(val) {
		return 0, fmt.Errorf("%s at %d beyond %s", name, off, v.SectionName)
	}
	return int64(binary.NativeEndian.Uint64(val[off:])), nil
}

// setDisabled sets ipft_disabled, which makes every program return at once
// while it is set, or clears it. It writes the 4 bytes in place through the
// section's memory mapping: a map update would rewrite the whole section,
// and could undo what running programs wrote meanwhile to the variables
// beside it (track_live). Without the mapping (before Linux 5.5) it does
// rewrite the section: stopping the programs matters more.
func (o *objects) setDisabled(disabled bool) error {
	return o.setFlag("ipft_disabled", disabled, true)
}

// setReaderIdle sets or clears ipft_reader_idle, which makes the programs
// wake the reader at every event. It fails without the section's memory
// mapping: the reader then keeps polling.
func (o *objects) setReaderIdle(idle bool) error {
	return o.setFlag("ipft_reader_idle", idle, false)
}

// setFlag writes the u32 variable name (1 or 0) in place, or with rewrite,
// failing that, by rewriting its section.
func (o *objects) setFlag(name string, on, rewrite bool) error {
	v, ok := o.spec.Variables[name]
	if !ok {
		return fmt.Errorf("BPF object has no variable %s", name)
	}
	m := o.maps[v.SectionName]
	if m == nil {
		return fmt.Errorf("no map for section %s", v.SectionName)
	}
	off := int(v.Offset)
	if off+4 > int(m.ValueSize()) {
		return fmt.Errorf("%s at %d beyond %s", name, off, v.SectionName)
	}
	var flag [4]byte
	if on {
		binary.NativeEndian.PutUint32(flag[:], 1)
	}
	mem, err := m.Memory()
	if o.consts.hooks.noMmap {
		err = fmt.Errorf("memory mapping not used (%s): %w", NoMmapEnv, ebpf.ErrNotSupported)
	}
	if err == nil {
		_, err = mem.WriteAt(flag[:], int64(off))
		return err
	}
	if !rewrite {
		return fmt.Errorf("%s: %w", name, err)
	}
	val := make([]byte, m.ValueSize())
	if err := m.Lookup(uint32(0), &val); err != nil {
		return fmt.Errorf("read %s: %w", v.SectionName, err)
	}
	copy(val[off:], flag[:])
	return m.Update(uint32(0), val, ebpf.UpdateAny)
}
