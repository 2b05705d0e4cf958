//go:build e2e

package test

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// jsRefuseMicrophone makes every page of a tab refuse the microphone as
// a customer who said no at the prompt does (NotAllowedError), and keeps
// what each getUserMedia call asked for in window.__gum. Chromium's fake
// media UI, which the tests need for getDisplayMedia in headless mode,
// grants every device and overrides Browser.setPermission, so the refusal
// is made in the page.
const jsRefuseMicrophone = `(() => {
window.__gum = [];
const md = navigator.mediaDevices;
if (!md) return;
const gum = md.getUserMedia.bind(md);
md.getUserMedia = async (c) => {
  window.__gum.push({audio: !!c?.audio, video: !!c?.video});
  if (c?.audio) throw new DOMException('Permission denied', 'NotAllowedError');
  return gum(c);
};
})();`

// refuseMicrophone installs jsRefuseMicrophone for the pages this tab
// loads from now on.
func (tb *tab) refuseMicrophone() {
	tb.t.Helper()
	tb.initScript(jsRefuseMicrophone)
}

// countOscillators keeps, in window.__osc, the frequency of every
// oscillator the pages of this tab start (the console's ring sound).
func (tb *tab) countOscillators() {
	tb.t.Helper()
	tb.initScript(`window.__osc = [];
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) { window.__osc.push(this.frequency.value); return start.apply(this, args); };`)
}

// initScript runs js in every page this tab loads from now on, first.
func (tb *tab) initScript(js string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, func(ctx context.Context, tgt *chromedp.Target) (page.AddScriptToEvaluateOnNewDocumentResult, error) {
		return cdp.Call(ctx, tgt, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
	}); err != nil {
		tb.t.Fatalf("%s: add a script: %v", tb.name, err)
	}
}

// sentAudio is what a page's peer connections send of audio: the tracks
// on their senders, the m=audio sections of their local descriptions that
// may send, and the audio bytes their outbound-rtp stats count.
type sentAudio struct {
	Tracks   int      `json:"tracks"`
	Sections []string `json:"sections"` // the direction of each sending m=audio
	Bytes    int      `json:"bytes"`
	PCs      int      `json:"pcs"`
}

// jsSentAudio reads a sentAudio over window.__pcs (chrome.Probe).
const jsSentAudio = `const out = {tracks: 0, sections: [], bytes: 0, pcs: 0};
for (const pc of window.__pcs ?? []) {
  if (pc.connectionState === 'closed') continue;
  out.pcs++;
  out.tracks += pc.getSenders().filter((s) => s.track?.kind === 'audio').length;
  for (const m of (pc.localDescription?.sdp ?? '').split(/\r\nm=/).slice(1)) {
    if (!m.startsWith('audio')) continue;
    const dir = (m.match(/a=(sendrecv|sendonly|recvonly|inactive)/) ?? [])[1] ?? 'sendrecv';
    if ((dir === 'sendrecv' || dir === 'sendonly') && !/^audio 0 /.test(m)) out.sections.push(dir);
  }
  const stats = await pc.getStats();
  stats.forEach((r) => { if (r.type === 'outbound-rtp' && r.kind === 'audio') out.bytes += r.bytesSent ?? 0; });
}
return out;`

