package output

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"unicode/utf8"

	"github.com/ipftrace/ipftrace/journey"
)

// JSON writes journeys as JSON lines, exactly one object per journey:
//
//	{"flow":{"ipversion":4,"proto":"ICMP","saddr":"10.0.0.1","daddr":"10.0.0.2","sport":0,"dport":0},
//	 "skb":"0xffff888003a1b200",
//	 "events":[{"ts":123,"func":"ip_output","cpu":1,"netns":4026532200,"ifindex":2,"len":84,
//	            "data":{"len":84,"gso_type":"SKB_GSO_TCPV4"}}],
//	 "drop_reason":"NETFILTER_DROP","drop_location":"nf_hook_slow",
//	 "end":"egress"}
//
// (on one line; data and the drop fields only where there are some). proto is ICMP, TCP, UDP, ICMPv6, SCTP or the protocol number
// as a string; saddr and daddr are "" for an unparsed flow (ipversion 0).
//
// With skb tracking, an event may carry three more fields: "tuple" (same
// fields as "flow") when the packet's headers at that point give a tuple
// other than the journey's flow (after NAT, inside a tunnel's outer
// headers); and "skb" (its address) with "clone": true when the event is on
// a clone or copy of the journey's skb.
// The encoder is hand-written into a reused buffer; its output is the same
// as encoding/json's for the equivalent structs, without HTML escaping.
type JSON struct {
	// Data, if set, appends the decoded custom data of an event to dst and
	// returns it; the fields are written as the event's "data" object
	// (omitted when there are none), in order, with their JSON values.
	Data func(ev *journey.Event, dst []Field) []Field
	// Drop, if set, says whether a journey ended in a drop, its reason
	// and where; they are written as "drop_reason" and "drop_location"
	// (omitted if not dropped; "drop_location" omitted if unknown).
	Drop func(j journey.Journey) (reason, at string, ok bool)

	w     io.Writer
	names Names
	buf   []byte
	flds  []Field
	// funcs caches `,"func":"<name>"` per function ID, quoted once: the
	// escape scan of each name was a sixth of the encoder's time
	// (a profile of BenchmarkReader in tracer).
	funcs [][]byte
	// netns caches `,"netns":<inode>` for the last inode written: one
	// journey rarely changes namespace, and its 10 digits were formatted
	// at every event.
	netns   []byte
	netnsOf uint32
	// ms caches the decimal digits of the last timestamp's milliseconds:
	// only the last 6 digits change from one event of a journey to the next.
	ms   []byte
	msOf uint64
}

// appendTS appends ts (ns) in decimal, as strconv.AppendUint would.
func (o *JSON) appendTS(b []byte, ts uint64) []byte {
	ms, ns := ts/1e6, uint32(ts%1e6)
	if ms == 0 {
		return strconv.AppendUint(b, ts, 10)
	}
	if o.ms == nil || ms != o.msOf {
		o.ms = strconv.AppendUint(o.ms[:0], ms, 10)
		o.msOf = ms
	}
	b = append(b, o.ms...)
	// The rest, zero-padded to 6 digits, two at a time.
	var d [6]byte
	for i := 4; i >= 0; i -= 2 {
		q := ns / 100
		r := ns - q*100
		d[i], d[i+1] = digits2[2*r], digits2[2*r+1]
		ns = q
	}
	return append(b, d[:]...)
}

// digits2 holds "00" to "99".
const digits2 = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// maxCachedFuncs bounds the function-name cache (IDs are indexes into the
// tracer's function table, a few thousand at most).
const maxCachedFuncs = 1 << 16

// appendFunc appends the event's `,"func":"<name>"`.
func (o *JSON) appendFunc(b []byte, id uint32) []byte {
	if id < uint32(len(o.funcs)) && o.funcs[id] != nil {
		return append(b, o.funcs[id]...)
	}
	q := appendJSONString([]byte(`,"func":`), nameOf(o.names, id))
	if id < maxCachedFuncs {
		if id >= uint32(len(o.funcs)) {
			o.funcs = append(o.funcs, make([][]byte, int(id)+1-len(o.funcs))...)
		}
		o.funcs[id] = q
	}
	return append(b, q...)
}

