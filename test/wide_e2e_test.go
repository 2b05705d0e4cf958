//go:build e2e

package test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// wideChromium starts a Chromium of the test's own whose fake microphone
// plays a hz tone (a process-wide switch, hence not a shared browser); it
// stops with the test.
func wideChromium(t *testing.T, hz float64) context.Context {
	t.Helper()
	dir, err := os.MkdirTemp("", "segue-wide-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	// 10 s of whole cycles, so that Chromium's looping of the file is seamless.
	wav := filepath.Join(dir, fmt.Sprintf("mic%.0f.wav", hz))
	if err := audiotest.WriteWAVFile(wav, audiotest.Tone(48000, hz, 0.5, 10*time.Second), 48000); err != nil {
		t.Fatal(err)
	}
	ctx, stop := launchChromium(t, dir, chromedp.Flag("use-file-for-fake-audio-capture", wav))
	t.Cleanup(stop)
	return ctx
}

// wideHeard is what a page measured of an audio element's stream.
type wideHeard struct {
	Freq float64 `json:"freq"` // the strongest frequency
	Peak float64 `json:"peak"` // its level in the analyser, dB
	DB   float64 `json:"db"`   // the level of the whole stream, dBFS
	Rate float64 `json:"rate"` // the AudioContext's rate
	Err  string  `json:"err"`
}

// wideAudioAt measures for ms what the audio element with testID
// receives: its stream goes through a muted copy (Chromium's WebAudio
// gets silence from a remote track that no element plays), then an
// AnalyserNode whose power spectra are summed.
func (tb *tab) wideAudioAt(testID string, ms int) wideHeard {
	tb.t.Helper()
	waitJS[bool](tb, testID+" to have a stream", fn("id", `return !!q(id)?.srcObject?.getAudioTracks().length;`), testID)
	h := call[wideHeard](tb, asyncFn("id, ms", `const stream = q(id).srcObject;
const el = new Audio(); el.muted = true; el.srcObject = stream; await el.play().catch(() => {});
const ctx = new AudioContext(); await ctx.resume();
const src = ctx.createMediaStreamSource(stream);
const an = ctx.createAnalyser(); an.fftSize = 8192; an.smoothingTimeConstant = 0;
src.connect(an);
const sleep = (d) => new Promise((r) => setTimeout(r, d));
await sleep(300);
const bins = new Float32Array(an.frequencyBinCount), td = new Float32Array(an.fftSize);
const acc = new Float64Array(an.frequencyBinCount);
let energy = 0, n = 0, frames = 0;
const end = performance.now() + ms;
while (performance.now() < end) {
  an.getFloatFrequencyData(bins);
  for (let i = 0; i < bins.length; i++) acc[i] += Math.pow(10, bins[i] / 10);
  an.getFloatTimeDomainData(td);
  for (const v of td) energy += v * v;
  n += td.length; frames++;
  await sleep(150);
}
src.disconnect(); el.srcObject = null; await ctx.close();
let best = 3;
for (let i = 3; i < acc.length; i++) if (acc[i] > acc[best]) best = i;
return {freq: best * ctx.sampleRate / an.fftSize, peak: 10 * Math.log10(acc[best] / frames), db: 10 * Math.log10(2 * energy / n + 1e-12), rate: ctx.sampleRate};`), testID, ms)
	if h.Err != "" {
		tb.t.Fatalf("%s: measure %s: %s", tb.name, testID, h.Err)
	}
	return h
}

// TestWideConsoleHearsTheCustomerWideband: video straight from the chat
// in Chromium, with the customer's fake microphone playing 6 kHz, above
// the 4 kHz that narrowband audio carries: the console hears it at 6 kHz,
// so the customer's browser sent wideband Opus and the gateway relayed it
// to the console without the 8 kHz bridge.
func TestWideConsoleHearsTheCustomerWideband(t *testing.T) {
	// segue serve starts WebRTC only with a trunk; this one is never dialled.
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: fmt.Sprintf("127.0.0.1:%d", peers.FreeUDPPort(t, "127.0.0.1"))}},
		queues: []voiceQueue{{name: "support", trunk: "pbx"}},
	})
	customer := openTab(t, wideChromium(t, wideHz), "customer")
	customer.do(chromedp.Navigate(g.URL + "/"))
	customer.click("widget-open")
	customer.fill("customer-name", "Ann Lee")
	customer.send("My meter whistles")
	customer.waitMessage("My meter whistles")
	convID := customer.widgetConversation()

	console := openConsole(t, g, "alice", "/console")
	console.acceptConversation(convID)
	console.waitMessage("My meter whistles")

	// The camera, straight from the chat: the console joins by itself and
	// plays the customer's audio in its video-audio element.
	customer.click("video-start")
	console.waitMessage("Video started")
	time.Sleep(time.Second) // let the browsers' jitter buffers and encoders settle
	h := console.wideAudioAt("video-audio", 2000)
	t.Logf("the console hears %.0f Hz (%.1f dB in the analyser), the stream at %.1f dBFS (analysed at %.0f Hz)", h.Freq, h.Peak, h.DB, h.Rate)
	// One FFT bin is rate/8192, about 5.4 Hz.
	if math.Abs(h.Freq-wideHz) > 12 {
		t.Errorf("the console hears a peak at %.0f Hz, want the customer's %d Hz", h.Freq, wideHz)
	}
	// Chromium's audio processing (on in the widget) lowers a steady tone,
	// but not to the noise.
	if h.DB < -45 {
		t.Errorf("the console hears the customer at %.1f dBFS, too faint", h.DB)
	}
	customer.send("Thanks")
	console.waitMessage("Thanks")

	// The camera off: video ends for both and each peer connection closes,
	// so that the gateway's shutdown need not wait for ICE to time out.
	customer.click("video-start")
	console.waitMessage("Video ended")
	waitJS[bool](console, "the console to leave the video", fn("", `return q('video-join')?.getAttribute('aria-pressed') === 'false' && !q('video-audio')?.srcObject;`))
}

