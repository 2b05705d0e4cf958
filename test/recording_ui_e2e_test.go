//go:build e2e

package test

import (
	"strings"
	"testing"
	"time"
)

// TestRecordingOnDemandInTheBrowsers: in a queue with recording:
// on_demand, a call between Chromium's widget and Alice's desk phone
// (baresip) is not recorded until Alice presses Record in the console.
// Then the widget tells the customer and the console shows its mark; once
// Alice stops, both go away, and the console lists the recording as a
// player whose file the page fetches as Ogg audio of the call's length
// and plays.
func TestRecordingOnDemandInTheBrowsers(t *testing.T) {
	phone := startBaresipPhone(t)
	hs := newHostSite(t)
	g := hs.startGateway(t, toDeskPhone(phone), withYAML("", "", "    recording: on_demand\n", ""))
	customer, agent, _ := shopChat(t, hs, g, "", "Please keep a record of this call")

	customer.click("voice-start")
	customer.waitCall("connected")
	// Not recorded yet: no notice, no mark, a Record button.
	waitJS[bool](agent, "the Record button", fn("", `const b = q('recording-toggle');
return !!b && !b.hidden && b.textContent === 'Record' && b.getAttribute('aria-pressed') === 'false';`))
	if shown := call[bool](customer, fn("", `return !q('recording-status').hidden;`)); shown {
		t.Error("the widget says the call is recorded before Alice pressed Record")
	}
	if shown := call[bool](agent, fn("", `return !q('recording-indicator').hidden;`)); shown {
		t.Error("the console marks the call as recorded before Alice pressed Record")
	}
	if players := call[int](agent, fn("", `return document.querySelectorAll('[data-testid="recording-player"]').length;`)); players != 0 {
		t.Errorf("the console lists %d recordings before any was made", players)
	}

	agent.click("recording-toggle")
	started := time.Now()
	waitJS[bool](customer, "the widget's recording notice", fn("", `const n = q('recording-status');
return !!n && !n.hidden && n.textContent.includes('recorded');`))
	waitJS[bool](agent, "the console's recording mark", fn("", `const b = q('recording-toggle');
return !q('recording-indicator').hidden && b.textContent === 'Stop recording' && b.getAttribute('aria-pressed') === 'true';`))
	customer.waitMessage("This call is being recorded")

	time.Sleep(3 * time.Second)
	agent.click("recording-toggle")
	recorded := time.Since(started)
	waitJS[bool](customer, "the notice to go", fn("", `return q('recording-status').hidden;`))
	waitJS[bool](agent, "the mark to go", fn("", `return q('recording-indicator').hidden && q('recording-toggle').textContent === 'Record';`))
	agent.waitMessage("Recording stopped")

	// The player: the page fetches its file as the browser would play it.
	type fetched struct {
		Status int     `json:"status"`
		Type   string  `json:"type"`
		Size   int     `json:"size"`
		URL    string  `json:"url"`
		Dur    float64 `json:"dur"`
		Err    string  `json:"err"`
	}
	waitJS[bool](agent, "the recording's player", fn("", `const p = q('recording-player'); return !!p && !!p.getAttribute('src');`))
	got := call[fetched](agent, asyncFn("", `const p = q('recording-player');
const res = await fetch(p.src, {credentials: 'same-origin'});
const size = (await res.arrayBuffer()).byteLength;
const a = new Audio();
const dur = await new Promise((resolve) => {
  a.onloadedmetadata = () => resolve(a.duration);
  a.onerror = () => resolve(-1);
  a.preload = 'metadata';
  a.src = p.src;
});
return {status: res.status, type: res.headers.get('content-type') ?? '', size, url: p.getAttribute('src'), dur: Number.isFinite(dur) ? dur : 0, err: a.error ? String(a.error.code) : ''};`))
	t.Logf("the console's player: %s, %d bytes of %s, %.1f s to the browser; recorded for about %v", got.URL, got.Size, got.Type, got.Dur, recorded)
	if got.Status != 200 || got.Type != "audio/ogg" || !strings.HasPrefix(got.URL, "/api/v1/recordings/") {
		t.Errorf("the player's file: %+v", got)
	}
	// Ogg Opus of ~3 s of stereo speech-band audio is a few kilobytes;
	// an empty or header-only file is a few hundred bytes.
	if got.Size < 4000 {
		t.Errorf("the recording is %d bytes, too small for %v of audio", got.Size, recorded)
	}
	if got.Err != "" || got.Dur < 0 {
		t.Errorf("Chromium cannot play the recording: error %q, duration %.1f", got.Err, got.Dur)
	}
	if got.Dur > 0 && (got.Dur < recorded.Seconds()-1.5 || got.Dur > recorded.Seconds()+1) {
		t.Errorf("Chromium reads %.1f s of recording; it ran for about %v", got.Dur, recorded)
	}

	customer.click("hangup")
	customer.waitCall("ended")
}
