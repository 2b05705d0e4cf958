package audiotest_test

import (
	"math"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// lowPass runs s through a second-order Butterworth low-pass at fc Hz
// (RBJ's cookbook biquad), twice, which takes away the bands above fc.
func lowPass(s transcode.PCM16, rate int, fc float64) transcode.PCM16 {
	w := 2 * math.Pi * fc / float64(rate)
	alpha := math.Sin(w) / math.Sqrt2
	a0 := 1 + alpha
	b0, b1, b2 := (1-math.Cos(w))/2/a0, (1-math.Cos(w))/a0, (1-math.Cos(w))/2/a0
	a1, a2 := -2*math.Cos(w)/a0, (1-alpha)/a0
	out := make(transcode.PCM16, len(s))
	copy(out, s)
	for range 2 {
		var x1, x2, y1, y2 float64
		for i, v := range out {
			x := float64(v)
			y := b0*x + b1*x1 + b2*x2 - a1*y1 - a2*y2
			x2, x1, y2, y1 = x1, x, y1, y
			out[i] = int16(max(-32768, min(32767, math.Round(y))))
		}
	}
	return out
}

func TestBarkDistortion(t *testing.T) {
	ref := audiotest.Speech(8000, 2*time.Second, 5)
	noisy := audiotest.Mix(ref, audiotest.Noise(8000, -45, 2*time.Second, 9))
	louderNoise := audiotest.Mix(ref, audiotest.Noise(8000, -30, 2*time.Second, 9))
	muffled := lowPass(ref, 8000, 1500)
	t.Logf("speech at %.1f dBFS", audiotest.Level(ref))

	if d := audiotest.BarkDistortion(ref, ref, 8000); d != 0 {
		t.Errorf("identical signals: %g, want 0", d)
	}
	dn := audiotest.BarkDistortion(ref, noisy, 8000)
	dl := audiotest.BarkDistortion(ref, louderNoise, 8000)
	dm := audiotest.BarkDistortion(ref, muffled, 8000)
	ds := audiotest.BarkDistortion(ref, audiotest.Silence(8000, 2*time.Second), 8000)
	t.Logf("noise at -45 dBFS %.4f, at -30 dBFS %.4f, low-passed at 1.5 kHz %.4f, silence %.4f", dn, dl, dm, ds)
	if !(dn > 0 && dn < 0.02) {
		t.Errorf("noise 25 dB under the speech: %.4f, want small but above 0", dn)
	}
	if dl <= dn {
		t.Errorf("louder noise %.4f, not above quieter noise %.4f", dl, dn)
	}
	if dm < 5*dn {
		t.Errorf("bands above 1.5 kHz removed: %.4f, want well above the small noise's %.4f", dm, dn)
	}
	if math.Abs(ds-1) > 1e-9 {
		t.Errorf("silence against speech: %.4f, want 1", ds)
	}
	// A gain changes loudness in every band alike: half the amplitude is
	// a quarter of the energy, loudness times 0.25^0.23.
	want := (1 - math.Pow(0.25, 0.23)) * (1 - math.Pow(0.25, 0.23))
	if d := audiotest.BarkDistortion(ref, audiotest.Scale(ref, 0.5), 8000); math.Abs(d-want) > 0.01*want {
		t.Errorf("half the amplitude: %.5f, want %.5f", d, want)
	}
	if d := audiotest.BarkDistortion(audiotest.Silence(8000, time.Second), ref, 8000); !math.IsNaN(d) {
		t.Errorf("silent reference: %g, want NaN", d)
	}
}
