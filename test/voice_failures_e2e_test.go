//go:build e2e

package test

import (
	"strings"
	"testing"

	"github.com/segue-rtc/segue/test/peers"
)

// TestVoiceCallFailures: a desk phone that is busy (486), out of service
// (503) or not answered (rings, then 480) reaches the customer as clear
// words in call-status and in the transcript; the chat goes on and the
// mic button comes back. While the phone rings the page hears ringback.
// A queue with no number (and no agent phone) is refused by the gateway
// (no_destination), which the widget also puts in words.
func TestVoiceCallFailures(t *testing.T) {
	busy := peers.StartSIPp(t, "sipp/uas_busy.xml", "127.0.0.1", "-m", "1")
	down := peers.StartSIPp(t, "sipp/uas_503.xml", "127.0.0.1", "-m", "1")
	noAnswer := peers.StartSIPp(t, "sipp/uas_noanswer.xml", "127.0.0.1", "-m", "1")
	hs := newHostSite(t)
	g := hs.startGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "busy", addr: busy.Addr()}, {name: "down", addr: down.Addr()}, {name: "late", addr: noAnswer.Addr()}},
		queues: []voiceQueue{
			{name: "billing", trunk: "busy", dial: "sip:600@" + busy.Addr()},
			{name: "sales", trunk: "down", dial: "sip:700@" + down.Addr()},
			{name: "support", trunk: "late", dial: "sip:800@" + noAnswer.Addr()},
			{name: "nobody", trunk: "late"},
		},
	})

	for _, tc := range []struct {
		queue, status, transcript string
		sipp                      *peers.SIPp
	}{
		{"billing", "Call ended: The line is busy", "Call failed: The line is busy", busy},
		{"sales", "Call ended: The phone is unavailable right now", "Call failed: The phone is unavailable right now", down},
		{"support", "Call ended: Nobody answered", "Call failed: Nobody answered", noAnswer},
		// No agent phone and no queue number: the gateway refuses (no_destination).
		{"nobody", "Call ended: Nobody can take a call yet", "", nil},
	} {
		t.Run(tc.queue, func(t *testing.T) {
			customer, _ := openShopWidget(t, hs, "customer "+tc.queue, tc.queue, "", "Hello from "+tc.queue)
			customer.click("voice-start")
			if tc.queue == "support" {
				// Before the phone rings: whom we call; then ringing, with
				// ringback in the customer's ear (425 Hz at -12 dBFS, one second
				// on and four off, so the window may catch part of a pause).
				customer.waitText("call-status", "Calling the support team…")
				customer.waitCall("ringing")
				customer.waitText("call-status", "Ringing…")
				expectHeard(t, "the ringing customer", customer.measureHeard(600), 425, -30, -8)
			}
			st := customer.waitCall("failed")
			if st.Text != tc.status {
				t.Errorf("call-status says %q, want %q", st.Text, tc.status)
			}
			if tc.transcript != "" {
				customer.waitMessage(tc.transcript)
			}
			customer.send("Then I will write")
			customer.waitMessage("Then I will write")
			waitJS[bool](customer, "the mic button again", fn("", `const b = q('voice-start'); return !b.hidden && !b.disabled && q('call-bar').hidden;`))
			if tc.sipp != nil {
				waitSIPp(t, tc.sipp)
			}
		})
	}
	if out := g.Log(); !strings.Contains(out, "voice: ended") {
		t.Errorf("the gateway logged no call end")
	}
}

// TestVoiceButtonNeedsVoice: a gateway without trunks says features.voice
// false, and the widget shows no mic button.
func TestVoiceButtonNeedsVoice(t *testing.T) {
	g := startGateway(t)
	customer := openWidget(t, g, "customer")
	customer.send("Text only, please")
	customer.waitMessage("Text only, please")
	customer.waitText("call-status", "Connected")
	if shown := call[bool](customer, fn("", `const b = q('voice-start'); return !!b && !b.hidden;`)); shown {
		t.Error("the mic button shows on a gateway without voice")
	}
}
