//go:build e2e

package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/test/peers"
)

// The tests of this file reconnect the WebSocket or reload the page in
// the middle of a video session (docs/api.md, "Reconnecting and
// reloading"). The customer's widget runs in the voice tests' Chromium
// (fake camera, a tone for a microphone), the console in the chat tests'
// Chromium: two browsers, as two people on two machines.

// reloadNetHook is run in every document of a tab before its scripts: it
// keeps the page's WebSockets in window.__sockets and, while
// window.__wsDown is set, makes new ones fail as they do without a
// network. The media path (UDP) is left alone, as a WebSocket that drops
// on its own (a proxy, a blip) leaves it.
const reloadNetHook = `(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__wsDown = false;
  window.WebSocket = class extends Native {
    constructor(...args) {
      if (window.__wsDown) throw new DOMException('the network is down (test)', 'NetworkError');
      super(...args);
      window.__sockets.push(this);
    }
  };
})();`

// reloadTab opens a tab of browser with reloadNetHook installed.
func reloadTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	tb := openTab(t, browser, name)
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, func(ctx context.Context, tgt *chromedp.Target) (page.AddScriptToEvaluateOnNewDocumentResult, error) {
		return cdp.Call(ctx, tgt, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: reloadNetHook})
	}); err != nil {
		t.Fatalf("%s: install the socket hook: %v", name, err)
	}
	return tb
}

// reloadGateway runs a gateway with WebRTC on loopback. With a desk
// phone, it is Alice's phone and the trunk leads to it; without, the
// trunk (which serve needs for WebRTC) is never dialled.
func reloadGateway(t *testing.T, phone *peers.Baresip) *gateway {
	t.Helper()
	vc := voiceConfig{queues: []voiceQueue{{name: "support", trunk: "pbx"}}}
	if phone != nil {
		vc.trunks = []voiceTrunk{baresipTrunk(phone)}
		vc.alicePhone = phone.URI()
	} else {
		vc.trunks = []voiceTrunk{{name: "pbx", addr: fmt.Sprintf("127.0.0.1:%d", peers.FreeUDPPort(t, "127.0.0.1"))}}
	}
	return startVoiceGateway(t, vc)
}

// reloadChat opens the widget (customer) and the console (alice), has the
// customer write first and alice accept; it returns both tabs and the
// conversation id.
func reloadChat(t *testing.T, g *gateway, first string) (customer, console *tab, convID string) {
	t.Helper()
	customer = reloadTab(t, voiceBrowser(t), "customer")
	customer.do(chromedp.Navigate(g.URL + "/"))
	customer.click("widget-open")
	customer.fill("customer-name", "Ann Lee")
	customer.send(first)
	customer.waitMessage(first)
	convID = customer.widgetConversation()

	console = reloadTab(t, sharedBrowser(t), "console alice")
	console.do(chromedp.Navigate(g.URL + "/console"))
	console.fill("login-id", "alice")
	console.fill("login-password", agentPasswords["alice"])
	console.click("login-submit")
	reloadWaitConnected(console)
	console.acceptConversation(convID)
	console.waitMessage(first)
	customer.waitText("agent-name", "helping")
	return customer, console, convID
}

// reloadWaitConnected waits until the page's socket has its welcome.
func reloadWaitConnected(tb *tab) {
	tb.t.Helper()
	waitJS[bool](tb, "the connected socket", fn("", `const s = q('connection-status') ?? q('call-status');
return s?.dataset.state === 'connected';`))
}

// reloadVideo is what a <video> element shows.
type reloadVideo struct {
	W      int     `json:"w"`
	H      int     `json:"h"`
	T      float64 `json:"t"`
	Frames int     `json:"frames"`
	Track  string  `json:"track"`
	Hidden bool    `json:"hidden"`
}

const reloadVideoJS = `const v = q(id);
if (!v) return {hidden: true};
return {w: v.videoWidth, h: v.videoHeight, t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames,
  track: v.srcObject?.getVideoTracks()[0]?.id ?? '', hidden: v.hidden || !!v.closest('[hidden]')};`

func reloadVideoState(tb *tab, testID string) reloadVideo {
	tb.t.Helper()
	return call[reloadVideo](tb, fn("id", reloadVideoJS), testID)
}

