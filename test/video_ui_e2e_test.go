//go:build e2e

package test

import (
	"bytes"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/device"
)

// The video tests give the customer's widget and the agent's console a
// Chromium process each (ownTab), as two people on two machines: the fake
// camera sends 640x480 frames, and the customer's fake microphone plays
// a tone.

// videoMicHz is the tone of the customer's microphone in the video tests.
const videoMicHz = 1000.0

// startVideoChat opens the widget and the console in a Chromium each, has
// the customer write first and Alice accept. It returns both tabs and the
// widget's conversation with its token. When the test ends, the gateway
// stops before the browsers close: it shuts down with their peer
// connections up, and must close them and exit in time (gateway.Stop).
func startVideoChat(t *testing.T, g *gateway, first string) (customer, agent *tab, s widgetSession) {
	t.Helper()
	return startVideoChatMic(t, g, videoMicHz, first)
}

// startVideoChatMic is startVideoChat with the customer's fake microphone
// playing micHz.
func startVideoChatMic(t *testing.T, g *gateway, micHz float64, first string) (customer, agent *tab, s widgetSession) {
	t.Helper()
	customer = ownTab(t, "customer", fakeMic(t, t.TempDir(), micHz, 0.5))
	agent = ownTab(t, "console")
	t.Cleanup(g.Stop)
	return customer, agent, chatBetween(t, g, customer, agent, first)
}

// videoState is what a <video> element shows.
type videoState struct {
	Width  int     `json:"w"`
	Height int     `json:"h"`
	Time   float64 `json:"t"`
	// Frames is how many frames it has shown, Track the id of its video
	// track.
	Frames  int    `json:"frames"`
	Track   string `json:"track"`
	Hidden  bool   `json:"hidden"`
	Present bool   `json:"present"`
}

// jsVideo reads the <video> with test id id as a videoState.
const jsVideo = `const v = q(id);
if (!v) return {present: false};
return {present: true, w: v.videoWidth, h: v.videoHeight, t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames,
  track: v.srcObject?.getVideoTracks()[0]?.id ?? '', hidden: v.hidden || !!v.closest('[hidden]')};`

func (tb *tab) video(testID string) videoState {
	tb.t.Helper()
	return call[videoState](tb, fn("id", jsVideo), testID)
}

// waitPlaying waits until a <video> shows frames of w x h (any size if
// 0), then until it plays on (waitAdvanced); it returns what it saw last.
func (tb *tab) waitPlaying(testID string, w, h int) videoState {
	tb.t.Helper()
	waitJS[bool](tb, fmt.Sprintf("%s showing %dx%d frames", testID, w, h), fn("id, w, h", `const v = q(id);
if (!v || v.hidden || v.closest('[hidden]') || !v.videoWidth) return false;
return !w || (v.videoWidth === w && v.videoHeight === h);`), testID, w, h)
	return tb.waitAdvanced(testID, tb.video(testID))
}

// waitAdvanced waits until a <video> has played on from a, shown and on
// the same track: its clock half a second later, and more frames shown.
// It returns what it saw.
func (tb *tab) waitAdvanced(testID string, a videoState) videoState {
	tb.t.Helper()
	return waitJS[videoState](tb, fmt.Sprintf("%s to play on from %.2f s (%dx%d, %d frames)", testID, a.Time, a.Width, a.Height, a.Frames),
		fn("id, a", `const s = (() => { `+jsVideo+` })();
return s.present && !s.hidden && s.track === a.track && s.t > a.t + 0.5 && s.frames > a.frames ? s : false;`), testID, a)
}

// waitHidden waits until a <video> tile is off the screen.
func (tb *tab) waitHidden(testID string) {
	tb.t.Helper()
	waitJS[bool](tb, testID+" to close", fn("id", `const v = q(id); return !v || v.hidden || !!v.closest('[hidden]');`), testID)
}

// customerCamera has the customer turn the camera on, straight from the
// chat, and waits until the console, which joins by itself on the
// video.started event, plays the fake camera's 640x480 frames; it returns
// what the console shows.
func customerCamera(customer, agent *tab) videoState {
	customer.t.Helper()
	customer.click("video-start")
	agent.waitMessageContaining("Video started")
	return agent.waitPlaying("remote-video", 640, 480)
}

