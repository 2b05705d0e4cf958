//go:build e2e

package videoui

import (
	"bytes"
	"encoding/binary"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startChat opens the widget in one Chromium and the console in another,
// has the customer write first and Alice accept. It returns both
// browsers, the conversation id and the customer's token.
func startChat(t *testing.T, g *gateway, first string) (customer, agent *browser, convID, token string) {
	t.Helper()
	// Each side in its own Chromium, as two people on two machines; the
	// customer's microphone plays a 1 kHz tone.
	customer = startBrowser(t, "customer", map[string]any{"use-file-for-fake-audio-capture": toneWAV(t, 1000)})
	agent = startBrowser(t, "console", nil)

	customer.navigate(g.URL + "/")
	customer.click("widget-open")
	customer.fill("customer-name", "Ann Lee")
	customer.send(first)
	customer.waitMessage(first)
	type session struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	s := wait[session](customer, "the widget's conversation", 10*time.Second, "", `for (let i = 0; i < localStorage.length; i++) {
  const k = localStorage.key(i);
  if (k.startsWith('segue:') && k.endsWith(':conversation')) return JSON.parse(localStorage.getItem(k));
}
return false;`)

	agent.navigate(g.URL + "/console")
	agent.fill("login-id", "alice")
	agent.fill("login-password", agentPassword)
	agent.click("login-submit")
	wait[bool](agent, "the connected console", 15*time.Second, "", `return q('connection-status')?.dataset.state === 'connected';`)
	wait[bool](agent, "accept", 15*time.Second, "id", `const b = root().querySelector('[data-testid="accept"][data-conversation="' + id + '"]');
if (!b || b.disabled) return false; b.click(); return true;`, s.ID)
	agent.waitMessage(first)
	return customer, agent, s.ID, s.Token
}

// waitSnapshot waits until a log shows the file as an image thumbnail,
// and returns the shown message.
func waitSnapshot(b *browser, fileID string) shownMessage {
	b.t.Helper()
	return wait[shownMessage](b, "snapshot "+fileID, 20*time.Second, "id",
		`return msgs().find((m) => m.seq > 0 && m.kind === 'file' && m.file === id && m.thumb > 0) ?? false;`, fileID)
}

// imageSize downloads a file as the customer and decodes its header.
func imageSize(t *testing.T, g *gateway, token, fileID string) (string, int, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.URL+"/api/v1/files/"+fileID, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("download %s: %s %s", fileID, res.Status, body)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("download %s: not an image (%s): %v", fileID, res.Header.Get("Content-Type"), err)
	}
	return format, cfg.Width, cfg.Height
}

// takeSnapshot clicks snapshot, checks the preview's size and sends it; it
// returns the id of the file that was posted.
func takeSnapshot(t *testing.T, b *browser, w, h int) string {
	t.Helper()
	b.click("snapshot")
	size := wait[[]int](b, "the snapshot preview", 10*time.Second, "", `const d = q('snapshot-dialog'); const img = q('snapshot-preview');
if (!d || d.hidden || !img.naturalWidth) return false;
return [img.naturalWidth, img.naturalHeight, Number(d.dataset.width), Number(d.dataset.height)];`)
	if size[0] != w || size[1] != h || size[2] != w || size[3] != h {
		t.Fatalf("%s: snapshot preview is %dx%d (said %dx%d), want the stream's %dx%d", b.name, size[0], size[1], size[2], size[3], w, h)
	}
	// Send is on screen and on top, and the chat's input stays in view.
	if !eval[bool](b, "", `const r = q('snapshot-send').getBoundingClientRect(); const i = q('chat-input').getBoundingClientRect();
return r.height > 0 && root().elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === q('snapshot-send') && i.height > 0 && i.bottom <= innerHeight;`) {
		t.Errorf("%s: the snapshot's Send button or the chat input is out of view", b.name)
	}
	before := eval[[]string](b, "", `return msgs().filter((m) => m.kind === 'file').map((m) => m.file);`)
	b.click("snapshot-send")
	id := wait[string](b, "the snapshot to be posted", 15*time.Second, "before",
		`const m = msgs().find((m) => m.kind === 'file' && m.seq > 0 && m.file && !before.includes(m.file)); return m ? m.file : false;`, before)
	wait[bool](b, "the preview to close", 5*time.Second, "", `return q('snapshot-dialog').hidden;`)
	return id
}

