//go:build e2e

package test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/test/peers"
)

// sippGateway runs a gateway whose only trunk is a SIPp scenario playing
// the PBX, with Alice's desk phone (extension 1001) behind it.
func sippGateway(t *testing.T, pbx *peers.SIPp, hs *hostSite) *gateway {
	t.Helper()
	return hs.startGateway(t, voiceConfig{
		trunks:     []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues:     []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
		alicePhone: "sip:1001@" + pbx.Addr(),
	})
}

// TestVoiceAgentHangsUp: the desk phone hangs up first (BYE). The widget
// says the agent ended the call, the chat goes on, and the customer can
// call again.
func TestVoiceAgentHangsUp(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_bye.xml", "127.0.0.1", "-m", "2")
	hs := newHostSite(t)
	sippGateway(t, pbx, hs)
	customer, _ := openShopWidget(t, hs, "customer", "support", "", "Please call me")
	for i := 1; i <= 2; i++ {
		customer.click("voice-start")
		customer.waitCall("connected")
		st := customer.waitCall("ended")
		if st.Text != "Call ended: The agent hung up" || st.EndedBy != "agent" {
			t.Errorf("call %d: status %q, ended by %q; want the agent's hang-up", i, st.Text, st.EndedBy)
		}
		customer.send("Still here after call " + string(rune('0'+i)))
		customer.waitMessage("Still here after call " + string(rune('0'+i)))
		waitJS[bool](customer, "the mic button again", fn("", `const b = q('voice-start'); return !b.hidden && !b.disabled;`))
	}
	waitSIPp(t, pbx)
}

// TestVoiceContextAndConsoleControls: the PBX checks the context headers
// of the INVITE (SIPp fails the call otherwise), the agent hangs up from
// the console, then calls the customer back with "Call customer": the
// widget rings, the customer accepts, and hangs up.
func TestVoiceContextAndConsoleControls(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_context.xml", "127.0.0.1", "-m", "2")
	hs := newHostSite(t)
	g := sippGateway(t, pbx, hs)
	customer, agent, convID := shopChat(t, hs, g, "", "I have a billing question")

	customer.click("voice-start")
	customer.waitCall("connected")
	waitJS[bool](agent, "the console's connected call", fn("", `return document.querySelector('#callbar [data-testid="call-status"]')?.dataset.callState === 'connected';`))
	agent.click("hangup")
	st := customer.waitCall("ended")
	if st.Text != "Call ended: The agent hung up" || st.EndedBy != "agent" {
		t.Errorf("after the console's hang-up the widget says %q (ended by %q)", st.Text, st.EndedBy)
	}
	waitJS[bool](agent, "the console's ended call", fn("", `const s = document.querySelector('#callbar [data-testid="call-status"]');
return s?.dataset.callState === 'ended' && !q('call-customer').hidden;`))

	// The agent calls back: Alice's desk phone first, then the widget rings.
	agent.click("call-customer")
	waitJS[bool](customer, "the incoming call", fn("", `const s = q('call-status'); return s.dataset.callState === 'incoming' && !q('call-accept').hidden;`))
	customer.waitText("call-status", "Alice is calling you")
	customer.click("call-accept")
	customer.waitCall("connected")
	customer.send("Hi again")
	agent.waitMessage("Hi again")
	customer.click("hangup")
	if st := customer.waitCall("ended"); st.Text != "Call ended: You hung up" {
		t.Errorf("after the customer's hang-up the widget says %q", st.Text)
	}
	waitSIPp(t, pbx)

	// The exact values, from SIPp's trace of the two INVITEs.
	logs, _ := filepath.Glob(filepath.Join(pbx.Dir, "*_messages.log"))
	if len(logs) == 0 {
		t.Fatal("no SIPp message trace")
	}
	b, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	trace := string(b)
	for _, want := range []string{
		`From: "Ann Lee" <sip:`,
		`From: "Call to Ann Lee" <sip:`,
		"User-to-User: " + hex.EncodeToString([]byte(convID)) + ";encoding=hex",
		"Call-Info: <" + g.URL + "/console/c/" + convID + ">;purpose=info",
		"X-Segue-Conversation: " + convID,
		"X-Segue-Queue: support",
		"X-Segue-Customer: Ann Lee",
		"INVITE sip:1001@",
	} {
		if !strings.Contains(trace, want) {
			t.Errorf("the PBX never saw %q", want)
		}
	}
}