// TestScreenShareFromChatWithoutMicrophone: a customer who refused the
// microphone shares the screen straight from the chat. Sharing needs only
// the screen: the console plays the screen, and the customer's page sends
// no audio at all (no track, no sending m=audio, no audio bytes).
func TestScreenShareFromChatWithoutMicrophone(t *testing.T) {
	g := startGateway(t)
	customer := ownTab(t, "customer")
	agent := ownTab(t, "console")
	t.Cleanup(g.Stop)
	customer.refuseMicrophone()
	chatBetween(t, g, customer, agent, "Let me show you the error on my screen")

	// The denial holds in this page: a microphone request is refused.
	if got := call[string](customer, asyncFn("", `try { const s = await navigator.mediaDevices.getUserMedia({audio: true}); s.getTracks().forEach((t) => t.stop()); return 'granted'; } catch (e) { return e.name; }`)); got != "NotAllowedError" {
		t.Fatalf("the customer's page got %q for the microphone, want NotAllowedError", got)
	}
	call[bool](customer, fn("", `window.__gum = []; return true;`))

	customer.click("screen-start")
	agent.waitMessageContaining("Screen sharing started")
	sc := agent.waitPlaying("remote-screen", 0, 0)
	t.Logf("console remote-screen: %dx%d", sc.Width, sc.Height)
	if st := call[string](customer, fn("", `return q('video-status')?.textContent ?? '';`)); st != "" {
		t.Errorf("the widget says %q while sharing", st)
	}
	// The widget asked for no device: the screen came from getDisplayMedia.
	if asked := call[[]map[string]bool](customer, fn("", `return window.__gum;`)); len(asked) != 0 {
		t.Errorf("sharing the screen asked getUserMedia for %v", asked)
	}

	// Let the connection run a while: nothing audio goes out.
	agent.waitAdvanced("remote-screen", sc)
	sent := call[sentAudio](customer, asyncFn("", jsSentAudio))
	t.Logf("customer's audio: %+v", sent)
	if sent.PCs != 1 {
		t.Errorf("the customer's page has %d open peer connections, want 1", sent.PCs)
	}
	if sent.Tracks != 0 || len(sent.Sections) != 0 || sent.Bytes != 0 {
		t.Errorf("a screen share from the chat sends audio: %d tracks, sending sections %v, %d bytes", sent.Tracks, sent.Sections, sent.Bytes)
	}
	if sdp := call[string](customer, fn("", `return window.__pcs.find((pc) => pc.connectionState !== 'closed')?.localDescription?.sdp ?? '';`)); !strings.Contains(sdp, "m=video") {
		t.Errorf("the customer's description has no video:\n%s", sdp)
	}

	// The chat goes on beside the shared screen, and sharing stops.
	customer.send("Do you see it?")
	agent.waitMessage("Do you see it?")
	customer.click("screen-start")
	agent.waitMessageContaining("Screen sharing ended")
	agent.waitHidden("remote-screen")
}

