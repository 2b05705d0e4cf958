package transcode

import (
	"fmt"
	"math"
)

// DTMF frequencies (ITU-T Q.23): a digit is one row tone plus one column
// tone.
var (
	dtmfRows = [4]float64{697, 770, 852, 941}
	dtmfCols = [4]float64{1209, 1336, 1477, 1633}
)

// dtmfKeypad maps row and column to the digit.
var dtmfKeypad = [4][4]rune{
	{'1', '2', '3', 'A'},
	{'4', '5', '6', 'B'},
	{'7', '8', '9', 'C'},
	{'*', '0', '#', 'D'},
}

// DTMFFrequencies returns the row and column frequencies of digit in Hz.
func DTMFFrequencies(digit rune) (row, col float64, err error) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	for r, keys := range dtmfKeypad {
		for c, k := range keys {
			if k == digit {
				return dtmfRows[r], dtmfCols[c], nil
			}
		}
	}
	return 0, 0, fmt.Errorf("transcode: digit %q: %w", digit, ErrUnknownDigit)
}

// DTMFTone writes the in-band tone of digit into dst at rate, for peers
// without telephone-event: both frequencies at amplitude amp each (0.25
// of full scale, about -15 dBm0 per tone, is typical). offset is the index
// of dst[0] within the tone, so that a tone spread over several frames
// stays continuous: pass 0, then len(dst), and so on.
func DTMFTone(dst PCM16, rate int, digit rune, amp float64, offset int) error {
	row, col, err := DTMFFrequencies(digit)
	if err != nil {
		return err
	}
	wr, wc := 2*math.Pi*row/float64(rate), 2*math.Pi*col/float64(rate)
	for i := range dst {
		t := float64(offset + i)
		dst[i] = clamp16(float32(amp * 32767 * (math.Sin(wr*t) + math.Sin(wc*t))))
	}
	return nil
}

// DTMF detection parameters, after the usual telephony practice (a block
// of 205 samples at 8 kHz gives bins about 39 Hz apart).
const (
	dtmfMinLevel    = 1e-4 // each tone at least -40 dBFS (power 1e-4 of a full-scale sine)
	dtmfTwistNormal = 8.0  // dB the column tone may be weaker than the row tone
	dtmfTwistRev    = 4.0  // dB the row tone may be weaker than the column tone
	dtmfRelPeak     = 6.0  // dB each tone must beat the other tones of its group
	dtmfToneShare   = 0.6  // share of the block's energy in the two tones
)

// DTMFDetector finds in-band DTMF digits in PCM with the Goertzel
// algorithm, for peers that send tones instead of telephone-events. It
// analyses blocks of 25.6 ms and reports a digit once, when two blocks in
// a row agree on it (so a tone shorter than about 40 ms is ignored), and
// again only after a block without it. It is not safe for concurrent use.
type DTMFDetector struct {
	rate    int
	block   int
	buf     []float64
	coef    [8]float64
	last    rune // digit of the previous block, 0 for none
	current rune // digit reported and still held, 0 for none
}

// NewDTMFDetector returns a detector for PCM at rate (8 kHz to 48 kHz).
func NewDTMFDetector(rate int) (*DTMFDetector, error) {
	if rate < 8000 || rate > 48000 {
		return nil, fmt.Errorf("transcode: dtmf detector at %d Hz: %w", rate, ErrUnsupportedRate)
	}
	d := &DTMFDetector{rate: rate, block: rate * 205 / 8000}
	d.buf = make([]float64, 0, d.block)
	for i, f := range append(dtmfRows[:], dtmfCols[:]...) {
		d.coef[i] = 2 * math.Cos(2*math.Pi*f/float64(rate))
	}
	return d, nil
}

// Detect analyses pcm, which follows the audio of the previous call, and
// appends the digits that started in it to digits.
func (d *DTMFDetector) Detect(pcm PCM16, digits []rune) []rune {
	for _, v := range pcm {
		d.buf = append(d.buf, float64(v)/32767)
		if len(d.buf) < d.block {
			continue
		}
		digit := d.analyse()
		d.buf = d.buf[:0]
		if digit != 0 && digit == d.last && digit != d.current {
			d.current = digit
			digits = append(digits, digit)
		}
		if digit == 0 && d.last == 0 {
			d.current = 0
		}
		d.last = digit
	}
	return digits
}

// analyse returns the digit present in the buffered block, or 0.
func (d *DTMFDetector) analyse() rune {
	var p [8]float64
	var energy float64
	for _, x := range d.buf {
		energy += x * x
	}
	n := float64(len(d.buf))
	for k, c := range d.coef {
		var s1, s2 float64
		for _, x := range d.buf {
			s1, s2 = x+c*s1-s2, s1
		}
		// Power of the component relative to a full-scale sine.
		p[k] = (s1*s1 + s2*s2 - c*s1*s2) * 4 / (n * n)
	}
	r, rp := strongest(p[:4])
	c, cp := strongest(p[4:])
	if rp < dtmfMinLevel || cp < dtmfMinLevel {
		return 0
	}
	twist := 10 * math.Log10(cp/rp)
	if twist < -dtmfTwistNormal || twist > dtmfTwistRev {
		return 0
	}
	for i := range 4 {
		if i != r && 10*math.Log10(rp/max(p[i], 1e-20)) < dtmfRelPeak {
			return 0
		}
		if i != c && 10*math.Log10(cp/max(p[4+i], 1e-20)) < dtmfRelPeak {
			return 0
		}
	}
	// A sine of power P (relative to full scale) has mean square P/2.
	if (rp+cp)/2 < dtmfToneShare*energy/n {
		return 0
	}
	return dtmfKeypad[r][c]
}

func strongest(p []float64) (int, float64) {
	best := 0
	for i := range p {
		if p[i] > p[best] {
			best = i
		}
	}
	return best, p[best]
}
