package webrtctest_test

import (
	"context"
	"log/slog"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/segue-rtc/segue/transcode/audiotest"
	"github.com/segue-rtc/segue/webrtc"
	"github.com/segue-rtc/segue/webrtc/webrtctest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wait = 20 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCall uses a Browser the way a gateway test would: signalling as
// strings and candidate values, audio checked by ear.
func TestCall(t *testing.T) {
	for _, tc := range []struct {
		codec   string
		trickle bool
	}{{"opus", true}, {"PCMU", false}} {
		t.Run(tc.codec, func(t *testing.T) {
			eng, err := webrtc.New(webrtc.Config{}, slog.New(slog.DiscardHandler), webrtc.WithLoopbackOnly())
			if err != nil {
				t.Fatal(err)
			}
			var peer *webrtc.Peer
			ready := make(chan struct{})
			opts := webrtctest.Options{Codec: tc.codec, Tone: 1000}
			if tc.trickle {
				opts.OnCandidate = func(c webrtctest.Candidate) {
					<-ready
					if err := peer.AddICECandidate(webrtc.ICECandidateInit(c)); err != nil {
						t.Errorf("AddICECandidate: %v", err)
					}
				}
			}
			b, err := webrtctest.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			digits := make(chan rune, 4)
			peer, err = eng.NewPeer(context.Background(), webrtc.PeerOptions{
				OnICECandidate: func(c webrtc.ICECandidateInit) {
					if err := b.AddCandidate(webrtctest.Candidate(c)); err != nil {
						t.Errorf("browser AddCandidate: %v", err)
					}
				},
				OnDTMF: func(d rune) { digits <- d },
			})
			if err != nil {
				t.Fatal(err)
			}
			close(ready)
			defer peer.Close()
			heard := audiotest.NewRecorder(8000)
			peer.SwapAudioOut(heard)

			offer, err := b.Offer()
			if err != nil {
				t.Fatal(err)
			}
			answer, err := peer.Answer(context.Background(), offer)
			if err != nil {
				t.Fatalf("Answer: %v", err)
			}
			if err := b.SetAnswer(answer); err != nil {
				t.Fatal(err)
			}
			eventually(t, "connected", func() bool { return b.Connected() && peer.State() == webrtc.StateConnected })
			if c := peer.AudioCodec(); c != tc.codec {
				t.Errorf("AudioCodec = %q, want %q", c, tc.codec)
			}

			// The phone side writes 20 ms frames as they come.
			done := make(chan struct{})
			defer close(done)
			go func() {
				tone := audiotest.Tone(8000, 440, 0.5, time.Second)
				tk := time.NewTicker(20 * time.Millisecond)
				defer tk.Stop()
				for i := 0; ; i = (i + 160) % len(tone) {
					select {
					case <-done:
						return
					case <-tk.C:
					}
					_ = peer.AudioIn().WriteSample(tone[i : i+160])
				}
			}()
			eventually(t, "a second of audio each way", func() bool {
				return len(heard.Samples()) >= 8000 && len(b.Heard()) >= 4000
			})
			if f := audiotest.PeakFrequency(heard.Samples(), 8000); math.Abs(f-1000) > 15 {
				t.Errorf("gateway heard %.1f Hz, want 1000", f)
			}
			if f := audiotest.PeakFrequency(b.Heard(), 8000); math.Abs(f-440) > 15 {
				t.Errorf("browser heard %.1f Hz, want 440", f)
			}
			if l := audiotest.GoertzelLevel(b.Heard(), 8000, 440); l < -20 {
				t.Errorf("browser heard 440 Hz at %.1f dBFS, want about -6", l)
			}

			if err := b.SendDigits("7*"); err != nil {
				t.Fatalf("SendDigits: %v", err)
			}
			var got []rune
			for len(got) < 2 {
				select {
				case d := <-digits:
					got = append(got, d)
				case <-time.After(wait):
					t.Fatalf("digits %q, want \"7*\"", string(got))
				}
			}
			if string(got) != "7*" {
				t.Errorf("digits %q, want \"7*\"", string(got))
			}
		})
	}
}