// TestPBXTransferKeepsTheContext: Alice's desk phone (1001, a SIPp PBX)
// rings, which the console shows (list, title, ring sound), answers, puts
// the call on hold and resumes it, then transfers it (REFER) to 1002. Both phones insist on the context in their INVITE (the SIPp
// scenario fails the call otherwise): the transfer's INVITE carries the
// same User-to-User, Call-Info, X-Segue-* and the customer's name as the
// first. The console says where the call went, the call goes on, and the
// chat stays with Alice.
func TestPBXTransferKeepsTheContext(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_hold_refer_context.xml", "127.0.0.1", "-m", "2")
	hs := newHostSite(t)
	g := sippGateway(t, pbx, hs)
	customer, convID := openShopWidget(t, hs, "customer", "support", "", "My invoice is wrong")
	agent := newVoiceTab(t, "console alice")
	agent.countOscillators()
	agent.grantNotifications()
	agent.logIn(g, "alice", "/console")
	agent.acceptConversation(convID)
	customer.waitText("agent-name", "helping")

	// The ring sound is off until the agent turns it on.
	if on := call[bool](agent, fn("", `return q('ring-sound').checked;`)); on {
		t.Error("the console's ring sound is on by default")
	}
	agent.click("ring-sound")
	agent.click("desktop-notify")

	// While the desk phone rings, the conversation list and the tab's title
	// say so, and the console rings; once answered, the list says so.
	customer.click("voice-start")
	waitJS[bool](agent, "the ringing indicator", fn("id", `const i = document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"] [data-testid="call-indicator"]');
return i?.dataset.callState === 'ringing';`), convID)
	if title := call[string](agent, fn("", `return document.title;`)); !strings.HasPrefix(title, "☎ Call ringing: Ann Lee") {
		t.Errorf("while the call rings the console's title is %q", title)
	}
	waitJS[bool](agent, "the ring sound", fn("", `return window.__osc.includes(440) && window.__osc.includes(480);`))
	waitJS[bool](agent, "the ringing call's desktop notification", fn("", `return window.__notes.includes('Call ringing: Ann Lee');`))
	customer.waitCall("connected")
	waitJS[bool](agent, "the connected indicator", fn("id", `const i = document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"] [data-testid="call-indicator"]');
return i?.dataset.callState === 'connected' && !document.title.includes('ringing');`), convID)
	// Hold and resume keep the dialog: the transfer below goes through it.
	customer.waitMessage("Call on hold")
	customer.waitMessage("Call resumed")

	agent.waitMessage("Call transferred to 1002")
	customer.waitMessage("Call transferred to 1002")
	// The transferor hangs up its leg; the call goes on with 1002.
	time.Sleep(time.Second)
	if st := customer.waitCall("connected"); !strings.HasPrefix(st.Text, "Connected") {
		t.Errorf("after the transfer the widget says %q", st.Text)
	}

	// The chat stays with Alice.
	customer.send("Am I still with you?")
	agent.waitMessage("Am I still with you?")
	agent.send("Yes, the billing desk has the call")
	customer.waitMessage("Yes, the billing desk has the call")
	customer.waitText("agent-name", "helping")
	waitJS[bool](customer, "Alice as the agent still", fn("", `return root().querySelector('.title')?.textContent === 'Alice';`))

	customer.click("hangup")
	customer.waitCall("ended")
	waitJS[bool](agent, "the indicator to go", fn("", `return !document.querySelector('[data-testid="call-indicator"]');`))
	waitSIPp(t, pbx)

	// The exact values, from SIPp's trace: both INVITEs carry them.
	logs, _ := filepath.Glob(filepath.Join(pbx.Dir, "*_messages.log"))
	if len(logs) == 0 {
		t.Fatal("no SIPp message trace")
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	var invites []string
	for _, m := range strings.Split(string(b), "\n\n") {
		if i := strings.Index(m, "INVITE sip:100"); i >= 0 && strings.Contains(m, "User-Agent:") {
			invites = append(invites, m[i:])
		}
	}
	for _, ext := range []string{"1001", "1002"} {
		var inv string
		for _, m := range invites {
			if strings.HasPrefix(m, "INVITE sip:"+ext+"@") {
				inv = m
			}
		}
		if inv == "" {
			t.Errorf("the PBX never got an INVITE for %s", ext)
			continue
		}
		for _, want := range []string{
			`From: "Ann Lee" <sip:`,
			"User-to-User: " + hex.EncodeToString([]byte(convID)) + ";encoding=hex",
			"Call-Info: <" + g.URL + "/console/c/" + convID + ">;purpose=info",
			"X-Segue-Conversation: " + convID,
			"X-Segue-Queue: support",
			"X-Segue-Customer: Ann Lee",
		} {
			if !strings.Contains(inv, want) {
				t.Errorf("the INVITE for %s lacks %q", ext, want)
			}
		}
	}
}

// earlyMediaHz is the tone the PBX plays as early media: apart from the
// gateway's own ringback (425 Hz) and the pion customer's 1 kHz.
const earlyMediaHz = 1400.0

// writeTonePcap writes an Ethernet pcap of n 20 ms RTP packets (PCMU) of a
// tone at hz, for SIPp's play_pcap_audio, which sends the UDP payloads on
// the call's media at the capture's pace.
func writeTonePcap(t *testing.T, path string, hz float64, n int) {
	t.Helper()
	rec := audiotest.NewPayloadRecorder(8000)
	enc, err := transcode.NewULawEncoder(rec)
	if err != nil {
		t.Fatal(err)
	}
	tone := audiotest.Tone(8000, hz, 0.5, time.Duration(n)*20*time.Millisecond)
	for off := 0; off+160 <= len(tone); off += 160 {
		if err := enc.WriteSample(tone[off : off+160]); err != nil {
			t.Fatal(err)
		}
	}
	var out []byte
	le := binary.LittleEndian
	out = le.AppendUint32(out, 0xa1b2c3d4)
	out = le.AppendUint16(out, 2)
	out = le.AppendUint16(out, 4)
	out = le.AppendUint32(out, 0)     // thiszone
	out = le.AppendUint32(out, 0)     // sigfigs
	out = le.AppendUint32(out, 65535) // snaplen
	out = le.AppendUint32(out, 1)     // LINKTYPE_ETHERNET
	be := binary.BigEndian
	for i, payload := range rec.Payloads() {
		rtp := []byte{0x80, 0}
		rtp = be.AppendUint16(rtp, uint16(i))
		rtp = be.AppendUint32(rtp, uint32(i*160))
		rtp = be.AppendUint32(rtp, 0x5e9e0001)
		rtp = append(rtp, payload...)
		udp := be.AppendUint16(nil, 6000)
		udp = be.AppendUint16(udp, 6002)
		udp = be.AppendUint16(udp, uint16(8+len(rtp)))
		udp = be.AppendUint16(udp, 0) // no checksum (IPv4)
		udp = append(udp, rtp...)
		ip := []byte{0x45, 0}
		ip = be.AppendUint16(ip, uint16(20+len(udp)))
		ip = append(ip, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2)
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(be.Uint16(ip[j:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		be.PutUint16(ip[10:], ^uint16(sum))
		frame := append([]byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}, ip...)
		frame = append(frame, udp...)
		us := i * 20000
		out = le.AppendUint32(out, uint32(us/1e6))
		out = le.AppendUint32(out, uint32(us%1e6))
		out = le.AppendUint32(out, uint32(len(frame)))
		out = le.AppendUint32(out, uint32(len(frame)))
		out = append(out, frame...)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEarlyMediaReachesTheCustomer: the PBX answers the INVITE with 183
// and SDP, plays its own tone for three seconds, then 200. While the call
// rings, the customer hears the PBX's tone, not the gateway's ringback.
func TestEarlyMediaReachesTheCustomer(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pcap"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTonePcap(t, filepath.Join(dir, "pcap", "tone.pcap"), earlyMediaHz, 150)
	scenario := filepath.Join(dir, "uas_early_media.xml")
	b, err := os.ReadFile("sipp/uas_early_media.xml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(scenario, b, 0o644); err != nil {
		t.Fatal(err)
	}
	pbx := peers.StartSIPp(t, scenario, "127.0.0.1", "-m", "1")
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
	})
	customer, _ := g.newConversation(t, "Ann Lee")
	ws := customerWS(t, g, customer.token)
	browser := newBrowser(t, 1000)
	ws.send(map[string]any{"type": "voice.start", "sdp": browser.offer(t)})

	// The samples heard when the call started ringing and when it connected.
	ringAt, connectedAt := -1, -1
	for connectedAt < 0 {
		f, err := ws.read()
		if err != nil {
			t.Fatalf("waiting for the call: %v", err)
		}
		if browser.signalled(t, f) || f.typ() != "call" {
			continue
		}
		c, _ := f["call"].(map[string]any)
		switch c["state"] {
		case "ringing":
			if ringAt < 0 {
				ringAt = len(browser.heard.Samples())
			}
		case "connected":
			connectedAt = len(browser.heard.Samples())
		case "failed", "ended":
			t.Fatalf("call %v: %v", c["state"], c["reason"])
		}
	}
	if ringAt < 0 {
		t.Fatal("the call connected without ringing")
	}
	// Half a second in, past the path's delay, up to the answer.
	heard := browser.heard.Samples()
	from := ringAt + 4000
	if connectedAt-from < 8000 {
		t.Fatalf("%d samples heard between ringing and the answer, want a few seconds", connectedAt-ringAt)
	}
	early := heard[from:connectedAt]
	peak := audiotest.PeakFrequency(early, 8000)
	pbxDB := audiotest.GoertzelLevel(early, 8000, earlyMediaHz)
	ringDB := audiotest.GoertzelLevel(early, 8000, 425)
	t.Logf("while ringing the customer heard a peak at %.0f Hz; %.0f Hz at %.1f dBFS, 425 Hz at %.1f dBFS", peak, earlyMediaHz, pbxDB, ringDB)
	if peak < earlyMediaHz-20 || peak > earlyMediaHz+20 {
		t.Errorf("while ringing the customer heard %.0f Hz, want the PBX's %.0f Hz", peak, earlyMediaHz)
	}
	if pbxDB < -20 || ringDB > pbxDB-20 {
		t.Errorf("the PBX's tone at %.1f dBFS, the local ringback at %.1f dBFS: want the PBX's alone", pbxDB, ringDB)
	}

	ws.send(map[string]any{"type": "voice.hangup"})
	waitSIPp(t, pbx)
}

// filesBothWays sends a document from the customer to the agent and one
// back, and checks that each side downloads the very bytes sent.
func filesBothWays(t *testing.T, customer, agent *tab, step string) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []struct {
		from, to *tab
		name     string
	}{{customer, agent, "customer-" + step + ".txt"}, {agent, customer, "agent-" + step + ".txt"}} {
		body := []byte(fmt.Sprintf("%s, sent by %s during %s\n", d.name, d.from.name, step))
		path := filepath.Join(dir, d.name)
		if err := os.WriteFile(path, body, 0o600); err != nil {
			t.Fatal(err)
		}
		d.from.setFiles(path)
		got := d.to.waitMessage(d.name)
		if got.Kind != "file" || got.File == "" {
			t.Fatalf("%s sees %+v, want a file message", d.to.name, got)
		}
		if h := fetchSHA(d.to, got.File); h != sha(body) {
			t.Errorf("during %s %s downloaded sha256 %s of %s, want %s", step, d.to.name, h, d.name, sha(body))
		}
	}
}

// TestToolsDuringACall: Alice's desk phone (baresip, playing 440 Hz) is
// on the line. During the call, files go both ways; the customer shares
// the screen on the call's connection, the console plays it and Alice
// takes a snapshot of it into the chat; Alice moves the audio to the
// console and back; then the customer turns the camera on and files go
// both ways again while video runs. The console's list shows the call. Afterwards
// the call is unharmed: the customer still hears the desk phone, and the
// desk phone heard the customer's 1 kHz microphone to the end.
func TestToolsDuringACall(t *testing.T) {
	phone := startBaresipPhone(t)
	g := startGateway(t, withVoice(toDeskPhone(phone)))
	customer, agent, s := startVideoChat(t, g, "Can you call me about my meter?")
	tone := func(f float64) bool { return f >= deskToneHz-20 && f <= deskToneHz+20 }

	customer.click("voice-start")
	waitJS[bool](customer, "the call to connect", fn("", `return (() => {`+callStateKeepingAudio+`})() === 'connected' && !!window.__heard;`))
	if f := customer.heardHz(); !tone(f) {
		t.Fatalf("during the call the customer hears %.0f Hz, want the desk phone's %.0f Hz", f, deskToneHz)
	}

	waitJS[bool](agent, "the call in the conversation list", fn("", `return q('call-indicator')?.dataset.callState === 'connected';`))
	filesBothWays(t, customer, agent, "the call")

	// The screen joins the call's connection; the console plays it, and
	// Alice's snapshot of it goes into the chat at its resolution.
	customer.click("screen-start")
	agent.waitMessageContaining("Screen sharing started")
	sc := agent.waitPlaying("remote-screen", 0, 0)
	if same := call[bool](customer, fn("", `const w = document.querySelector('segue-widget'); return w.video.pc === w.voice.pc && !w.video.own;`)); !same {
		t.Error("the screen share opened a connection of its own beside the call's")
	}
	shot := agent.takeSnapshot(sc.Width, sc.Height)
	for _, tb := range []*tab{customer, agent} {
		m := tb.waitSnapshot(shot)
		if _, w, h := imageSize(t, g, s.Token, m.File); w != sc.Width || h != sc.Height {
			t.Errorf("%s sees the screen's snapshot as %dx%d, want %dx%d", tb.name, w, h, sc.Width, sc.Height)
		}
	}
	agent.waitMessageContaining("took a snapshot")

	// Alice moves the call's audio to the console: she hears the customer
	// there; moved back, the customer hears the desk phone again.
	agent.click("audio-route")
	agent.waitMessageContaining("Audio moved to the console")
	if f := agent.elementPeakHz("video-audio"); f < videoMicHz-50 || f > videoMicHz+50 {
		t.Errorf("with the audio on the console Alice hears %.0f Hz, want the customer's %.0f Hz", f, videoMicHz)
	}
	agent.click("audio-route")
	agent.waitMessageContaining("Audio moved to the desk phone")
	if f := customer.heardHz(); !tone(f) {
		t.Errorf("with the audio back on the desk phone the customer hears %.0f Hz, want %.0f Hz", f, deskToneHz)
	}

	// Video runs beside the screen: files go both ways again.
	customer.click("video-start")
	agent.waitPlaying("remote-video", 640, 480)
	filesBothWays(t, customer, agent, "video")
	agent.waitAdvanced("remote-video", agent.video("remote-video"))
	customer.click("video-start")
	customer.click("screen-start")
	agent.waitMessageContaining("Video ended")

	// The call is unharmed.
	if st := call[string](customer, fn("", callStateKeepingAudio)); st != "connected" {
		t.Fatalf("the call is %q after the tools", st)
	}
	if f := customer.heardHz(); !tone(f) {
		t.Errorf("after the tools the customer hears %.0f Hz, want the desk phone's %.0f Hz", f, deskToneHz)
	}
	customer.click("hangup")
	waitJS[bool](customer, "the call to end", fn("", `return q('call-status')?.dataset.callState === 'ended';`))
	pcm, rate := baresipHeardAll(t, phone)
	last := pcm[max(0, len(pcm)-2*rate):]
	if f := audiotest.PeakFrequency(last, rate); f < videoMicHz-20 || f > videoMicHz+20 {
		t.Errorf("in the call's last two seconds the desk phone heard %.0f Hz, want the customer's %.0f Hz", f, videoMicHz)
	} else {
		t.Logf("in the call's last two seconds the desk phone heard %.0f Hz at %.1f dBFS", f, audiotest.Level(last))
	}
}

// baresipHeardAll waits for the recording of what the desk phone heard
// in its call, once the call is over, and returns all of it.
func baresipHeardAll(t *testing.T, phone *peers.Baresip) ([]int16, int) {
	t.Helper()
	// baresipHeard waits until sndfile has written and closed the file.
	_, rate := baresipHeard(t, phone.Recordings, 0, time.Second)
	h, _ := phone.Recordings()
	if len(h) != 1 {
		t.Fatalf("baresip recorded %d calls, want 1", len(h))
	}
	all, r, err := audiotest.ReadWAVFile(h[0])
	if err != nil {
		t.Fatal(err)
	}
	if r != rate {
		t.Fatalf("the recording's rate changed from %d to %d", rate, r)
	}
	return all, r
}
