//go:build e2e

package test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// The tests of this file reconnect the WebSocket or reload the page in
// the middle of a video session (docs/api.md, "Reconnecting and
// reloading"). The customer's widget and the console each run in a
// Chromium of their own (startVideoChat), as two people on two machines;
// the page probe (chrome.Probe) keeps each page's WebSockets and can hold
// new ones back.

// dropSocket closes the page's WebSocket and keeps new ones from
// connecting until restoreSocket.
func (tb *tab) dropSocket() {
	tb.t.Helper()
	if n := call[int](tb, `() => { window.__wsDown = true; let n = 0;
for (const s of window.__sockets) if (s.readyState === WebSocket.OPEN) { s.close(); n++; }
return n; }`); n != 1 {
		tb.t.Fatalf("%s: %d open sockets, want 1", tb.name, n)
	}
	waitJS[bool](tb, "the page to notice", fn("", `return !(`+jsConnected+`);`))
}

// restoreSocket lets the page connect again and waits until it has.
func (tb *tab) restoreSocket() {
	tb.t.Helper()
	call[bool](tb, `() => { window.__wsDown = false; return true; }`)
	tb.waitConnected()
}

// reloadPage reloads the page and waits until its socket is back.
func (tb *tab) reloadPage() {
	tb.t.Helper()
	tb.do(chromedp.Reload())
	tb.waitConnected()
}

// markVideoPeer tags the widget's video connection, to tell later whether
// it is still the same one.
func markVideoPeer(tb *tab) {
	tb.t.Helper()
	call[bool](tb, `() => { const pc = document.querySelector('segue-widget').video.pc; pc.__mark = 'first'; return true; }`)
}

// sameVideoPeer reports whether the widget's video connection is the
// marked one and connected.
func sameVideoPeer(tb *tab) bool {
	tb.t.Helper()
	return call[bool](tb, `() => { const pc = document.querySelector('segue-widget').video.pc;
return pc?.__mark === 'first' && pc.connectionState === 'connected'; }`)
}

// waitPeersClosed waits until the gateway's log shows n closed peer
// connections named peer ("<conversation id>/customer" or "/agent").
func waitPeersClosed(t *testing.T, g *gateway, peer string, n int) {
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
	g := startGateway(t)
	customer, console, s := startVideoChat(t, g, "My screen flickers")
	before := customerCamera(customer, console)
	markVideoPeer(customer)

	// The customer's socket drops. Meanwhile the agent turns the camera
	// on: the gateway's offer to the customer waits for the socket.
	customer.dropSocket()
	console.click("video-camera")
	console.waitPlaying("local-video", 640, 480)
	during := console.waitAdvanced("remote-video", before)
	customer.restoreSocket()

	after := console.waitAdvanced("remote-video", during)
	t.Logf("console remote-video: %d frames before the drop, %d during, %d after", before.Frames, during.Frames, after.Frames)
	if after.Width != 640 || after.Height != 480 {
		t.Errorf("after the reconnect the console plays %dx%d", after.Width, after.Height)
	}
	if !sameVideoPeer(customer) {
		t.Error("the widget's video connection was replaced or is not connected after the socket came back")
	}
	// The agent's camera, added while the socket was down, reaches the customer.
	customer.waitPlaying("remote-video", 640, 480)
	customer.send("Back online")
	console.waitMessage("Back online")

	// The console's socket drops too: its video session goes on.
	console.dropSocket()
	gap := console.waitAdvanced("remote-video", after)
	customer.send("Sent while the console was away")
	console.restoreSocket()
	console.waitAdvanced("remote-video", gap)
	console.waitMessage("Sent while the console was away")
	console.send("I see it")
	customer.waitMessage("I see it")
	customer.waitPlaying("remote-video", 640, 480)

	for _, tb := range []*tab{customer, console} {
		if n := countContaining(tb.messages(), "Video started"); n != 1 {
			t.Errorf("%s: %d 'Video started' events, want 1", tb.name, n)
		}
		if n := countContaining(tb.messages(), "Video ended"); n != 0 {
			t.Errorf("%s: %d 'Video ended' events, want none", tb.name, n)
		}
	}
	// No peer connection was closed or made again.
	if n := strings.Count(g.Log(), `msg="webrtc peer closed"`); n != 0 {
		t.Errorf("%d peer connections closed during socket drops", n)
	}
	if n := strings.Count(g.Log(), "peer="+s.ID+"/customer transcode"); n != 1 {
		t.Errorf("%d customer peer connections made, want 1", n)
	}
}