// TestWideFullBandAgainAfterTheCall: a call to the desk phone (baresip),
// then the camera on the call's connection; the customer hangs up and the
// video goes on. The gateway then offers that connection again without the
// narrowband hints, and the console hears the customer's 6 kHz tone: the
// widget answered the offer and Chromium's encoder took the full band
// back.
func TestWideFullBandAgainAfterTheCall(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, 440, 0.5, 60*time.Second), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "1001", src)
	g := startVoiceGateway(t, voiceConfig{
		trunks:     []voiceTrunk{{name: "pbx", addr: strings.TrimPrefix(phone.URI(), "sip:1001@")}},
		queues:     []voiceQueue{{name: "support", trunk: "pbx"}},
		alicePhone: phone.URI(),
	})
	customer := openTab(t, wideChromium(t, wideHz), "customer")
	customer.do(chromedp.Navigate(g.URL + "/"))
	customer.click("widget-open")
	customer.fill("customer-name", "Ann Lee")
	customer.send("Can we talk, then see?")
	customer.waitMessage("Can we talk, then see?")
	convID := customer.widgetConversation()
	console := openConsole(t, g, "alice", "/console")
	console.acceptConversation(convID)
	console.waitMessage("Can we talk, then see?")

	customer.click("voice-start")
	customer.waitCall("connected")
	customer.click("video-start")
	console.waitMessage("Video started")
	waitJS[bool](console, "the console's video", fn("", `return !!q('video-audio')?.srcObject?.getAudioTracks().length;`))

	customer.click("hangup")
	customer.waitCall("ended")
	time.Sleep(2 * time.Second) // the offer answered, the encoders and jitter buffers settled
	h := console.wideAudioAt("video-audio", 2000)
	t.Logf("after the call the console hears %.0f Hz (%.1f dB in the analyser), the stream at %.1f dBFS", h.Freq, h.Peak, h.DB)
	if math.Abs(h.Freq-wideHz) > 12 {
		t.Errorf("after the call the console hears a peak at %.0f Hz, want the customer's %d Hz", h.Freq, wideHz)
	}
	if h.DB < -45 {
		t.Errorf("after the call the console hears the customer at %.1f dBFS, too faint", h.DB)
	}

	customer.click("video-start")
	console.waitMessage("Video ended")
	waitJS[bool](console, "the console to leave the video", fn("", `return q('video-join')?.getAttribute('aria-pressed') === 'false' && !q('video-audio')?.srcObject;`))
}
