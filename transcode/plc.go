package transcode

import "math"

// G.711 packet loss concealment by pitch waveform repetition, after ITU-T
// G.711 Appendix I, at 8 kHz.
const (
	plcPitchMin = 40                  // 200 Hz
	plcPitchMax = 120                 // 66.7 Hz
	plcCorrLen  = 160                 // 20 ms analysed for the pitch
	plcHistory  = 3*plcPitchMax + 30  // three longest periods and a quarter
	plcStep     = 80                  // 10 ms
	plcSilence  = plcStep + 5*plcStep // attenuation reaches zero after 60 ms
	plcFadeMin  = 32                  // 4 ms merge at the end of an erasure
	plcFadeMax  = 80                  // at most 10 ms
)

// plc conceals lost G.711 frames. While audio flows, it keeps the last
// output samples. On the first lost frame it estimates the pitch period
// from the last 20 ms by normalised autocorrelation, then repeats the last
// period; after 10 ms it cycles over the last two periods and after 20 ms
// over three, which keeps long erasures from sounding buzzy, and from
// 10 ms on it attenuates by 20% per 10 ms, to silence at 60 ms. The first
// good frame after an erasure is merged with the continued synthetic
// signal by a linear cross-fade of 4 ms, plus 1 ms per further 10 ms of
// erasure, and each wrap of the repeated segment is smoothed by a
// quarter-period overlap-add. Unlike Appendix I it adds no 3.75 ms output
// delay; the price is no overlap-add at the very start of an erasure,
// where the repeated period starts where the signal's periodicity says it
// continues.
type plc struct {
	hist    [plcHistory]float32 // last output samples, oldest first
	pitchBf [plcHistory]float32 // hist at the start of the erasure
	erased  int                 // samples concealed in this erasure
	pitch   int
	pos     int // offset of the next sample in the repeated segment
	periods int
}

// good records a correctly received frame, merging it with the synthetic
// signal if it ends an erasure. s is modified in place.
func (p *plc) good(s PCM16) {
	if p.erased > 0 {
		n := min(len(s), min(plcFadeMax, plcFadeMin+8*(p.erased/plcStep-1)))
		n = max(n, min(len(s), plcFadeMin))
		for i := 0; i < n; i++ {
			w := float32(i+1) / float32(n+1)
			syn := p.synth()
			s[i] = clamp16(syn*(1-w) + float32(s[i])*w)
		}
		p.erased = 0
	}
	p.push(s)
}

// conceal fills s for a lost frame.
func (p *plc) conceal(s PCM16) {
	if p.erased == 0 {
		p.pitchBf = p.hist
		p.pitch = findPitch(p.hist[:])
		p.periods = 1
		p.pos = 0
	}
	for i := range s {
		s[i] = clamp16(p.synth())
	}
	p.push(s)
}

// synth returns the next concealment sample and advances the erasure.
func (p *plc) synth() float32 {
	want := 1 + min(2, p.erased/plcStep)
	if want != p.periods {
		p.pos += (want - p.periods) * p.pitch
		p.periods = want
	}
	seg := p.periods * p.pitch
	start := plcHistory - seg
	v := p.pitchBf[start+p.pos]
	// Over the last quarter period before the segment wraps, cross-fade
	// to the samples one segment earlier, which lead into the segment's
	// start: the wrap is then continuous (Appendix I's overlap-add).
	if q := p.pitch / 4; p.pos >= seg-q && start-seg+p.pos >= 0 {
		w := float32(p.pos-(seg-q)+1) / float32(q+1)
		v = (1-w)*v + w*p.pitchBf[start-seg+p.pos]
	}
	p.pos++
	if p.pos >= seg {
		p.pos = 0
	}
	gain := float32(1)
	if p.erased >= plcStep {
		gain = max(0, 1-0.2*float32(p.erased-plcStep)/plcStep)
	}
	p.erased++
	return v * gain
}

func (p *plc) push(s PCM16) {
	if len(s) >= plcHistory {
		for i, v := range s[len(s)-plcHistory:] {
			p.hist[i] = float32(v)
		}
		return
	}
	copy(p.hist[:], p.hist[len(s):])
	for i, v := range s {
		p.hist[plcHistory-len(s)+i] = float32(v)
	}
}

// findPitch returns the lag in [plcPitchMin, plcPitchMax] that best
// predicts the last plcCorrLen samples of h from the samples one lag
// earlier (normalised cross-correlation), searched coarsely in steps of 2
// and then refined. Silence returns plcPitchMax.
func findPitch(h []float32) int {
	x := h[len(h)-plcCorrLen:]
	score := func(lag int) float64 {
		y := h[len(h)-plcCorrLen-lag : len(h)-lag]
		var xy, yy float64
		for i := range x {
			xy += float64(x[i]) * float64(y[i])
			yy += float64(y[i]) * float64(y[i])
		}
		if yy == 0 {
			return math.Inf(-1)
		}
		return xy / math.Sqrt(yy)
	}
	best, bestS := plcPitchMax, math.Inf(-1)
	for lag := plcPitchMin; lag <= plcPitchMax; lag += 2 {
		if s := score(lag); s > bestS {
			best, bestS = lag, s
		}
	}
	for lag := max(plcPitchMin, best-1); lag <= min(plcPitchMax, best+1); lag++ {
		if s := score(lag); s > bestS {
			best, bestS = lag, s
		}
	}
	return best
}
