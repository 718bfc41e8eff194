package journey

import (
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultLength      = 80                    // events per journey
	DefaultIdle        = time.Second           // idle timeout
	DefaultMaxInFlight = 65536                 // in-flight table bound
	DefaultMaxEvents   = 1 << 18               // event slots held across the in-flight table
	DefaultLinger      = 50 * time.Millisecond // closing-state linger after egress
)

// Role says what a function means to a journey; a function may have several.
type Role uint8

// The roles of a function.
const (
	// Egress: the function ends a journey.
	Egress Role = 1 << iota
	// Release: the function belongs to the skb release path that runs
	// after an egress function on the same skb (see IsReleaseName).
	Release
	// Start: a packet starts a pass through a device at the function (see
	// IsStartName). A journey that already passed it on the same skb, netns
	// and device ends there (EndReuse), and the event starts a new journey.
	Start
)

// Config tunes an Assembler. The zero value of every field selects its default.
type Config struct {
	// Length ends a journey once it recorded this many events
	// (DefaultLength if <= 0).
	Length int
	// Idle ends a journey whose skb had no event for this long
	// (DefaultIdle if <= 0). It is measured in event time (against the
	// newest event seen by Add) and against the clock passed to Tick.
	Idle time.Duration
	// MaxInFlight bounds the number of journeys held (in flight or
	// closing); when the table is full the least recently active journey
	// is emitted early (End evict, or egress for a closing journey)
	// (DefaultMaxInFlight if <= 0).
	MaxInFlight int
	// MaxEvents bounds the event slots (the capacity of the journeys'
	// event slices) held across all journeys in flight or closing, and
	// with it the Assembler's memory: an Event is 200 bytes. Past it, the
	// least recently active journeys are emitted early as for MaxInFlight
	// (DefaultMaxEvents if <= 0). MaxInFlight alone did not bound memory:
	// a flood held 65536 journeys of 16 or more slots each, 100 MB live.
	MaxEvents int
	// Linger is how long a journey stays in the closing state after its
	// egress event, to collect the skb release path (DefaultLinger if <= 0).
	Linger time.Duration
	// Roles gives each function's Role, indexed by function ID (Event.FuncID).
	// IDs past its end have none; nil: no function has a role.
	Roles []Role
}

// entry is one journey held by the Assembler. Entries sit in the map by skb
// address and in exactly one of two intrusive lists (active or closing),
// ordered by last activity.
type entry struct {
	key        uint64 // Event.Key of its events
	skb        uint64 // skb of the first event
	members    []member
	events     []Event
	last       uint64 // newest event timestamp of the journey
	egressTS   uint64 // timestamp of the egress event (closing entries)
	closing    bool   // ended at egress, collecting the release path
	prev, next *entry
}

// member is one skb of a tracked journey (its original skb, clones and
// copies); gone once an egress function ran on it.
type member struct {
	skb  uint64
	gone bool
}

// list is an intrusive doubly-linked list of entries, oldest first.
type list struct {
	head, tail *entry
	n          int // entries in the list
}

func (l *list) pushBack(e *entry) {
	e.prev, e.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.n++
}

func (l *list) remove(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
	l.n--
}

func (l *list) moveToBack(e *entry) {
	if l.tail == e {
		return
	}
	l.remove(e)
	l.pushBack(e)
}

