package tracer

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"testing"

	"github.com/ipftrace/ipftrace/journey"
	"github.com/ipftrace/ipftrace/output"
)

// readerRecords builds ring buffer records as a ping flood makes them:
// journeys of perJourney events (the last at an egress function), two in
// flight at a time, their events in runs of run (a packet passes several
// functions before the other one is processed).
func readerRecords(journeys, perJourney, run int) [][]byte {
	le := binary.LittleEndian
	var recs [][]byte
	ts := uint64(495406078818070)
	for j := 0; j < journeys; j += 2 {
		for k0 := 0; k0 < perJourney; k0 += run {
			for s := 0; s < 2; s++ {
				for k := k0; k < min(k0+run, perJourney); k++ {
					r := make([]byte, eventShort)
					ts += 731
					le.PutUint64(r[0:], ts)
					le.PutUint64(r[8:], 0xffff888003a10000+uint64(j+s)*256)
					le.PutUint32(r[16:], uint32(k))
					le.PutUint32(r[20:], 1)
					le.PutUint32(r[24:], 4026532200)
					le.PutUint32(r[28:], 2)
					le.PutUint32(r[32:], 84)
					copy(r[40:], []byte{10, 0, 0, 1})
					copy(r[56:], []byte{10, 0, 0, 2})
					r[76], r[77] = 4, 1 // IPv4, ICMP
					le.PutUint64(r[trackOff:], uint64(j+s+1))
					recs = append(recs, r)
				}
			}
		}
	}
	return recs
}

// BenchmarkReader is the reader's per-event work after the ring buffer:
// decode a record, assemble journeys, write them as JSON (to a buffer
// that discards), on a ping flood's event stream (51 events per journey).
func BenchmarkReader(b *testing.B) {
	const perJourney = 51
	for _, run := range []int{1, 17} {
		b.Run(fmt.Sprintf("run=%d", run), func(b *testing.B) {
			names := make(output.NameList, perJourney)
			roles := make([]journey.Role, perJourney)
			for i := range names {
				names[i] = fmt.Sprintf("ip_function_%02d", i)
			}
			names[perJourney-1] = "consume_skb"
			for i := range names {
				roles[i] = journey.RoleOf(names[i], i == perJourney-1)
			}
			recs := readerRecords(64, perJourney, run)
			asm := journey.NewAssembler(journey.Config{Length: 80, Roles: roles})
			w, err := output.New("json", bufio.NewWriterSize(io.Discard, 64<<10), names)
			if err != nil {
				b.Fatal(err)
			}
			journeys := 0
			emit := func(j journey.Journey) {
				if err := w.Write(j); err != nil {
					b.Fatal(err)
				}
				journeys++
				asm.Recycle(j)
			}
			var ev journey.Event
			// Each pass over recs shifts time and journey IDs, so that
			// every pass makes new journeys.
			var shift uint64
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := decodeEvent(recs[i], &ev); err != nil {
					b.Fatal(err)
				}
				ev.TS += shift
				ev.ID += shift
				asm.Add(&ev, emit)
				if i++; i == len(recs) {
					i = 0
					shift += 1 << 32
				}
			}
			if journeys == 0 {
				b.Fatal("no journey was written")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
