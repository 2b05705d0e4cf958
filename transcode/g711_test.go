package transcode_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

type g711Law struct {
	name string
	enc  func(transcode.BytesWriter) (transcode.PCMWriter, error)
	dec  func(transcode.PCMWriter) (transcode.BytesWriter, error)
}

var g711Laws = []g711Law{
	{"PCMU", transcode.NewULawEncoder, transcode.NewULawDecoder},
	{"PCMA", transcode.NewALawEncoder, transcode.NewALawDecoder},
}

// TestG711RoundTrip checks the SNR of each law on speech and tones. G.711
// gives about 38 dB for signals well above its floor (ITU-T G.711 and
// G.712 allow down to about 35 dB at -10 dBm0).
func TestG711RoundTrip(t *testing.T) {
	signals := []struct {
		name   string
		pcm    transcode.PCM16
		minSNR float64
	}{
		{"speech", audiotest.Speech(8000, time.Second, 5), 30},
		{"tone 1 kHz -6 dBFS", audiotest.Tone(8000, 1000, 0.5, time.Second), 33},
		{"tone 300 Hz -20 dBFS", audiotest.Tone(8000, 300, 0.1, time.Second), 35},
	}
	for _, law := range g711Laws {
		for _, sig := range signals {
			t.Run(law.name+"/"+sig.name, func(t *testing.T) {
				rec := audiotest.NewRecorder(8000)
				dec, err := law.dec(rec)
				if err != nil {
					t.Fatal(err)
				}
				enc, err := law.enc(dec)
				if err != nil {
					t.Fatal(err)
				}
				writeFrames(t, enc, sig.pcm, 160)
				got := rec.Samples()
				if len(got) != len(sig.pcm) {
					t.Fatalf("%d samples out for %d in", len(got), len(sig.pcm))
				}
				if snr := audiotest.SNR(sig.pcm, got); snr < sig.minSNR {
					t.Errorf("SNR %.1f dB, want at least %.0f", snr, sig.minSNR)
				}
				if want := law.name + "(encode) -> " + law.name + "(decode) -> Recorder(8000)"; enc.String() != want {
					t.Errorf("String = %q, want %q", enc.String(), want)
				}
			})
		}
	}
}

func TestG711RateMismatch(t *testing.T) {
	for _, law := range g711Laws {
		if _, err := law.enc(audiotest.NewPayloadRecorder(48000)); !errors.Is(err, transcode.ErrRateMismatch) {
			t.Errorf("%s encoder into 48 kHz: err = %v", law.name, err)
		}
		if _, err := law.dec(audiotest.NewRecorder(16000)); !errors.Is(err, transcode.ErrRateMismatch) {
			t.Errorf("%s decoder into 16 kHz: err = %v", law.name, err)
		}
	}
}

