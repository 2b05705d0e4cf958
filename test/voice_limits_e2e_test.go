//go:build e2e

package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/test/peers"
)

// A bot that opens chats and presses the mic over and over makes the
// contact center's PBX ring its queue number each time (toll cost, a
// flooded queue). These tests are that bot, from 127.0.0.1, against the
// real gateway and a SIPp PBX; the PBX's own trace counts the INVITEs it
// got.

// queuePBX starts a SIPp PBX that answers n calls to the support queue's
// number and waits for our BYE, and a gateway whose support queue dials
// it, with extra queue and limits YAML lines.
func queuePBX(t *testing.T, n int, queueYAML, limitsYAML string) (*gateway, *peers.SIPp) {
	t.Helper()
	pbx := peers.StartSIPp(t, "sipp/uas_context.xml", "127.0.0.1", "-m", strconv.Itoa(n))
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
	}, withYAML("", "", queueYAML, limitsYAML))
	return g, pbx
}

// invitesAtPBX counts the calls (distinct Call-IDs) whose INVITE the SIPp
// PBX received, from its message trace; call it once SIPp has exited.
func invitesAtPBX(t *testing.T, pbx *peers.SIPp) int {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(pbx.Dir, "*_messages.log"))
	ids := map[string]bool{}
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, entry := range strings.Split(string(b), "\n-----") {
			if !strings.Contains(entry, "message received") || !strings.Contains(entry, "\nINVITE sip:") {
				continue
			}
			for _, line := range strings.Split(entry, "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && (strings.EqualFold(k, "Call-ID") || k == "i") {
					ids[strings.TrimSpace(v)] = true
				}
			}
		}
	}
	return len(ids)
}

// voiceAttempt starts a call from a pion browser on the customer's socket
// w. It returns the error frame that refused it, or nil when the call
// connected (it is then hung up, and ended).
func voiceAttempt(t *testing.T, w *wsConn) frame {
	t.Helper()
	b := newBrowser(t, 1000)
	defer b.close()
	w.send(map[string]any{"type": "voice.start", "id": "v:1", "sdp": b.offer(t)})
	hungUp := false
	for range 200 {
		f, err := w.read()
		if err != nil {
			t.Fatalf("waiting for the call: %v", err)
		}
		if b.signalled(t, f) {
			continue
		}
		switch f.typ() {
		case "error":
			if f["ref"] == "v:1" {
				if hungUp {
					t.Fatalf("error after hang-up: %v", f)
				}
				return f
			}
		case "call":
			c, _ := f["call"].(map[string]any)
			switch state, _ := c["state"].(string); {
			case state == "connected" && !hungUp:
				w.send(map[string]any{"type": "voice.hangup", "id": "v:2"})
				hungUp = true
			case state == "ended" && hungUp:
				return nil
			case state == "failed" || state == "ended":
				t.Fatalf("the call %s: %v", state, c["reason"])
			}
		}
	}
	t.Fatal("no end to the call in 200 frames")
	return nil
}

// expectRateLimited checks a refusal: rate_limited, with a wait of about
// an hour (the first call of the hour leaves it then).
func expectRateLimited(t *testing.T, f frame) {
	t.Helper()
	if f == nil {
		t.Fatal("the call went through, want rate_limited")
	}
	ra, _ := f["retry_after"].(float64)
	if f["code"] != "rate_limited" || ra < 3500 || ra > 3600 {
		t.Fatalf("refusal %v, want rate_limited with retry_after near 3600", f)
	}
}

// chatStillWorks sends a message on w and waits for its ack.
func chatStillWorks(t *testing.T, w *wsConn) {
	t.Helper()
	w.send(map[string]any{"type": "message", "id": "after-refusal", "text": "I will write instead"})
	w.expect("ack")
}

// TestVoiceLimitPerConversation: with calls_per_conversation_per_hour: 2
// the customer's third call is refused with rate_limited and a
// retry_after; the PBX saw two INVITEs; the chat goes on.
func TestVoiceLimitPerConversation(t *testing.T) {
	g, pbx := queuePBX(t, 2, "", "  calls_per_conversation_per_hour: 2\n")
	c, _ := g.newConversation(t, "Ann Lee")
	w := customerWS(t, g, c.token)
	for i := range 2 {
		if f := voiceAttempt(t, w); f != nil {
			t.Fatalf("call %d refused: %v", i+1, f)
		}
	}
	expectRateLimited(t, voiceAttempt(t, w))
	chatStillWorks(t, w)
	waitSIPp(t, pbx)
	if n := invitesAtPBX(t, pbx); n != 2 {
		t.Fatalf("the PBX got %d INVITEs, want 2", n)
	}
}