// appendNetns appends the event's `,"netns":<inode>`.
func (o *JSON) appendNetns(b []byte, inode uint32) []byte {
	if o.netns == nil || inode != o.netnsOf {
		o.netns = strconv.AppendUint(append(o.netns[:0], `,"netns":`...), uint64(inode), 10)
		o.netnsOf = inode
	}
	return append(b, o.netns...)
}

// NewJSON returns a JSON writing to w, resolving function names with names
// (nil: names print as func#<id>). Each name is resolved once, at its first
// use: names must not change while the JSON is in use.
func NewJSON(w io.Writer, names Names) *JSON {
	return &JSON{w: w, names: names}
}

// Write writes one journey as one line with a single call to the
// underlying writer.
func (o *JSON) Write(j journey.Journey) error {
	b := o.buf[:0]
	f := &j.Flow
	b = append(b, `{"flow":`...)
	b = appendJSONTuple(b, f)
	b = append(b, `,"skb":"0x`...)
	b = strconv.AppendUint(b, j.SKB, 16)
	b = append(b, `","events":[`...)
	for i := range j.Events {
		ev := &j.Events[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"ts":`...)
		b = o.appendTS(b, ev.TS)
		b = o.appendFunc(b, ev.FuncID)
		b = append(b, `,"cpu":`...)
		b = strconv.AppendUint(b, uint64(ev.CPU), 10)
		b = o.appendNetns(b, ev.Netns)
		b = append(b, `,"ifindex":`...)
		b = strconv.AppendUint(b, uint64(ev.Ifindex), 10)
		b = append(b, `,"len":`...)
		b = strconv.AppendUint(b, uint64(ev.Len), 10)
		if ev.Tuple.IPVersion != 0 && ev.Tuple != *f {
			b = append(b, `,"tuple":`...)
			b = appendJSONTuple(b, &ev.Tuple)
		}
		if ev.Clone {
			b = append(b, `,"skb":"0x`...)
			b = strconv.AppendUint(b, ev.SKB, 16)
			b = append(b, `","clone":true`...)
		}
		if o.Data != nil {
			o.flds = o.Data(ev, o.flds[:0])
			if len(o.flds) > 0 {
				b = append(b, `,"data":{`...)
				for k, f := range o.flds {
					if k > 0 {
						b = append(b, ',')
					}
					b = appendJSONString(b, f.Name)
					b = append(b, ':')
					b = append(b, f.JSON...)
				}
				b = append(b, '}')
			}
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	if o.Drop != nil {
		if reason, at, ok := o.Drop(j); ok {
			b = append(b, `,"drop_reason":`...)
			b = appendJSONString(b, reason)
			if at != "" {
				b = append(b, `,"drop_location":`...)
				b = appendJSONString(b, at)
			}
		}
	}
	b = append(b, `,"end":`...)
	b = appendJSONString(b, string(j.End))
	b = append(b, "}\n"...)

	o.buf = b
	if _, err := o.w.Write(b); err != nil {
		return fmt.Errorf("write journey of skb %#x: %w", j.SKB, err)
	}
	return nil
}

// appendJSONTuple appends a tuple as the object of "flow" and "tuple".
func appendJSONTuple(b []byte, f *journey.Tuple) []byte {
	b = append(b, `{"ipversion":`...)
	b = strconv.AppendUint(b, uint64(f.IPVersion), 10)
	b = append(b, `,"proto":"`...)
	b = append(b, ProtoName(f.Proto)...)
	b = append(b, `","saddr":"`...)
	b = appendAddr(b, f.Saddr)
	b = append(b, `","daddr":"`...)
	b = appendAddr(b, f.Daddr)
	b = append(b, `","sport":`...)
	b = strconv.AppendUint(b, uint64(f.Sport), 10)
	b = append(b, `,"dport":`...)
	b = strconv.AppendUint(b, uint64(f.Dport), 10)
	return append(b, '}')
}

// appendAddr appends addr without zone ("" if invalid), which needs no
// JSON escaping.
func appendAddr(b []byte, addr netip.Addr) []byte {
	if addr.Zone() != "" {
		addr = addr.WithZone("")
	}
	return addr.AppendTo(b)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string literal, escaping like
// encoding/json without HTML escaping: quote, backslash and control
// characters are escaped, invalid UTF-8 becomes U+FFFD, and U+2028/U+2029
// are escaped for JavaScript safety.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
