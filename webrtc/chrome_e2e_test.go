//go:build e2e

package webrtc

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

const chromiumPath = "/usr/bin/chromium"

// TestChromeCall runs a call between headless Chromium and a Peer over
// loopback: Chrome's fake microphone plays a 1 kHz tone and the gateway
// plays 440 Hz; each side must hear the other's tone, and Chrome's keypad
// (RTCDTMFSender) must reach OnDTMF.
func TestChromeCall(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
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
	defer srv.Close()

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
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	// The first Run starts the browser: no timeout on it.
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	js := func(fn string, args ...any) json.RawMessage {
		t.Helper()
		enc := make([]string, len(args))
		for i, a := range args {
			b, _ := json.Marshal(a)
			enc[i] = string(b)
		}
		ctx, cancel := context.WithTimeout(bctx, wait)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](fmt.Sprintf("(%s)(%s)", fn, strings.Join(enc, ",")), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("evaluate %.60q: %v", fn, err)
		}
		return v
	}

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

	// Chrome trickles; pass its candidates on until connected.
	deadline := time.Now().Add(wait)
	for p.State() != StateConnected {
		if time.Now().After(deadline) {
			t.Fatalf("not connected; state %s", p.State())
		}
		var cands []ICECandidateInit
		if err := json.Unmarshal(js(`() => { const c = window.cands; window.cands = []; return c; }`), &cands); err != nil {
			t.Fatal(err)
		}
		for _, c := range cands {
			if err := p.AddICECandidate(c); err != nil {
				t.Errorf("AddICECandidate(%q): %v", c.Candidate, err)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := p.AudioCodec(); c != "opus" {
		t.Errorf("AudioCodec = %q, want opus", c)
	}
	if !strings.Contains(answer, "maxplaybackrate=8000") {
		t.Errorf("answer lacks the narrowband hint:\n%s", answer)
	}

	defer playTone(t, p.AudioIn(), 440)()
	assertTone(t, "gateway heard chrome", tail(heardMore(t, "audio from chrome", heard, 2*time.Second), time.Second), 1000)

	var peak float64
	deadline = time.Now().Add(wait)
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
	t.Logf("stats: %+v", p.Stats())
	js(`() => window.pc.close()`)
}
