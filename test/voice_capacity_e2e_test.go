//go:build e2e

package test

import (
	"strconv"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestVoicePastCapacity: with limits.max_calls: 1 and one call up (a pion
// customer talking to a SIPp PBX that echoes its RTP), a second customer's
// widget says all lines are busy and its chat goes on, a PBX's INVITE into
// that conversation gets 503 with Retry-After: 60, and the first call's
// audio goes on untouched. Once the first call ends, the second customer
// can call.
func TestVoicePastCapacity(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_context.xml", "127.0.0.1", "-m", "2", "-rtp_echo")
	hs := newHostSite(t)
	sipPort := peers.FreeUDPPort(t, "127.0.0.1")
	g := hs.startGateway(t, voiceConfig{
		trunks:  []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues:  []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
		sipPort: sipPort,
	}, withYAML("", "", "", "  max_calls: 1\n"))

	// The first customer's call takes the only line.
	first, _ := g.newConversation(t, "Ann Lee")
	w := customerWS(t, g, first.token)
	b := newBrowser(t, 1000)
	w.send(map[string]any{"type": "voice.start", "id": "v:1", "sdp": b.offer(t)})
	for connected := false; !connected; {
		f, err := w.read()
		if err != nil {
			t.Fatalf("waiting for the first call: %v", err)
		}
		if b.signalled(t, f) {
			continue
		}
		switch f.typ() {
		case "error":
			t.Fatalf("the first call was refused: %v", f)
		case "call":
			c, _ := f["call"].(map[string]any)
			connected = c["state"] == "connected"
		}
	}
	echoHeard := func(when string) {
		t.Helper()
		time.Sleep(1500 * time.Millisecond)
		pcm := lastOf(b.heard, time.Second)
		f, db := audiotest.PeakFrequency(pcm, 8000), audiotest.Level(pcm)
		t.Logf("%s the first customer heard %.0f Hz at %.1f dBFS", when, f, db)
		if f < 990 || f > 1010 || db < -16 || db > -1 {
			t.Fatalf("%s the first customer heard %.0f Hz at %.1f dBFS, want its 1000 Hz echo", when, f, db)
		}
	}
	echoHeard("before the refusal")

	// The second customer, in the widget, is told all lines are busy.
	customer, convID := openShopWidget(t, hs, "customer", "support", "", "Can I call you?")
	customer.click("voice-start")
	customer.waitText("call-status", "All lines are busy, please try again in a minute.")
	customer.waitMessageContaining("all lines are busy")
	customer.send("Then I will write")
	customer.waitMessage("Then I will write")

	// The PBX calling into that conversation gets 503 with Retry-After.
	uac := peers.StartSIPp(t, "sipp/uac_conv_busy.xml", "127.0.0.1", "-set", "conv", convID, "-m", "1", "127.0.0.1:"+strconv.Itoa(sipPort))
	waitSIPp(t, uac)

	echoHeard("after the refusals")
	if n := metricsOf(t, g)[`segue_calls_refused_total{reason="max_calls"}`]; n < 1 {
		t.Errorf("segue_calls_refused_total{reason=\"max_calls\"} = %v, want at least 1", n)
	}

	// The line comes back when the first call ends.
	w.send(map[string]any{"type": "voice.hangup", "id": "v:2"})
	for ended := false; !ended; {
		c, _ := w.expect("call")["call"].(map[string]any)
		ended = c["state"] == "ended"
	}
	customer.click("voice-start")
	customer.waitCall("connected")
	customer.click("hangup")
	customer.waitCall("ended")
	waitSIPp(t, pbx)
}