// customerCameraOff has the customer turn the camera off and waits until
// the video has ended for both: the event in the console's log, and the
// console out of the video with no stream left in its video-audio.
func customerCameraOff(customer, agent *tab) {
	customer.t.Helper()
	customer.click("video-start")
	agent.waitMessageContaining("Video ended")
	waitJS[bool](agent, "the console to leave the video", fn("", `return q('video-join')?.getAttribute('aria-pressed') === 'false' && !q('video-audio')?.srcObject;`))
}

// heard is what a page measured of the audio it received (hearJS).
type heard struct {
	Freq float64 `json:"freq"` // the strongest frequency
	DB   float64 `json:"db"`   // the level of the whole stream, dBFS
	Rate float64 `json:"rate"` // the AudioContext's rate
	Err  string  `json:"err"`  // why there was nothing to measure
}

// hearJS measures a MediaStream's audio over ms, as a heard: the
// strongest frequency of the power spectra summed every 150 ms, and the
// level of the whole stream in dBFS (a full-scale sine is 0 dB). The
// stream plays through a muted <audio> first: without it Chromium's
// WebAudio gets silence from a remote track.
const hearJS = `async (stream, ms) => {
const el = new Audio(); el.muted = true; el.srcObject = stream; await el.play().catch(() => {});
const ctx = new AudioContext(); await ctx.resume();
const src = ctx.createMediaStreamSource(stream);
const an = ctx.createAnalyser(); an.fftSize = 8192; an.smoothingTimeConstant = 0;
src.connect(an);
const sleep = (d) => new Promise((r) => setTimeout(r, d));
await sleep(300);
const bins = new Float32Array(an.frequencyBinCount), td = new Float32Array(an.fftSize);
const acc = new Float64Array(an.frequencyBinCount);
let energy = 0, n = 0;
const end = performance.now() + ms;
while (performance.now() < end) {
  an.getFloatFrequencyData(bins);
  for (let i = 0; i < bins.length; i++) acc[i] += Math.pow(10, bins[i] / 10);
  an.getFloatTimeDomainData(td);
  for (const v of td) energy += v * v;
  n += td.length;
  await sleep(150);
}
src.disconnect(); el.srcObject = null; await ctx.close();
let best = 3;
for (let i = 3; i < acc.length; i++) if (acc[i] > acc[best]) best = i;
return {freq: best * ctx.sampleRate / an.fftSize, db: 10 * Math.log10(2 * energy / n + 1e-12), rate: ctx.sampleRate};
}`

// hear measures, over ms, the audio of the stream that the JavaScript
// expression stream evaluates to (with the page-side helpers in scope).
func (tb *tab) hear(stream string, ms int) heard {
	tb.t.Helper()
	return call[heard](tb, asyncFn("ms", `return await (`+hearJS+`)(`+stream+`, ms);`), ms)
}

// peakHz measures the loudest frequency, over ms, of the stream that the
// JavaScript expression stream evaluates to.
func (tb *tab) peakHz(stream string, ms int) float64 {
	tb.t.Helper()
	return tb.hear(stream, ms).Freq
}

// elementHeard measures for ms what an <audio> element receives, once it
// has a stream.
func (tb *tab) elementHeard(testID string, ms int) heard {
	tb.t.Helper()
	waitJS[bool](tb, testID+" to have a stream", fn("id", `return !!q(id)?.srcObject?.getAudioTracks().length;`), testID)
	return tb.hear(fmt.Sprintf(`q(%q).srcObject`, testID), ms)
}

// elementPeakHz measures the loudest frequency an <audio> element receives.
func (tb *tab) elementPeakHz(testID string) float64 {
	tb.t.Helper()
	return tb.elementHeard(testID, 2000).Freq
}

// waitSnapshot waits until a log shows the file as an image thumbnail,
// and returns the shown message.
func (tb *tab) waitSnapshot(fileID string) shownMessage {
	tb.t.Helper()
	return waitJS[shownMessage](tb, "snapshot "+fileID,
		fn("id", `return msgs().find((m) => m.seq > 0 && m.kind === 'file' && m.file === id && m.thumb > 0) ?? false;`), fileID)
}

