package demophone

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("time.Sleep"),
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*ClientTx).spinFsmWithResponse"),
	)
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"defaults", Config{}, ""},
		{"localhost", Config{Listen: "localhost:5080"}, ""},
		{"ipv6 loopback", Config{Listen: "[::1]:5080"}, ""},
		{"all interfaces", Config{Listen: "0.0.0.0:5080"}, "listen: \"0.0.0.0:5080\": demophone: listen must be a loopback address"},
		{"public address", Config{Listen: "192.0.2.7:5080"}, "listen: \"192.0.2.7:5080\": demophone: listen must be a loopback address"},
		{"a name", Config{Listen: "pbx.example.com:5080"}, "must be a loopback address"},
		{"no port", Config{Listen: "127.0.0.1"}, "listen: \"127.0.0.1\": want host:port"},
		{"bad ports", Config{RTPPortRange: [2]int{21000, 20000}}, "rtp_port_range: [21000, 20000]"},
		{"greeting", Config{Greeting: "hello.mp3"}, `greeting: "hello.mp3": demophone: greeting must be chime, none or a WAV file`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			c.ApplyDefaults()
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestChime: the greeting plays each note of ChimeHz in turn, loud enough
// to hear and without clipping.
func TestChime(t *testing.T) {
	c := Chime()
	n, gap := audiotest.Samples(rate, chimeNote), audiotest.Samples(rate, chimeGap)
	if len(c) != len(ChimeHz)*(n+gap) {
		t.Fatalf("chime of %d samples, want %d", len(c), len(ChimeHz)*(n+gap))
	}
	for i, hz := range ChimeHz {
		note := c[i*(n+gap) : i*(n+gap)+n]
		if got := audiotest.PeakFrequency(note, rate); math.Abs(got-hz) > 10 {
			t.Errorf("note %d peaks at %.0f Hz, want %.0f", i, got, hz)
		}
		if db := audiotest.Level(note); db < -16 || db > -3 {
			t.Errorf("note %d at %.1f dBFS", i, db)
		}
	}
}

// startPhone runs a demo phone on 127.0.0.1 and a free port.
func startPhone(t *testing.T, greeting string) *Phone {
	t.Helper()
	lo := 40000 + 2*rand.IntN(5000)
	cfg := Config{Listen: "127.0.0.1:0", RTPPortRange: [2]int{lo, lo + 19}, Greeting: greeting}
	cfg.ApplyDefaults()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case <-p.Ready():
	case err := <-done:
		t.Fatalf("run: %v", err)
	}
	return p
}

