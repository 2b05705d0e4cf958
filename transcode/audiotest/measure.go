package audiotest

import (
	"math"
	"math/cmplx"
	"slices"
	"sort"

	"github.com/segue-rtc/segue/transcode"
)

// Level returns the RMS level of s in dBFS, where a full-scale sine reads
// 0 dBFS (AES17). Silence reads -Inf.
func Level(s transcode.PCM16) float64 {
	if len(s) == 0 {
		return math.Inf(-1)
	}
	var sum float64
	for _, v := range s {
		f := float64(v) / 32767
		sum += f * f
	}
	return 10 * math.Log10(2*sum/float64(len(s)))
}

// GoertzelLevel returns the level in dBFS of the component of s at freq Hz,
// computed with the Goertzel algorithm over the whole of s. A pure sine at
// freq reads the same as Level of it; energy at other frequencies adds
// nothing once they are a few bins (rate/len(s) Hz) away.
func GoertzelLevel(s transcode.PCM16, rate int, freq float64) float64 {
	return 10 * math.Log10(GoertzelPower(s, rate, freq))
}

// GoertzelPower returns the power of the component of s at freq Hz as the
// mean square it contributes, relative to a full-scale sine (so a
// full-scale sine at freq gives 1.0). Samples are weighted by a Hann window
// so that strong tones nearby do not leak into the measure; a tone that
// falls between two bins (rate/len(s) Hz apart) reads up to 1.4 dB low,
// so measure over a whole number of cycles, or long enough to not care.
func GoertzelPower(s transcode.PCM16, rate int, freq float64) float64 {
	n := len(s)
	if n == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / float64(rate)
	coeff := 2 * math.Cos(w)
	var s1, s2, wsum float64
	for i, v := range s {
		h := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n))
		wsum += h
		s0 := float64(v)/32767*h + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	re := s1 - s2*math.Cos(w)
	im := s2 * math.Sin(w)
	amp := 2 * math.Hypot(re, im) / wsum // amplitude of the sine at freq
	return amp * amp
}

// PeakFrequency returns the frequency in Hz of the strongest component of
// s, from a Hann-windowed FFT refined by parabolic interpolation between
// bins. The DC bin is ignored.
func PeakFrequency(s transcode.PCM16, rate int) float64 {
	if len(s) < 4 {
		return 0
	}
	n := 1
	for n < len(s) {
		n <<= 1
	}
	x := make([]complex128, n)
	for i, v := range s {
		h := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(s)))
		x[i] = complex(float64(v)*h, 0)
	}
	fft(x)
	mag := make([]float64, n/2)
	for i := range mag {
		mag[i] = cmplx.Abs(x[i])
	}
	best := 1
	for i := 2; i < len(mag)-1; i++ {
		if mag[i] > mag[best] {
			best = i
		}
	}
	delta := 0.0
	if best > 0 && best < len(mag)-1 {
		a, b, c := math.Log(mag[best-1]+1e-12), math.Log(mag[best]+1e-12), math.Log(mag[best+1]+1e-12)
		if den := a - 2*b + c; den != 0 {
			delta = 0.5 * (a - c) / den
		}
	}
	return (float64(best) + delta) * float64(rate) / float64(n)
}

// fft is an in-place radix-2 FFT; len(x) must be a power of two.
func fft(x []complex128) {
	n := len(x)
	for i, j := 1, 0; i < n; i++ {
		bit := n >> 1
		for ; j&bit != 0; bit >>= 1 {
			j ^= bit
		}
		j ^= bit
		if i < j {
			x[i], x[j] = x[j], x[i]
		}
	}
	for size := 2; size <= n; size <<= 1 {
		step := cmplx.Exp(complex(0, -2*math.Pi/float64(size)))
		for start := 0; start < n; start += size {
			w := complex(1, 0)
			for k := 0; k < size/2; k++ {
				a, b := x[start+k], x[start+k+size/2]*w
				x[start+k], x[start+k+size/2] = a+b, a-b
				w *= step
			}
		}
	}
}

// SNR returns the signal-to-noise ratio in dB of got against ref, sample
// by sample over their common length: the energy of ref over the energy of
// got-ref. Align got first (Delay, Shift) when a chain delays the audio.
// Identical signals give +Inf.
func SNR(ref, got transcode.PCM16) float64 {
	n := min(len(ref), len(got))
	var sig, noise float64
	for i := 0; i < n; i++ {
		r, g := float64(ref[i]), float64(got[i])
		sig += r * r
		noise += (g - r) * (g - r)
	}
	if noise == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(sig/noise)
}