// imageSize downloads a file as the customer and decodes its header.
func imageSize(t *testing.T, g *gateway, token, fileID string) (string, int, int) {
	t.Helper()
	c := g.client(t)
	c.token = token
	status, body := c.do(http.MethodGet, "/api/v1/files/"+fileID, nil, "")
	if status != http.StatusOK {
		t.Fatalf("download %s: status %d: %s", fileID, status, body)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("download %s: not an image: %v", fileID, err)
	}
	return format, cfg.Width, cfg.Height
}

// takeSnapshot clicks snapshot, checks the preview's size and sends it; it
// returns the id of the file that was posted.
func (tb *tab) takeSnapshot(w, h int) string {
	t := tb.t
	t.Helper()
	tb.click("snapshot")
	size := waitJS[[]int](tb, "the snapshot preview", fn("", `const d = q('snapshot-dialog'); const img = q('snapshot-preview');
if (!d || d.hidden || !img.naturalWidth) return false;
return [img.naturalWidth, img.naturalHeight, Number(d.dataset.width), Number(d.dataset.height)];`))
	if size[0] != w || size[1] != h || size[2] != w || size[3] != h {
		t.Fatalf("%s: snapshot preview is %dx%d (said %dx%d), want the stream's %dx%d", tb.name, size[0], size[1], size[2], size[3], w, h)
	}
	// Send is on screen and on top, and the chat's input stays in view.
	if !call[bool](tb, fn("", `const r = q('snapshot-send').getBoundingClientRect(); const i = q('chat-input').getBoundingClientRect();
return r.height > 0 && root().elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === q('snapshot-send') && i.height > 0 && i.bottom <= innerHeight;`)) {
		t.Errorf("%s: the snapshot's Send button or the chat input is out of view", tb.name)
	}
	before := call[[]string](tb, fn("", `return msgs().filter((m) => m.kind === 'file').map((m) => m.file);`))
	tb.click("snapshot-send")
	id := waitJS[string](tb, "the snapshot to be posted", fn("before",
		`const m = msgs().find((m) => m.kind === 'file' && m.seq > 0 && m.file && !before.includes(m.file)); return m ? m.file : false;`), before)
	waitJS[bool](tb, "the preview to close", fn("", `return q('snapshot-dialog').hidden;`))
	return id
}

