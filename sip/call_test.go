package sip

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

// twoServers starts a callee server b accepting calls from 127.0.0.1 and
// a caller server a whose trunk "pbx" points at b.
func twoServers(t *testing.T, codecsA, codecsB []string, h InviteHandler) (a, b *Server) {
	t.Helper()
	b = startServer(t, []TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}, Codecs: codecsB}}, WithInviteHandler(h))
	a = startServer(t, []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String(), Codecs: codecsA, AllowInboundFrom: []string{"127.0.0.1/32"}}})
	return a, b
}

func TestCallAudioAndDTMFBothWays(t *testing.T) {
	for _, tc := range []struct {
		name      string
		a, b      []string
		wantCodec string
	}{
		{"pcmu", []string{"PCMU", "PCMA"}, []string{"PCMU", "PCMA"}, "PCMU"},
		{"pcma", []string{"PCMA", "PCMU"}, []string{"PCMU", "PCMA"}, "PCMA"},
		{"only-common", []string{"PCMU", "PCMA"}, []string{"PCMA"}, "PCMA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			heardByB := newRecorder()
			inbound := make(chan *Call, 1)
			var gotUser, gotUUI, gotX, gotDisplay string
			rang := make(chan struct{})
			a, _ := twoServers(t, tc.a, tc.b, func(ctx context.Context, in *InboundCall) error {
				gotUser, gotUUI, gotX, gotDisplay = in.User(), in.Header("User-to-User"), in.Header("X-Segue-Conversation"), in.FromDisplay()
				if err := in.Ringing(); err != nil {
					return err
				}
				select { // answer once the caller has seen the 180
				case <-rang:
				case <-ctx.Done():
					return ctx.Err()
				}
				c, err := in.Answer(ctx, heardByB)
				if err != nil {
					return err
				}
				inbound <- c
				return nil
			})
			heardByA := newRecorder()
			var progress []Progress
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			call, err := a.Dial(ctx, "pbx", "sip:conv-42@127.0.0.1", DialOptions{
				DisplayName: "Ada Lovelace",
				Headers:     map[string]string{"User-to-User": "636f6e762d3432;encoding=hex", "X-Segue-Conversation": "42"},
				AudioOut:    heardByA,
				OnProgress: func(p Progress) {
					progress = append(progress, p)
					if p.Code == 180 {
						close(rang)
					}
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer call.Close()
			bc := <-inbound
			if gotUser != "conv-42" || gotX != "42" || gotUUI != "636f6e762d3432;encoding=hex" || gotDisplay != "Ada Lovelace" {
				t.Errorf("context headers: user=%q x=%q uui=%q display=%q", gotUser, gotX, gotUUI, gotDisplay)
			}
			if len(progress) == 0 || progress[0].Code != 180 {
				t.Errorf("progress = %+v, want 180 first", progress)
			}
			if call.Codec() != tc.wantCodec || bc.Codec() != tc.wantCodec {
				t.Errorf("codec a=%s b=%s, want %s", call.Codec(), bc.Codec(), tc.wantCodec)
			}
			pctx, pstop := context.WithCancel(ctx)
			go playTone(pctx, call.AudioIn(), 1000)
			go playTone(pctx, bc.AudioIn(), 440)
			waitFor(t, "a second of audio both ways", func() bool { return len(heardByA.Samples()) >= 8000 && len(heardByB.Samples()) >= 8000 })
			pstop()

			for _, c := range []struct {
				name string
				rec  *recorder
				want float64
			}{{"heard by b", heardByB, 1000}, {"heard by a", heardByA, 440}} {
				s := c.rec.Samples()
				s = s[len(s)-4000:] // skip the start
				if f := peakFreq(s); math.Abs(f-c.want) > 20 {
					t.Errorf("%s: peak %v Hz, want %v", c.name, f, c.want)
				}
				// amplitude 0.5 sine: -6 dBFS; G.711 keeps it within a dB.
				if l := audiotest.Level(s); l < -8 || l > -4 {
					t.Errorf("%s: level %.1f dBFS, want about -6", c.name, l)
				}
			}

			if err := call.SendDTMF(ctx, "123#"); err != nil {
				t.Fatal(err)
			}
			var digits []rune
			for len(digits) < 4 {
				digits = append(digits, waitEvent(t, bc, EventDTMF).Digit)
			}
			if string(digits) != "123#" {
				t.Errorf("digits %q, want 123#", string(digits))
			}
			if err := bc.SendDTMF(ctx, "9*"); err != nil {
				t.Fatal(err)
			}
			if d := waitEvent(t, call, EventDTMF).Digit; d != '9' {
				t.Errorf("digit %q, want 9", d)
			}

			st := call.Stats()
			if st.PacketsReceived == 0 || st.PacketsSent == 0 || st.PacketsForeign != 0 {
				t.Errorf("stats %+v", st)
			}
			if err := call.Close(); err != nil {
				t.Fatal(err)
			}
			e := waitEvent(t, bc, EventHangup)
			if !errors.Is(e.Cause, ErrRemoteHangup) {
				t.Errorf("callee hangup cause %v, want remote hangup", e.Cause)
			}
			if !errors.Is(call.Err(), ErrClosed) {
				t.Errorf("caller cause %v, want ErrClosed", call.Err())
			}
			if err := call.Close(); err != nil {
				t.Errorf("second close: %v", err)
			}
		})
	}
}