// reloadWaitPlaying waits until a <video> shows frames of w x h and its
// clock moves on; it returns what it saw.
func reloadWaitPlaying(tb *tab, testID string, w, h int) reloadVideo {
	tb.t.Helper()
	waitJS[bool](tb, fmt.Sprintf("%s showing %dx%d frames", testID, w, h), fn("id, w, h", `const v = q(id);
if (!v || v.hidden || v.closest('[hidden]') || !v.videoWidth) return false;
return v.videoWidth === w && v.videoHeight === h;`), testID, w, h)
	a := reloadVideoState(tb, testID)
	return reloadWaitAdvanced(tb, testID, a)
}

// reloadWaitAdvanced waits until a <video> has played on from a: a later
// clock and more frames, on the same track.
func reloadWaitAdvanced(tb *tab, testID string, a reloadVideo) reloadVideo {
	tb.t.Helper()
	return waitJS[reloadVideo](tb, testID+" playing on", fn("id, a", `const s = (() => { `+reloadVideoJS+` })();
return s.track === a.track && s.t > a.t + 0.5 && s.frames > a.frames && !s.hidden ? s : false;`), testID, a)
}

// reloadWaitHidden waits until a <video> tile is off the screen.
func reloadWaitHidden(tb *tab, testID string) {
	tb.t.Helper()
	waitJS[bool](tb, testID+" to close", fn("id", `const v = q(id); return !v || v.hidden || !!v.closest('[hidden]');`), testID)
}

// reloadDropSocket closes the page's WebSocket and keeps new ones from
// connecting until reloadRestoreSocket.
func reloadDropSocket(tb *tab) {
	tb.t.Helper()
	if n := call[int](tb, `() => { window.__wsDown = true; let n = 0;
for (const s of window.__sockets) if (s.readyState === WebSocket.OPEN) { s.close(); n++; }
return n; }`); n != 1 {
		tb.t.Fatalf("%s: %d open sockets, want 1", tb.name, n)
	}
	waitJS[bool](tb, "the page to notice", fn("", `const s = q('connection-status') ?? q('call-status');
return s?.dataset.state !== 'connected';`))
}

// reloadRestoreSocket lets the page connect again and waits until it has.
func reloadRestoreSocket(tb *tab) {
	tb.t.Helper()
	call[bool](tb, `() => { window.__wsDown = false; return true; }`)
	reloadWaitConnected(tb)
}

// reloadPage reloads a tab and waits until its socket is back.
func reloadPage(tb *tab) {
	tb.t.Helper()
	tb.do(chromedp.Reload())
	reloadWaitConnected(tb)
}

// reloadWaitMessage waits until a stored message containing text is shown.
func reloadWaitMessage(tb *tab, text string) {
	tb.t.Helper()
	waitJS[bool](tb, fmt.Sprintf("a message with %q", text), fn("text", `return msgs().some((m) => m.seq > 0 && m.text.includes(text));`), text)
}

// reloadCount counts the stored messages of a log that contain text.
func reloadCount(tb *tab, text string) int {
	tb.t.Helper()
	return call[int](tb, fn("text", `return msgs().filter((m) => m.seq > 0 && m.text.includes(text)).length;`), text)
}

// reloadMark tags the widget's video connection, to tell later whether it
// is still the same one.
func reloadMark(tb *tab) {
	tb.t.Helper()
	call[bool](tb, `() => { const pc = document.querySelector('segue-widget').video.pc; pc.__mark = 'first'; return true; }`)
}

// reloadSamePeer reports whether the widget's video connection is the
// marked one and connected.
func reloadSamePeer(tb *tab) bool {
	tb.t.Helper()
	return call[bool](tb, `() => { const pc = document.querySelector('segue-widget').video.pc;
return pc?.__mark === 'first' && pc.connectionState === 'connected'; }`)
}

// reloadVideoOn has the customer turn the camera on and waits until the
// console plays it (the console joins by itself when the video starts).
func reloadVideoOn(t *testing.T, customer, console *tab) reloadVideo {
	t.Helper()
	customer.click("video-start")
	console.waitMessage("Video started")
	return reloadWaitPlaying(console, "remote-video", 640, 480)
}

// reloadPeersClosed waits until the gateway's log shows n closed peer
// connections named peer ("<conversation id>/customer" or "/agent").
func reloadPeersClosed(t *testing.T, g *gateway, peer string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d closed peer connections %s", n, peer), func() error {
		got := 0
		for _, line := range strings.Split(g.Log(), "\n") {
			if strings.Contains(line, `msg="webrtc peer closed"`) && strings.Contains(line, "peer="+peer+" ") {
				got++
			}
		}
		if got != n {
			return fmt.Errorf("%d closed", got)
		}
		return nil
	})
}