func TestVideoWidgetToConsole(t *testing.T) {
	g := startGateway(t)
	customer, agent, s := startVideoChat(t, g, "Hello, my meter blinks red")

	// The customer turns the camera on, straight from the chat; the console
	// joins by itself on the video.started event and plays the fake
	// camera's 640x480 frames.
	v := customerCamera(customer, agent)
	customer.waitPlaying("local-video", 640, 480)
	t.Logf("console remote-video: %dx%d at %.1f s", v.Width, v.Height, v.Time)
	stats := waitJS[map[string]string](agent, "stats at 640x480", fn("",
		`const d = q('video-stats')?.dataset; return d && d.width === '640' && Number(d.kbps) > 0 && Number(d.fps) > 0 ? {...d, text: q('video-stats').textContent} : false;`))
	t.Logf("console stats: %v", stats)

	// Video straight from the chat brings the customer's voice to the console.
	if f := agent.elementPeakHz("video-audio"); f < videoMicHz-50 || f > videoMicHz+50 {
		t.Errorf("the console hears %.0f Hz, want the customer's %.0f Hz tone", f, videoMicHz)
	} else {
		t.Logf("the console hears the customer's tone at %.0f Hz", f)
	}

	// The chat goes on beside the video, both ways.
	customer.send("Can you see the meter?")
	agent.waitMessage("Can you see the meter?")
	agent.send("Yes, I can see it")
	customer.waitMessage("Yes, I can see it")

	// A screen share is one more video track: a second tile in the console.
	customer.click("screen-start")
	agent.waitMessageContaining("Screen sharing started")
	sc := agent.waitPlaying("remote-screen", 0, 0)
	t.Logf("console remote-screen: %dx%d", sc.Width, sc.Height)
	if cam := agent.video("remote-video"); cam.Width != 640 || cam.Height != 480 || cam.Hidden {
		t.Errorf("the camera tile changed with the screen share: %+v", cam)
	}

	// The agent's camera reaches the customer.
	agent.click("video-camera")
	agent.waitPlaying("local-video", 640, 480)
	customer.waitPlaying("remote-video", 640, 480)

	// The agent's screen: a second tile in the widget, and a transcript event.
	agent.click("video-screen")
	customer.waitMessageContaining("Alice: Screen sharing started")
	customer.waitPlaying("remote-screen", 0, 0)
	agent.click("video-screen")
	customer.waitMessageContaining("Alice: Screen sharing ended")

	// Snapshots, from both sides, at the stream's resolution, in both logs.
	custShot := customer.takeSnapshot(640, 480)
	agentShot := agent.takeSnapshot(640, 480)
	if custShot == agentShot {
		t.Fatalf("both snapshots are file %s", custShot)
	}
	for _, id := range []string{custShot, agentShot} {
		for _, tb := range []*tab{customer, agent} {
			m := tb.waitSnapshot(id)
			format, w, h := imageSize(t, g, s.Token, m.File)
			if w != 640 || h != 480 {
				t.Errorf("%s sees snapshot %s (%s) as a %s of %dx%d, want 640x480", tb.name, m.Text, id, format, w, h)
			}
		}
	}
	agent.waitMessageContaining("took a snapshot")

	// The audio route toggle (there is no phone call here, so it only
	// records where the audio would go).
	agent.click("audio-route")
	customer.waitMessageContaining("Audio moved to the console")
	waitJS[bool](agent, "the route button to flip", fn("", `return q('audio-route').dataset.route === 'console' && q('audio-route').textContent.includes('desk phone');`))

	// The screen share ends: its tile goes, the camera stays.
	customer.click("screen-start")
	agent.waitMessageContaining("Screen sharing ended")
	agent.waitHidden("remote-screen")
	agent.waitPlaying("remote-video", 640, 480)

	// The customer turns the camera off: the video ends for both.
	customer.click("video-start")
	agent.waitMessageContaining("Video ended")
	customer.send("Thanks, bye")
	agent.waitMessage("Thanks, bye")

	noCSPViolations(t, customer, agent)
}

// TestPhotoFromCamera: during the chat, without any video call, the
// customer opens the camera for a photo, cancels a first still, then
// sends one; it arrives at the camera's full resolution.
func TestPhotoFromCamera(t *testing.T) {
	g := startGateway(t)
	customer := ownTab(t, "customer")
	customer.loadWidget(g)
	customer.send("Here is a photo of the label")
	customer.waitMessage("Here is a photo of the label")
	token := customer.widgetSession().Token

	customer.click("photo")
	v := customer.waitPlaying("local-video", 0, 0)
	if call[bool](customer, fn("", `return !!document.querySelector('segue-widget').video.pc;`)) {
		t.Error("a photo opened a peer connection")
	}
	customer.click("snapshot")
	waitJS[bool](customer, "the preview", fn("", `return !q('snapshot-dialog').hidden;`))
	customer.click("snapshot-cancel")
	waitJS[bool](customer, "the camera to close", fn("", `return q('snapshot-dialog').hidden && !q('local-video').srcObject;`))
	if n := call[int](customer, fn("", `return msgs().filter((m) => m.kind === 'file').length;`)); n != 0 {
		t.Fatalf("a cancelled still was posted (%d files)", n)
	}

	customer.click("photo")
	v = customer.waitPlaying("local-video", 0, 0)
	id := customer.takeSnapshot(v.Width, v.Height)
	m := customer.waitSnapshot(id)
	format, w, h := imageSize(t, g, token, m.File)
	t.Logf("photo: %s %dx%d", format, w, h)
	if w != v.Width || h != v.Height {
		t.Errorf("the photo is %dx%d, the camera %dx%d", w, h, v.Width, v.Height)
	}
	waitJS[bool](customer, "the camera to close after sending", fn("", `return !q('local-video').srcObject;`))
}