// Assembler groups events into journeys keyed by skb address.
//
// A journey ends when an egress function runs (EndEgress), when it recorded
// Config.Length events (EndLength), when its skb is idle for Config.Idle
// (EndIdle), when the table is full and it is the least recently active
// journey (EndEvict), when a new packet starts at its skb (EndReuse, at a
// Start function), or at Flush (EndExit).
//
// Release path: after an egress function such as consume_skb, the kernel
// frees the same skb through __kfree_skb, skb_release_data, kfree_skbmem and
// so on. Those events belong to the packet that just left, not to a new
// packet that happens to reuse the address. So a journey that ends at egress
// is not emitted at once but enters a closing state: further events on the
// same skb at a Release function, and any event whose timestamp is not
// after the egress event (cross-CPU reordering), are appended to it,
// still bounded by Config.Length. The first other event on that skb emits
// the closing journey and starts a new one. A closing journey is also
// emitted once it lingered Config.Linger (in event time, checked by Add, or
// by Tick), when it reaches Length, when the table needs room, and by Flush.
// Its End stays EndEgress. Release events beyond Length start a new journey.
//
// Tracked journeys: events with a journey ID (Event.ID, from skb tracking)
// are grouped by that ID instead of the skb address, so the clones and
// copies of an skb share its journey. Such a journey enters the closing
// state only when every skb seen in it reached an egress function, and a
// later event with its ID that is not of the release path reopens it (the
// ID is unique, so it cannot be another packet's).
//
// Events within a journey are kept in timestamp order by insertion sort, so
// small cross-CPU reordering is absorbed cheaply.
//
// The Events slice of an emitted Journey belongs to the callee; the
// Assembler never touches it again unless the callee hands it back with
// Recycle. An Assembler is not safe for concurrent use.
type Assembler struct {
	length    int
	idle      uint64
	linger    uint64
	max       int
	maxEvents int
	held      int // event slots (capacity) of held journeys
	roles     []Role

	table   map[uint64]*entry
	last    *entry // the entry of the previous event: a packet's events come in runs
	active  list   // in flight, least recently active first
	closing list   // ended at egress, least recently active first
	free    []*entry
	spare   [][]Event // recycled event slices, length 0
	newest  uint64    // newest event timestamp seen

	// Flows of recently emitted tracked journeys, by journey ID: a later
	// part of the same journey (after an idle or length end) whose events
	// have no tuple of their own (headers gone, as at the final free)
	// takes its flow from here.
	flows    map[uint64]Tuple
	flowRing []uint64
	flowNext int
}

// flowMemory is how many tracked journeys' flows are remembered.
const flowMemory = 4096

