package output

import (
	"fmt"
	"io"
	"strconv"

	"github.com/ipftrace/ipftrace/journey"
)

// Text writes journeys as flow-grouped tables in the ipftrace style:
//
//	TCP     10.0.0.1:33696    ->    10.0.0.2:8000
//	     Time Stamp   Delta(us)  Function
//	495406078818070        0.0   ip_output
//	495406078949359      131.3   nf_hook_slow
//
// with a blank line between journeys. Delta(us) is the time since the
// previous event of the journey in microseconds, rounded half up to one
// decimal. With skb tracking, an event whose headers give another tuple
// than the one shown last (the flow at first) shows it after the function
// name, "nf_nat_ipv4_fn  [10.0.0.2:80 -> 10.0.0.3:8080]", and an event on a
// clone or copy of the journey's skb is marked "(clone)". A journey that did not end at egress gets a last line saying why,
// such as "(ended: idle)".
type Text struct {
	// Decorate, if set, returns extra text for an event, printed in a
	// "Custom Data" column after the function name ("" for nothing).
	Decorate func(journey.Event) string
	// Trailer, if set, returns lines printed after a journey's events and
	// before its end line, such as a drop reason ("" for nothing). It may
	// contain newlines.
	Trailer func(journey.Journey) string

	w       io.Writer
	names   Names
	buf     []byte
	deco    []string // per-event Decorate results, reused
	marks   [][]byte // per-event function column (name and marks), reused
	started bool
}

// NewText returns a Text writing to w, resolving function names with names
// (nil: names print as func#<id>).
func NewText(w io.Writer, names Names) *Text {
	return &Text{w: w, names: names}
}

// Write writes one journey with a single call to the underlying writer.
func (t *Text) Write(j journey.Journey) error {
	b := t.buf[:0]
	if t.started {
		b = append(b, '\n')
	}
	t.started = true

	b = appendTextFlow(b, j.Flow)

	for len(t.marks) < len(j.Events) {
		t.marks = append(t.marks, nil)
	}
	shown := j.Flow
	for i := range j.Events {
		ev := &j.Events[i]
		m := append(t.marks[i][:0], nameOf(t.names, ev.FuncID)...)
		if ev.Clone {
			m = append(m, "  (clone)"...)
		}
		if ev.Tuple.IPVersion != 0 && ev.Tuple != shown {
			m = append(m, "  ["...)
			m = appendTupleMark(m, ev.Tuple, j.Flow)
			m = append(m, ']')
			shown = ev.Tuple
		}
		t.marks[i] = m
	}

	var nameWidth int
	t.deco = t.deco[:0]
	if t.Decorate != nil {
		for i := range j.Events {
			t.deco = append(t.deco, t.Decorate(j.Events[i]))
			if n := len(t.marks[i]); n > nameWidth {
				nameWidth = n
			}
		}
		if nameWidth < len("Function") {
			nameWidth = len("Function")
		}
	}

	b = append(b, "     Time Stamp   Delta(us)  Function"...)
	if t.Decorate != nil {
		b = appendSpaces(b, nameWidth-len("Function")+2)
		b = append(b, "Custom Data"...)
	}
	b = append(b, '\n')

	var prev uint64
	var num [24]byte
	for i := range j.Events {
		ev := &j.Events[i]
		var delta uint64
		if i > 0 && ev.TS > prev {
			delta = ev.TS - prev
		}
		prev = ev.TS

		b = appendPadded(b, strconv.AppendUint(num[:0], ev.TS, 10), 15)
		b = appendPadded(b, appendMicros(num[:0], delta), 11)
		b = append(b, "   "...)
		name := t.marks[i]
		b = append(b, name...)
		if t.Decorate != nil && t.deco[i] != "" {
			b = appendSpaces(b, nameWidth-len(name)+2)
			b = append(b, t.deco[i]...)
		}
		b = append(b, '\n')
	}

	if t.Trailer != nil {
		if s := t.Trailer(j); s != "" {
			b = append(b, s...)
			if s[len(s)-1] != '\n' {
				b = append(b, '\n')
			}
		}
	}
	b = appendEndLine(b, j)

	t.buf = b
	if _, err := t.w.Write(b); err != nil {
		return fmt.Errorf("write journey of skb %#x: %w", j.SKB, err)
	}
	return nil
}

