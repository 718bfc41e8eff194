package journey

import (
	"math/rand/v2"
	"testing"
)

// benchEvents builds a realistic stream: journeys of perSKB events (the last
// ones an egress and three release-path functions), interleaved skbs at a
// time, with addresses reused across rounds and small cross-CPU reordering.
func benchEvents(rounds, interleave, perSKB int) []Event {
	rng := rand.New(rand.NewPCG(1, 2))
	evs := make([]Event, 0, rounds*interleave*perSKB)
	var ts uint64
	for r := 0; r < rounds; r++ {
		for k := 0; k < perSKB; k++ {
			fn := fnIP
			switch perSKB - k {
			case 4:
				fn = fnConsume
			case 3:
				fn = fnKfree
			case 2:
				fn = fnRelData
			case 1:
				fn = fnSkbmem
			}
			for s := 0; s < interleave; s++ {
				ts += 100
				e := ev(ts, 0xffff888003a10000+uint64(s)*256, fn)
				e.CPU = uint32(s % 8)
				evs = append(evs, e)
			}
		}
	}
	// Swap a few neighbours to mimic per-CPU ring interleaving.
	for i := 0; i+1 < len(evs); i += 1 + rng.IntN(16) {
		evs[i], evs[i+1] = evs[i+1], evs[i]
	}
	return evs
}

func BenchmarkAssembler(b *testing.B) {
	for _, bc := range []struct {
		name       string
		interleave int
		recycle    bool
	}{
		{"interleave=64", 64, false},
		{"interleave=64/recycle", 64, true},
		{"interleave=4096", 4096, false},
		{"interleave=4096/recycle", 4096, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			evs := benchEvents(4, bc.interleave, 100)
			cfg := testConfig()
			cfg.Length = 128
			cfg.MaxInFlight = 65536
			a := NewAssembler(cfg)
			emit := func(j Journey) {
				if bc.recycle {
					a.Recycle(j)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a.Add(&evs[i%len(evs)], emit)
				if i%len(evs) == len(evs)-1 {
					a.Flush(emit)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