// TestConsoleJoinsFirst: the agent clicks Video and turns the camera on
// before the customer has any video; when the customer's camera comes on,
// each side sees the other.
func TestConsoleJoinsFirst(t *testing.T) {
	g := startGateway(t)
	customer, agent, _ := startVideoChat(t, g, "Could you show me where the switch is?")

	agent.click("video-join")
	waitJS[bool](agent, "the console's connection", fn("",
		`return q('video-panel').dataset.joined === 'true' && q('video-stats').textContent.startsWith('Connected');`))
	agent.click("video-camera")
	agent.waitPlaying("local-video", 640, 480)
	if call[bool](customer, fn("", `return !!document.querySelector('segue-widget').video.pc;`)) {
		t.Error("the widget has a connection before the customer turned anything on")
	}

	customer.click("video-start")
	customer.waitPlaying("remote-video", 640, 480)
	agent.waitPlaying("remote-video", 640, 480)

	// Leaving from the console takes the agent's video off the widget.
	agent.click("video-join")
	customer.waitHidden("remote-video")
	customer.waitPlaying("local-video", 640, 480)
}

// TestVideoICERestart: the customer's browser comes back online on
// another network (the 'online' event): the widget restarts ICE on the
// video's own connection, the gateway answers the new offer, and the
// console keeps playing the camera.
func TestVideoICERestart(t *testing.T) {
	g := startGateway(t)
	customer, agent, _ := startVideoChat(t, g, "My line drops sometimes")
	customerCamera(customer, agent)

	before := call[string](customer, fn("", `const pc = document.querySelector('segue-widget').video.pc;
return (pc?.localDescription?.sdp.match(/a=ice-ufrag:(\S+)/) ?? [])[1] ?? '';`))
	if before == "" {
		t.Fatal("the widget's video connection has no local description")
	}
	call[bool](customer, fn("", `window.dispatchEvent(new Event('online')); return true;`))
	after := waitJS[string](customer, "a new ICE generation", fn("old", `const pc = document.querySelector('segue-widget').video.pc;
const u = (pc?.localDescription?.sdp.match(/a=ice-ufrag:(\S+)/) ?? [])[1] ?? '';
return u && u !== old && pc.signalingState === 'stable' && pc.connectionState === 'connected' ? u : false;`), before)
	t.Logf("ICE restarted: ufrag %s -> %s", before, after)

	// The console still plays the camera after the restart: its clock moves on.
	t0 := agent.video("remote-video").Time
	v := waitJS[videoState](agent, "the console's video to keep playing", fn("t0", `const v = q('remote-video');
return v.currentTime > t0 + 1 && v.videoWidth === 640 ? { w: v.videoWidth, h: v.videoHeight, t: v.currentTime } : false;`), t0)
	if v.Width != 640 {
		t.Errorf("after the restart the console plays %dx%d", v.Width, v.Height)
	}
	customer.send("Still there?")
	agent.waitMessage("Still there?")
}

// TestVideoOnPhone checks the widget on a phone-sized screen with the
// camera on: the video takes at most 40 % of the height, the composer
// stays on screen and the chat keeps working.
func TestVideoOnPhone(t *testing.T) {
	g := startGateway(t)
	tb := ownTab(t, "phone")
	tb.do(chromedp.Emulate(device.IPhone12))
	tb.loadWidget(g)
	tb.send("Hi from my phone")
	tb.waitMessage("Hi from my phone")
	tb.click("video-start")
	tb.waitPlaying("local-video", 0, 0)
	type box struct {
		VW, VH           float64
		StageH, InputBot float64
		InputTop, LogH   float64
		PanelW, PanelH   float64
		SwitchHidden     bool
		SnapshotDisabled bool
		LocalMirrored    bool
	}
	got := call[box](tb, fn("", `const r = (id) => q(id).getBoundingClientRect();
return { VW: innerWidth, VH: innerHeight, StageH: r('video-area').height, InputBot: r('chat-input').bottom, InputTop: r('chat-input').top,
  LogH: r('chat-log').height, PanelW: r('chat-panel').width, PanelH: r('chat-panel').height,
  SwitchHidden: q('camera-switch').hidden, SnapshotDisabled: q('snapshot').disabled, LocalMirrored: getComputedStyle(q('local-video')).transform !== 'none' };`))
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
	tb.send("Still typing during video")
	tb.waitMessage("Still typing during video")
	waitJS[bool](tb, "the video state", fn("", `return q('local-video').closest('.video').dataset.state === 'connected';`))
}