// TestReloadCustomerPage: the customer reloads the page during video. The
// chat comes back; the gateway ends that video session at once (the
// console's tile of the customer closes, "Video ended" once, the old peer
// connection closed), and the customer's camera button starts a new
// video that reaches the console again.
func TestReloadCustomerPage(t *testing.T) {
	g := startGateway(t)
	customer, console, s := startVideoChat(t, g, "Let me show you the label")
	customerCamera(customer, console)
	// The agent's camera on: the console keeps its own session through
	// the customer's reload.
	console.click("video-camera")
	customer.waitPlaying("remote-video", 640, 480)

	customer.reloadPage()
	customer.waitMessage("Let me show you the label")
	console.waitHidden("remote-video")
	console.waitMessage("Video ended")
	waitPeersClosed(t, g, s.ID+"/customer", 1)
	if n := countContaining(console.messages(), "Video ended"); n != 1 {
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
	console.waitPlaying("remote-video", 640, 480)
	customer.waitPlaying("remote-video", 640, 480)
	customer.send("Can you see it now?")
	console.waitMessage("Can you see it now?")
}

// TestReloadConsolePage: the agent reloads the console during video. The
// console joins the customer's still running video by itself and plays
// it again; its own camera starts off (the customer's tile of it closes);
// the customer's video never stops.
func TestReloadConsolePage(t *testing.T) {
	g := startGateway(t)
	customer, console, s := startVideoChat(t, g, "The display shows E42")
	customerCamera(customer, console)
	markVideoPeer(customer)
	console.click("video-camera")
	customer.waitPlaying("remote-video", 640, 480)

	console.reloadPage()
	waitJS[bool](console, "the conversation on screen", fn("id", `return q('chat-log')?.dataset.conversation === id;`), s.ID)
	v := console.waitPlaying("remote-video", 640, 480)
	t.Logf("after the reload the console plays %dx%d", v.Width, v.Height)
	waitPeersClosed(t, g, s.ID+"/agent", 1)
	// The console's camera is off after the reload, and its tile is gone
	// from the widget.
	cam := call[map[string]any](console, fn("", `return {pressed: q('video-camera').getAttribute('aria-pressed'), local: !!q('local-video').srcObject, joined: q('video-panel').dataset.joined};`))
	if cam["pressed"] != "false" || cam["local"] != false || cam["joined"] != "true" {
		t.Errorf("the reloaded console's video: %v", cam)
	}
	customer.waitHidden("remote-video")
	// The customer's side never stopped.
	if !sameVideoPeer(customer) {
		t.Error("the customer's video connection changed with the console's reload")
	}
	customer.waitPlaying("local-video", 640, 480)
	if n := countContaining(customer.messages(), "Video ended"); n != 0 {
		t.Errorf("the customer's log has %d 'Video ended' events", n)
	}
	// The agent may turn the camera on again.
	console.click("video-camera")
	customer.waitPlaying("remote-video", 640, 480)
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
	g := startGateway(t, withVoice(toDeskPhone(phone)))
	customer, console, s := startVideoChat(t, g, "Can you call me?")
	customer.click("voice-start")
	customer.waitCall("connected")
	console.waitMessage("Call connected")
	customerCamera(customer, console)

	customer.reloadPage()
	console.waitMessageContaining("Call ended: The connection to the customer's browser was lost")
	waitJS[bool](console, "the console's call bar to show the end", fn("", `const s = document.querySelector('#callbar [data-testid="call-status"]');
return s?.dataset.callState === 'ended';`))
	console.waitHidden("remote-video")
	waitPeersClosed(t, g, s.ID+"/customer", 1)
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
	console.waitMessageContaining("Call ended: The customer hung up")
}
