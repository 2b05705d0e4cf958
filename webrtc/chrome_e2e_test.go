//go:build e2e

package webrtc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

// chromiumName is the browser binary looked up in PATH (Debian's
// chromium package).
const chromiumName = "chromium"

// chrome is a headless Chromium with a fake camera and a fake microphone
// playing a 1 kHz tone, serving pages from a loopback HTTP server (a secure
// context, so that getUserMedia exists).
type chrome struct {
	t   *testing.T
	ctx context.Context
	url string
}

func startChrome(t *testing.T) *chrome {
	t.Helper()
	chromiumPath, err := exec.LookPath(chromiumName)
	if err != nil {
		t.Fatalf("chromium is required for the e2e tests: %v", err)
	}
	dir := t.TempDir()
	wav := filepath.Join(dir, "tone1k.wav")
	if err := audiotest.WriteWAVFile(wav, audiotest.Tone(48000, 1000, 0.5, 10*time.Second), 48000); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<!doctype html><title>call</title>")
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(dir, "profile")),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", wav),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() { bcancel(); acancel() })
	// The first Run starts the browser: no timeout on it.
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &chrome{t: t, ctx: bctx, url: srv.URL}
}

// tab opens another page in its own browser context.
func (c *chrome) tab() *chrome {
	c.t.Helper()
	ctx, cancel := chromedp.NewContext(c.ctx, chromedp.WithNewBrowserContext())
	c.t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate(c.url)); err != nil {
		c.t.Fatalf("open tab: %v", err)
	}
	return &chrome{t: c.t, ctx: ctx, url: c.url}
}

// js calls the JavaScript function fn with JSON arguments, awaits it and
// returns its JSON result.
func (c *chrome) js(fn string, args ...any) json.RawMessage {
	c.t.Helper()
	enc := make([]string, len(args))
	for i, a := range args {
		b, _ := json.Marshal(a)
		enc[i] = string(b)
	}
	ctx, cancel := context.WithTimeout(c.ctx, wait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](fmt.Sprintf("(%s)(%s)", fn, strings.Join(enc, ",")), chromedp.EvalAwaitPromise))
	if err != nil {
		c.t.Fatalf("evaluate %.60q: %v", fn, err)
	}
	return v
}