// g711Lossy encodes src with law in 20 ms packets, drops the packets
// whose index is in lost, conceals them, and returns the decoded audio.
func g711Lossy(t *testing.T, law g711Law, src transcode.PCM16, lost map[int]bool) transcode.PCM16 {
	t.Helper()
	payloads := audiotest.NewPayloadRecorder(8000)
	enc, err := law.enc(payloads)
	if err != nil {
		t.Fatal(err)
	}
	writeFrames(t, enc, src, 160)
	rec := audiotest.NewRecorder(8000)
	dec, err := law.dec(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range payloads.Payloads() {
		if lost[i] {
			if err := transcode.Conceal(dec, nil); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := dec.WriteSample(p); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Samples()
}

// TestG711Concealment loses packets of a voiced signal and checks the
// concealment: a lost frame follows the waveform far better than silence,
// the pitch is kept, audio fades to silence after 60 ms of loss, and the
// recovery has no click.
func TestG711Concealment(t *testing.T) {
	// 250 Hz: a period of 32 samples, found as 64 or 96 by the pitch search.
	tone := audiotest.Tone(8000, 250, 0.4, time.Second)
	frame := func(s transcode.PCM16, i int) transcode.PCM16 { return s[i*160 : (i+1)*160] }
	for _, law := range g711Laws {
		t.Run(law.name, func(t *testing.T) {
			clean := g711Lossy(t, law, tone, nil)
			one := g711Lossy(t, law, tone, map[int]bool{10: true})
			// The first 10 ms of an erasure are at full level, then -20% per 10 ms.
			if snr := audiotest.SNR(frame(clean, 10)[:80], frame(one, 10)[:80]); snr < 20 {
				t.Errorf("first 10 ms of a lost frame: SNR %.1f dB against the signal, want 20", snr)
			}
			if c := audiotest.Correlation(frame(clean, 10), frame(one, 10)); c < 0.99 {
				t.Errorf("lost frame correlation %.3f", c)
			}
			if f := audiotest.PeakFrequency(frame(one, 10), 8000); math.Abs(f-250) > 20 {
				t.Errorf("concealed pitch %.0f Hz", f)
			}
			if snr := audiotest.SNR(frame(clean, 11), frame(one, 11)); snr < 20 {
				t.Errorf("frame after the loss: SNR %.1f dB, want 20", snr)
			}
			assertNoClick(t, one[9*160:13*160], 0.4)

			long := g711Lossy(t, law, tone, map[int]bool{20: true, 21: true, 22: true, 23: true})
			if l := audiotest.Level(frame(long, 23)); !math.IsInf(l, -1) {
				t.Errorf("frame 60-80 ms into a loss at %.1f dBFS, want silence", l)
			}
			if d := audiotest.Level(frame(long, 21)) - audiotest.Level(frame(clean, 21)); d > -1 || d < -10 {
				t.Errorf("frame 20-40 ms into a loss attenuated by %.1f dB, want 1 to 10", -d)
			}
			assertNoClick(t, long[23*160:26*160], 0.4)
			if snr := audiotest.SNR(frame(clean, 25), frame(long, 25)); snr < 25 {
				t.Errorf("second frame after a long loss: SNR %.1f dB", snr)
			}
		})
	}
}

// assertNoClick fails if s jumps between two samples by more than a sine of
// amplitude amp at 250 Hz can (2π·250/8000·amp of full scale), with 50%
// slack.
func assertNoClick(t *testing.T, s transcode.PCM16, amp float64) {
	t.Helper()
	limit := 1.5 * 2 * math.Pi * 250 / 8000 * amp * 32767
	for i := 1; i < len(s); i++ {
		if d := math.Abs(float64(s[i]) - float64(s[i-1])); d > limit {
			t.Errorf("click at %d: step of %.0f, limit %.0f", i, d, limit)
			return
		}
	}
}

// TestG711ConcealSpeech conceals 10% of the packets of speech. Waveform
// repetition does not keep the phase, so the waveform SNR of a concealed
// frame says little; what it keeps is the level and the spectrum. For the
// voiced lost frames, the first 10 ms must stay within 4 dB of the
// original level on average, and their magnitude spectrum must resemble
// the original's (mean cosine similarity of 50 Hz bands above 0.7).
func TestG711ConcealSpeech(t *testing.T) {
	src := audiotest.Speech(8000, 3*time.Second, 9)
	for _, law := range g711Laws {
		lost := map[int]bool{}
		for i := 5; i < len(src)/160; i += 10 {
			lost[i] = true
		}
		concealed := g711Lossy(t, law, src, lost)
		var levelErr, sim float64
		n := 0
		for i := range lost {
			orig, got := src[i*160:(i+1)*160], concealed[i*160:(i+1)*160]
			if audiotest.Level(orig) < -35 {
				continue
			}
			n++
			levelErr += math.Abs(audiotest.Level(got[:80]) - audiotest.Level(orig[:80]))
			sim += spectralSimilarity(orig, got)
		}
		if n < 5 {
			t.Fatalf("only %d voiced lost frames", n)
		}
		levelErr /= float64(n)
		sim /= float64(n)
		t.Logf("%s: %d voiced lost frames, level error %.2f dB, spectral similarity %.3f", law.name, n, levelErr, sim)
		if levelErr > 4 || sim < 0.7 {
			t.Errorf("%s: level error %.2f dB (want at most 4), spectral similarity %.3f (want 0.7)", law.name, levelErr, sim)
		}
	}
}

// spectralSimilarity is the cosine similarity of the magnitude spectra of
// a and b, sampled every 50 Hz from 100 Hz to 3500 Hz.
func spectralSimilarity(a, b transcode.PCM16) float64 {
	var ab, aa, bb float64
	for f := 100.0; f <= 3500; f += 50 {
		x := math.Sqrt(audiotest.GoertzelPower(a, 8000, f))
		y := math.Sqrt(audiotest.GoertzelPower(b, 8000, f))
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}
