//go:build e2e

package videoui

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// startCall stands in for the widget's voice module: it opens the call's
// peer connection with the microphone, sends voice.start, applies the
// gateway's answer, and exposes the connection as widget.voice.pc, where
// the video module looks for a call to join. While video is off it takes
// the signalling frames; once video is on, video owns them.
const startCall = `const w = document.querySelector('segue-widget');
const mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
const pc = new RTCPeerConnection();
for (const t of mic.getAudioTracks()) pc.addTrack(t, mic);
pc.addEventListener('track', (e) => { if (e.track.kind === 'audio') window.__heard = e.streams[0] ?? new MediaStream([e.track]); });
const frame = w.onFrame.bind(w);
w.onFrame = (f) => {
  if (f.type === 'call') window.__call = f.call;
  if (!w.video.neg && (f.type === 'rtc.answer' || f.type === 'rtc.candidate')) {
    if (f.type === 'rtc.answer') pc.setRemoteDescription({ type: 'answer', sdp: f.sdp });
    else pc.addIceCandidate(f.candidate).catch(() => {});
    return;
  }
  frame(f);
};
await pc.setLocalDescription();
await new Promise((r) => { if (pc.iceGatheringState === 'complete') r(); pc.addEventListener('icegatheringstatechange', () => { if (pc.iceGatheringState === 'complete') r(); }); });
w.voice = { pc };
return w.socket.send({ type: 'voice.start', sdp: pc.localDescription.sdp });`

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

	if !eval[bool](customer, "", startCall) {
		t.Fatal("voice.start not sent")
	}
	wait[bool](customer, "the call to connect", 20*time.Second, "", `return window.__call?.state === 'connected' && !!window.__heard;`)
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
	if st := eval[string](customer, "", `return window.__call?.state;`); st != "connected" {
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
	if st := eval[string](customer, "", `return window.__call?.state;`); st != "connected" {
		t.Errorf("the call is %q after video stopped", st)
	}
}
