package audiotest

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/segue-rtc/segue/transcode"
)

// Samples returns the number of samples d lasts at rate.
func Samples(rate int, d time.Duration) int {
	return int(int64(rate) * int64(d) / int64(time.Second))
}

// Tone returns a sine of freq Hz and amplitude amp (1.0 is full scale)
// lasting d at rate.
func Tone(rate int, freq, amp float64, d time.Duration) transcode.PCM16 {
	return Tones(rate, amp, d, freq)
}

// Tones returns the sum of sines at freqs, each of amplitude amp, lasting d
// at rate, e.g. the two tones of a DTMF digit.
func Tones(rate int, amp float64, d time.Duration, freqs ...float64) transcode.PCM16 {
	out := make(transcode.PCM16, Samples(rate, d))
	for i := range out {
		var v float64
		for _, f := range freqs {
			v += amp * math.Sin(2*math.Pi*f*float64(i)/float64(rate))
		}
		out[i] = toInt16(v)
	}
	return out
}

// Silence returns d of zero samples at rate.
func Silence(rate int, d time.Duration) transcode.PCM16 {
	return make(transcode.PCM16, Samples(rate, d))
}

// Speech returns a deterministic speech-like signal lasting d at rate, from
// seed: a glottal pulse train whose pitch glides between 100 and 220 Hz,
// shaped by three formant resonators that move from vowel to vowel, with
// syllables of about 200 ms separated by short pauses and a little
// breath noise. Its peak is about 0.5 of full scale. Codecs tuned for voice
// treat it like speech, which pure tones are not.
func Speech(rate int, d time.Duration, seed uint64) transcode.PCM16 {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	n := Samples(rate, d)
	out := make([]float64, n)
	vowels := [][3]float64{{730, 1090, 2440}, {270, 2290, 3010}, {300, 870, 2240}, {530, 1840, 2480}, {570, 840, 2410}}
	var res [3]resonator
	phase := 0.0
	syllable := 0
	for i := 0; i < n; {
		// One syllable: voiced part, then a pause.
		voiced := Samples(rate, time.Duration(120+rng.IntN(160))*time.Millisecond)
		pause := Samples(rate, time.Duration(30+rng.IntN(90))*time.Millisecond)
		v := vowels[rng.IntN(len(vowels))]
		f0a := 100 + 120*rng.Float64()
		f0b := 100 + 120*rng.Float64()
		for k := range res {
			f := min(v[k], 0.45*float64(rate))
			res[k].tune(f, 80+40*float64(k), float64(rate))
		}
		syllable++
		for j := 0; j < voiced && i < n; j, i = j+1, i+1 {
			t := float64(j) / float64(voiced)
			f0 := f0a + (f0b-f0a)*t
			env := math.Sin(math.Pi * t)
			phase += f0 / float64(rate)
			var src float64
			if phase >= 1 {
				phase--
				src = 1
			}
			src += 0.02 * (rng.Float64()*2 - 1)
			var y float64
			for k := range res {
				y += res[k].step(src) / float64(k+1)
			}
			out[i] = env * y
		}
		for j := 0; j < pause && i < n; j, i = j+1, i+1 {
			out[i] = 0
		}
	}
	peak := 0.0
	for _, v := range out {
		peak = max(peak, math.Abs(v))
	}
	pcm := make(transcode.PCM16, n)
	if peak == 0 {
		return pcm
	}
	for i, v := range out {
		// Breath noise at about -70 dBFS keeps pauses from being digital silence.
		pcm[i] = toInt16(0.5*v/peak + 0.0005*(rng.Float64()*2-1))
	}
	return pcm
}

// resonator is a two-pole band-pass filter.
type resonator struct{ a1, a2, g, y1, y2 float64 }

func (r *resonator) tune(freq, bw, rate float64) {
	rr := math.Exp(-math.Pi * bw / rate)
	r.a1 = 2 * rr * math.Cos(2*math.Pi*freq/rate)
	r.a2 = -rr * rr
	r.g = 1 - rr
}

func (r *resonator) step(x float64) float64 {
	y := r.g*x + r.a1*r.y1 + r.a2*r.y2
	r.y2, r.y1 = r.y1, y
	return y
}

func toInt16(v float64) int16 {
	x := math.Round(v * 32767)
	return int16(max(-32768, min(32767, x)))
}

// Concat joins signals into one.
func Concat(parts ...transcode.PCM16) transcode.PCM16 {
	var out transcode.PCM16
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Scale returns s multiplied by gain, saturating at full scale.
func Scale(s transcode.PCM16, gain float64) transcode.PCM16 {
	out := make(transcode.PCM16, len(s))
	for i, v := range s {
		out[i] = toInt16(float64(v) * gain / 32767)
	}
	return out
}

// Noise returns white noise of RMS level dBFS (relative to a full-scale
// sine, as Level measures it) lasting d at rate, from seed.
func Noise(rate int, dBFS float64, d time.Duration, seed uint64) transcode.PCM16 {
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	// A sine of amplitude a has RMS a/√2; Gaussian noise of deviation σ has RMS σ.
	sigma := math.Pow(10, dBFS/20) / math.Sqrt2
	out := make(transcode.PCM16, Samples(rate, d))
	for i := range out {
		out[i] = toInt16(sigma * rng.NormFloat64())
	}
	return out
}

// Mix returns the sample-wise sum of signals, saturating at full scale,
// as long as the longest of them.
func Mix(signals ...transcode.PCM16) transcode.PCM16 {
	n := 0
	for _, s := range signals {
		n = max(n, len(s))
	}
	acc := make([]int32, n)
	for _, s := range signals {
		for i, v := range s {
			acc[i] += int32(v)
		}
	}
	out := make(transcode.PCM16, n)
	for i, v := range acc {
		out[i] = int16(max(-32768, min(32767, v)))
	}
	return out
}