// TestVoiceHoldAndResume: the PBX puts the call on hold (sendonly
// re-INVITE) and resumes it. SIPp echoes the RTP it gets, so the page
// hears its own 1 kHz microphone back through the PBX: before hold, not
// while held, and again after resume.
func TestVoiceHoldAndResume(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_hold_echo.xml", "127.0.0.1", "-m", "1", "-rtp_echo")
	hs := newHostSite(t)
	sippGateway(t, pbx, hs)
	customer, _ := openShopWidget(t, hs, "customer", "support", "", "Hold on")
	customer.click("voice-start")
	customer.waitCall("connected")
	expectHeard(t, "the customer before hold", customer.measureHeard(800), voiceMicHz, -16, -1)
	st := customer.waitCall("held")
	if st.Text != "On hold" {
		t.Errorf("held call shows %q", st.Text)
	}
	// When RTP stops, Chromium's jitter buffer conceals the gap with fading
	// copies of the last audio for a while: measure once that has settled
	// (the PBX holds for three seconds).
	time.Sleep(900 * time.Millisecond)
	held := customer.measureHeard(800)
	t.Logf("while held the customer heard %.0f Hz at %.1f dBFS", held.Freq, held.DB)
	if held.DB > -40 {
		t.Errorf("while held the customer still heard %.1f dBFS at %.0f Hz: the gateway kept sending to a sendonly PBX", held.DB, held.Freq)
	}
	customer.send("Are you back?")
	customer.waitMessage("Are you back?")
	st = customer.waitCall("connected")
	if !strings.HasPrefix(st.Text, "Connected 0") {
		t.Errorf("resumed call shows %q", st.Text)
	}
	time.Sleep(300 * time.Millisecond)
	expectHeard(t, "the customer after resume", customer.measureHeard(1200), voiceMicHz, -16, -1)
	customer.waitMessage("Call on hold")
	customer.waitMessage("Call resumed")
	customer.click("hangup")
	customer.waitCall("ended")
	waitSIPp(t, pbx)
}

// TestVoicePBXCallsCustomer: the PBX calls a conversation
// (sip:conv-<id>@gateway). The widget rings; accepted, the call connects
// and ends when the PBX hangs up; declined, the PBX gets 603.
func TestVoicePBXCallsCustomer(t *testing.T) {
	hs := newHostSite(t)
	sipPort := peers.FreeUDPPort(t, "127.0.0.1")
	hs.startGateway(t, voiceConfig{
		trunks:  []voiceTrunk{{name: "pbx", addr: "127.0.0.1:5999"}},
		queues:  []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@127.0.0.1:5999"}},
		sipPort: sipPort,
	})
	gwSIP := "127.0.0.1:" + strconv.Itoa(sipPort)
	customer, convID := openShopWidget(t, hs, "customer", "support", "", "Call me back please")

	pbx := peers.StartSIPp(t, "sipp/uac_conv.xml", "127.0.0.1", "-set", "conv", convID, "-m", "1", gwSIP)
	customer.waitCall("incoming")
	customer.waitText("call-status", "Incoming call from the contact center")
	customer.click("call-accept")
	customer.waitCall("connected")
	if st := customer.waitCall("ended"); st.Text != "Call ended: The agent hung up" {
		t.Errorf("after the PBX's BYE the widget says %q", st.Text)
	}
	waitSIPp(t, pbx)

	pbx = peers.StartSIPp(t, "sipp/uac_conv_decline.xml", "127.0.0.1", "-set", "conv", convID, "-m", "1", gwSIP)
	customer.waitCall("incoming")
	customer.click("call-decline")
	if st := customer.waitCall("failed"); st.Text != "Call declined" {
		t.Errorf("after declining the widget says %q", st.Text)
	}
	waitSIPp(t, pbx)
	customer.send("I prefer writing")
	customer.waitMessage("I prefer writing")
}

