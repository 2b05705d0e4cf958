package audiotest_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestToneMeasures(t *testing.T) {
	tests := []struct {
		rate      int
		freq, amp float64
		wantLevel float64
	}{
		{8000, 1000, 0.5, -6.02},
		{8000, 440, 1.0, 0},
		{48000, 1000, 0.1, -20},
		{48000, 15000, 0.25, -12.04},
		{16000, 3000, 0.01, -40},
	}
	for _, tt := range tests {
		s := audiotest.Tone(tt.rate, tt.freq, tt.amp, time.Second)
		if got := len(s); got != tt.rate {
			t.Errorf("%v Hz tone: %d samples for 1 s at %d Hz", tt.freq, got, tt.rate)
		}
		if f := audiotest.PeakFrequency(s, tt.rate); math.Abs(f-tt.freq) > 1 {
			t.Errorf("PeakFrequency of %v Hz tone = %.2f", tt.freq, f)
		}
		if l := audiotest.Level(s); math.Abs(l-tt.wantLevel) > 0.05 {
			t.Errorf("Level of amp %v = %.3f dBFS, want %.2f", tt.amp, l, tt.wantLevel)
		}
		if g := audiotest.GoertzelLevel(s, tt.rate, tt.freq); math.Abs(g-tt.wantLevel) > 0.1 {
			t.Errorf("GoertzelLevel at %v Hz = %.3f dBFS, want %.2f", tt.freq, g, tt.wantLevel)
		}
		if g := audiotest.GoertzelLevel(s, tt.rate, tt.freq*1.3); g > tt.wantLevel-60 {
			t.Errorf("GoertzelLevel off the tone = %.1f dBFS, want 60 dB below %.1f", g, tt.wantLevel)
		}
	}
}

func TestTonesSumsFrequencies(t *testing.T) {
	s := audiotest.Tones(8000, 0.25, 500*time.Millisecond, 697, 1209)
	for _, f := range []float64{697, 1209} {
		if g := audiotest.GoertzelLevel(s, 8000, f); math.Abs(g+12.04) > 0.2 {
			t.Errorf("level at %v Hz = %.2f dBFS, want -12.04", f, g)
		}
	}
	if g := audiotest.GoertzelLevel(s, 8000, 941); g > -60 {
		t.Errorf("level at 941 Hz = %.2f dBFS, want none", g)
	}
}

func TestSpeech(t *testing.T) {
	a := audiotest.Speech(8000, 2*time.Second, 7)
	b := audiotest.Speech(8000, 2*time.Second, 7)
	c := audiotest.Speech(8000, 2*time.Second, 8)
	if !slicesEqual(a, b) {
		t.Error("Speech with the same seed differs")
	}
	if slicesEqual(a, c) {
		t.Error("Speech with different seeds is the same")
	}
	if l := audiotest.Level(a); l < -30 || l > -10 {
		t.Errorf("speech level %.1f dBFS, want between -30 and -10", l)
	}
	// Energy sits in the voice band, with pauses between syllables.
	if f := audiotest.PeakFrequency(a, 8000); f < 80 || f > 3000 {
		t.Errorf("speech peak at %.0f Hz", f)
	}
	quiet := 0
	for i := 0; i+160 <= len(a); i += 160 {
		if audiotest.Level(a[i:i+160]) < -50 {
			quiet++
		}
	}
	if quiet == 0 || quiet > len(a)/160/2 {
		t.Errorf("%d quiet 20 ms frames of %d, want some pauses", quiet, len(a)/160)
	}
}

