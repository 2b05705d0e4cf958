//go:build e2e

package test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestNegotiatorGlare drives video.js's Negotiator against a stand-in for
// the gateway in the same page: a second RTCPeerConnection that, like the
// gateway, makes one offer at a time and refuses a browser offer that
// crosses its own with bad_offer. The browser adds a track while the
// "gateway" offers one: the browser must roll back, answer, offer again,
// and end up with both tracks negotiated.
func TestNegotiatorGlare(t *testing.T) {
	g := startGateway(t)
	b := ownTab(t, "glare")
	b.do(chromedp.Navigate(g.URL + "/"))
	type result struct {
		Log       []string `json:"log"`
		GwRecv    int      `json:"gwRecv"`
		BrRecv    int      `json:"brRecv"`
		BrState   string   `json:"brState"`
		GwState   string   `json:"gwState"`
		Connected bool     `json:"connected"`
	}
	r := call[result](b, `async () => {
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
return out;
}`)
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
