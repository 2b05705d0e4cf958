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

// BenchmarkNewOpus measures what one call's Opus state costs in memory:
// B/op is what building the encoder toward the browser (8 kHz, FEC) or
// the decoder of the browser's audio (to 8 kHz) allocates, most of which
// the call keeps for its whole life.
//
//	go test -run '^$' -bench NewOpus -benchmem ./transcode/
func BenchmarkNewOpus(b *testing.B) {
	for _, codec := range transcode.OpusCodecs() {
		b.Run(codec.Name()+"/encoder", func(b *testing.B) {
			for b.Loop() {
				if _, err := codec.NewEncoder(8000, transcode.OpusConfig{FEC: true, PacketLoss: 5}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(codec.Name()+"/decoder", func(b *testing.B) {
			for b.Loop() {
				if _, err := codec.NewDecoder(8000); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
