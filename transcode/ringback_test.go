package transcode_test

import (
	"testing"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestRingbackCadenceAndTone(t *testing.T) {
	rb := transcode.NewRingback(8000, 0.3)
	var all transcode.PCM16
	for i := 0; i < 250; i++ { // 5 s: one full cadence
		all = append(all, rb.Next()...)
	}
	on, off := all[800:7200], all[8800:39200] // inside the 1 s tone, inside the 4 s pause
	if f := audiotest.PeakFrequency(on, 8000); f < 415 || f > 435 {
		t.Errorf("ringing tone at %.0f Hz, want 425", f)
	}
	if l := audiotest.Level(on); l < -16 || l > -10 {
		t.Errorf("ringing level %.1f dBFS, want about -13", l)
	}
	for _, s := range off {
		if s != 0 {
			t.Fatal("sound during the pause")
		}
	}
}
