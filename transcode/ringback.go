package transcode

import "math"

// Ringback generates a ringing tone for a caller waiting on an answer, in
// 20 ms frames: ITU-T E.180's common form, 425 Hz, one second on and four
// off (the European cadence; the North American one differs only in tone
// and cadence). It is not safe for concurrent use.
type Ringback struct {
	rate  int
	n     int // samples generated so far
	frame PCM16
	amp   float64
}

// NewRingback returns a generator at rate Hz at amplitude amp (0..1).
func NewRingback(rate int, amp float64) *Ringback {
	return &Ringback{rate: rate, amp: amp, frame: make(PCM16, rate/50)}
}

// Next returns the next 20 ms frame. The slice is reused by the next call.
func (r *Ringback) Next() PCM16 {
	period := 5 * r.rate
	on := r.rate
	for i := range r.frame {
		pos := (r.n + i) % period
		if pos >= on {
			r.frame[i] = 0
			continue
		}
		// 10 ms ramps keep the cadence edges free of clicks.
		g := 1.0
		ramp := r.rate / 100
		if pos < ramp {
			g = float64(pos) / float64(ramp)
		} else if on-pos < ramp {
			g = float64(on-pos) / float64(ramp)
		}
		r.frame[i] = int16(g * r.amp * 32767 * math.Sin(2*math.Pi*425*float64(r.n+i)/float64(r.rate)))
	}
	r.n = (r.n + len(r.frame)) % (period * 425) // keeps phase continuous and n bounded
	return r.frame
}
