//go:build e2e

package test

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// deskTone is what the agent's desk phone says into every call.
const deskToneHz = 440.0

// startBaresipPhone runs baresip as Alice's desk phone (extension 1001),
// playing a 440 Hz tone and recording what it hears. The tone lasts 60 s,
// longer than any call of the tests (voice then video is the longest).
func startBaresipPhone(t *testing.T) *peers.Baresip {
	t.Helper()
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, deskToneHz, 0.5, 60*time.Second), 8000); err != nil {
		t.Fatal(err)
	}
	return peers.StartBaresip(t, "127.0.0.1", "1001", src)
}

func baresipTrunk(phone *peers.Baresip) voiceTrunk {
	return voiceTrunk{name: "pbx", addr: strings.TrimPrefix(phone.URI(), "sip:1001@")}
}

// toDeskPhone is a voice set-up where the support queue's calls go to
// Alice's desk phone, baresip's phone.
func toDeskPhone(phone *peers.Baresip) voiceConfig {
	return voiceConfig{
		trunks:     []voiceTrunk{baresipTrunk(phone)},
		queues:     []voiceQueue{{name: "support", trunk: "pbx"}},
		alicePhone: phone.URI(),
	}
}

// withQueueNumber is toDeskPhone's set-up with the support queue's number
// (600) behind the same trunk, for calls with no agent assigned.
func withQueueNumber(vc voiceConfig) voiceConfig {
	vc.queues[0].dial = "sip:600@" + vc.trunks[0].addr
	return vc
}