// trickle passes the page's gathered candidates (window.cands) to p until
// p is connected.
func (c *chrome) trickle(p *Peer) {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for p.State() != StateConnected {
		if time.Now().After(deadline) {
			c.t.Fatalf("not connected; state %s", p.State())
		}
		var cands []ICECandidateInit
		if err := json.Unmarshal(c.js(`() => { const c = window.cands; window.cands = []; return c; }`), &cands); err != nil {
			c.t.Fatal(err)
		}
		for _, cand := range cands {
			if err := p.AddICECandidate(cand); err != nil {
				c.t.Errorf("AddICECandidate(%q): %v", cand.Candidate, err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestChromeCall runs a call between headless Chromium and a Peer over
// loopback: Chrome's fake microphone plays a 1 kHz tone and the gateway
// plays 440 Hz; each side must hear the other's tone, and Chrome's keypad
// (RTCDTMFSender) must reach OnDTMF.
func TestChromeCall(t *testing.T) {
	c := startChrome(t)
	js := c.js
	e := newTestEngine(t, Config{})
	digits := make(chan rune, 8)
	p, err := e.NewPeer(context.Background(), PeerOptions{Name: "chrome", WaitForCandidates: true, OnDTMF: func(d rune) { digits <- d }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	heard := audiotest.NewRecorder(8000)
	p.SwapAudioOut(heard)

	var offer string
	if err := json.Unmarshal(js(`async () => {
		const pc = new RTCPeerConnection();
		window.pc = pc; window.cands = [];
		pc.onicecandidate = (e) => { if (e.candidate) window.cands.push(e.candidate.toJSON()); };
		pc.ontrack = (e) => {
			const stream = e.streams[0] || new MediaStream([e.track]);
			const a = new Audio(); a.srcObject = stream; a.muted = true; a.play();
			const ctx = new AudioContext();
			const an = ctx.createAnalyser(); an.fftSize = 8192;
			ctx.createMediaStreamSource(stream).connect(an);
			window.an = an; window.actx = ctx;
		};
		const s = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
		s.getTracks().forEach((t) => pc.addTrack(t, s));
		await pc.setLocalDescription(await pc.createOffer());
		return pc.localDescription.sdp;
	}`), &offer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	answer, err := p.Answer(ctx, offer)
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	js(`async (sdp) => { await window.pc.setRemoteDescription({type: "answer", sdp}); }`, answer)

	c.trickle(p)
	if codec := p.AudioCodec(); codec != "opus" {
		t.Errorf("AudioCodec = %q, want opus", codec)
	}
	if !strings.Contains(answer, "maxplaybackrate=8000") {
		t.Errorf("answer lacks the narrowband hint:\n%s", answer)
	}

	defer playTone(t, p.AudioIn(), 440)()
	assertTone(t, "gateway heard chrome", tail(heardMore(t, "audio from chrome", heard, 2*time.Second), time.Second), 1000)

	// Chrome honours the narrowband hint: its Opus encoder is capped at
	// narrowband (RFC 7587 §6.1), so the gateway decodes SILK alone.
	// The packets, relayed untouched to a second peer, say so in their
	// TOC byte (RFC 6716 §3.1: configurations 0-3 are SILK narrowband,
	// 16-19 CELT narrowband).
	relayed := newBrowser(t, browserOptions{})
	rp := connect(t, e, relayed, PeerOptions{Name: "relay"})
	if err := p.RelayAudioTo(rp.Peer); err != nil {
		t.Fatal(err)
	}
	eventually(t, "chrome's packets relayed", func() bool { return len(relayed.receivedAudio()) >= 50 })
	if err := p.RelayAudioTo(nil); err != nil {
		t.Fatal(err)
	}
	configs := map[byte]int{}
	for _, pkt := range relayed.receivedAudio()[25:50] {
		if len(pkt.payload) == 0 {
			continue
		}
		cfg := pkt.payload[0] >> 3
		configs[cfg]++
		if cfg > 3 && (cfg < 16 || cfg > 19) {
			t.Fatalf("chrome sent Opus of TOC configuration %d, not narrowband, to an answer with %q", cfg, "maxplaybackrate=8000")
		}
	}
	t.Logf("chrome's Opus, TOC configuration: packets %v", configs)
	rp.Close()

	var peak float64
	deadline := time.Now().Add(wait)
	for {
		time.Sleep(500 * time.Millisecond)
		if err := json.Unmarshal(js(`() => {
			const an = window.an; if (!an) return 0;
			const d = new Float32Array(an.frequencyBinCount); an.getFloatFrequencyData(d);
			let m = -Infinity, k = 0;
			for (let i = 1; i < d.length; i++) if (d[i] > m) { m = d[i]; k = i; }
			return m < -80 ? 0 : k * window.actx.sampleRate / an.fftSize;
		}`), &peak); err != nil {
			t.Fatal(err)
		}
		if peak > 420 && peak < 460 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("chrome hears a peak at %.1f Hz", peak)
	if peak < 420 || peak > 460 {
		t.Errorf("chrome heard a peak at %.1f Hz, want 440", peak)
	}

	js(`() => { window.pc.getSenders()[0].dtmf.insertDTMF("5#", 100, 70); }`)
	var got []rune
	for len(got) < 2 {
		select {
		case d := <-digits:
			got = append(got, d)
		case <-time.After(wait):
			t.Fatalf("digits from chrome: %q, want \"5#\"", string(got))
		}
	}
	if string(got) != "5#" {
		t.Errorf("digits from chrome = %q, want \"5#\"", string(got))
	}

	// The customer's network changes: Chrome restarts ICE with a new
	// offer; audio must go on over the new credentials.
	before := ufrag(answer)
	if err := json.Unmarshal(js(`async () => {
		window.pc.restartIce();
		await window.pc.setLocalDescription(await window.pc.createOffer());
		return window.pc.localDescription.sdp;
	}`), &offer); err != nil {
		t.Fatal(err)
	}
	if answer, err = p.Answer(ctx, offer); err != nil {
		t.Fatalf("Answer to the ICE restart: %v", err)
	}
	if ufrag(answer) == before {
		t.Errorf("ICE restart answered with the old ufrag %q", before)
	}
	js(`async (sdp) => { await window.pc.setRemoteDescription({type: "answer", sdp}); }`, answer)
	c.trickle(p)
	assertTone(t, "gateway heard chrome after ice restart", tail(heardMore(t, "audio after ICE restart", heard, 2*time.Second), time.Second), 1000)
	if err := p.Err(); err != nil {
		t.Errorf("Err = %v after ICE restart", err)
	}
	t.Logf("stats: %+v", p.Stats())
	js(`() => window.pc.close()`)
}

// TestChromeVideo relays a customer's camera from one Chromium tab to an
// agent's console in another, through two Peers and a Forwarder: the
// gateway makes the console's offer, and the console must show frames,
// which needs its key frame request to reach the customer.
func TestChromeVideo(t *testing.T) {
	c := startChrome(t)
	customer, console := c.tab(), c.tab()
	e := newTestEngine(t, Config{})

	videos := make(chan *RemoteVideo, 2)
	pc, err := e.NewPeer(context.Background(), PeerOptions{Name: "customer", WaitForCandidates: true, OnVideoTrack: func(v *RemoteVideo) { videos <- v }})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var offer string
	if err := json.Unmarshal(customer.js(`async () => {
		const pc = new RTCPeerConnection();
		window.pc = pc; window.cands = [];
		pc.onicecandidate = (e) => { if (e.candidate) window.cands.push(e.candidate.toJSON()); };
		const s = await navigator.mediaDevices.getUserMedia({audio: true, video: {width: 640, height: 480}});
		s.getTracks().forEach((t) => pc.addTrack(t, s));
		await pc.setLocalDescription(await pc.createOffer());
		return pc.localDescription.sdp;
	}`), &offer); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	answer, err := pc.Answer(ctx, offer)
	if err != nil {
		t.Fatalf("Answer: %v", err)
	}
	customer.js(`async (sdp) => { await window.pc.setRemoteDescription({type: "answer", sdp}); }`, answer)
	customer.trickle(pc)

	var video *RemoteVideo
	select {
	case video = <-videos:
	case <-time.After(wait):
		t.Fatal("no video track from the customer")
	}
	t.Logf("customer video: %s", video.MimeType())

	pa, err := e.NewPeer(ctx, PeerOptions{Name: "agent", WaitForCandidates: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	fwd, err := NewForwarder(video, pa)
	if err != nil {
		t.Fatalf("NewForwarder: %v", err)
	}
	defer fwd.Close()
	consoleOffer, err := pa.Offer(ctx, false)
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	var consoleAnswer string
	if err := json.Unmarshal(console.js(`async (sdp) => {
		const pc = new RTCPeerConnection();
		window.pc = pc; window.cands = [];
		pc.onicecandidate = (e) => { if (e.candidate) window.cands.push(e.candidate.toJSON()); };
		pc.ontrack = (e) => {
			if (e.track.kind !== "video") return;
			const v = document.createElement("video");
			v.muted = true; v.autoplay = true; v.playsInline = true;
			v.srcObject = new MediaStream([e.track]);
			document.body.appendChild(v); window.video = v; v.play();
		};
		await pc.setRemoteDescription({type: "offer", sdp});
		await pc.setLocalDescription(await pc.createAnswer());
		return pc.localDescription.sdp;
	}`, consoleOffer), &consoleAnswer); err != nil {
		t.Fatal(err)
	}
	if err := pa.SetAnswer(ctx, consoleAnswer); err != nil {
		t.Fatalf("SetAnswer: %v", err)
	}
	console.trickle(pa)

	var size []int
	deadline := time.Now().Add(wait)
	for {
		if err := json.Unmarshal(console.js(`() => window.video ? [window.video.videoWidth, window.video.videoHeight] : [0, 0]`), &size); err != nil {
			t.Fatal(err)
		}
		if size[0] > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if size[0] != 640 || size[1] != 480 {
		t.Errorf("console shows %dx%d video, want 640x480", size[0], size[1])
	}
	n, _ := video.Packets()
	t.Logf("console shows %dx%d; %d packets received, %d relayed", size[0], size[1], n, fwd.Packets())
	customer.js(`() => window.pc.close()`)
	console.js(`() => window.pc.close()`)
}
