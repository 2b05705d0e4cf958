package gateway

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/recording"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestRecordingConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(validYAML), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if q := cfg.Queues[0]; q.Recording != RecordingOff || q.RecordingAnnouncement != AnnouncementOff || cfg.Recording.Format != "ogg" {
		t.Errorf("defaults: %q %q %q", q.Recording, q.RecordingAnnouncement, cfg.Recording.Format)
	}
	doc := strings.Replace(validYAML, `    dial: "sip:600@pbx.example.com"`, `    dial: "sip:600@pbx.example.com"
    recording: sometimes
    recording_announcement: song`, 1) + "recording:\n  format: mp3\n"
	_, err = ParseConfig([]byte(doc), testEnv)
	for _, want := range []string{
		`queues[0].recording: "sometimes" is not one of off, always, on_demand`,
		`queues[0].recording_announcement: "song" is not one of off, tone`,
		`recording.format: "mp3" is not one of ogg, wav`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
	doc = strings.Replace(validYAML, `    dial: "sip:600@pbx.example.com"`, `    dial: "sip:600@pbx.example.com"
    recording: on_demand
    recording_announcement: tone`, 1) + "recording:\n  format: wav\n"
	if _, err := ParseConfig([]byte(doc), testEnv); err != nil {
		t.Errorf("valid recording keys refused: %v", err)
	}
}

// TestRecordTapAnnounces: the tap copies a leg's audio to the recording
// and mixes the announcement tone into what it passes on, for its half
// second only.
func TestRecordTapAnnounces(t *testing.T) {
	v := &voiceCall{}
	n := int(announceDuration * recording.Rate / time.Second)
	v.announceLeft = [2]int{n, n}
	out := audiotest.NewRecorder(8000)
	tap := recTap{PCMWriter: out, v: v, right: true}
	silence := make(transcode.PCM16, 160)
	for range 50 {
		if err := tap.WriteSample(silence); err != nil {
			t.Fatal(err)
		}
	}
	got := out.Samples()
	tone, after := got[:n], got[n:]
	if f := audiotest.PeakFrequency(tone, 8000); math.Abs(f-announceHz) > 10 {
		t.Errorf("announcement at %.0f Hz, want %d", f, announceHz)
	}
	if l := audiotest.Level(tone); l < -18 || l > -12 {
		t.Errorf("announcement at %.1f dBFS, want about -15", l)
	}
	if l := audiotest.Level(after); l > -90 {
		t.Errorf("the tone went on after its half second: %.1f dBFS", l)
	}
	if v.announceLeft[0] != n {
		t.Error("the tap toward the customer used the phone side's announcement")
	}
	if !strings.HasPrefix(tap.String(), "RecordTap(phone) -> ") {
		t.Errorf("String() = %q", tap.String())
	}
}