// appendTextFlow appends the header line of a flow. A header wider than 80
// columns (long IPv6 endpoints) is wrapped before the arrow.
func appendTextFlow(b []byte, f journey.Tuple) []byte {
	if f.IPVersion == 0 {
		return append(b, "unknown flow\n"...)
	}
	start := len(b)
	var proto string
	switch f.Proto {
	case protoICMP, protoTCP, protoUDP, protoICMPv6, protoSCTP:
		proto = ProtoName(f.Proto)
	default:
		proto = "proto " + strconv.FormatUint(uint64(f.Proto), 10)
	}
	b = append(b, proto...)
	b = appendSpaces(b, max(8-len(proto), 1))
	ports := hasPorts(f)
	b = appendEndpoint(b, f.Saddr, f.Sport, ports)
	mid := len(b)
	b = append(b, "    ->    "...)
	b = appendEndpoint(b, f.Daddr, f.Dport, ports)
	if len(b)-start > 80 {
		dst := string(b[mid+len("    ->    "):])
		b = append(b[:mid], '\n')
		b = append(b, "    ->  "...)
		b = append(b, dst...)
	}
	return append(b, '\n')
}

// appendTupleMark appends "10.0.0.2:80 -> 10.0.0.3:8080", preceded by the
// protocol when it differs from the flow's ("proto 4 10.0.0.1 -> 10.0.0.2"
// for an IPIP outer header).
func appendTupleMark(b []byte, t, flow journey.Tuple) []byte {
	if t.Proto != flow.Proto {
		switch t.Proto {
		case protoICMP, protoTCP, protoUDP, protoICMPv6, protoSCTP:
			b = append(b, ProtoName(t.Proto)...)
		default:
			b = append(b, "proto "...)
			b = strconv.AppendUint(b, uint64(t.Proto), 10)
		}
		b = append(b, ' ')
	}
	ports := hasPorts(t)
	b = appendEndpoint(b, t.Saddr, t.Sport, ports)
	b = append(b, " -> "...)
	return appendEndpoint(b, t.Daddr, t.Dport, ports)
}

// appendEndLine appends the "(ended: ...)" line for journeys that did not
// end at egress.
func appendEndLine(b []byte, j journey.Journey) []byte {
	switch j.End {
	case journey.EndEgress:
		return b
	case journey.EndLength:
		b = append(b, "(ended: length "...)
		b = strconv.AppendInt(b, int64(len(j.Events)), 10)
	case journey.EndExit:
		b = append(b, "(ended: exit, in flight"...)
	case journey.EndEvict:
		b = append(b, "(ended: evicted, table full"...)
	case journey.EndReuse:
		b = append(b, "(ended: freed unseen, address reused by a new packet"...)
	case "":
		b = append(b, "(ended: unknown"...)
	default:
		b = append(b, "(ended: "...)
		b = append(b, j.End...)
	}
	return append(b, ")\n"...)
}

// appendMicros appends ns as microseconds with one decimal, rounded half up.
func appendMicros(b []byte, ns uint64) []byte {
	tenths := (ns + 50) / 100
	b = strconv.AppendUint(b, tenths/10, 10)
	b = append(b, '.')
	return append(b, byte('0'+tenths%10))
}

// appendPadded appends s right-aligned in width columns.
func appendPadded(b, s []byte, width int) []byte {
	b = appendSpaces(b, width-len(s))
	return append(b, s...)
}

// appendSpaces appends n spaces (none if n <= 0).
func appendSpaces(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}