// TestVoiceWidgetToDeskPhone: Chromium's widget calls Alice's desk phone
// (baresip) from an open chat. Both directions carry the right tone at a
// sane level, the chat goes on during the call, keypad digits reach the
// phone as RFC 4733 events, the console shows the call, and the customer's
// hang-up ends the phone call but not the chat.
func TestVoiceWidgetToDeskPhone(t *testing.T) {
	phone := startBaresipPhone(t)
	hs := newHostSite(t)
	g := hs.startGateway(t, withQueueNumber(toDeskPhone(phone)))

	customer, agent, _ := shopChat(t, hs, g, "", "My heat pump is making a noise")

	customer.click("voice-start")
	// The desk phone answers at once, so "Calling Alice's phone…" is only
	// seen in the transcript here (the failure tests see it on the status line).
	customer.waitMessage("Calling Alice's phone")
	st := customer.waitCall("connected")
	if !strings.HasPrefix(st.Text, "Connected 00:0") {
		t.Errorf("connected call shows %q, want Connected 00:0x", st.Text)
	}
	// The transcript shows the call to both sides.
	customer.waitMessage("Call connected")
	agent.waitMessage("Call connected")
	waitJS[bool](agent, "the console's call bar", fn("", `const s = document.querySelector('#callbar [data-testid="call-status"]');
return !!s && s.dataset.callState === 'connected' && s.textContent.startsWith('Connected') && !document.getElementById('callbar').hidden;`))
	waitJS[bool](agent, "the console's codec", fn("", `return /PCM[UA]/.test(q('call-quality')?.textContent ?? '');`))

	// What the customer hears: the desk phone's 440 Hz.
	time.Sleep(500 * time.Millisecond)
	expectHeard(t, "the customer's page", customer.measureHeard(2000), deskToneHz, -16, -1)

	// The browser coming back online restarts ICE (rtc.offer with new ICE
	// credentials, answered by the gateway); the audio goes on.
	const ufrags = `() => { const pc = document.querySelector('segue-widget').voice.pc;
const u = (d) => (d?.sdp.match(/a=ice-ufrag:(\S+)/) ?? [])[1] ?? '';
return {local: u(pc?.localDescription), remote: u(pc?.remoteDescription), ice: pc?.iceConnectionState ?? ''}; }`
	type iceCreds struct{ Local, Remote, ICE string }
	before := call[iceCreds](customer, ufrags)
	if before.Remote == "" || before.Local == "" {
		t.Fatalf("no ICE credentials in the descriptions: %+v", before)
	}
	call[bool](customer, `() => dispatchEvent(new Event('online'))`)
	waitJS[bool](customer, "the ICE restart", fmt.Sprintf(`() => { const c = (%s)(); const b = %s;
return c.local !== b.local && c.remote !== '' && c.remote !== b.remote && (c.ice === 'connected' || c.ice === 'completed'); }`, ufrags, mustJSON(before)))
	if st := customer.callStatus(); st.State != "connected" {
		t.Errorf("after the ICE restart the call is %q (%q)", st.State, st.Text)
	}
	time.Sleep(300 * time.Millisecond)
	expectHeard(t, "the customer's page after an ICE restart", customer.measureHeard(1200), deskToneHz, -16, -1)

	// A connection that fails restarts ICE too, without any online
	// event. Loopback cannot be made to fail cheaply, so the page's
	// peer connection reports "failed" for the one state change the
	// widget reads, and is itself again for the restart.
	before = call[iceCreds](customer, ufrags)
	call[bool](customer, `() => { const pc = document.querySelector('segue-widget').voice.pc;
Object.defineProperty(pc, 'iceConnectionState', {get: () => 'failed', configurable: true});
pc.dispatchEvent(new Event('iceconnectionstatechange'));
delete pc.iceConnectionState;
return true; }`)
	waitJS[bool](customer, "the ICE restart after a failure", fmt.Sprintf(`() => { const c = (%s)(); const b = %s;
return c.local !== b.local && c.remote !== '' && c.remote !== b.remote && (c.ice === 'connected' || c.ice === 'completed'); }`, ufrags, mustJSON(before)))
	if st := customer.callStatus(); st.State != "connected" {
		t.Errorf("after the ICE restart on failure the call is %q (%q)", st.State, st.Text)
	}

	// The chat goes on during the call, both ways.
	customer.send("Can you hear me?")
	agent.waitMessage("Can you hear me?")
	agent.send("Yes, loud and clear.")
	customer.waitMessage("Yes, loud and clear.")

	// Keypad: a toggle that shows the pad; digits go to the phone.
	customer.click("keypad")
	waitJS[bool](customer, "the keypad", fn("", `return !q('keypad-pad').hidden;`))
	for _, d := range []string{"4", "2", "#"} {
		waitJS[bool](customer, "key "+d, fn("d", `const k = root().querySelector('[data-testid="keypad-key"][data-digit="' + d + '"]'); if (!k) return false; k.click(); return true;`), d)
		time.Sleep(250 * time.Millisecond)
	}
	customer.waitText("keypad-digits", "42#")
	waitFor(t, "baresip to report the digits", func() error {
		out := phone.Output()
		for _, d := range []string{"4", "2", "#"} {
			if !strings.Contains(out, "received event: '"+d+"' (end=1)") {
				return fmt.Errorf("baresip has not reported DTMF %q yet", d)
			}
		}
		return nil
	})

	// The console sees live quality from the call frames (every 5 s).
	waitJS[bool](agent, "the console's quality figures", fn("", `const s = document.querySelector('#callbar [data-testid="call-status"]');
return s?.dataset.mos > 3.5 && /MOS/.test(q('call-quality')?.textContent ?? '');`))

	// The customer hangs up: the desk phone's call ends, the chat does not.
	customer.click("hangup")
	st = customer.waitCall("ended")
	if st.Text != "Call ended: You hung up" || st.EndedBy != "customer" {
		t.Errorf("after hang-up the status says %q (ended by %q)", st.Text, st.EndedBy)
	}
	waitFor(t, "baresip to see the call end", func() error {
		if out := phone.Output(); !strings.Contains(out, "terminated") && !strings.Contains(out, "BYE") {
			return fmt.Errorf("baresip output has no end of call yet")
		}
		return nil
	})
	waitJS[bool](agent, "the console's ended call", fn("", `const s = document.querySelector('#callbar [data-testid="call-status"]');
return s?.dataset.callState === 'ended' && s.textContent === 'Call ended: The customer hung up';`))
	customer.send("Thanks, bye")
	agent.waitMessage("Thanks, bye")
	waitJS[bool](customer, "the mic button again", fn("", `const b = q('voice-start'); return !b.hidden && !b.disabled;`))

	// What the desk phone heard: the page's 1 kHz microphone.
	pcm, rate := baresipHeard(t, phone.Recordings, time.Second, 2*time.Second)
	t.Logf("the desk phone heard %.0f Hz at %.1f dBFS", audiotest.PeakFrequency(pcm, rate), audiotest.Level(pcm))
	if f := audiotest.PeakFrequency(pcm, rate); math.Abs(f-voiceMicHz) > 10 {
		t.Errorf("the desk phone heard a peak at %.0f Hz, want %.0f", f, voiceMicHz)
	}
	if l := audiotest.Level(pcm); l < -14 || l > -2 {
		t.Errorf("the desk phone heard %.1f dBFS, want about -6", l)
	}
	noCSPViolations(t, customer, agent)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func peakOf(pcm []int16, rate int) float64 { return audiotest.PeakFrequency(pcm, rate) }
func levelOf(pcm []int16) float64          { return audiotest.Level(pcm) }