func slicesEqual(a, b transcode.PCM16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSNRAndCorrelation(t *testing.T) {
	ref := audiotest.Tone(8000, 1000, 0.5, 100*time.Millisecond)
	noisy := make(transcode.PCM16, len(ref))
	for i, v := range ref {
		// Error of 1% of the amplitude: SNR 40 dB minus a little.
		noisy[i] = v + int16(float64(v)*0.01)
	}
	tests := []struct {
		name     string
		got      transcode.PCM16
		snr      float64
		corr     float64
		snrSlack float64
	}{
		{"identical", ref, math.Inf(1), 1, 0},
		{"one percent error", noisy, 40, 1, 0.2},
		{"inverted", audiotest.Scale(ref, -1), -6.02, -1, 0.05},
		{"silence", audiotest.Silence(8000, 100*time.Millisecond), 0, 0, 0.01},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snr := audiotest.SNR(ref, tt.got)
			if math.IsInf(tt.snr, 1) != math.IsInf(snr, 1) || (!math.IsInf(snr, 0) && math.Abs(snr-tt.snr) > tt.snrSlack) {
				t.Errorf("SNR = %.3f dB, want %.2f", snr, tt.snr)
			}
			if c := audiotest.Correlation(ref, tt.got); math.Abs(c-tt.corr) > 1e-3 {
				t.Errorf("Correlation = %.4f, want %.1f", c, tt.corr)
			}
		})
	}
}

func TestDelayAndShift(t *testing.T) {
	ref := audiotest.Speech(8000, 500*time.Millisecond, 3)
	for _, d := range []int{0, 1, 37, 160, 399} {
		got := append(make(transcode.PCM16, d), ref...)
		if est := audiotest.Delay(ref, got, 400); est != d {
			t.Errorf("Delay of %d samples estimated %d", d, est)
		}
		if snr := audiotest.SNR(ref, audiotest.Shift(got, d)); !math.IsInf(snr, 1) {
			t.Errorf("Shift by %d leaves SNR %.1f", d, snr)
		}
	}
	if s := audiotest.Shift(transcode.PCM16{1, 2}, -2); !slicesEqual(s, transcode.PCM16{0, 0, 1, 2}) {
		t.Errorf("Shift(-2) = %v", s)
	}
}

func TestWAVRoundTrip(t *testing.T) {
	tests := []struct {
		rate int
		pcm  transcode.PCM16
	}{
		{8000, audiotest.Tone(8000, 440, 0.5, 250*time.Millisecond)},
		{48000, transcode.PCM16{-32768, -1, 0, 1, 32767}},
		{16000, transcode.PCM16{}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := audiotest.WriteWAV(&buf, tt.pcm, tt.rate); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 44+2*len(tt.pcm) {
			t.Errorf("wav of %d samples is %d bytes", len(tt.pcm), buf.Len())
		}
		pcm, rate, err := audiotest.ReadWAV(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if rate != tt.rate || !slicesEqual(pcm, tt.pcm) {
			t.Errorf("read back %d samples at %d Hz, want %d at %d", len(pcm), rate, len(tt.pcm), tt.rate)
		}
	}
	path := filepath.Join(t.TempDir(), "tone.wav")
	want := audiotest.Tone(8000, 1000, 0.3, 100*time.Millisecond)
	if err := audiotest.WriteWAVFile(path, want, 8000); err != nil {
		t.Fatal(err)
	}
	got, rate, err := audiotest.ReadWAVFile(path)
	if err != nil || rate != 8000 || !slicesEqual(got, want) {
		t.Errorf("ReadWAVFile = %d samples at %d Hz, %v", len(got), rate, err)
	}
}

// wavBytes builds a WAV file with the given fmt fields and an extra chunk
// before the data.
func wavBytes(format, channels, bits uint16, extra bool) []byte {
	var b bytes.Buffer
	b.WriteString("RIFF\x00\x00\x00\x00WAVE")
	if extra {
		b.WriteString("LIST\x03\x00\x00\x00abc\x00") // odd size, padded
	}
	fmtc := make([]byte, 16)
	binary.LittleEndian.PutUint16(fmtc[0:], format)
	binary.LittleEndian.PutUint16(fmtc[2:], channels)
	binary.LittleEndian.PutUint32(fmtc[4:], 8000)
	binary.LittleEndian.PutUint16(fmtc[14:], bits)
	b.WriteString("fmt \x10\x00\x00\x00")
	b.Write(fmtc)
	b.WriteString("data\x04\x00\x00\x00\x01\x00\xff\xff")
	return b.Bytes()
}

func TestReadWAVFormats(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"pcm with list chunk", wavBytes(1, 1, 16, true), false},
		{"stereo", wavBytes(1, 2, 16, false), true},
		{"8 bit", wavBytes(1, 1, 8, false), true},
		{"float", wavBytes(3, 1, 32, false), true},
		{"not riff", []byte("RIFX0000WAVE"), true},
		{"truncated", []byte("RIFF"), true},
		{"no data", []byte("RIFF\x00\x00\x00\x00WAVE"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pcm, _, err := audiotest.ReadWAV(bytes.NewReader(tt.data))
			if tt.wantErr != (err != nil) {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, audiotest.ErrWAVFormat) {
				t.Errorf("err = %v, want ErrWAVFormat", err)
			}
			if !tt.wantErr && !slicesEqual(pcm, transcode.PCM16{1, -1}) {
				t.Errorf("pcm = %v", pcm)
			}
		})
	}
}

