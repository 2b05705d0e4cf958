//go:build e2e

package test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/test/peers"
)

// sipServer runs a sip.Server on 127.0.0.1 with the given trunks.
func sipServer(t *testing.T, trunks []sip.TrunkConfig, opts ...sip.Option) (*sip.Server, func()) {
	t.Helper()
	return sipServerCfg(t, sip.Config{}, trunks, opts...)
}

// sipServerCfg is sipServer with settings of the "sip" section (its
// listener and RTP ports are set here).
func sipServerCfg(t *testing.T, cfg sip.Config, trunks []sip.TrunkConfig, opts ...sip.Option) (*sip.Server, func()) {
	t.Helper()
	lo := 40000 + 2*rand.IntN(5000)
	cfg.Listen, cfg.RTPPortRange = []string{"udp:127.0.0.1:0"}, [2]int{lo, lo + 199}
	cfg.ApplyDefaults()
	for i := range trunks {
		trunks[i].ApplyDefaults()
	}
	level := slog.LevelWarn
	if os.Getenv("SIP_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := sip.New(cfg, trunks, append([]sip.Option{sip.WithLogger(log)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return s, stop
}

func waitSIPp(t *testing.T, p *peers.SIPp) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Wait(ctx); err != nil {
		t.Fatalf("sipp scenario failed: %v", err)
	}
}

func sippTrunk(p *peers.SIPp) sip.TrunkConfig {
	return sip.TrunkConfig{Name: "pbx", URI: "sip:" + p.Addr(), AllowInboundFrom: []string{"127.0.0.1/32"}}
}

func waitEvent(t *testing.T, c *sip.Call, kind sip.EventKind) sip.Event {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", kind)
		}
	}
}

func TestSIPpRegistrarChallenges(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/registrar_401.xml", "127.0.0.1", "-m", "1")
	tc := sippTrunk(p)
	tc.Register, tc.Username, tc.Password, tc.RegisterExpiry = true, "segue", "s3cret", 60
	s, stop := sipServer(t, []sip.TrunkConfig{tc})
	deadline := time.Now().Add(15 * time.Second)
	var first time.Time
	for time.Now().Before(deadline) {
		st := s.TrunkStatus()[0]
		if st.Registered && first.IsZero() {
			first = st.RegisteredUntil
		}
		if !first.IsZero() && st.RegisteredUntil.After(first) {
			break // refreshed
		}
		time.Sleep(20 * time.Millisecond)
	}
	if first.IsZero() || !s.TrunkStatus()[0].RegisteredUntil.After(first) {
		t.Fatalf("no registration and refresh: %+v", s.TrunkStatus()[0])
	}
	stop() // un-registers
	waitSIPp(t, p)
}

func TestSIPpAnswerBusyUnavailable(t *testing.T) {
	t.Run("answer", func(t *testing.T) {
		p := peers.StartSIPp(t, "sipp/uas_answer.xml", "127.0.0.1", "-m", "1")
		s, _ := sipServer(t, []sip.TrunkConfig{sippTrunk(p)})
		var rang bool
		call, err := s.Dial(context.Background(), "pbx", "1001", sip.DialOptions{
			DisplayName: "Ada",
			Headers:     map[string]string{"User-to-User": "636f6e762d3432;encoding=hex", "X-Segue-Conversation": "42"},
			OnProgress:  func(pr sip.Progress) { rang = rang || pr.Code == 180 },
		})
		if err != nil {
			t.Fatal(err)
		}
		if !rang || call.Codec() != "PCMU" {
			t.Errorf("rang %v codec %s", rang, call.Codec())
		}
		if err := call.SendDTMF(context.Background(), "12#"); err != nil {
			t.Fatal(err)
		}
		if err := call.Close(); err != nil {
			t.Fatal(err)
		}
		waitSIPp(t, p)
	})
	for _, tc := range []struct {
		file string
		want error
		code int
	}{{"sipp/uas_busy.xml", sip.ErrBusy, 486}, {"sipp/uas_503.xml", sip.ErrUnavailable, 503}} {
		t.Run(tc.file, func(t *testing.T) {
			p := peers.StartSIPp(t, tc.file, "127.0.0.1", "-m", "1")
			s, _ := sipServer(t, []sip.TrunkConfig{sippTrunk(p)})
			_, err := s.Dial(context.Background(), "pbx", "1001", sip.DialOptions{})
			var se *sip.StatusError
			if !errors.Is(err, tc.want) || !errors.As(err, &se) || se.Code != tc.code || se.RetryAfter != 20 {
				t.Fatalf("err = %v", err)
			}
			waitSIPp(t, p)
		})
	}
}

