// This file has no build tag: it runs in plain `go test ./...`. A pion
// peer connection plays the customer's browser and a second SIP stack
// plays the agent's desk phone, both in-process on loopback.

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	pwebrtc "github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	segue "github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
	"github.com/segue-rtc/segue/webrtc"
)

// pionTestHash is the bcrypt hash of the test agents' password "password1".
const pionTestHash = "$2a$04$TFH44CR/mg6x8p0onKZ1nu39JpgEu7NnTZIdl.c6t.Mw8QABuPn12"

// startInProcess runs a gateway on config doc, with WebRTC on loopback only
// and, when sipSrv is given, voice through it. It stops with the test.
func startInProcess(t *testing.T, doc string, sipSrv *sip.Server) *httptest.Server {
	t.Helper()
	cfg, err := segue.ParseConfig([]byte(doc), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: the gateway is never Run here, so nothing waits for
	// its WebSocket handlers (hijacked connections outlive ts.Close), and
	// one still ending a call or a video may touch the store's directory
	// while the test's cleanup removes it. The directory goes a moment
	// later instead.
	dir, err := os.MkdirTemp("", "segue-inprocess-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeSoon(t, dir) })
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "s.db"), filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	eng, err := webrtc.New(cfg.WebRTC, log, webrtc.WithLoopbackOnly())
	if err != nil {
		t.Fatal(err)
	}
	opts := []segue.Option{segue.WithWebRTC(eng)}
	if sipSrv != nil {
		opts = append(opts, segue.WithSIP(sipSrv))
	}
	srv, err := segue.New(cfg, st, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// removeSoon removes dir, trying again for a second while something
// still writes into it; after that a failure fails the test.
func removeSoon(t *testing.T, dir string) {
	var err error
	for range 20 {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("remove %s: %v", dir, err)
}

// lastOf returns the last d of what rec recorded.
func lastOf(rec *audiotest.Recorder, d time.Duration) transcode.PCM16 {
	pcm := rec.Samples()
	if n := audiotest.Samples(rec.SampleRate(), d); len(pcm) > n {
		return pcm[len(pcm)-n:]
	}
	return pcm
}

func rtpRange() [2]int {
	lo := 30000 + 2*rand.IntN(10000)
	return [2]int{lo, lo + 99}
}

// startSIP runs a SIP server on 127.0.0.1 until the test ends.
func startSIP(t *testing.T, trunks []sip.TrunkConfig, opts ...sip.Option) *sip.Server {
	t.Helper()
	cfg := sip.Config{Listen: []string{"udp:127.0.0.1:0"}, RTPPortRange: rtpRange()}
	cfg.ApplyDefaults()
	for i := range trunks {
		trunks[i].ApplyDefaults()
	}
	s, err := sip.New(cfg, trunks, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// deskPhone answers every call, plays a tone into it and records it.
type deskPhone struct {
	srv   *sip.Server
	heard *audiotest.Recorder
	calls chan *sip.Call
	uui   chan string
}

func startDeskPhone(t *testing.T, toneHz float64) *deskPhone {
	p := &deskPhone{heard: audiotest.NewRecorder(8000), calls: make(chan *sip.Call, 4), uui: make(chan string, 4)}
	p.srv = startSIP(t, []sip.TrunkConfig{{Name: "gw", URI: "sip:127.0.0.1:5999", AllowInboundFrom: []string{"127.0.0.1/32"}}},
		sip.WithInviteHandler(func(ctx context.Context, in *sip.InboundCall) error {
			p.uui <- in.Header("User-to-User")
			c, err := in.Answer(ctx, p.heard)
			if err != nil {
				return err
			}
			p.calls <- c
			go func() {
				// One continuous tone fed in 20 ms slices: restarting the
				// phase every frame would move the peak to a multiple of 50 Hz.
				tone := audiotest.Tone(8000, toneHz, 0.5, 30*time.Second)
				tk := time.NewTicker(20 * time.Millisecond)
				defer tk.Stop()
				for off := 0; off+160 <= len(tone); off += 160 {
					select {
					case <-c.Done():
						return
					case <-tk.C:
						_ = c.AudioIn().WriteSample(tone[off : off+160])
					}
				}
			}()
			return nil
		}))
	return p
}

// trackWriter sends Opus payloads on a pion sample track.
type trackWriter struct {
	track *pwebrtc.TrackLocalStaticSample
}

func (w trackWriter) WriteSample(b []byte) error {
	return w.track.WriteSample(media.Sample{Data: append([]byte(nil), b...), Duration: 20 * time.Millisecond})
}
func (w trackWriter) SampleRate() int { return transcode.OpusClockRate }
func (w trackWriter) String() string  { return "pion track" }
func (w trackWriter) Close() error    { return nil }

// pionBrowser is a pion peer connection standing in for Chromium.
type pionBrowser struct {
	pc    *pwebrtc.PeerConnection
	heard *audiotest.Recorder
	stop  chan struct{}
	wg    sync.WaitGroup

	mu sync.Mutex
	// videoIn holds the payloads of the video received, in order.
	videoIn [][]byte
}

// receivedVideo returns a copy of the video payloads received so far.
func (b *pionBrowser) receivedVideo() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.videoIn...)
}

// loopbackAPI is a pion API with the default codecs whose peer connections
// gather and accept only IPv4 loopback candidates, without mDNS.
func loopbackAPI(tb testing.TB) *pwebrtc.API {
	tb.Helper()
	var se pwebrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	me := &pwebrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		tb.Fatal(err)
	}
	return pwebrtc.NewAPI(pwebrtc.WithSettingEngine(se), pwebrtc.WithMediaEngine(me))
}

func newBrowser(t *testing.T, toneHz float64) *pionBrowser {
	t.Helper()
	pc, err := loopbackAPI(t).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b := &pionBrowser{pc: pc, heard: audiotest.NewRecorder(8000), stop: make(chan struct{})}
	track, err := pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "customer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	enc, err := transcode.NewOpusEncoder(trackWriter{track}, 8000, transcode.OpusConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b.wg.Add(1)
	go func() { // the microphone: a tone in 20 ms frames
		defer b.wg.Done()
		tone := audiotest.Tone(8000, toneHz, 0.5, 30*time.Second)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for off := 0; off+160 <= len(tone); off += 160 {
			select {
			case <-b.stop:
				return
			case <-tk.C:
				_ = enc.WriteSample(tone[off : off+160])
			}
		}
	}()
	pc.OnTrack(func(tr *pwebrtc.TrackRemote, _ *pwebrtc.RTPReceiver) { // the loudspeaker and the screen
		sink := func(payload []byte) {
			b.mu.Lock()
			b.videoIn = append(b.videoIn, append([]byte(nil), payload...))
			b.mu.Unlock()
		}
		if tr.Kind() != pwebrtc.RTPCodecTypeVideo {
			dec, err := transcode.NewOpusDecoder(b.heard)
			if err != nil {
				return
			}
			sink = func(payload []byte) { _ = dec.WriteSample(payload) }
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				pkt, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				sink(pkt.Payload)
			}
		}()
	})
	t.Cleanup(b.close)
	return b
}

func (b *pionBrowser) close() { closePeer(b.pc, b.stop, &b.wg) }

// closePeer stops a stand-in browser: it closes stop, the first time only,
// then the peer connection, and waits for the goroutines in wg.
func closePeer(pc *pwebrtc.PeerConnection, stop chan struct{}, wg *sync.WaitGroup) {
	select {
	case <-stop:
		return
	default:
	}
	close(stop)
	pc.Close()
	wg.Wait()
}

// addCamera adds a VP8 video track with id to the peer connection, for
// sendVideo to feed.
func (b *pionBrowser) addCamera(t *testing.T, id string) *pwebrtc.TrackLocalStaticRTP {
	t.Helper()
	camera, err := pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, "camera", id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pc.AddTrack(camera); err != nil {
		t.Fatal(err)
	}
	return camera
}

// answered applies the gateway's answer to our offer.
func (b *pionBrowser) answered(sdp string) error {
	return b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: sdp})
}