func TestRecorders(t *testing.T) {
	r := audiotest.NewRecorder(8000)
	buf := transcode.PCM16{1, 2, 3}
	if err := r.WriteSample(buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 9 // the recorder must have copied
	if err := r.WriteSample(transcode.PCM16{4}); err != nil {
		t.Fatal(err)
	}
	if got := r.Samples(); !slicesEqual(got, transcode.PCM16{1, 2, 3, 4}) || r.Frames() != 2 {
		t.Errorf("recorded %v in %d frames", got, r.Frames())
	}
	if err := r.Close(); err != nil || !r.Closed() {
		t.Fatal("close failed")
	}
	if err := r.WriteSample(buf); !errors.Is(err, transcode.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
	p := audiotest.NewPayloadRecorder(8000)
	b := []byte{1, 2}
	if err := p.WriteSample(b); err != nil {
		t.Fatal(err)
	}
	b[0] = 7
	if got := p.Payloads(); len(got) != 1 || !bytes.Equal(got[0], []byte{1, 2}) {
		t.Errorf("payloads = %v", got)
	}
}

// TestWindowedCorrelation delays the second half of a signal by more than
// the first, as a jitter buffer that deepens does: one global alignment
// cannot match both halves, window by window alignment does.
func TestWindowedCorrelation(t *testing.T) {
	ref := audiotest.Speech(8000, 2*time.Second, 4)
	half := len(ref) / 2
	got := audiotest.Concat(make(transcode.PCM16, 100), ref[:half], make(transcode.PCM16, 160), ref[half:])
	if c := audiotest.WindowedCorrelation(ref, got, 1000, 400); c < 0.9 {
		t.Errorf("windowed correlation %.3f, want at least 0.9 (only the window across the step is off)", c)
	}
	if c := audiotest.Correlation(ref, audiotest.Shift(got, audiotest.Delay(ref, got, 400))); c > 0.9 {
		t.Errorf("global correlation %.3f: the test signal does not need windows", c)
	}
	if c := audiotest.WindowedCorrelation(ref, audiotest.Silence(8000, time.Second), 1000, 10); c != 0 {
		t.Errorf("silence: %.3f, want 0", c)
	}
}

func TestNoiseAndMix(t *testing.T) {
	for _, level := range []float64{-20, -40, -60} {
		n := audiotest.Noise(8000, level, time.Second, 1)
		if l := audiotest.Level(n); math.Abs(l-level) > 0.3 {
			t.Errorf("noise at %v dBFS measures %.2f", level, l)
		}
	}
	tone := audiotest.Tone(8000, 1000, 0.5, time.Second)
	noise := audiotest.Noise(8000, -36.02, time.Second, 2)
	mixed := audiotest.Mix(tone, noise)
	if snr := audiotest.SNR(tone, mixed); math.Abs(snr-30) > 0.3 {
		t.Errorf("tone at -6 dBFS plus noise at -36 dBFS: SNR %.2f dB, want 30", snr)
	}
	if f := audiotest.PeakFrequency(mixed, 8000); math.Abs(f-1000) > 1 {
		t.Errorf("peak %.1f Hz", f)
	}
	loud := audiotest.Mix(audiotest.Tone(8000, 100, 0.9, 10*time.Millisecond), audiotest.Tone(8000, 100, 0.9, 20*time.Millisecond))
	if len(loud) != 160 || loud[20] != 32767 {
		t.Errorf("mix of %d samples, peak sample %d: want 160 and saturation", len(loud), loud[20])
	}
}

// TestBadFrames: a clean tone has no bad frame; a silent frame, a frame
// 10 dB low and a frame with a click are bad, one each, and two bad
// frames in a row make a run of two.
func TestBadFrames(t *testing.T) {
	tone := func() transcode.PCM16 { return audiotest.Tone(8000, 1000, 0.5, time.Second) }
	frame := func(s transcode.PCM16, i int) transcode.PCM16 { return s[i*160 : (i+1)*160] }
	for _, tc := range []struct {
		name         string
		damage       func(s transcode.PCM16)
		bad, longest int
	}{
		{"clean", func(transcode.PCM16) {}, 0, 0},
		{"silent frame", func(s transcode.PCM16) { clear(frame(s, 10)) }, 1, 1},
		{"10 dB low", func(s transcode.PCM16) {
			for i, v := range frame(s, 20) {
				frame(s, 20)[i] = v / 3
			}
		}, 1, 1},
		{"clicks", func(s transcode.PCM16) {
			for i := 80; i < 104; i++ {
				frame(s, 30)[i] = int16(32767 * (1 - 2*(i%2)))
			}
		}, 1, 1},
		{"two in a row", func(s transcode.PCM16) { clear(s[40*160 : 42*160]) }, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tone()
			tc.damage(s)
			frames, bad, longest := audiotest.BadFrames(s, 8000, 1000)
			if frames != 50 || bad != tc.bad || longest != tc.longest {
				t.Errorf("%d frames, %d bad, %d in a row; want 50, %d, %d", frames, bad, longest, tc.bad, tc.longest)
			}
		})
	}
}

func TestDropouts(t *testing.T) {
	ref := audiotest.Concat(audiotest.Speech(8000, time.Second, 3), audiotest.Silence(8000, 200*time.Millisecond))
	frame := func(s transcode.PCM16, i int) transcode.PCM16 { return s[i*160 : (i+1)*160] }
	active, _ := audiotest.Dropouts(ref, ref, 8000)
	if active < 20 || active > 50 {
		t.Fatalf("%d active frames of 60, want the speech's and not the silence's", active)
	}
	scale := func(div int16) func(s transcode.PCM16) int {
		return func(s transcode.PCM16) int {
			for i := range s {
				s[i] /= div
			}
			return 0
		}
	}
	for _, tc := range []struct {
		name string
		// damage changes s and returns the dropouts it made.
		damage func(s transcode.PCM16) int
	}{
		{"clean", func(transcode.PCM16) int { return 0 }},
		{"6 dB low", scale(2)},
		{"inverted", scale(-1)},
		{"12 dB low", func(s transcode.PCM16) int { scale(4)(s); return active }},
		{"every seventh active frame silent", func(s transcode.PCM16) int {
			n := 0
			for i := range len(s) / 160 {
				if audiotest.Level(frame(ref, i)) > -45 && i%7 == 0 {
					clear(frame(s, i))
					n++
				}
			}
			return n
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := append(transcode.PCM16(nil), ref...)
			want := tc.damage(got)
			if a, d := audiotest.Dropouts(ref, got, 8000); a != active || d != want {
				t.Errorf("%d active, %d dropped; want %d, %d", a, d, active, want)
			}
		})
	}
}
