package tracer

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/journey"
	"github.com/ipftrace/ipftrace/output"
)

func TestEventLayoutMatchesBPF(t *testing.T) {
	var e bpf.Event
	if got := int(unsafe.Sizeof(e)); got != eventSize {
		t.Fatalf("struct event is %d bytes in BPF, decoder expects %d", got, eventSize)
	}
	offsets := map[string][2]uintptr{
		"skb":         {unsafe.Offsetof(e.Skb), 8},
		"func_id":     {unsafe.Offsetof(e.FuncId), 16},
		"drop_reason": {unsafe.Offsetof(e.DropReason), 36},
		"tuple":       {unsafe.Offsetof(e.Tuple), 40},
		"location":    {unsafe.Offsetof(e.Location), 80},
		"data_valid":  {unsafe.Offsetof(e.DataValid), 88},
		"id":          {unsafe.Offsetof(e.Id), trackOff},
		"flags":       {unsafe.Offsetof(e.Flags), trackOff + 8},
		"data":        {unsafe.Offsetof(e.Data), eventShort},
	}
	for name, o := range offsets {
		if o[0] != o[1] {
			t.Errorf("offset of %s: BPF %d, decoder %d", name, o[0], o[1])
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	var e bpf.Event
	e.Ts, e.Skb, e.FuncId, e.Cpu, e.Netns, e.Ifindex, e.Len, e.DropReason = 1, 0xffff888001, 7, 1, 4026531840, 3, 84, 2
	e.Tuple.Ipversion, e.Tuple.Proto, e.Tuple.Sport, e.Tuple.Dport = 4, 6, 33696, 8000
	copy(e.Tuple.Saddr[:], []byte{10, 0, 0, 1})
	copy(e.Tuple.Daddr[:], []byte{10, 0, 0, 2})
	e.Data[0] = 0xaa
	e.Location, e.DataValid = 0xffffffff81234567, 0b101
	e.Id, e.Flags = 0x10000000002a, evClone|evSock
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.LittleEndian, &e); err != nil {
		t.Fatal(err)
	}
	var ev journey.Event
	if err := decodeEvent(buf.Bytes(), &ev); err != nil {
		t.Fatal(err)
	}
	want := journey.Event{TS: 1, SKB: 0xffff888001, FuncID: 7, CPU: 1, Netns: 4026531840, Ifindex: 3, Len: 84, DropReason: 2,
		Tuple: journey.Tuple{IPVersion: 4, Proto: 6, Saddr: netip.MustParseAddr("10.0.0.1"), Daddr: netip.MustParseAddr("10.0.0.2"), Sport: 33696, Dport: 8000}}
	want.Data[0] = 0xaa
	want.Location, want.DataValid = 0xffffffff81234567, 0b101
	want.ID, want.Clone, want.SockTuple = 0x10000000002a, true, true
	if ev != want {
		t.Fatalf("decoded %+v\nwant    %+v", ev, want)
	}
	if err := decodeEvent(buf.Bytes()[:10], &ev); err == nil {
		t.Fatal("short record decoded without error")
	}
}

// FuzzDecodeEvent decodes arbitrary ring buffer records. Records shorter
// than an event are rejected; longer ones decode to exactly the fields that
// encoding/binary reads into the bpf2go struct (the oracle), whatever the
// IP version byte says. Every decoded event then goes through the journey
// assembler and both output writers, with function IDs outside the name
// table, which must not panic either.
func FuzzDecodeEvent(f *testing.F) {
	enc := func(e bpf.Event) []byte {
		var buf bytes.Buffer
		if err := binary.Write(&buf, binary.LittleEndian, &e); err != nil {
			f.Fatal(err)
		}
		return buf.Bytes()
	}
	var v4, v6 bpf.Event
	v4.Ts, v4.Skb, v4.FuncId, v4.Len = 1, 0xffff888001, 1, 84
	v4.Tuple.Ipversion, v4.Tuple.Proto, v4.Tuple.Sport, v4.Tuple.Dport = 4, 17, 5000, 53
	copy(v4.Tuple.Saddr[:], []byte{10, 0, 0, 1})
	copy(v4.Tuple.Daddr[:], []byte{10, 0, 0, 2})
	v6 = v4
	v6.Tuple.Ipversion, v6.Tuple.Proto, v6.FuncId = 6, 58, 1<<31
	v6.Tuple.Saddr[0], v6.Tuple.Daddr[15] = 0xfd, 2
	f.Add(enc(v4), uint8(2))
	f.Add(enc(v6), uint8(80))
	f.Add(append(enc(v4), 0xde, 0xad), uint8(1)) // trailing bytes
	f.Add(make([]byte, eventSize), uint8(1))
	f.Add(make([]byte, eventSize-1), uint8(1))
	f.Add(enc(v4)[:eventShort], uint8(3)) // no module data
	f.Add(make([]byte, eventShort-1), uint8(1))
	f.Add([]byte{1, 2, 3}, uint8(0))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, b []byte, length uint8) {
		var ev journey.Event
		err := decodeEvent(b, &ev)
		if len(b) < eventShort {
			if err == nil {
				t.Fatalf("%d-byte record decoded without error", len(b))
			}
			return
		}
		if err != nil {
			t.Fatalf("%d-byte record: %v", len(b), err)
		}
		// A record without the module data area (eventShort bytes, no
		// -m) decodes as one with an all-zero area.
		full := make([]byte, eventSize)
		if len(b) >= eventSize {
			copy(full, b)
		} else {
			copy(full, b[:eventShort])
		}
		var o bpf.Event
		if err := binary.Read(bytes.NewReader(full), binary.LittleEndian, &o); err != nil {
			t.Fatal(err)
		}
		want := journey.Event{TS: o.Ts, SKB: o.Skb, FuncID: o.FuncId, CPU: o.Cpu, Netns: o.Netns, Ifindex: o.Ifindex,
			Len: o.Len, DropReason: o.DropReason, Data: o.Data,
			Location: o.Location, DataValid: o.DataValid, ID: o.Id,
			Clone: o.Flags&evClone != 0, Tracked: o.Flags&evTracked != 0, SockTuple: o.Flags&evSock != 0,
			Tuple: journey.Tuple{IPVersion: o.Tuple.Ipversion, Proto: o.Tuple.Proto, Sport: o.Tuple.Sport, Dport: o.Tuple.Dport}}
		switch o.Tuple.Ipversion {
		case 4:
			want.Tuple.Saddr = netip.AddrFrom4([4]byte(o.Tuple.Saddr[:4]))
			want.Tuple.Daddr = netip.AddrFrom4([4]byte(o.Tuple.Daddr[:4]))
		case 6:
			want.Tuple.Saddr = netip.AddrFrom16(o.Tuple.Saddr)
			want.Tuple.Daddr = netip.AddrFrom16(o.Tuple.Daddr)
		}
		if ev != want {
			t.Fatalf("decoded %+v\nwant    %+v", ev, want)
		}

		// Downstream: a journey of this event (and a second one on the
		// same skb, a release), written as text and JSON.
		names := output.NameList{"ip_rcv", "kfree_skb"}
		a := journey.NewAssembler(journey.Config{
			Length: int(length%8) + 1,
			Idle:   time.Second,
			Roles:  []journey.Role{1: journey.Egress | journey.Release},
		})
		var js []journey.Journey
		emit := func(j journey.Journey) { js = append(js, j) }
		a.Add(&ev, emit)
		ev2 := ev
		ev2.TS++
		ev2.FuncID = 1
		a.Add(&ev2, emit)
		a.Tick(ev.TS+uint64(2*time.Second), emit)
		a.Flush(emit)
		if len(js) == 0 {
			t.Fatal("no journey from two events")
		}
		for _, format := range []string{"text", "json"} {
			var out bytes.Buffer
			w, err := output.New(format, &out, names)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range js {
				if err := w.Write(j); err != nil {
					t.Fatalf("%s: %v", format, err)
				}
			}
			if format == "json" {
				for _, line := range bytes.Split(bytes.TrimSuffix(out.Bytes(), []byte("\n")), []byte("\n")) {
					if !json.Valid(line) {
						t.Fatalf("invalid JSON line %q", line)
					}
				}
			}
		}
	})
}