// Correlation returns the normalised cross-correlation of ref and got at
// lag 0 over their common length, from -1 to 1: 1 for the same waveform at
// any gain. It is the measure of choice after a perceptual codec such as
// Opus, whose output follows the waveform only roughly.
func Correlation(ref, got transcode.PCM16) float64 {
	n := min(len(ref), len(got))
	var rg, rr, gg float64
	for i := 0; i < n; i++ {
		r, g := float64(ref[i]), float64(got[i])
		rg += r * g
		rr += r * r
		gg += g * g
	}
	if rr == 0 || gg == 0 {
		return 0
	}
	return rg / math.Sqrt(rr*gg)
}

// Delay returns by how many samples got lags ref, searching lags from 0 to
// maxLag by normalised cross-correlation. A chain that adds d samples of
// latency gives d.
func Delay(ref, got transcode.PCM16, maxLag int) int {
	best, bestC := 0, math.Inf(-1)
	for lag := 0; lag <= maxLag && lag < len(got); lag++ {
		if c := Correlation(ref, got[lag:]); c > bestC {
			best, bestC = lag, c
		}
	}
	return best
}

// Shift returns got advanced by d samples (got[d:]), to line it up with a
// reference after Delay returned d; a negative d pads the start with
// silence.
func Shift(got transcode.PCM16, d int) transcode.PCM16 {
	if d >= 0 {
		return got[min(d, len(got)):]
	}
	return append(make(transcode.PCM16, -d), got...)
}

// WindowedCorrelation compares got with ref window by window, for chains
// whose delay changes over time (a jitter buffer that deepens or sheds
// delay moves the later audio): each window of got is lined up on its own
// with ref, searching delays from 0 to maxLag samples, and the mean of the
// best correlations is returned. Windows where got is below -50 dBFS
// (pauses) are left out; with none left, it returns 0.
func WindowedCorrelation(ref, got transcode.PCM16, window, maxLag int) float64 {
	var sum float64
	n := 0
	for w := 0; w+window <= len(got); w += window {
		g := got[w : w+window]
		if Level(g) < -50 {
			continue
		}
		corr := func(lag int) float64 {
			if lag < 0 || lag > maxLag || lag > w || w-lag+window > len(ref) {
				return -1
			}
			return Correlation(ref[w-lag:w-lag+window], g)
		}
		// Search every other lag, then the neighbours of the best.
		best, at := -1.0, 0
		for lag := 0; lag <= maxLag; lag += 2 {
			if c := corr(lag); c > best {
				best, at = c, lag
			}
		}
		best = max(best, corr(at-1), corr(at+1))
		sum += best
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// BadFrames splits s, a tone at hz, into 20 ms frames and counts the bad
// ones: a frame whose tone is more than 6 dB under the median frame's, or
// that carries more than a quarter of its energy away from the tone (a
// click, a gap, a concealment that went wrong). It also returns the
// longest run of bad frames. Frames are counted from the start of s: to
// judge lost packets one frame each, start s on the packets' 20 ms grid.
func BadFrames(s transcode.PCM16, rate int, hz float64) (frames, bad, longest int) {
	n := rate / 50
	var tone, total []float64
	for off := 0; n > 0 && off+n <= len(s); off += n {
		f := s[off : off+n]
		tone = append(tone, GoertzelLevel(f, rate, hz))
		total = append(total, Level(f))
	}
	if len(tone) == 0 {
		return 0, 0, 0
	}
	sorted := slices.Clone(tone)
	sort.Float64s(sorted)
	median := sorted[len(sorted)/2]
	// A quarter of the energy away from the tone is 1.25 dB; a 20 ms
	// frame need not hold a whole number of the tone's cycles (440 Hz
	// does not), which reads the tone up to 1.4 dB low: 1.5 dB more.
	const offTone = 1.25 + 1.5
	run := 0
	for i := range tone {
		if tone[i] < median-6 || total[i]-tone[i] > offTone || math.IsInf(total[i], -1) {
			bad++
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return len(tone), bad, longest
}

// Dropouts compares got, a signal after loss and its concealment, with
// ref, the same signal without the loss (the clean decoding), in 20 ms
// frames at rate. A frame is active when ref is above -45 dBFS, and a
// dropout when got comes out 10 dB or more below ref there: heard as a
// gap in the sound, whatever the waveform. It measures concealment on
// speech, where BadFrames, made for a steady tone, does not apply, and
// it counts what a listener notices first: concealment that keeps the
// level and the spectrum roughly right is not a dropout even when it
// follows the waveform badly (SNR near 0 dB).
func Dropouts(ref, got transcode.PCM16, rate int) (active, dropped int) {
	n := rate / 50
	for off := 0; n > 0 && off+n <= min(len(ref), len(got)); off += n {
		r := Level(ref[off : off+n])
		if r < -45 {
			continue
		}
		active++
		if Level(got[off:off+n]) <= r-10 {
			dropped++
		}
	}
	return active, dropped
}