func TestSIPpCancelWhileRinging(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/uas_ring_cancel.xml", "127.0.0.1", "-m", "1")
	s, _ := sipServer(t, []sip.TrunkConfig{sippTrunk(p)})
	ctx, cancel := context.WithCancel(context.Background())
	_, err := s.Dial(ctx, "pbx", "1001", sip.DialOptions{OnProgress: func(pr sip.Progress) {
		if pr.Code == 180 {
			cancel()
		}
	}})
	if !errors.Is(err, sip.ErrCancelled) {
		t.Fatalf("err = %v", err)
	}
	waitSIPp(t, p)
}

func TestSIPpHoldAndResume(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/uas_hold.xml", "127.0.0.1", "-m", "1")
	s, _ := sipServer(t, []sip.TrunkConfig{sippTrunk(p)})
	call, err := s.Dial(context.Background(), "pbx", "1001", sip.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	waitEvent(t, call, sip.EventHold)
	waitEvent(t, call, sip.EventResume)
	if e := waitEvent(t, call, sip.EventHangup); !errors.Is(e.Cause, sip.ErrRemoteHangup) {
		t.Errorf("cause %v", e.Cause)
	}
	waitSIPp(t, p)
}

func TestSIPpRemoteBye(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/uas_bye.xml", "127.0.0.1", "-m", "1")
	s, _ := sipServer(t, []sip.TrunkConfig{sippTrunk(p)})
	call, err := s.Dial(context.Background(), "pbx", "1001", sip.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	e := waitEvent(t, call, sip.EventHangup)
	var he *sip.HangupError
	if !errors.As(e.Cause, &he) || !strings.Contains(he.Reason, "cause=16") {
		t.Errorf("cause %v", e.Cause)
	}
	waitSIPp(t, p)
}

func TestSIPpRefer(t *testing.T) {
	p := peers.StartSIPp(t, "sipp/uas_refer.xml", "127.0.0.1", "-m", "2")
	s, _ := sipServer(t, []sip.TrunkConfig{sippTrunk(p)})
	call, err := s.Dial(context.Background(), "pbx", "1001", sip.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := call.ID()
	if e := waitEvent(t, call, sip.EventTransfer); !strings.Contains(e.Target, "2002") {
		t.Errorf("target %q", e.Target)
	}
	// Reported once SIPp's second phone answered, on the new dialog.
	if e := waitEvent(t, call, sip.EventTransferred); !strings.Contains(e.Target, "2002") {
		t.Errorf("transferred to %q", e.Target)
	}
	if call.ID() == first {
		t.Fatal("transferred, but the call is still on its first dialog")
	}
	time.Sleep(time.Second) // the transferor's BYE on the old leg
	select {
	case <-call.Done():
		t.Fatalf("call ended: %v", call.Err())
	default:
	}
	if err := call.Close(); err != nil {
		t.Fatal(err)
	}
	waitSIPp(t, p)
}

func TestSIPpInboundAllowedAndForbidden(t *testing.T) {
	got := make(chan string, 2)
	// scanner_silence off: the stranger gets its one 403 (by default it
	// would get nothing).
	s, _ := sipServerCfg(t, sip.Config{ScannerSilence: new(false)}, []sip.TrunkConfig{{Name: "pbx", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		sip.WithInviteHandler(func(ctx context.Context, in *sip.InboundCall) error {
			got <- in.User() + "|" + in.FromDisplay()
			c, err := in.Answer(ctx, nil)
			if err != nil {
				return err
			}
			go func() { <-c.Done(); c.Close() }()
			return nil
		}))
	target := s.Addr("udp").String()
	ok := peers.StartSIPp(t, "sipp/uac_invite.xml", "127.0.0.1", "-m", "1", target)
	waitSIPp(t, ok)
	if g := <-got; g != "conv-9|PBX Queue" {
		t.Errorf("handler saw %q", g)
	}
	bad := peers.StartSIPp(t, "sipp/uac_forbidden.xml", "127.0.0.2", "-m", "1", target)
	waitSIPp(t, bad)
	select {
	case g := <-got:
		t.Errorf("forbidden INVITE reached the handler: %s", g)
	default:
	}
}