func TestVideoWidgetToConsole(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	customer, agent, _, token := startChat(t, g, "Hello, my meter blinks red")

	// The customer turns the camera on, straight from the chat; the console
	// joins by itself on the video.started event and plays the fake
	// camera's 640x480 frames.
	customer.click("video-start")
	customer.waitPlaying("local-video", 640, 480)
	agent.waitMessage("Video started")
	v := agent.waitPlaying("remote-video", 640, 480)
	t.Logf("console remote-video: %dx%d at %.1f s", v.Width, v.Height, v.Time)
	stats := wait[map[string]string](agent, "stats at 640x480", 15*time.Second, "",
		`const d = q('video-stats')?.dataset; return d && d.width === '640' && Number(d.kbps) > 0 && Number(d.fps) > 0 ? {...d, text: q('video-stats').textContent} : false;`)
	t.Logf("console stats: %v", stats)

	// Video straight from the chat brings the customer's voice to the console.
	if f := peakHz(agent, "video-audio"); f < 950 || f > 1050 {
		t.Errorf("the console hears %.0f Hz, want the customer's 1000 Hz tone", f)
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
	agent.waitMessage("Screen sharing started")
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
	customer.waitMessage("Alice: Screen sharing started")
	customer.waitPlaying("remote-screen", 0, 0)
	agent.click("video-screen")
	customer.waitMessage("Alice: Screen sharing ended")

	// Snapshots, from both sides, at the stream's resolution, in both logs.
	custShot := takeSnapshot(t, customer, 640, 480)
	agentShot := takeSnapshot(t, agent, 640, 480)
	if custShot == agentShot {
		t.Fatalf("both snapshots are file %s", custShot)
	}
	for _, id := range []string{custShot, agentShot} {
		for _, b := range []*browser{customer, agent} {
			m := waitSnapshot(b, id)
			format, w, h := imageSize(t, g, token, m.File)
			if w != 640 || h != 480 {
				t.Errorf("%s sees snapshot %s (%s) as a %s of %dx%d, want 640x480", b.name, m.Text, id, format, w, h)
			}
		}
	}
	agent.waitMessage("took a snapshot")

	// The audio route toggle (there is no phone call here, so it only
	// records where the audio would go).
	agent.click("audio-route")
	customer.waitMessage("Audio moved to the console")
	wait[bool](agent, "the route button to flip", 10*time.Second, "", `return q('audio-route').dataset.route === 'console' && q('audio-route').textContent.includes('desk phone');`)

	// The screen share ends: its tile goes, the camera stays.
	customer.click("screen-start")
	agent.waitMessage("Screen sharing ended")
	wait[bool](agent, "the screen tile to close", 15*time.Second, "", `const v = q('remote-screen'); return v.hidden || !!v.closest('[hidden]');`)
	agent.waitPlaying("remote-video", 640, 480)

	// The customer turns the camera off: the video ends for both.
	customer.click("video-start")
	agent.waitMessage("Video ended")
	customer.send("Thanks, bye")
	agent.waitMessage("Thanks, bye")

	for _, b := range []*browser{customer, agent} {
		if v := b.cspViolations(); len(v) > 0 {
			t.Errorf("%s: CSP violations: %v", b.name, v)
		}
	}
}

// toneWAV writes a 48 kHz mono 16-bit WAV of a sine tone for Chromium's
// fake microphone.
func toneWAV(t *testing.T, hz float64) string {
	t.Helper()
	const rate, seconds = 48000, 10
	pcm := make([]byte, rate*seconds*2)
	for i := range rate * seconds {
		v := int16(0.5 * 32767 * math.Sin(2*math.Pi*hz*float64(i)/rate))
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(v))
	}
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+len(pcm)))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(rate * 2), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(pcm)))
	b.Write(pcm)
	path := filepath.Join(t.TempDir(), "tone.wav")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// peakHz measures the loudest frequency of what an <audio> element
// receives (its stream goes through a muted copy, then an analyser).
func peakHz(b *browser, testID string) float64 {
	b.t.Helper()
	wait[bool](b, testID+" to have a stream", 15*time.Second, "id", `return !!q(id)?.srcObject?.getAudioTracks().length;`, testID)
	return eval[float64](b, "id", `const stream = q(id).srcObject;
const el = new Audio(); el.muted = true; el.srcObject = stream; await el.play().catch(() => {});
const ctx = new AudioContext(); await ctx.resume();
const an = ctx.createAnalyser(); an.fftSize = 8192;
ctx.createMediaStreamSource(stream).connect(an);
await new Promise((r) => setTimeout(r, 2000));
const bins = new Float32Array(an.frequencyBinCount); an.getFloatFrequencyData(bins);
let best = 0; for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
const hz = best * ctx.sampleRate / an.fftSize; el.srcObject = null; ctx.close(); return hz;`, testID)
}