// TestVoiceMuteOnPhoneScreen: on a phone-sized screen the call controls
// fit and do not overlap; mute silences the microphone toward the PBX
// (SIPp echoes RTP, so the page hears itself) and unmute brings it back.
func TestVoiceMuteOnPhoneScreen(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_context.xml", "127.0.0.1", "-m", "1", "-rtp_echo")
	hs := newHostSite(t)
	sippGateway(t, pbx, hs)
	customer, _ := openShopWidget(t, hs, "customer", "support", "", "On my phone",
		chromedp.EmulateViewport(375, 667, chromedp.EmulateMobile, chromedp.EmulateTouch))
	customer.click("voice-start")
	customer.waitCall("connected")
	customer.click("keypad")
	layout := call[[]string](customer, fn("", `const ids = ['voice-start', 'mute', 'keypad', 'hangup', 'chat-input', 'chat-send', 'call-status'];
const els = ids.map((id) => [id, q(id)]).concat([...root().querySelectorAll('[data-testid="keypad-key"]')].map((k) => ['key ' + k.dataset.digit, k]));
const bad = [];
const rects = els.map(([id, el]) => [id, el.getBoundingClientRect()]);
for (const [id, r] of rects) {
  if (r.width === 0 || r.height === 0) { bad.push(id + ' is not shown'); continue; }
  if (r.left < 0 || r.top < 0 || r.right > innerWidth + 0.5 || r.bottom > innerHeight + 0.5) bad.push(id + ' is off screen ' + JSON.stringify(r));
  if (id !== 'call-status' && id !== 'chat-input' && (r.width < 32 || r.height < 32)) bad.push(id + ' is a small target ' + r.width + 'x' + r.height);
}
for (let i = 0; i < rects.length; i++) for (let j = i + 1; j < rects.length; j++) {
  const [a, ra] = rects[i], [b, rb] = rects[j];
  if (ra.width && rb.width && ra.left < rb.right - 1 && rb.left < ra.right - 1 && ra.top < rb.bottom - 1 && rb.top < ra.bottom - 1) bad.push(a + ' overlaps ' + b);
}
return bad;`))
	for _, b := range layout {
		t.Errorf("on a 375x667 screen: %s", b)
	}
	customer.click("keypad")

	expectHeard(t, "the customer (echo) before mute", customer.measureHeard(800), voiceMicHz, -16, -1)
	customer.click("mute")
	waitJS[bool](customer, "the mute button", fn("", `return q('mute').getAttribute('aria-pressed') === 'true' && q('mute').textContent === 'Unmute';`))
	time.Sleep(600 * time.Millisecond) // what was said before the click is still on its way back
	if h := customer.measureHeard(800); h.DB > -40 {
		t.Errorf("muted, the customer still hears %.1f dBFS at %.0f Hz through the PBX", h.DB, h.Freq)
	}
	customer.click("mute")
	time.Sleep(300 * time.Millisecond)
	expectHeard(t, "the customer (echo) after unmute", customer.measureHeard(800), voiceMicHz, -16, -1)
	customer.click("hangup")
	customer.waitCall("ended")
	waitSIPp(t, pbx)
}

// sippPcaps is where Debian's sip-tester keeps the RTP captures that
// scenarios replay with play_pcap_audio.
const sippPcaps = "/usr/share/sip-tester"

// withPcaps copies a scenario into a temp dir with SIPp's captures in
// pcap/ next to it (SIPp loads play_pcap_audio files relative to the
// scenario when it starts) and returns the copy's path.
func withPcaps(t *testing.T, scenario string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pcap"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(src, dst string) {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("SIPp's captures (package sip-tester) are required: %v", err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		copyFile(filepath.Join(sippPcaps, n), filepath.Join(dir, "pcap", n))
	}
	out := filepath.Join(dir, filepath.Base(scenario))
	copyFile(scenario, out)
	return out
}

// TestVoiceDeskPhoneKeys: digits pressed on the desk phone (RFC 4733 from
// the PBX) show in the agent's console call bar and, briefly, in the
// customer's call bar.
func TestVoiceDeskPhoneKeys(t *testing.T) {
	scenario := withPcaps(t, "sipp/uas_dtmf.xml", "dtmf_2833_5.pcap", "dtmf_2833_9.pcap", "dtmf_2833_pound.pcap")
	pbx := peers.StartSIPp(t, scenario, "127.0.0.1", "-m", "1")
	hs := newHostSite(t)
	g := sippGateway(t, pbx, hs)
	customer, agent, _ := shopChat(t, hs, g, "", "Which key?")
	customer.click("voice-start")
	customer.waitCall("connected")
	customer.waitText("call-bar-text", "The agent pressed 5")
	agent.waitText("call-dtmf", "Keypad: 59#")
	customer.click("hangup")
	customer.waitCall("ended")
	waitSIPp(t, pbx)
}