// caller runs a sip.Server on 127.0.0.1 with the phone as its trunk, as
// the gateway would.
func caller(t *testing.T, phone *Phone) *sip.Server {
	t.Helper()
	lo := 45000 + 2*rand.IntN(5000)
	cfg := sip.Config{Listen: []string{"udp:127.0.0.1:0"}, RTPPortRange: [2]int{lo, lo + 19}}
	cfg.ApplyDefaults()
	tc := sip.TrunkConfig{Name: "demo", URI: "sip:" + phone.Addr().String(), AllowInboundFrom: []string{"127.0.0.1/32"}}
	tc.ApplyDefaults()
	s, err := sip.New(cfg, []sip.TrunkConfig{tc}, sip.WithPortRest(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-s.Ready()
	return s
}

// TestGreetingThenEcho: a call to the demo phone hears the chime's notes,
// then its own tone sent back.
func TestGreetingThenEcho(t *testing.T) {
	phone := startPhone(t, GreetingChime)
	s := caller(t, phone)
	heard := audiotest.NewRecorder(rate)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	call, err := s.Dial(ctx, "demo", "sip:600@"+phone.Addr().String(), sip.DialOptions{AudioOut: heard})
	if err != nil {
		t.Fatal(err)
	}
	defer call.Close()
	// Speak a 1 kHz tone for the greeting and 1.5 s more.
	greeting := time.Duration(len(Chime())) * time.Second / rate
	tone := audiotest.Tone(rate, 1000, 0.5, greeting+1500*time.Millisecond)
	tick := time.NewTicker(20 * time.Millisecond)
	for pos := 0; pos < len(tone); pos += frame {
		<-tick.C
		_ = call.AudioIn().WriteSample(tone[pos:min(pos+frame, len(tone))])
	}
	tick.Stop()
	time.Sleep(300 * time.Millisecond) // the echo's way back
	if err := call.Close(); err != nil {
		t.Fatalf("hang up: %v", err)
	}
	got := heard.Samples()
	// Find where the greeting starts (the first loud frame) and check each note.
	start := 0
	for start+frame < len(got) && audiotest.Level(got[start:start+frame]) < -30 {
		start += frame
	}
	n, gap := audiotest.Samples(rate, chimeNote), audiotest.Samples(rate, chimeGap)
	for i, hz := range ChimeHz {
		a := start + i*(n+gap) + n/4
		b := a + n/2
		if b > len(got) {
			t.Fatalf("heard only %d samples", len(got))
		}
		if f := audiotest.PeakFrequency(got[a:b], rate); math.Abs(f-hz) > 15 {
			t.Errorf("note %d: heard %.0f Hz, want %.0f", i, f, hz)
		}
	}
	// Then the caller's own tone.
	a := start + len(Chime()) + audiotest.Samples(rate, 500*time.Millisecond)
	b := a + audiotest.Samples(rate, 600*time.Millisecond)
	if b > len(got) {
		t.Fatalf("heard %v in all, no echo after the greeting", time.Duration(len(got))*time.Second/rate)
	}
	echo := got[a:b]
	if f := audiotest.PeakFrequency(echo, rate); math.Abs(f-1000) > 15 {
		t.Errorf("echo at %.0f Hz, want 1000", f)
	}
	if db := audiotest.Level(echo); db < -12 || db > 0 {
		t.Errorf("echo at %.1f dBFS, want about -6", db)
	}
	if phone.Answered() != 1 {
		t.Errorf("the phone answered %d calls", phone.Answered())
	}
}

// TestOutsiderGetsNothing: an INVITE from another loopback address than
// the gateway's (127.0.0.2, as a local process or a forwarded port would
// send) gets no answer at all, and no call is answered.
func TestOutsiderGetsNothing(t *testing.T) {
	phone := startPhone(t, GreetingNone)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := phone.Addr().String()
	me := c.LocalAddr().String()
	sdp := "v=0\r\no=x 1 2 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
	for i, method := range []string{"INVITE", "OPTIONS", "REGISTER", "MESSAGE"} {
		body := ""
		if method == "INVITE" {
			body = sdp
		}
		msg := fmt.Sprintf("%s sip:600@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-out%d\r\nMax-Forwards: 70\r\n"+
			"From: <sip:mallory@127.0.0.2>;tag=m%d\r\nTo: <sip:600@%s>\r\nCall-ID: outsider-%d\r\nCSeq: 1 %s\r\n"+
			"Contact: <sip:mallory@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
			method, to, me, i, i, to, i, method, me, len(body), body)
		if _, err := c.WriteTo([]byte(msg), net.UDPAddrFromAddrPort(phone.Addr())); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	buf := make([]byte, 4096)
	if n, _, err := c.ReadFrom(buf); err == nil {
		t.Errorf("the outsider got an answer: %q", buf[:min(n, 80)])
	}
	if phone.Answered() != 0 {
		t.Errorf("the phone answered %d calls from an outsider", phone.Answered())
	}
	if phone.Refused() < 4 {
		t.Errorf("refused %d of 4 requests", phone.Refused())
	}
}

// TestNewRefusesNonLoopback: the phone does not even start on another
// address.
func TestNewRefusesNonLoopback(t *testing.T) {
	cfg := Config{Listen: "0.0.0.0:5080"}
	cfg.ApplyDefaults()
	if _, err := New(cfg, nil); !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("New on 0.0.0.0: %v, want ErrNotLoopback", err)
	}
}
