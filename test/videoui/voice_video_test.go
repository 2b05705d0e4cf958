//go:build e2e

package videoui

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// callState reads the widget's call state and, once connected, keeps the
// call's received stream for heardHz.
const callState = `const w = document.querySelector('segue-widget');
const s = w.shadowRoot.querySelector('[data-testid="call-status"]');
if (w.voice?.audio?.srcObject) window.__heard = w.voice.audio.srcObject;
return s?.dataset.callState ?? '';`

// heardHz measures the loudest frequency of the call audio the page receives.
const heardHz = `const stream = window.__heard;
const el = new Audio(); el.muted = true; el.srcObject = stream; await el.play().catch(() => {});
const ctx = new AudioContext(); await ctx.resume();
const an = ctx.createAnalyser(); an.fftSize = 8192;
ctx.createMediaStreamSource(stream).connect(an);
await new Promise((r) => setTimeout(r, 2500));
const bins = new Float32Array(an.frequencyBinCount); an.getFloatFrequencyData(bins);
let best = 0; for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
const hz = best * ctx.sampleRate / an.fftSize; el.srcObject = null; ctx.close(); return hz;`

// TestVoiceThenVideo: chat, then a call to Alice's desk phone (baresip
// playing 440 Hz), then the camera: the video joins the call's peer
// connection, reaches the console, and the desk phone's voice keeps
// flowing to the customer.
func TestVoiceThenVideo(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, 440, 0.5, 60*time.Second), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "1001", src)
	g := startGateway(t, gatewayOptions{phone: phone.URI()})
	customer, agent, _, _ := startChat(t, g, "Can we talk?")

	customer.click("voice-start")
	wait[bool](customer, "the call to connect", 20*time.Second, "", `return (() => {`+callState+`})() === 'connected' && !!window.__heard;`)
	if f := eval[float64](customer, "", heardHz); f < 420 || f > 460 {
		t.Fatalf("during the call the customer hears %.0f Hz, want the desk phone's 440 Hz", f)
	}

	// The camera joins the call's connection: no second one.
	customer.click("video-start")
	agent.waitMessage("Video started")
	agent.waitPlaying("remote-video", 640, 480)
	if same := eval[bool](customer, "", `const w = document.querySelector('segue-widget'); return w.video.pc === w.voice.pc && !w.video.own;`); !same {
		t.Error("video opened a connection of its own beside the call's")
	}
	if f := eval[float64](customer, "", heardHz); f < 420 || f > 460 {
		t.Errorf("with video on the customer hears %.0f Hz, want the desk phone's 440 Hz still", f)
	}
	if st := eval[string](customer, "", callState); st != "connected" {
		t.Errorf("the call is %q after video started", st)
	}
	customer.send("Video and voice together")
	agent.waitMessage("Video and voice together")

	// The camera goes off: the video ends, the call does not.
	customer.click("video-start")
	agent.waitMessage("Video ended")
	if f := eval[float64](customer, "", heardHz); f < 420 || f > 460 {
		t.Errorf("after video the customer hears %.0f Hz, want the desk phone's 440 Hz still", f)
	}
	if st := eval[string](customer, "", callState); st != "connected" {
		t.Errorf("the call is %q after video stopped", st)
	}
}
