//go:build e2e

package test

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

type pcmRecorder struct {
	mu sync.Mutex
	s  transcode.PCM16
}

func (r *pcmRecorder) WriteSample(p transcode.PCM16) error {
	r.mu.Lock()
	r.s = append(r.s, p...)
	r.mu.Unlock()
	return nil
}
func (r *pcmRecorder) SampleRate() int { return 8000 }
func (r *pcmRecorder) String() string  { return "recorder" }
func (r *pcmRecorder) Close() error    { return nil }
func (r *pcmRecorder) samples() transcode.PCM16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(transcode.PCM16(nil), r.s...)
}

// TestBaresipDeskPhone calls baresip as an agent's desk phone: we send a
// 1 kHz tone and DTMF, baresip plays 440 Hz; both recordings are checked
// for frequency and level.
func TestBaresipDeskPhone(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, 440, 0.5, 20*time.Second), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "1001", src)
	trunk := sip.TrunkConfig{Name: "pbx", URI: "sip:" + strings.TrimPrefix(phone.URI(), "sip:1001@"), Codecs: []string{"PCMU", "PCMA"}}
	s, _ := sipServer(t, []sip.TrunkConfig{trunk})

	heard := &pcmRecorder{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	call, err := s.Dial(ctx, "pbx", phone.URI(), sip.DialOptions{DisplayName: "Ada", AudioOut: heard,
		Headers: map[string]string{"X-Segue-Conversation": "42"}})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()

	// Play 1 kHz, paced like a live source, for three seconds.
	tone := audiotest.Tone(8000, 1000, 0.5, 3*time.Second)
	tk := time.NewTicker(20 * time.Millisecond)
	for i := 0; i+160 <= len(tone); i += 160 {
		<-tk.C
		if err := call.AudioIn().WriteSample(tone[i : i+160]); err != nil {
			t.Fatal(err)
		}
	}
	tk.Stop()
	if err := call.SendDTMF(ctx, "123#"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	st := call.Stats()
	if err := call.Close(); err != nil {
		t.Fatal(err)
	}

	got := heard.samples()
	if len(got) < 16000 {
		t.Fatalf("heard only %d samples from baresip", len(got))
	}
	mid := got[len(got)/4 : len(got)*3/4]
	if f := audiotest.PeakFrequency(mid, 8000); math.Abs(f-440) > 10 {
		t.Errorf("heard from baresip: peak %.0f Hz, want 440", f)
	}
	if l := audiotest.Level(mid); l < -8 || l > -4 {
		t.Errorf("heard from baresip: level %.1f dBFS, want about -6", l)
	}
	if st.PacketsReceived == 0 || st.PacketsLost > st.PacketsReceived/20 {
		t.Errorf("stats %+v", st)
	}

	// baresip's recording of what it heard (sndfile writes it at hangup).
	var rec string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h, _ := phone.Recordings()
		if len(h) > 0 {
			if fi, err := os.Stat(h[0]); err == nil && fi.Size() > 16000 {
				rec = h[0]
				time.Sleep(300 * time.Millisecond)
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rec == "" {
		t.Fatalf("no recording from baresip; output:\n%s", phone.Output())
	}
	pcm, rate, err := audiotest.ReadWAVFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	// Take the middle of the tone part (the first three seconds).
	n := audiotest.Samples(rate, time.Second)
	if len(pcm) < 3*n {
		t.Fatalf("recording too short: %d samples at %d Hz", len(pcm), rate)
	}
	part := pcm[n/2 : 5*n/2]
	if f := audiotest.PeakFrequency(part, rate); math.Abs(f-1000) > 10 {
		t.Errorf("baresip heard: peak %.0f Hz, want 1000", f)
	}
	if l := audiotest.Level(part); l < -8 || l > -4 {
		t.Errorf("baresip heard: level %.1f dBFS, want about -6", l)
	}
	out := phone.Output()
	for _, d := range []string{"1", "2", "3", "#"} {
		if !strings.Contains(out, "received event: '"+d+"' (end=1)") {
			t.Errorf("baresip did not report DTMF %q", d)
		}
	}
}
