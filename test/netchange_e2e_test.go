//go:build e2e

package test

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

// hearsTone reports whether the last 100 ms of pcm (8 kHz) is mostly the
// tone at hz.
func hearsTone(pcm []int16, hz float64) bool {
	if len(pcm) < 800 {
		return false
	}
	f := pcm[len(pcm)-800:]
	tone, all := audiotest.GoertzelLevel(f, 8000, hz), audiotest.Level(f)
	return tone > -20 && all-tone < 3
}

// TestVoiceCustomerChangesNetwork: a pion customer on a call to the desk
// phone (baresip) loses its network (127.0.0.1: the socket goes dead, as
// a Wi-Fi left behind), is without one for a second, then joins another
// (127.0.0.3) and restarts ICE over the documented API (rtc.offer with a
// new ufrag and password and the new address), as the widget does on the
// browser's `online` event. The
// customer hears the desk phone again, the phone hears the customer's
// 1 kHz tone again, the path runs over the new address, and the call
// record counts the gap in the customer's audio.
func TestVoiceCustomerChangesNetwork(t *testing.T) {
	phone := startBaresipPhone(t)
	g := startVoiceGateway(t, toDeskPhone(phone))
	alice := g.login(t, "alice")
	aliceWS := agentWS(t, g, alice)
	v := g.visitor(t, "127.0.0.1")
	conv, token := v.newConversation("Ann")
	aliceWS.accept(conv, "alice")
	const customerHz = 1000
	cn := newCustomerNet(t, "127.0.0.1", 0, 0)
	ann := newRTCPeer(t, v.socket(token), "", rtcOptions{toneHz: customerHz, net: cn})
	if code := ann.offer("voice.start"); code != "" {
		t.Fatalf("voice.start: %s", code)
	}
	waitFor(t, "the call connected", func() error {
		if s := ann.state(); s != "connected" {
			return fmt.Errorf("call %q", s)
		}
		return nil
	})
	waitFor(t, "the desk phone heard by the customer", func() error {
		if !hearsTone(ann.heard.Samples(), deskToneHz) {
			return fmt.Errorf("no %.0f Hz", deskToneHz)
		}
		return nil
	})
	time.Sleep(time.Second)

	cn.cut()
	const outage = time.Second
	time.Sleep(outage)
	frames := ann.heard.Frames()
	cn.move(t, "127.0.0.3")
	moved := time.Now()
	ann.restartICE.Store(true)
	if code := ann.offer("rtc.offer"); code != "" {
		t.Fatalf("the ICE restart offer: %s", code)
	}
	answered := time.Since(moved)
	var back time.Duration
	deadline := moved.Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ann.heard.Frames() > frames+5 && hearsTone(ann.heard.Samples(), deskToneHz) {
			back = time.Since(moved)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if back == 0 {
		t.Fatalf("the customer did not hear the desk phone again within 10 s of the network change")
	}
	pair, err := ann.pc.GetTransceivers()[0].Sender().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected candidate pair after the restart: %v", err)
	}
	if pair.Local.Address != "127.0.0.3" {
		t.Errorf("after the restart the customer sends from %s, want 127.0.0.3", pair.Local.Address)
	}
	time.Sleep(2 * time.Second)
	if err := sendFrame(context.Background(), ann.w, ann.frame(map[string]any{"type": "voice.hangup"})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the call ended", func() error {
		if s := ann.state(); s != "ended" {
			return fmt.Errorf("call %q", s)
		}
		return nil
	})

	// The desk phone hears the customer again: the last 1.5 s of its
	// recording, less the last 200 ms, is the 1 kHz tone.
	var rec []int16
	waitFor(t, "the desk phone's recording", func() error {
		heard, _ := phone.Recordings()
		if len(heard) == 0 {
			return fmt.Errorf("no recording")
		}
		pcm, _, err := audiotest.ReadWAVFile(heard[len(heard)-1])
		if err != nil || len(pcm) < 8000*3 {
			return fmt.Errorf("recording: %d samples, %v", len(pcm), err)
		}
		rec = pcm
		return nil
	})
	end := len(rec) - 1600
	tail := rec[end-12000 : end]
	if f := audiotest.PeakFrequency(tail, 8000); math.Abs(f-customerHz) > 15 {
		t.Errorf("after the network change the desk phone hears %.0f Hz, want %d", f, customerHz)
	}
	if l := audiotest.Level(tail); l < -16 || l > 0 {
		t.Errorf("after the network change the desk phone hears %.1f dBFS, want about -6", l)
	}

	var out struct {
		Calls []struct {
			Quality map[string]float64 `json:"quality"`
		} `json:"calls"`
	}
	alice.json("GET", "/api/v1/conversations/"+conv+"/calls", nil, 200, &out)
	if len(out.Calls) != 1 {
		t.Fatalf("%d call records", len(out.Calls))
	}
	q := out.Calls[0].Quality
	gap := time.Duration(q["browser_longest_gap_ms"]) * time.Millisecond
	t.Logf("network change after %v without a network: the ICE restart answered in %v, the customer hears the phone again %v after joining the new network; the gateway's record: %v gap(s), longest %v",
		outage, answered.Round(time.Millisecond), back.Round(10*time.Millisecond), q["browser_media_gaps"], gap)
	if q["browser_media_gaps"] != 1 || gap < outage || gap > outage+5*time.Second {
		t.Errorf("the call record shows %v gaps, longest %v, after %v without a network", q["browser_media_gaps"], gap, outage)
	}
	// A generous bound for a loaded machine: the aim is 2 s.
	if back > 5*time.Second {
		t.Errorf("audio back %v after the new network, want under 5 s", back)
	}
}
