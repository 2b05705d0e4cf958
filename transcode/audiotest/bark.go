package audiotest

import (
	"math"
	"math/cmplx"

	"github.com/segue-rtc/segue/transcode"
)

// barkSilence is the level in dBFS under which a reference frame is a
// pause and left out of BarkDistortion.
const barkSilence = -50

// BarkDistortion returns the Bark spectral distortion (BSD) of got
// against ref, an objective measure of how different two signals sound
// that, unlike SNR, does not reward keeping the waveform: each 20 ms frame
// (a Hann window, no overlap) is turned into its power spectrum, summed
// into critical bands one Bark wide (Zwicker's approximation,
// z = 13·atan(0.00076·f) + 3.5·atan((f/7500)²)), and each band's energy into
// a loudness E^0.23 (Zwicker's power law). The result is
// Σ (L_ref − L_got)² over Σ L_ref², summed over bands and over the frames
// whose reference is above -50 dBFS: 0 for identical signals, about 1
// when got is silent, and more when got adds loudness where ref has none.
// Signals are compared over their common length, sample by sample: line
// got up first (Delay, Shift) when a chain delays it. Without any active
// frame in ref it returns NaN.
func BarkDistortion(ref, got transcode.PCM16, rate int) float64 {
	frame := rate / 50
	n := 1
	for n < frame {
		n <<= 1
	}
	bands := barkBands(n, rate)
	nb := 0
	for _, b := range bands {
		nb = max(nb, b+1)
	}
	window := make([]float64, frame)
	for i := range window {
		window[i] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(frame))
	}
	x := make([]complex128, n)
	loudness := func(s transcode.PCM16, out []float64) {
		for i := range x {
			x[i] = 0
		}
		for i, v := range s {
			x[i] = complex(float64(v)/32768*window[i], 0)
		}
		fft(x)
		for i := range out {
			out[i] = 0
		}
		for k, b := range bands {
			if b >= 0 {
				a := cmplx.Abs(x[k])
				out[b] += a * a
			}
		}
		for i, e := range out {
			out[i] = math.Pow(e, 0.23)
		}
	}
	lr, lg := make([]float64, nb), make([]float64, nb)
	var num, den float64
	active := 0
	for off := 0; off+frame <= min(len(ref), len(got)); off += frame {
		r := ref[off : off+frame]
		if Level(r) < barkSilence {
			continue
		}
		active++
		loudness(r, lr)
		loudness(got[off:off+frame], lg)
		for i := range lr {
			num += (lr[i] - lg[i]) * (lr[i] - lg[i])
			den += lr[i] * lr[i]
		}
	}
	if active == 0 || den == 0 {
		return math.NaN()
	}
	return num / den
}

// barkBands maps each bin of an n-point spectrum at rate, up to the
// Nyquist frequency, to its critical band (0 from 0 to 1 Bark, 1 from 1
// to 2, ...); the DC bin maps to -1 and is left out.
func barkBands(n, rate int) []int {
	bands := make([]int, n/2+1)
	bands[0] = -1
	for k := 1; k <= n/2; k++ {
		f := float64(k) * float64(rate) / float64(n)
		z := 13*math.Atan(0.00076*f) + 3.5*math.Atan((f/7500)*(f/7500))
		bands[k] = int(z)
	}
	return bands
}
