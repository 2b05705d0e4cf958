//go:build e2e

package videoui

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/device"
)

// TestNegotiatorGlare drives video.js's Negotiator against a stand-in for
// the gateway in the same page: a second RTCPeerConnection that, like the
// gateway, makes one offer at a time and refuses a browser offer that
// crosses its own with bad_offer. The browser adds a track while the
// "gateway" offers one: the browser must roll back, answer, offer again,
// and end up with both tracks negotiated.
func TestNegotiatorGlare(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	b := startBrowser(t, "glare", nil)
	b.navigate(g.URL + "/")
	type result struct {
		Log       []string `json:"log"`
		GwRecv    int      `json:"gwRecv"`
		BrRecv    int      `json:"brRecv"`
		BrState   string   `json:"brState"`
		GwState   string   `json:"gwState"`
		Connected bool     `json:"connected"`
	}
	r := eval[result](b, "", `
const { Negotiator } = await import('/video.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (what, f) => { for (let i = 0; i < 200; i++) { if (f()) return; await sleep(50); } throw new Error('timed out: ' + what); };
const log = [];
const gw = new RTCPeerConnection();
const br = new RTCPeerConnection();
let neg;
const toBrowser = (f) => setTimeout(() => { log.push('<' + f.type + (f.code ? ':' + f.code : '')); neg.onFrame(f); }, 80);
const toGateway = async (f) => {
  await sleep(80);
  log.push('>' + f.type);
  if (f.type === 'video.start' || f.type === 'rtc.offer') {
    if (gw.signalingState === 'have-local-offer') { toBrowser({ type: 'error', code: 'bad_offer', ref: f.id }); return; }
    await gw.setRemoteDescription({ type: 'offer', sdp: f.sdp });
    await gw.setLocalDescription();
    toBrowser({ type: 'rtc.answer', sdp: gw.localDescription.sdp });
  } else if (f.type === 'rtc.answer') {
    await gw.setRemoteDescription({ type: 'answer', sdp: f.sdp });
  } else if (f.type === 'rtc.candidate') {
    await gw.addIceCandidate(f.candidate);
  }
};
gw.onicecandidate = (e) => { if (e.candidate) toBrowser({ type: 'rtc.candidate', candidate: e.candidate.toJSON() }); };
neg = new Negotiator(br, { send: (f) => { toGateway(f); return true; }, firstOffer: 'video.start' });
let brTracks = 0;
br.ontrack = () => { brTracks++; };
const cam = () => navigator.mediaDevices.getUserMedia({ video: true });
const s1 = await cam();
br.addTrack(s1.getVideoTracks()[0], s1);
await until('the first offer answered', () => neg.ready && br.signalingState === 'stable');
await until('connected', () => br.connectionState === 'connected');
log.push('-- glare');
// At the same moment: the browser adds a screen, the gateway adds a track and offers.
const s2 = await cam();
const s3 = await cam();
br.addTrack(s2.getVideoTracks()[0], s2);
gw.addTrack(s3.getVideoTracks()[0], s3);
await gw.setLocalDescription();
toBrowser({ type: 'rtc.offer', sdp: gw.localDescription.sdp });
const recv = (pc) => pc.getTransceivers().filter((t) => t.receiver.track.kind === 'video' && (t.currentDirection === 'recvonly' || t.currentDirection === 'sendrecv')).length;
await until('both tracks negotiated', () => br.signalingState === 'stable' && gw.signalingState === 'stable' && recv(gw) === 2 && recv(br) === 1);
const out = { log, gwRecv: recv(gw), brRecv: recv(br), brState: br.signalingState, gwState: gw.signalingState, connected: br.connectionState === 'connected' };
neg.close(); br.close(); gw.close();
for (const s of [s1, s2, s3]) for (const tr of s.getTracks()) tr.stop();
return out;`)
	t.Logf("signalling: %s", strings.Join(r.Log, " "))
	if r.GwRecv != 2 || r.BrRecv != 1 || !r.Connected {
		t.Fatalf("after glare: gateway receives %d video tracks (want 2), browser %d (want 1), connected %v", r.GwRecv, r.BrRecv, r.Connected)
	}
	glare := strings.Join(r.Log, " ")
	glare = glare[strings.Index(glare, "-- glare"):]
	// The crossing offer was refused, the gateway's was answered, and the
	// browser offered again.
	for _, want := range []string{"<error:bad_offer", "<rtc.offer", ">rtc.answer"} {
		if !strings.Contains(glare, want) {
			t.Errorf("no %s after the glare: %s", want, glare)
		}
	}
	if strings.Count(glare, ">rtc.offer") < 2 {
		t.Errorf("the browser did not offer again after the refusal: %s", glare)
	}
}

// TestVideoOnPhone checks the widget on a phone-sized screen with the
// camera on: the video takes at most 40 % of the height, the composer
// stays on screen and the chat keeps working.
func TestVideoOnPhone(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	b := startBrowser(t, "phone", nil)
	if err := chromedp.Do(b.ctx, chromedp.Emulate(device.IPhone12)); err != nil {
		t.Fatal(err)
	}
	b.navigate(g.URL + "/")
	b.click("widget-open")
	b.send("Hi from my phone")
	b.waitMessage("Hi from my phone")
	b.click("video-start")
	b.waitPlaying("local-video", 0, 0)
	type box struct {
		VW, VH           float64
		StageH, InputBot float64
		InputTop, LogH   float64
		PanelW, PanelH   float64
		SwitchHidden     bool
		SnapshotDisabled bool
		LocalMirrored    bool
	}
	got := eval[box](b, "", `const r = (id) => q(id).getBoundingClientRect();
const w = document.querySelector('segue-widget');
return { VW: innerWidth, VH: innerHeight, StageH: r('video-area').height, InputBot: r('chat-input').bottom, InputTop: r('chat-input').top,
  LogH: r('chat-log').height, PanelW: r('chat-panel').width, PanelH: r('chat-panel').height,
  SwitchHidden: q('camera-switch').hidden, SnapshotDisabled: q('snapshot').disabled, LocalMirrored: getComputedStyle(q('local-video')).transform !== 'none' };`)
	t.Logf("phone layout: %+v", got)
	if got.PanelW < got.VW-1 || got.PanelH < got.VH-1 {
		t.Errorf("the panel does not fill the phone screen: %+v", got)
	}
	if got.StageH <= 0 || got.StageH > 0.41*got.VH {
		t.Errorf("the video takes %.0f px of %.0f", got.StageH, got.VH)
	}
	if got.InputTop < 0 || got.InputBot > got.VH {
		t.Errorf("the message box is off screen: %.0f..%.0f of %.0f", got.InputTop, got.InputBot, got.VH)
	}
	if got.LogH < 100 {
		t.Errorf("the chat log has %.0f px left beside the video", got.LogH)
	}
	if !got.SwitchHidden {
		t.Errorf("the camera switch shows with one camera")
	}
	if got.SnapshotDisabled {
		t.Errorf("snapshot is disabled with the camera on")
	}
	b.send("Still typing during video")
	b.waitMessage("Still typing during video")
	wait[bool](b, "the video state", 10*time.Second, "", `return q('local-video').closest('.video').dataset.state === 'connected';`)
}