// NewAssembler returns an Assembler for cfg, with defaults for zero fields.
func NewAssembler(cfg Config) *Assembler {
	if cfg.Length <= 0 {
		cfg.Length = DefaultLength
	}
	if cfg.Idle <= 0 {
		cfg.Idle = DefaultIdle
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.Linger <= 0 {
		cfg.Linger = DefaultLinger
	}
	hint := cfg.MaxInFlight
	if hint > 4096 {
		hint = 4096
	}
	return &Assembler{
		length:    cfg.Length,
		idle:      uint64(cfg.Idle),
		linger:    uint64(cfg.Linger),
		max:       cfg.MaxInFlight,
		maxEvents: cfg.MaxEvents,
		roles:     cfg.Roles,
		table:     make(map[uint64]*entry, hint),
	}
}

// InFlight returns the number of journeys held, closing ones included.
func (a *Assembler) InFlight() int { return len(a.table) }

// Held returns the event slots (slice capacity) of the journeys held; it
// stays at or below Config.MaxEvents after each Add.
func (a *Assembler) Held() int { return a.held }

// Add records ev and calls emit for every journey that ended as a result:
// idle or lingering journeys overtaken by ev's timestamp, an evicted
// journey, a closing journey on the same skb, or ev's own journey. ev is
// copied: the caller may reuse it (the reader decodes every event into one).
func (a *Assembler) Add(ev *Event, emit func(Journey)) {
	a.add(ev, emit)
	// Evicting after the append is safe: ev's journey is the most
	// recently active one, so it goes last.
	for a.held > a.maxEvents && len(a.table) > 0 {
		a.evictOne(emit)
	}
}

// add is Add without the MaxEvents bound.
func (a *Assembler) add(ev *Event, emit func(Journey)) {
	if ev.TS > a.newest {
		a.newest = ev.TS
		a.expire(a.newest, emit)
	}

	var role Role
	if int(ev.FuncID) < len(a.roles) {
		role = a.roles[ev.FuncID]
	}
	key := ev.Key()
	e := a.last
	if e == nil || e.key != key {
		e = a.table[key]
	}
	restart := e != nil && role&Start != 0 && restarts(e, ev)
	if e != nil && e.closing {
		if ev.TS <= e.egressTS || role&Release != 0 {
			a.appendTo(e, ev)
			a.closing.moveToBack(e)
			if len(e.events) >= a.length {
				a.finish(e, EndEgress, emit)
			}
			return
		}
		if ev.ID != 0 && !restart {
			// Same journey ID: a clone or the skb itself is still alive.
			a.closing.remove(e)
			e.closing = false
			a.active.pushBack(e)
		} else {
			a.finish(e, EndEgress, emit)
			e = nil
		}
	}
	if e != nil && restart {
		a.finish(e, EndReuse, emit)
		e = nil
	}
	if e == nil {
		if len(a.table) >= a.max {
			a.evictOne(emit)
		}
		e = a.newEntry(key, ev.SKB)
		a.table[key] = e
		a.active.pushBack(e)
	} else {
		a.active.moveToBack(e)
	}
	a.last = e
	a.appendTo(e, ev)

	egress := role&Egress != 0
	if ev.ID != 0 && !e.track(ev.SKB, egress, role&Release != 0) {
		// Another skb of the journey is still alive.
		if len(e.events) >= a.length {
			a.finish(e, EndLength, emit)
		}
		return
	}
	if egress {
		if len(e.events) >= a.length {
			a.finish(e, EndEgress, emit)
			return
		}
		e.closing = true
		e.egressTS = ev.TS
		a.active.remove(e)
		a.closing.pushBack(e)
		if a.closing.n > maxClosing {
			a.finish(a.closing.head, EndEgress, emit)
		}
		return
	}
	if len(e.events) >= a.length {
		a.finish(e, EndLength, emit)
	}
}

// restarts reports whether ev, at a Start function, starts a new packet at
// the address of e's: e passed the function on the same skb, netns and
// device already.
// A packet does not pass the same device twice there; its address reused
// does, when the tracer did not see the skb freed (the tracepoint backend
// sees no free of a UDP skb read by its socket, and with tracking the new
// packet of the same flow inherits the journey ID).
func restarts(e *entry, ev *Event) bool {
	for i := range e.events {
		p := &e.events[i]
		if p.FuncID == ev.FuncID && p.SKB == ev.SKB && p.Ifindex == ev.Ifindex && p.Netns == ev.Netns {
			return true
		}
	}
	return false
}

// track records an event on skb in a tracked journey and reports whether
// every skb of the journey has now reached egress (always false unless
// egress).
func (e *entry) track(skb uint64, egress, release bool) bool {
	i := 0
	for i < len(e.members) && e.members[i].skb != skb {
		i++
	}
	if i == len(e.members) {
		e.members = append(e.members, member{skb: skb})
	}
	switch {
	case egress:
		e.members[i].gone = true
	case !release:
		// Alive after an egress function that did not free it (shared skb).
		e.members[i].gone = false
	}
	if !egress {
		return false
	}
	for _, m := range e.members {
		if !m.gone {
			return false
		}
	}
	return true
}

// Tick ends the journeys idle at now and the closing journeys that lingered
// long enough. now is ktime in nanoseconds, the clock of Event.TS
// (CLOCK_MONOTONIC, as bpf_ktime_get_ns); call Tick periodically, say every
// 100ms, so that journeys end even when no events arrive.
func (a *Assembler) Tick(now uint64, emit func(Journey)) {
	a.expire(now, emit)
}

// Flush emits every held journey, least recently active first: in-flight
// ones with EndExit, closing ones with EndEgress. The Assembler is empty and
// reusable afterwards.
func (a *Assembler) Flush(emit func(Journey)) {
	for {
		ac, cl := a.active.head, a.closing.head
		switch {
		case ac == nil && cl == nil:
			return
		case cl == nil || (ac != nil && ac.last <= cl.last):
			a.finish(ac, EndExit, emit)
		default:
			a.finish(cl, EndEgress, emit)
		}
	}
}

// maxClosing bounds the journeys lingering after their egress: beyond it,
// the one that reached egress first is written without the rest of its
// linger. At a host's flood rate (~90 packets per ms) ~4500 journeys
// lingered their 50 ms, each holding its events, and the reader's peak RSS
// went from 37 to 59 MB; 1024 is still ~11 ms of such a flood, far longer
// than a release path takes after egress.
const maxClosing = 1024

// maxSpare bounds the number of event slices kept for reuse by Recycle.
const maxSpare = 256

// Recycle hands the Events slice of an emitted journey back for reuse by
// later journeys, which saves most of the Assembler's allocations. Call it
// only once the journey was written and nothing refers to its events any
// more; it is optional.
func (a *Assembler) Recycle(j Journey) {
	if cap(j.Events) == 0 || len(a.spare) >= maxSpare {
		return
	}
	a.spare = append(a.spare, j.Events[:0])
}

// expire emits the journeys idle at now and the closing ones that lingered.
func (a *Assembler) expire(now uint64, emit func(Journey)) {
	for e := a.closing.head; e != nil && e.last+a.linger <= now; e = a.closing.head {
		a.finish(e, EndEgress, emit)
	}
	for e := a.active.head; e != nil && e.last+a.idle <= now; e = a.active.head {
		a.finish(e, EndIdle, emit)
	}
}

// evictOne makes room for one entry: a closing journey if there is one
// (it is complete anyway), else the least recently active one.
func (a *Assembler) evictOne(emit func(Journey)) {
	if e := a.closing.head; e != nil {
		a.finish(e, EndEgress, emit)
		return
	}
	if e := a.active.head; e != nil {
		a.finish(e, EndEvict, emit)
	}
}

// appendTo inserts ev into e's events in timestamp order.
func (a *Assembler) appendTo(e *entry, ev *Event) {
	if e.events == nil {
		if n := len(a.spare); n > 0 {
			e.events = a.spare[n-1]
			a.spare[n-1] = nil
			a.spare = a.spare[:n-1]
		} else {
			e.events = make([]Event, 0, initialCap(a.length))
		}
		a.held += cap(e.events)
	}
	if len(e.events) == cap(e.events) {
		// Grow by doubling, but never past Length: append would round
		// 64 up to 128 events for the default Length of 80.
		grown := make([]Event, len(e.events), max(min(2*cap(e.events), a.length), cap(e.events)+1))
		copy(grown, e.events)
		a.held += cap(grown) - cap(e.events)
		e.events = grown
	}
	e.events = append(e.events, *ev)
	evs := e.events
	i := len(evs) - 1
	if i > 0 && evs[i-1].TS > ev.TS {
		for i > 0 && evs[i-1].TS > ev.TS {
			evs[i] = evs[i-1]
			i--
		}
		evs[i] = *ev
	}
	if ev.TS > e.last {
		e.last = ev.TS
	}
}

// initialCap is the starting capacity of a journey's event slice.
func initialCap(length int) int {
	if length < 16 {
		return length
	}
	return 16
}

// newEntry returns a cleared entry for key, recycled if possible.
func (a *Assembler) newEntry(key, skb uint64) *entry {
	var e *entry
	if n := len(a.free); n > 0 {
		e = a.free[n-1]
		a.free = a.free[:n-1]
	} else {
		e = new(entry)
	}
	e.key, e.skb = key, skb
	return e
}

// finish removes e from the table and its list, emits its journey with end
// and recycles e.
func (a *Assembler) finish(e *entry, end End, emit func(Journey)) {
	if e.closing {
		a.closing.remove(e)
	} else {
		a.active.remove(e)
	}
	delete(a.table, e.key)
	if a.last == e {
		a.last = nil
	}
	a.held -= cap(e.events)
	flow := flowOf(e.events)
	if id := e.events[0].ID; id != 0 {
		if flow.IPVersion == 0 {
			flow = a.flows[id]
		} else {
			a.rememberFlow(id, flow)
		}
	}
	j := Journey{
		Flow:   flow,
		SKB:    e.skb,
		Events: e.events,
		End:    end,
	}
	members := e.members[:0]
	*e = entry{members: members}
	if len(a.free) < 1024 {
		a.free = append(a.free, e)
	}
	emit(j)
}

// rememberFlow records the flow of tracked journey id, forgetting the
// oldest one beyond flowMemory.
func (a *Assembler) rememberFlow(id uint64, flow Tuple) {
	if a.flows == nil {
		a.flows = make(map[uint64]Tuple)
		a.flowRing = make([]uint64, flowMemory)
	}
	if _, ok := a.flows[id]; ok {
		return
	}
	if old := a.flowRing[a.flowNext]; old != 0 {
		delete(a.flows, old)
	}
	a.flowRing[a.flowNext] = id
	a.flowNext = (a.flowNext + 1) % flowMemory
	a.flows[id] = flow
}

// flowOf returns the tuple of the first event with a parsed tuple.
func flowOf(evs []Event) Tuple {
	for i := range evs {
		if evs[i].Tuple.IPVersion != 0 {
			return evs[i].Tuple
		}
	}
	return Tuple{}
}