// TestReloadSocketDropKeepsVideo: the customer's WebSocket drops during
// video and stays away for a while; the video goes on (the console keeps
// receiving frames on the same track), what changed meanwhile (the agent
// turned the camera on) reaches the customer once the socket is back,
// and the chat goes on. Then the same for the console's socket.
func TestReloadSocketDropKeepsVideo(t *testing.T) {
	g := reloadGateway(t, nil)
	customer, console, convID := reloadChat(t, g, "My screen flickers")
	before := reloadVideoOn(t, customer, console)
	reloadMark(customer)

	// The customer's socket drops. Meanwhile the agent turns the camera
	// on: the gateway's offer to the customer waits for the socket.
	reloadDropSocket(customer)
	console.click("video-camera")
	reloadWaitPlaying(console, "local-video", 640, 480)
	during := reloadWaitAdvanced(console, "remote-video", before)
	reloadRestoreSocket(customer)

	after := reloadWaitAdvanced(console, "remote-video", during)
	t.Logf("console remote-video: %d frames before the drop, %d during, %d after", before.Frames, during.Frames, after.Frames)
	if after.W != 640 || after.H != 480 {
		t.Errorf("after the reconnect the console plays %dx%d", after.W, after.H)
	}
	if !reloadSamePeer(customer) {
		t.Error("the widget's video connection was replaced or is not connected after the socket came back")
	}
	// The agent's camera, added while the socket was down, reaches the customer.
	reloadWaitPlaying(customer, "remote-video", 640, 480)
	customer.send("Back online")
	console.waitMessage("Back online")

	// The console's socket drops too: its video session goes on.
	reloadDropSocket(console)
	gap := reloadWaitAdvanced(console, "remote-video", after)
	customer.send("Sent while the console was away")
	reloadRestoreSocket(console)
	reloadWaitAdvanced(console, "remote-video", gap)
	console.waitMessage("Sent while the console was away")
	console.send("I see it")
	customer.waitMessage("I see it")
	reloadWaitPlaying(customer, "remote-video", 640, 480)

	for _, tb := range []*tab{customer, console} {
		if n := reloadCount(tb, "Video started"); n != 1 {
			t.Errorf("%s: %d 'Video started' events, want 1", tb.name, n)
		}
		if n := reloadCount(tb, "Video ended"); n != 0 {
			t.Errorf("%s: %d 'Video ended' events, want none", tb.name, n)
		}
	}
	// No peer connection was closed or made again.
	if n := strings.Count(g.Log(), `msg="webrtc peer closed"`); n != 0 {
		t.Errorf("%d peer connections closed during socket drops", n)
	}
	if n := strings.Count(g.Log(), "peer="+convID+"/customer transcode"); n != 1 {
		t.Errorf("%d customer peer connections made, want 1", n)
	}
}

// TestReloadCustomerPage: the customer reloads the page during video. The
// chat comes back; the gateway ends that video session at once (the
// console's tile of the customer closes, "Video ended" once, the old peer
// connection closed), and the customer's camera button starts a new
// video that reaches the console again.
func TestReloadCustomerPage(t *testing.T) {
	g := reloadGateway(t, nil)
	customer, console, convID := reloadChat(t, g, "Let me show you the label")
	reloadVideoOn(t, customer, console)
	// The agent's camera on: the console keeps its own session through
	// the customer's reload.
	console.click("video-camera")
	reloadWaitPlaying(customer, "remote-video", 640, 480)

	reloadPage(customer)
	customer.waitMessage("Let me show you the label")
	reloadWaitHidden(console, "remote-video")
	console.waitMessage("Video ended")
	reloadPeersClosed(t, g, convID+"/customer", 1)
	if n := reloadCount(console, "Video ended"); n != 1 {
		t.Errorf("console: %d 'Video ended' events, want 1", n)
	}
	// The reloaded widget is idle: no video, nothing half-open.
	state := call[map[string]any](customer, fn("", `const v = document.querySelector('segue-widget').video;
return {pc: !!v.pc, pressed: q('video-start').getAttribute('aria-pressed'), disabled: q('video-start').disabled, status: q('video-status').textContent};`))
	if state["pc"] != false || state["pressed"] != "false" || state["disabled"] != false {
		t.Errorf("the reloaded widget's video: %v", state)
	}

	// Video starts again from the new page and reaches the console, whose
	// session (and camera) went on.
	customer.click("video-start")
	waitJS[bool](console, "a second 'Video started'", fn("", `return msgs().filter((m) => m.seq > 0 && m.text.includes('Video started')).length === 2;`))
	reloadWaitPlaying(console, "remote-video", 640, 480)
	reloadWaitPlaying(customer, "remote-video", 640, 480)
	customer.send("Can you see it now?")
	console.waitMessage("Can you see it now?")
}

