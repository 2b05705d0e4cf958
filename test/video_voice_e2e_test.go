//go:build e2e

package test

import "testing"

// callStateKeepingAudio reads the widget's call state and, once the call
// has a received stream, keeps it in window.__heard for heardHz.
const callStateKeepingAudio = `const w = document.querySelector('segue-widget');
const s = w.shadowRoot.querySelector('[data-testid="call-status"]');
if (w.voice?.audio?.srcObject) window.__heard = w.voice.audio.srcObject;
return s?.dataset.callState ?? '';`

// heardHz measures the loudest frequency of the call audio the page
// receives (the stream callStateKeepingAudio kept).
func (tb *tab) heardHz() float64 {
	tb.t.Helper()
	return tb.peakHz("window.__heard", 2500)
}

// TestVoiceThenVideo: chat, then a call to Alice's desk phone (baresip
// playing 440 Hz), then the camera: the video joins the call's peer
// connection, reaches the console, and the desk phone's voice keeps
// flowing to the customer.
func TestVoiceThenVideo(t *testing.T) {
	phone := startBaresipPhone(t)
	g := startGateway(t, withVoice(toDeskPhone(phone)))
	customer, agent, _ := startVideoChat(t, g, "Can we talk?")
	tone := func(f float64) bool { return f >= deskToneHz-20 && f <= deskToneHz+20 }

	customer.click("voice-start")
	waitJS[bool](customer, "the call to connect", fn("", `return (() => {`+callStateKeepingAudio+`})() === 'connected' && !!window.__heard;`))
	if f := customer.heardHz(); !tone(f) {
		t.Fatalf("during the call the customer hears %.0f Hz, want the desk phone's %.0f Hz", f, deskToneHz)
	}

	// The camera joins the call's connection: no second one.
	customerCamera(customer, agent)
	if same := call[bool](customer, fn("", `const w = document.querySelector('segue-widget'); return w.video.pc === w.voice.pc && !w.video.own;`)); !same {
		t.Error("video opened a connection of its own beside the call's")
	}
	if f := customer.heardHz(); !tone(f) {
		t.Errorf("with video on the customer hears %.0f Hz, want the desk phone's %.0f Hz still", f, deskToneHz)
	}
	if st := call[string](customer, fn("", callStateKeepingAudio)); st != "connected" {
		t.Errorf("the call is %q after video started", st)
	}
	customer.send("Video and voice together")
	agent.waitMessage("Video and voice together")

	// The network changes (the browser comes back online): the call's
	// connection, shared with video, restarts ICE once, through video's
	// negotiator, and the call bar does not stay on "Reconnecting".
	const ufragJS = `const pc = document.querySelector('segue-widget').voice.pc;
const u = (pc?.localDescription?.sdp.match(/a=ice-ufrag:(\S+)/) ?? [])[1] ?? '';`
	before := call[string](customer, fn("", ufragJS+`return u;`))
	call[bool](customer, fn("", `window.dispatchEvent(new Event('online')); return true;`))
	waitJS[string](customer, "a new ICE generation on the call's connection", fn("old", ufragJS+`
return u && u !== old && pc.signalingState === 'stable' && pc.connectionState === 'connected' ? u : false;`), before)
	waitJS[bool](customer, "the call bar back from reconnecting", fn("", `const w = document.querySelector('segue-widget');
return !w.voice.restarting && !q('call-status').textContent.includes('Reconnecting');`))
	// The audio may pause while the new path is checked; it must come back.
	for try := 1; ; try++ {
		f := customer.heardHz()
		if tone(f) {
			t.Logf("after the ICE restart the customer hears %.0f Hz (measure %d)", f, try)
			break
		}
		if try == 6 {
			t.Fatalf("after the ICE restart the customer hears %.0f Hz, want the desk phone's %.0f Hz", f, deskToneHz)
		}
	}
	t0 := agent.video("remote-video").Time
	waitJS[bool](agent, "the console's video to play on after the restart", fn("t0", `return q('remote-video').currentTime > t0 + 1;`), t0)

	// The camera goes off: the video ends, the call does not.
	customer.click("video-start")
	agent.waitMessageContaining("Video ended")
	if f := customer.heardHz(); !tone(f) {
		t.Errorf("after video the customer hears %.0f Hz, want the desk phone's %.0f Hz still", f, deskToneHz)
	}
	if st := call[string](customer, fn("", callStateKeepingAudio)); st != "connected" {
		t.Errorf("the call is %q after video stopped", st)
	}
}
