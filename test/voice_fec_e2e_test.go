//go:build e2e

package test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestVoiceFECTowardALossyBrowser: with webrtc.opus_complexity at its
// default (auto), the gateway codes the desk phone's audio toward the
// customer's Chromium at the cheap effort, without FEC, while Chromium's
// receiver reports show no loss; once iptables (in a network namespace
// of the test's own) drops a tenth of the gateway's RTP toward the page,
// Chromium reports the loss and the encoder turns in-band FEC on. The page
// still hears the desk phone's tone, and the call record shows the share
// of frames coded with FEC and the switch.
func TestVoiceFECTowardALossyBrowser(t *testing.T) {
	if !inNetNS(t) {
		return
	}
	phone := startBaresipPhone(t)
	hs := newHostSite(t)
	g := hs.startGateway(t, withQueueNumber(toDeskPhone(phone)))
	customer, _, convID := shopChat(t, hs, g, "", "Can we talk?")
	customer.click("voice-start")
	customer.waitCall("connected")

	// Without loss, Chromium's reports (every few seconds) keep the
	// encoder cheap.
	time.Sleep(6 * time.Second)
	if m := metricsOf(t, g); m["segue_webrtc_opus_fec_active"] != 0 || m["segue_webrtc_opus_effort_switches_total"] != 0 {
		t.Fatalf("before any loss: FEC active on %v calls, %v switches", m["segue_webrtc_opus_fec_active"], m["segue_webrtc_opus_effort_switches_total"])
	}

	counts := impair(t, []string{fmt.Sprintf("%d:%d", g.ICERange[0], g.ICERange[1])}, 10)
	lossFrom := time.Now()
	waitFor(t, "the encoder toward the page to code FEC", func() error {
		if m := metricsOf(t, g); m["segue_webrtc_opus_fec_active"] != 1 {
			return fmt.Errorf("FEC active on %v calls", m["segue_webrtc_opus_fec_active"])
		}
		return nil
	})
	t.Logf("FEC on %s after the loss began", time.Since(lossFrom).Round(100*time.Millisecond))
	time.Sleep(time.Second)
	expectHeard(t, "the customer's page through the loss", customer.measureHeard(2000), deskToneHz, -20, -1)
	sent, dropped := counts()
	t.Logf("iptables dropped %d of %d RTP packets toward the page", dropped, sent+dropped)
	if dropped == 0 || sent < 100 {
		t.Fatalf("iptables dropped %d of %d packets toward the page", dropped, sent+dropped)
	}

	customer.click("hangup")
	customer.waitCall("ended")
	alice := g.login(t, "alice")
	var out struct {
		Calls []struct {
			Quality map[string]float64 `json:"quality"`
		} `json:"calls"`
	}
	waitFor(t, "the call record", func() error {
		alice.json(http.MethodGet, "/api/v1/conversations/"+convID+"/calls", nil, http.StatusOK, &out)
		if len(out.Calls) != 1 || out.Calls[0].Quality == nil {
			return fmt.Errorf("%d call records", len(out.Calls))
		}
		return nil
	})
	q := out.Calls[0].Quality
	t.Logf("call record: %.1f %% of the frames toward the customer with FEC, %v switches", q["fec_percent_to_customer"], q["fec_switches_to_customer"])
	if q["fec_switches_to_customer"] < 1 || q["fec_percent_to_customer"] <= 0 || q["fec_percent_to_customer"] >= 100 {
		t.Errorf("call record: FEC on %.1f %% of the frames with %v switches, want some but not all, after a switch", q["fec_percent_to_customer"], q["fec_switches_to_customer"])
	}
}