// TestReloadConsolePage: the agent reloads the console during video. The
// console joins the customer's still running video by itself and plays
// it again; its own camera starts off (the customer's tile of it closes);
// the customer's video never stops.
func TestReloadConsolePage(t *testing.T) {
	g := reloadGateway(t, nil)
	customer, console, convID := reloadChat(t, g, "The display shows E42")
	reloadVideoOn(t, customer, console)
	reloadMark(customer)
	console.click("video-camera")
	reloadWaitPlaying(customer, "remote-video", 640, 480)

	reloadPage(console)
	waitJS[bool](console, "the conversation on screen", fn("id", `return q('chat-log')?.dataset.conversation === id;`), convID)
	v := reloadWaitPlaying(console, "remote-video", 640, 480)
	t.Logf("after the reload the console plays %dx%d", v.W, v.H)
	reloadPeersClosed(t, g, convID+"/agent", 1)
	// The console's camera is off after the reload, and its tile is gone
	// from the widget.
	cam := call[map[string]any](console, fn("", `return {pressed: q('video-camera').getAttribute('aria-pressed'), local: !!q('local-video').srcObject, joined: q('video-panel').dataset.joined};`))
	if cam["pressed"] != "false" || cam["local"] != false || cam["joined"] != "true" {
		t.Errorf("the reloaded console's video: %v", cam)
	}
	reloadWaitHidden(customer, "remote-video")
	// The customer's side never stopped.
	if !reloadSamePeer(customer) {
		t.Error("the customer's video connection changed with the console's reload")
	}
	reloadWaitPlaying(customer, "local-video", 640, 480)
	if n := reloadCount(customer, "Video ended"); n != 0 {
		t.Errorf("the customer's log has %d 'Video ended' events", n)
	}
	// The agent may turn the camera on again.
	console.click("video-camera")
	reloadWaitPlaying(customer, "remote-video", 640, 480)
	console.send("Back, and I can see you")
	customer.waitMessage("Back, and I can see you")
}

// TestReloadCustomerPageDuringCall: the customer reloads the page during
// a desk-phone call with the camera on. The browser's side of the call is
// gone with the page, so the gateway hangs up the desk phone at once
// (cause browser_lost) rather than leaving it on a dead line; the widget
// comes back idle, and may call again.
func TestReloadCustomerPageDuringCall(t *testing.T) {
	phone := startBaresipPhone(t)
	g := reloadGateway(t, phone)
	customer, console, convID := reloadChat(t, g, "Can you call me?")
	customer.click("voice-start")
	customer.waitCall("connected")
	console.waitMessage("Call connected")
	reloadVideoOn(t, customer, console)

	reloadPage(customer)
	reloadWaitMessage(console, "Call ended: The connection to the customer's browser was lost")
	waitJS[bool](console, "the console's call bar to show the end", fn("", `const s = document.querySelector('#callbar [data-testid="call-status"]');
return s?.dataset.callState === 'ended';`))
	reloadWaitHidden(console, "remote-video")
	reloadPeersClosed(t, g, convID+"/customer", 1)
	if !strings.Contains(g.Log(), "cause=\"gateway: the customer's browser left the call\"") {
		t.Error("the call did not end as the browser's loss")
	}
	// The widget after the reload: no call, the mic button ready.
	waitJS[bool](customer, "the mic button", fn("", `const b = q('voice-start'); return !!b && !b.hidden && !b.disabled;`))
	if st := customer.callStatus(); st.State == "connected" || strings.Contains(st.Text, "another window") {
		t.Errorf("the reloaded widget shows the old call: %+v", st)
	}
	// A new call reaches the desk phone again.
	customer.click("voice-start")
	customer.waitCall("connected")
	customer.click("hangup")
	reloadWaitMessage(console, "Call ended: The customer hung up")
}