// TestVoiceLimitPerAddress: with calls_per_ip_per_hour: 2 a bot that
// opens a new chat for each call from one address gets two calls, and the
// third chat's call is refused.
func TestVoiceLimitPerAddress(t *testing.T) {
	g, pbx := queuePBX(t, 2, "", "  calls_per_ip_per_hour: 2\n")
	var last *wsConn
	for i := range 3 {
		c, _ := g.newConversation(t, "Ann Lee")
		last = customerWS(t, g, c.token)
		f := voiceAttempt(t, last)
		if i < 2 && f != nil {
			t.Fatalf("call %d refused: %v", i+1, f)
		}
		if i == 2 {
			expectRateLimited(t, f)
		}
	}
	chatStillWorks(t, last)
	waitSIPp(t, pbx)
	if n := invitesAtPBX(t, pbx); n != 2 {
		t.Fatalf("the PBX got %d INVITEs, want 2", n)
	}
}

// TestVoiceAfterAccept: with queues[].voice: after_accept the
// conversation says voice false until an agent accepts it, a voice.start
// before that is refused with voice_not_available and rings nothing; once
// Alice accepts, the call goes through.
func TestVoiceAfterAccept(t *testing.T) {
	g, pbx := queuePBX(t, 1, "    voice: after_accept\n", "")
	c, conv := g.newConversation(t, "Ann Lee")
	if conv.Voice {
		t.Fatal("a new conversation of an after_accept queue says voice true")
	}
	w := customerWS(t, g, c.token)
	f := voiceAttempt(t, w)
	if f == nil || f["code"] != "voice_not_available" {
		t.Fatalf("call before accept: %v, want voice_not_available", f)
	}
	agentWS(t, g, g.login(t, "alice")).accept(conv.ID, "alice")
	for {
		conv, _ := w.expect("conversation")["conversation"].(map[string]any)
		if conv["agent"] != nil {
			if conv["voice"] != true {
				t.Fatalf("after accept the conversation says voice %v", conv["voice"])
			}
			break
		}
	}
	if f := voiceAttempt(t, w); f != nil {
		t.Fatalf("call after accept refused: %v", f)
	}
	waitSIPp(t, pbx)
	if n := invitesAtPBX(t, pbx); n != 1 {
		t.Fatalf("the PBX got %d INVITEs, want only the call after accept", n)
	}
}

// TestVoiceLimitsInTheWidget: in Chromium, the widget of an after_accept
// queue shows no mic button until Alice accepts the chat; with
// calls_per_conversation_per_hour: 1, the second click says how long to
// wait.
func TestVoiceLimitsInTheWidget(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_context.xml", "127.0.0.1", "-m", "1")
	hs := newHostSite(t)
	g := hs.startGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
	}, withYAML("", "", "    voice: after_accept\n", "  calls_per_conversation_per_hour: 1\n"))

	customer := newVoiceTab(t, "customer")
	customer.do(chromedp.Navigate(hs.srv.URL + "/?queue=support"))
	customer.click("widget-open")
	customer.fill("customer-name", "Ann Lee")
	customer.send("Can I call you?")
	customer.waitMessage("Can I call you?")
	micShown := fn("", `const b = q('voice-start'); return !!b && !b.hidden && !b.disabled;`)
	if call[bool](customer, micShown) {
		t.Fatal("the mic button shows before an agent accepted the chat")
	}
	agentWS(t, g, g.login(t, "alice")).accept(customer.widgetConversation(), "alice")
	customer.waitText("agent-name", "helping")
	waitJS[bool](customer, "the mic button after accept", micShown)

	customer.click("voice-start")
	customer.waitCall("connected")
	customer.click("hangup")
	customer.waitCall("ended")
	waitJS[bool](customer, "the mic button again", micShown)
	customer.click("voice-start")
	st := customer.waitCall("failed")
	if !regexp.MustCompile(`^Too many calls from here — please try again in (59|60) minutes$`).MatchString(st.Text) {
		t.Errorf("after the refused call the widget says %q", st.Text)
	}
	customer.send("Fine, I will write")
	customer.waitMessage("Fine, I will write")
	waitSIPp(t, pbx)
	if n := invitesAtPBX(t, pbx); n != 1 {
		t.Errorf("the PBX got %d INVITEs, want 1", n)
	}
	noCSPViolations(t, customer)
}
