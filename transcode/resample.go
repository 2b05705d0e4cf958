package transcode

import (
	"fmt"
	"math"
	"sync"
)

// Resampler design: a rational L/M polyphase FIR resampler. The prototype
// low-pass is a Kaiser-windowed sinc at the up-sampled rate L·from, with
// the passband ending at 85% of the lower Nyquist frequency, the stopband
// starting at that Nyquist frequency, and a Kaiser β for 80 dB of
// attenuation. For 48 ↔ 8 kHz that is a 3.4 kHz passband, a 4 kHz
// stopband and 409 taps (the length is rounded so that the delay is a
// whole number of samples: 34 at 8 kHz); resample_test.go checks at least
// 70 dB of alias and image rejection. Each output sample is one dot product
// with one phase of the filter, taps/L multiply-adds.
const (
	resampleAttenuation = 80.0 // dB
	resamplePassband    = 0.85 // fraction of the lower Nyquist frequency
)

// resampleFilter is a polyphase filter bank shared by every resampler of
// the same rate pair.
type resampleFilter struct {
	up, down int
	taps     int         // taps per phase
	phases   [][]float32 // phases[p][k] multiplies input x[base-taps+1+k]
}

var resampleFilters sync.Map // [2]int{from,to} → *resampleFilter

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// besselI0 is the modified Bessel function of the first kind, order 0.
func besselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < sum*1e-12 {
			break
		}
	}
	return sum
}

func newResampleFilter(from, to int) *resampleFilter {
	g := gcd(from, to)
	up, down := to/g, from/g
	hi := float64(from) * float64(up)
	nyq := float64(min(from, to)) / 2
	pass := nyq * resamplePassband
	cut := (pass + nyq) / 2 / hi          // normalised cut-off, cycles per sample
	dw := 2 * math.Pi * (nyq - pass) / hi // transition width, rad per sample
	n := int(math.Ceil((resampleAttenuation-8)/(2.285*dw))) + 1
	// Make the group delay, (n-1)/2 samples at the high rate, a whole
	// number of both input and output samples, so that chains of
	// resamplers delay audio by whole samples.
	step := 2 * up * down
	n = (n-1+step-1)/step*step + 1
	taps := (n + up - 1) / up
	beta := 0.1102 * (resampleAttenuation - 8.7)
	i0b := besselI0(beta)
	f := &resampleFilter{up: up, down: down, taps: taps, phases: make([][]float32, up)}
	for p := range f.phases {
		f.phases[p] = make([]float32, taps)
	}
	mid := float64(n-1) / 2
	for i := 0; i < n; i++ { // phases beyond n stay zero
		t := float64(i) - mid
		var h float64
		if t == 0 {
			h = 2 * cut
		} else {
			h = math.Sin(2*math.Pi*cut*t) / (math.Pi * t)
		}
		r := 2*float64(i)/float64(n-1) - 1
		w := besselI0(beta*math.Sqrt(max(0, 1-r*r))) / i0b
		// The gain of up compensates the zeros interpolation inserts.
		f.phases[i%up][taps-1-i/up] = float32(h * w * float64(up))
	}
	return f
}

func getResampleFilter(from, to int) *resampleFilter {
	key := [2]int{from, to}
	if f, ok := resampleFilters.Load(key); ok {
		return f.(*resampleFilter)
	}
	f, _ := resampleFilters.LoadOrStore(key, newResampleFilter(from, to))
	return f.(*resampleFilter)
}

// resampler is the stage built by Resample.
type resampler struct {
	dst   PCMWriter
	from  int
	f     *resampleFilter
	hist  []float32 // the last taps-1 inputs, then the current frame
	phase int       // position of the next output, in units of 1/up input samples, relative to hist[taps-1]
	out   PCM16
}

// Resample returns a writer of PCM at fromRate that converts it to dst's
// rate, or dst itself when the rates match. Any pair of rates from 8 kHz to
// 48 kHz whose ratio reduces to small integers works (8 ↔ 16 ↔ 24 ↔ 48 kHz,
// 44.1 ↔ 48 kHz is refused as too costly); for an unsupported pair the
// returned writer fails every write with ErrUnsupportedRate, so that a
// wiring mistake shows up as an error and never a panic. The gateway's
// voice path does not resample: Opus is decoded and encoded at 8 kHz.
func Resample(dst PCMWriter, fromRate int) PCMWriter {
	to := dst.SampleRate()
	if fromRate == to {
		return dst
	}
	if err := checkResampleRates(fromRate, to); err != nil {
		return &failedWriter{dst: dst, rate: fromRate, err: err}
	}
	f := getResampleFilter(fromRate, to)
	return &resampler{
		dst:  dst,
		from: fromRate,
		f:    f,
		hist: make([]float32, f.taps-1, f.taps-1+fromRate/50),
	}
}

func checkResampleRates(from, to int) error {
	if from < 8000 || to < 8000 || from > 48000 || to > 48000 {
		return fmt.Errorf("transcode: resample %d Hz to %d Hz: %w", from, to, ErrUnsupportedRate)
	}
	g := gcd(from, to)
	if from/g > 12 || to/g > 12 {
		return fmt.Errorf("transcode: resample %d Hz to %d Hz: ratio %d/%d: %w", from, to, to/g, from/g, ErrUnsupportedRate)
	}
	return nil
}

func (r *resampler) WriteSample(s PCM16) error {
	keep := r.f.taps - 1
	for _, v := range s {
		r.hist = append(r.hist, float32(v))
	}
	up, down := r.f.up, r.f.down
	avail := len(r.hist) - keep // new input samples in this call
	// Output k sits at input position pos = phase/up (relative to
	// hist[keep]); it uses inputs hist[keep+base-j] for j in [0,taps).
	n := 0
	for p := r.phase; p/up < avail; p += down {
		n++
	}
	if cap(r.out) < n {
		r.out = make(PCM16, n)
	}
	out := r.out[:n]
	p := r.phase
	for i := range out {
		base := keep + p/up
		h := r.f.phases[p%up]
		x := r.hist[base-len(h)+1 : base+1]
		x = x[:len(h)]
		var acc float32
		for j, c := range h {
			acc += c * x[j]
		}
		out[i] = clamp16(acc)
		p += down
	}
	r.phase = p - avail*up
	copy(r.hist, r.hist[len(r.hist)-keep:])
	r.hist = r.hist[:keep]
	if n == 0 {
		return nil
	}
	return r.dst.WriteSample(out)
}

func clamp16(v float32) int16 {
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	case v >= 0:
		return int16(v + 0.5)
	}
	return int16(v - 0.5)
}

func (r *resampler) SampleRate() int { return r.from }
func (r *resampler) Close() error    { return r.dst.Close() }
func (r *resampler) String() string {
	return fmt.Sprintf("Resample(%d->%d) -> %s", r.from, r.dst.SampleRate(), r.dst)
}

// failedWriter stands for a stage that could not be built; every write
// returns the construction error.
type failedWriter struct {
	dst  PCMWriter
	rate int
	err  error
}

func (w *failedWriter) WriteSample(PCM16) error { return w.err }
func (w *failedWriter) SampleRate() int         { return w.rate }
func (w *failedWriter) Close() error            { return w.dst.Close() }
func (w *failedWriter) String() string          { return fmt.Sprintf("Failed(%v) -> %s", w.err, w.dst) }
