package transcode_test

import (
	"math"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestStereoOpusKeepsChannelsApart encodes 1 kHz on the left and 440 Hz on
// the right at 8 kHz and checks that each decoded channel holds its own
// tone, with the other one far below it.
func TestStereoOpusKeepsChannelsApart(t *testing.T) {
	enc, err := transcode.NewStereoOpusEncoder(8000, 32000)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := transcode.NewStereoOpusDecoder(8000)
	if err != nil {
		t.Fatal(err)
	}
	left := audiotest.Tone(8000, 1000, 0.5, 2*time.Second)
	right := audiotest.Tone(8000, 440, 0.5, 2*time.Second)
	n := enc.FrameSamples()
	frame := make([]int16, 2*n)
	out := make([]byte, 1500)
	pcm := make([]int16, 2*960)
	var gotL, gotR transcode.PCM16
	for i := 0; i+n <= len(left); i += n {
		for j := 0; j < n; j++ {
			frame[2*j], frame[2*j+1] = left[i+j], right[i+j]
		}
		m, err := enc.Encode(frame, out)
		if err != nil {
			t.Fatal(err)
		}
		k, err := dec.Decode(out[:m], pcm)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < k; j++ {
			gotL, gotR = append(gotL, pcm[2*j]), append(gotR, pcm[2*j+1])
		}
	}
	if len(gotL) != len(left) {
		t.Fatalf("decoded %d samples per channel, want %d", len(gotL), len(left))
	}
	midL, midR := gotL[4000:12000], gotR[4000:12000]
	if f := audiotest.PeakFrequency(midL, 8000); math.Abs(f-1000) > 10 {
		t.Errorf("left peak %.0f Hz, want 1000", f)
	}
	if f := audiotest.PeakFrequency(midR, 8000); math.Abs(f-440) > 10 {
		t.Errorf("right peak %.0f Hz, want 440", f)
	}
	if x := audiotest.GoertzelLevel(midL, 8000, 440) - audiotest.Level(midL); x > -25 {
		t.Errorf("the right tone leaks into the left at %.1f dB", x)
	}
	if x := audiotest.GoertzelLevel(midR, 8000, 1000) - audiotest.Level(midR); x > -25 {
		t.Errorf("the left tone leaks into the right at %.1f dB", x)
	}
	if l := audiotest.Level(midL); l < -10 || l > -4 {
		t.Errorf("left level %.1f dBFS, want about -6", l)
	}
	if _, err := enc.Encode(frame[:10], out); err == nil {
		t.Error("a short frame was encoded")
	}
	if _, err := transcode.NewStereoOpusEncoder(44100, 32000); err == nil {
		t.Error("44.1 kHz accepted")
	}
}
