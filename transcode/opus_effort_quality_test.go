package transcode_test

import (
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestOpusCheapEffortQuality compares the two efforts the gateway
// switches between toward the browser on what it actually encodes:
// speech that came through the desk phone's μ-law, at 8 kHz and 20
// kbit/s. The cheap effort (complexity 1, no FEC) must not be more than
// 10 % worse than the quality effort (complexity 5 with FEC) by the Bark
// spectral distortion, summed over several voices. (Measured: about 6 %
// better, since FEC takes some of the bitrate, and 2-3 % worse than
// complexity 5 without FEC.)
func TestOpusCheapEffortQuality(t *testing.T) {
	for _, codec := range transcode.OpusCodecs() {
		t.Run(codec.Name(), func(t *testing.T) {
			var cheap, quality, plain float64
			for seed := uint64(1); seed <= 4; seed++ {
				ref := ulawGeneration(t, audiotest.Speech(8000, 4*time.Second, seed))
				bsd := func(cfg transcode.OpusConfig) float64 {
					got := opusDecode(t, codec, opusEncode(t, codec, ref, cfg), false)
					return audiotest.BarkDistortion(ref, aligned(ref, got), 8000)
				}
				c1 := bsd(transcode.OpusConfig{Complexity: 1})
				c5 := bsd(transcode.OpusConfig{Complexity: 5, FEC: true, PacketLoss: 5})
				c5plain := bsd(transcode.OpusConfig{Complexity: 5})
				t.Logf("voice %d: BSD complexity 1 %.4f, complexity 5 with FEC %.4f, without %.4f", seed, c1, c5, c5plain)
				cheap += c1
				quality += c5
				plain += c5plain
			}
			t.Logf("sum: complexity 1 %.4f, complexity 5 with FEC %.4f (%+.1f %%), without FEC %.4f (%+.1f %%)",
				cheap, quality, 100*(cheap/quality-1), plain, 100*(cheap/plain-1))
			if cheap > 1.1*quality {
				t.Errorf("complexity 1 BSD %.4f, more than 10 %% above complexity 5's %.4f", cheap, quality)
			}
		})
	}
}
