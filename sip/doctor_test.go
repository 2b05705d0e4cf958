package sip

import (
	"bytes"
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"
)

func TestCheckTrunk(t *testing.T) {
	reg := &registrar{algo: "SHA-256", grant: 120}
	p := newFakePeer(t, map[sipmsg.RequestMethod]sipgo.RequestHandler{
		sipmsg.REGISTER: reg.handler(t),
		sipmsg.OPTIONS:  finalResponse(200, "OK"),
	})
	tc := p.trunk("pbx")
	tc.Register, tc.Username, tc.Password = true, "segue", "pw"
	cfg := Config{RTPPortRange: rtpRange()}
	rep, err := CheckTrunk(context.Background(), cfg, tc, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteTo(&out)
	if !rep.OK() || !strings.Contains(out.String(), "is usable") {
		t.Fatalf("report:\n%s", out.String())
	}
	for _, name := range []string{"resolve", "connect", "options", "register", "unregister"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("no %s step:\n%s", name, out.String())
		}
	}
	if _, exp := reg.snapshot(); len(exp) != 2 || exp[1] != "0" {
		t.Errorf("REGISTER expiries %v, want a binding then its removal", exp)
	}

	// Wrong password: the register step fails and so does the verdict.
	tc.Password = "nope"
	rep, err = CheckTrunk(context.Background(), cfg, tc, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	rep.WriteTo(&out)
	if rep.OK() || !strings.Contains(out.String(), "[FAIL] register") {
		t.Fatalf("wrong password report:\n%s", out.String())
	}
}

func TestCheckTrunkUnreachable(t *testing.T) {
	if testing.Short() {
		return
	}
	tc := TrunkConfig{Name: "dead", URI: "sip:127.0.0.1:9", Transport: "tcp"}
	rep, err := CheckTrunk(context.Background(), Config{RTPPortRange: rtpRange()}, tc, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Steps[len(rep.Steps)-1].Name != "connect" {
		t.Fatalf("steps %+v", rep.Steps)
	}
}

func TestPlaceTestCall(t *testing.T) {
	digits := make(chan rune, 8)
	b := startServer(t, []TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		WithInviteHandler(func(ctx context.Context, in *InboundCall) error {
			if in.Header("X-Segue-Test") != "1" {
				return &StatusError{Code: 403, Reason: "Forbidden"}
			}
			c, err := in.Answer(ctx, nil)
			if err != nil {
				return err
			}
			go playTone(c.ctx, c.AudioIn(), 440)
			go func() {
				for {
					select {
					case e := <-c.Events():
						if e.Kind == EventDTMF {
							digits <- e.Digit
						}
					case <-c.Done():
						c.Close()
						return
					}
				}
			}()
			return nil
		}))
	trunks := []TrunkConfig{{Name: "pbx", URI: "sip:" + b.Addr("udp").String()}}
	rep, err := PlaceTestCall(context.Background(), Config{RTPPortRange: rtpRange()}, trunks, TestCallOptions{
		Trunk: "pbx", Target: "sip:conv-1@127.0.0.1", ToneHz: 1000, DTMF: "12", Duration: 2500 * time.Millisecond,
		Headers: map[string]string{"X-Segue-Test": "1"},
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteTo(&out)
	if math.Abs(rep.PeakHz-440) > 10 || rep.LevelDBFS < -8 || rep.LevelDBFS > -4 || rep.Codec != "PCMU" {
		t.Errorf("report:\n%s", out.String())
	}
	if rep.Stats.PacketsReceived == 0 || rep.Stats.PacketsSent == 0 {
		t.Errorf("stats %+v", rep.Stats)
	}
	got := string([]rune{<-digits, <-digits})
	if got != "12" {
		t.Errorf("digits %q", got)
	}
}
