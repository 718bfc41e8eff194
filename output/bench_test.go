package output

import (
	"encoding/json"
	"io"
	"testing"

	"github.com/ipftrace/ipftrace/journey"
)

// benchJourney is a realistic journey: 80 events of a TCP flow.
func benchJourney() journey.Journey {
	names := make([]uint64, 80)
	for i := range names {
		names[i] = 495406078818070 + uint64(i)*1313
	}
	return journey.Journey{
		Flow:   tuple(6, "10.0.0.1", "10.0.0.2", 33696, 8000),
		SKB:    0xffff888003a1b200,
		Events: events(names...),
		End:    journey.EndEgress,
	}
}

func BenchmarkWrite(b *testing.B) {
	j := benchJourney()
	ref := json.NewEncoder(io.Discard)
	ref.SetEscapeHTML(false)
	for _, bc := range []struct {
		name  string
		write func(journey.Journey) error
	}{
		{"json", NewJSON(io.Discard, testNames).Write},
		{"json-encoding/json", func(j journey.Journey) error { return ref.Encode(toRef(b, j, testNames, nil, nil)) }},
		{"text", NewText(io.Discard, testNames).Write},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.write(j); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "journeys/s")
		})
	}
}