// candidate adds a candidate the gateway trickled (the candidate of an
// rtc.candidate frame); an empty one, the end of candidates, is skipped.
func (b *pionBrowser) candidate(raw json.RawMessage) {
	var c pwebrtc.ICECandidateInit
	_ = json.Unmarshal(raw, &c)
	if c.Candidate != "" {
		_ = b.pc.AddICECandidate(c)
	}
}

// offer returns a complete offer (all candidates gathered).
func (b *pionBrowser) offer(t *testing.T) string {
	t.Helper()
	o, err := b.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := pwebrtc.GatheringCompletePromise(b.pc)
	if err := b.pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return b.pc.LocalDescription().SDP
}

// ws is the customer's chat socket.
type ws struct {
	t *testing.T
	c *websocket.Conn
}

func (w ws) send(v any) {
	b, _ := json.Marshal(v)
	if err := w.c.Write(context.Background(), websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

func (w ws) read(ctx context.Context) map[string]json.RawMessage {
	_, b, err := w.c.Read(ctx)
	if err != nil {
		w.t.Fatalf("read frame: %v", err)
	}
	var f map[string]json.RawMessage
	_ = json.Unmarshal(b, &f)
	return f
}

func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// deskPhoneGateway runs an in-process gateway with a trunk to phone, the
// support queue's calls dialled through it to 600, and Alice; alice adds
// fields to her entry (`, phone: "sip:..."`, say).
func deskPhoneGateway(t *testing.T, phone *deskPhone, alice string) *httptest.Server {
	t.Helper()
	gwSIP := startSIP(t, []sip.TrunkConfig{{Name: "pbx", URI: "sip:" + phone.srv.Addr("udp").String(), AllowInboundFrom: []string{"127.0.0.1/32"}}})
	return startInProcess(t, fmt.Sprintf(`
http: {public_url: "http://gateway.test"}
trunks:
  - {name: pbx, uri: "sip:%s"}
queues:
  - {name: support, trunk: pbx, dial: "sip:600@%s"}
agents:
  - {id: alice, name: Alice, password_hash: "%s", queues: [support]%s}
`, phone.srv.Addr("udp"), phone.srv.Addr("udp"), pionTestHash, alice), gwSIP)
}

func TestVoiceCallBrowserToDeskPhone(t *testing.T) {
	phone := startDeskPhone(t, 440)
	ts := deskPhoneGateway(t, phone, "")

	resp, err := http.Post(ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{"name":"Ann Lee"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Token        string `json:"token"`
		Conversation struct {
			ID string `json:"id"`
		} `json:"conversation"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/api/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	cws := ws{t, conn}
	cws.send(map[string]any{"type": "hello", "token": created.Token})
	if f := cws.read(ctx); str(f["type"]) != "welcome" || !strings.Contains(string(f["features"]), `"voice":true`) {
		t.Fatalf("welcome: %v", f)
	}

	b := newBrowser(t, 1000)
	clickedAt := time.Now()
	cws.send(map[string]any{"type": "voice.start", "sdp": b.offer(t)})
	connected := false
	for !connected {
		f := cws.read(ctx)
		switch str(f["type"]) {
		case "rtc.answer":
			if err := b.answered(str(f["sdp"])); err != nil {
				t.Fatal(err)
			}
		case "rtc.candidate":
			b.candidate(f["candidate"])
		case "call":
			var c struct{ State, Reason string }
			_ = json.Unmarshal(f["call"], &c)
			if c.State == "failed" || c.State == "ended" {
				t.Fatalf("call %s: %s", c.State, c.Reason)
			}
			connected = c.State == "connected"
		case "error":
			t.Fatalf("error frame: %v", f)
		}
	}
	t.Logf("connected %v after the click", time.Since(clickedAt).Round(time.Millisecond))
	if uui := <-phone.uui; !strings.HasPrefix(uui, fmt.Sprintf("%x", created.Conversation.ID)) {
		t.Errorf("User-to-User %q does not carry the conversation id", uui)
	}
	deskCall := <-phone.calls

	time.Sleep(2500 * time.Millisecond) // let audio flow both ways
	atPhone, atBrowser := lastOf(phone.heard, time.Second), lastOf(b.heard, time.Second)
	if f := audiotest.PeakFrequency(atPhone, 8000); f < 980 || f > 1020 {
		t.Errorf("the desk phone heard a peak at %.0f Hz, want the browser's 1000 Hz", f)
	}
	if l := audiotest.Level(atPhone); l < -20 || l > 0 {
		t.Errorf("the desk phone heard %.1f dBFS, want about -6", l)
	}
	if f := audiotest.PeakFrequency(atBrowser, 8000); f < 430 || f > 450 {
		t.Errorf("the browser heard a peak at %.0f Hz, want the phone's 440 Hz", f)
	}
	if l := audiotest.Level(atBrowser); l < -20 || l > 0 {
		t.Errorf("the browser heard %.1f dBFS, want about -6", l)
	}

	// The customer hangs up: the desk phone gets BYE, the chat goes on.
	cws.send(map[string]any{"type": "voice.hangup"})
	select {
	case <-deskCall.Done():
	case <-ctx.Done():
		t.Fatal("desk phone still in the call after the customer hung up")
	}
	for {
		f := cws.read(ctx)
		if str(f["type"]) == "call" && strings.Contains(string(f["call"]), `"state":"ended"`) {
			break
		}
	}
	cws.send(map[string]any{"type": "message", "id": "after-call", "text": "thanks!"})
	for {
		if f := cws.read(ctx); str(f["type"]) == "ack" {
			break
		}
	}
}