// TestPhotoFromCamera: during the chat, without any video call, the
// customer opens the camera for a photo, cancels a first still, then
// sends one; it arrives at the camera's full resolution.
func TestPhotoFromCamera(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	customer := startBrowser(t, "customer", nil)
	customer.navigate(g.URL + "/")
	customer.click("widget-open")
	customer.send("Here is a photo of the label")
	customer.waitMessage("Here is a photo of the label")
	token := wait[string](customer, "the token", 10*time.Second, "", `for (let i = 0; i < localStorage.length; i++) {
  const k = localStorage.key(i);
  if (k.startsWith('segue:') && k.endsWith(':conversation')) return JSON.parse(localStorage.getItem(k)).token;
}
return false;`)

	customer.click("photo")
	v := customer.waitPlaying("local-video", 0, 0)
	if eval[bool](customer, "", `return !!document.querySelector('segue-widget').video.pc;`) {
		t.Error("a photo opened a peer connection")
	}
	customer.click("snapshot")
	wait[bool](customer, "the preview", 10*time.Second, "", `return !q('snapshot-dialog').hidden;`)
	customer.click("snapshot-cancel")
	wait[bool](customer, "the camera to close", 10*time.Second, "", `return q('snapshot-dialog').hidden && !q('local-video').srcObject;`)
	if n := eval[int](customer, "", `return msgs().filter((m) => m.kind === 'file').length;`); n != 0 {
		t.Fatalf("a cancelled still was posted (%d files)", n)
	}

	customer.click("photo")
	v = customer.waitPlaying("local-video", 0, 0)
	id := takeSnapshot(t, customer, v.Width, v.Height)
	m := waitSnapshot(customer, id)
	format, w, h := imageSize(t, g, token, m.File)
	t.Logf("photo: %s %dx%d", format, w, h)
	if w != v.Width || h != v.Height {
		t.Errorf("the photo is %dx%d, the camera %dx%d", w, h, v.Width, v.Height)
	}
	wait[bool](customer, "the camera to close after sending", 10*time.Second, "", `return !q('local-video').srcObject;`)
}

// TestConsoleJoinsFirst: the agent clicks Video and turns the camera on
// before the customer has any video; when the customer's camera comes on,
// each side sees the other.
func TestConsoleJoinsFirst(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	customer, agent, _, _ := startChat(t, g, "Could you show me where the switch is?")

	agent.click("video-join")
	wait[bool](agent, "the console's connection", 20*time.Second, "",
		`return q('video-panel').dataset.joined === 'true' && q('video-stats').textContent.startsWith('Connected');`)
	agent.click("video-camera")
	agent.waitPlaying("local-video", 640, 480)
	if eval[bool](customer, "", `return !!document.querySelector('segue-widget').video.pc;`) {
		t.Error("the widget has a connection before the customer turned anything on")
	}

	customer.click("video-start")
	customer.waitPlaying("remote-video", 640, 480)
	agent.waitPlaying("remote-video", 640, 480)

	// Leaving from the console takes the agent's video off the widget.
	agent.click("video-join")
	wait[bool](customer, "the agent's tile to close", 15*time.Second, "", `const v = q('remote-video'); return v.hidden || !!v.closest('[hidden]');`)
	customer.waitPlaying("local-video", 640, 480)
}

// TestVideoICERestart: the customer's browser comes back online on
// another network (the 'online' event): the widget restarts ICE on the
// video's own connection, the gateway answers the new offer, and the
// console keeps playing the camera.
func TestVideoICERestart(t *testing.T) {
	g := startGateway(t, gatewayOptions{})
	customer, agent, _, _ := startChat(t, g, "My line drops sometimes")
	customer.click("video-start")
	agent.waitMessage("Video started")
	agent.waitPlaying("remote-video", 640, 480)

	ufrag := `const pc = document.querySelector('segue-widget').video.pc;
return (pc?.localDescription?.sdp.match(/a=ice-ufrag:(\S+)/) ?? [])[1] ?? '';`
	before := eval[string](customer, "", ufrag)
	if before == "" {
		t.Fatal("the widget's video connection has no local description")
	}
	eval[bool](customer, "", `window.dispatchEvent(new Event('online')); return true;`)
	after := wait[string](customer, "a new ICE generation", 15*time.Second, "old", `const pc = document.querySelector('segue-widget').video.pc;
const u = (pc?.localDescription?.sdp.match(/a=ice-ufrag:(\S+)/) ?? [])[1] ?? '';
return u && u !== old && pc.signalingState === 'stable' && pc.connectionState === 'connected' ? u : false;`, before)
	t.Logf("ICE restarted: ufrag %s -> %s", before, after)

	// The console still plays the camera after the restart: its clock moves on.
	t0 := agent.video("remote-video").Time
	v := wait[videoState](agent, "the console's video to keep playing", 15*time.Second, "t0", `const v = root().querySelector('[data-testid="remote-video"]');
return v.currentTime > t0 + 1 && v.videoWidth === 640 ? { w: v.videoWidth, h: v.videoHeight, t: v.currentTime } : false;`, t0)
	if v.Width != 640 {
		t.Errorf("after the restart the console plays %dx%d", v.Width, v.Height)
	}
	customer.send("Still there?")
	agent.waitMessage("Still there?")
}
