package transcode_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// resample runs src at from through Resample into a recorder at to, in
// frames of 20 ms.
func resample(t *testing.T, src transcode.PCM16, from, to int) transcode.PCM16 {
	t.Helper()
	rec := audiotest.NewRecorder(to)
	w := transcode.Resample(rec, from)
	writeFrames(t, w, src, from/50)
	return rec.Samples()
}

// TestResampleAliasRejection feeds 48 kHz tones above 4 kHz, which would
// alias into the 8 kHz band, and checks they come out at least 70 dB
// down, while tones in the passband keep their level within 0.1 dB.
func TestResampleAliasRejection(t *testing.T) {
	tests := []struct {
		freq    float64
		maxGain float64 // dB, output level minus input level
		minGain float64
	}{
		{300, 0.1, -0.1},
		{1000, 0.1, -0.1},
		{3000, 0.1, -0.1},
		{4000, -70, math.Inf(-1)}, // the Nyquist frequency of 8 kHz
		{4500, -70, math.Inf(-1)},
		{6000, -70, math.Inf(-1)},
		{11000, -70, math.Inf(-1)},
		{19000, -70, math.Inf(-1)},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.freq), func(t *testing.T) {
			src := audiotest.Tone(48000, tt.freq, 0.9, time.Second)
			got := resample(t, src, 48000, 8000)
			if len(got) != len(src)/6 {
				t.Fatalf("%d samples out for %d in", len(got), len(src))
			}
			got = got[800:] // skip the filter's start
			gain := audiotest.Level(got) - audiotest.Level(src)
			if gain > tt.maxGain || gain < tt.minGain {
				t.Errorf("gain %.2f dB, want %.1f to %.1f", gain, tt.minGain, tt.maxGain)
			}
		})
	}
}

// TestResampleImageRejection upsamples 8 kHz tones to 48 kHz and checks
// that the images around multiples of 8 kHz are at least 70 dB down.
func TestResampleImageRejection(t *testing.T) {
	for _, freq := range []float64{500, 1000, 3000, 3400} {
		src := audiotest.Tone(8000, freq, 0.9, time.Second)
		got := resample(t, src, 8000, 48000)[4800:]
		want := audiotest.Level(src)
		if g := audiotest.GoertzelLevel(got, 48000, freq) - want; math.Abs(g) > 0.1 {
			t.Errorf("%v Hz: passband gain %.2f dB", freq, g)
		}
		for _, img := range []float64{8000 - freq, 8000 + freq, 16000 - freq, 16000 + freq, 24000 - freq} {
			if g := audiotest.GoertzelLevel(got, 48000, img) - want; g > -70 {
				t.Errorf("%v Hz: image at %v Hz only %.1f dB down", freq, img, -g)
			}
		}
	}
}

// TestResampleRoundTrip takes 8 kHz speech to 48 kHz and back: apart from
// the filters' delay, the band up to 3.4 kHz comes back intact.
func TestResampleRoundTrip(t *testing.T) {
	tests := []struct{ from, via int }{
		{8000, 48000},
		{16000, 48000},
		{8000, 16000},
		{24000, 48000},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d-%d", tt.from, tt.via), func(t *testing.T) {
			src := audiotest.Tones(tt.from, 0.2, time.Second, 440, 1000, 2500)
			back := resample(t, resample(t, src, tt.from, tt.via), tt.via, tt.from)
			if len(back) != len(src) {
				t.Fatalf("%d samples back for %d", len(back), len(src))
			}
			d := audiotest.Delay(src, back, tt.from/100)
			snr := audiotest.SNR(src[:len(src)-d], audiotest.Shift(back, d))
			if snr < 40 {
				t.Errorf("round trip SNR %.1f dB after a delay of %d samples, want 40", snr, d)
			}
		})
	}
}

func TestResampleFrameSizes(t *testing.T) {
	// The output must not depend on how the input is cut into frames.
	src := audiotest.Speech(48000, 300*time.Millisecond, 1)
	ref := resample(t, src, 48000, 8000)
	for _, n := range []int{1, 7, 480, 961, 4000} {
		rec := audiotest.NewRecorder(8000)
		writeFrames(t, transcode.Resample(rec, 48000), src, n)
		if got := rec.Samples(); audiotest.SNR(ref, got) != math.Inf(1) || len(got) != len(ref) {
			t.Errorf("frames of %d: output differs from 20 ms frames", n)
		}
	}
}

func TestResampleRates(t *testing.T) {
	rec := audiotest.NewRecorder(8000)
	if w := transcode.Resample(rec, 8000); w != transcode.PCMWriter(rec) {
		t.Errorf("same rate: got %s, want the destination itself", w)
	}
	w := transcode.Resample(rec, 48000)
	if w.SampleRate() != 48000 || w.String() != "Resample(48000->8000) -> Recorder(8000)" {
		t.Errorf("rate %d, String %q", w.SampleRate(), w.String())
	}
	for _, from := range []int{44100, 4000, 96000} {
		w := transcode.Resample(rec, from)
		if err := w.WriteSample(make(transcode.PCM16, 10)); !errors.Is(err, transcode.ErrUnsupportedRate) {
			t.Errorf("from %d Hz: err = %v, want ErrUnsupportedRate", from, err)
		}
		if w.SampleRate() != from {
			t.Errorf("from %d Hz: SampleRate %d", from, w.SampleRate())
		}
	}
	if err := transcode.Resample(rec, 16000).Close(); err != nil || !rec.Closed() {
		t.Error("Close does not reach the destination")
	}
}
