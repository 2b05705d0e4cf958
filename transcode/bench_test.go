package transcode_test

import (
	"testing"

	"github.com/segue-rtc/segue/transcode"
)

// BenchmarkStages measures every stage, and a call, per 20 ms frame, with
// each Opus implementation compiled in. "call" is both directions of one
// call (browser Opus to phone μ-law and back, jitter buffers included);
// calls/core is how many such calls one core could carry if it did
// nothing but this codec work: 20 ms divided by the time per frame.
//
//	go test -run '^$' -bench Stages -benchtime 2s ./transcode/
//	go test -tags "libopus nolibopusfile" -run '^$' -bench Stages -benchtime 2s ./transcode/
func BenchmarkStages(b *testing.B) {
	for _, codec := range transcode.OpusCodecs() {
		for _, s := range stages(b, codec) {
			b.Run(codec.Name()+"/"+s.name, func(b *testing.B) {
				for range 10 {
					s.run()
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					s.run()
				}
				us := float64(b.Elapsed().Microseconds()) / float64(b.N)
				b.ReportMetric(us, "µs/frame")
				if s.name == "call" {
					b.ReportMetric(20000/us, "calls/core")
				}
			})
		}
	}
}
