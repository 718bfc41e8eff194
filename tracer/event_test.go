package tracer

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/ipftrace/ipftrace/bpf"
	"github.com/ipftrace/ipftrace/journey"
)

func TestEventLayoutMatchesBPF(t *testing.T) {
	var e bpf.IpftraceEvent
	if got := int(unsafe.Sizeof(e)); got != eventSize {
		t.Fatalf("struct event is %d bytes in BPF, decoder expects %d", got, eventSize)
	}
	offsets := map[string][2]uintptr{
		"skb":         {unsafe.Offsetof(e.Skb), 8},
		"func_id":     {unsafe.Offsetof(e.FuncId), 16},
		"drop_reason": {unsafe.Offsetof(e.DropReason), 36},
		"tuple":       {unsafe.Offsetof(e.Tuple), 40},
		"data":        {unsafe.Offsetof(e.Data), 80},
		"id":          {unsafe.Offsetof(e.Id), trackOff},
		"flags":       {unsafe.Offsetof(e.Flags), trackOff + 8},
	}
	for name, o := range offsets {
		if o[0] != o[1] {
			t.Errorf("offset of %s: BPF %d, decoder %d", name, o[0], o[1])
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	var e bpf.IpftraceEvent
	e.Ts, e.Skb, e.FuncId, e.Cpu, e.Netns, e.Ifindex, e.Len, e.DropReason = 1, 0xffff888001, 7, 1, 4026531840, 3, 84, 2
	e.Tuple.Ipversion, e.Tuple.Proto, e.Tuple.Sport, e.Tuple.Dport = 4, 6, 33696, 8000
	copy(e.Tuple.Saddr[:], []byte{10, 0, 0, 1})
	copy(e.Tuple.Daddr[:], []byte{10, 0, 0, 2})
	e.Data[0] = 0xaa
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
	want.ID, want.Clone, want.SockTuple = 0x10000000002a, true, true
	if ev != want {
		t.Fatalf("decoded %+v\nwant    %+v", ev, want)
	}
	if err := decodeEvent(buf.Bytes()[:10], &ev); err == nil {
		t.Fatal("short record decoded without error")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add(make([]byte, eventSize))
	f.Add([]byte{1, 2, 3})
	b := make([]byte, eventSize)
	b[76] = 6
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev journey.Event
		_ = decodeEvent(b, &ev)
	})
}
