//go:build e2e

package test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
)

// pionCallEnd starts a call from a new pion customer of g's support queue
// and waits until it has a final state (ended or failed), which it
// returns with the cause code and words. The customer's microphone plays
// 1 kHz.
func pionCallEnd(t *testing.T, g *gateway) (state, code, words string, took time.Duration) {
	t.Helper()
	v := g.visitor(t, "127.0.0.1")
	_, token := v.newConversation("Ann")
	ann := newRTCPeer(t, v.socket(token), "", rtcOptions{toneHz: 1000})
	start := time.Now()
	if c := ann.offer("voice.start"); c != "" {
		t.Fatalf("voice.start: %s", c)
	}
	waitFor(t, "the call's end", func() error {
		if s := ann.state(); s != "ended" && s != "failed" {
			return fmt.Errorf("call %q", s)
		}
		return nil
	})
	code, words = ann.cause()
	return ann.state(), code, words, time.Since(start)
}

// TestVoicePBXUnreachable: the trunk's host takes the INVITE and never
// answers (a PBX that is down behind a host dropping the packets). With
// trunks[].invite_timeout at 2s the customer is told that the phone line
// did not answer within that time rather than after Timer B's 32 s; the
// admin gets a warning and the unreachable cause in the metrics.
func TestVoicePBXUnreachable(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	addr := pc.LocalAddr().String()
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: addr}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + addr}},
	}, withYAML("", "    invite_timeout: 2s\n", "", ""))
	state, code, words, took := pionCallEnd(t, g)
	t.Logf("a call to a silent PBX failed %v after voice.start (invite_timeout 2s): %s, %q", took.Round(100*time.Millisecond), code, words)
	if state != "failed" || code != "unreachable" || words != "The phone line did not answer" {
		t.Errorf("the call ended %s, cause %q, %q", state, code, words)
	}
	if took > 8*time.Second {
		t.Errorf("the customer waited %v, past the 2s invite_timeout", took)
	}
	if !strings.Contains(g.Log(), "no response to the INVITE") {
		t.Error("no warning about the silent PBX in the log")
	}
	if n := metricsOf(t, g)[`segue_calls_ended_total{cause="unreachable"}`]; n != 1 {
		t.Errorf(`segue_calls_ended_total{cause="unreachable"} = %v, want 1`, n)
	}
}

// TestVoicePBXLosesTheDialog: the PBX answers, makes the gateway the
// session refresher with a 2 s session timer, and answers the refresh
// with 481 (it restarted and lost the dialog). The call ends on the
// customer's side with words for it and the dialog_lost cause, without a
// BYE into the lost dialog (SIPp would fail the scenario).
func TestVoicePBXLosesTheDialog(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_refresh_481.xml", "127.0.0.1", "-m", "1")
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
	})
	state, code, words, took := pionCallEnd(t, g)
	t.Logf("a call whose PBX lost the dialog ended %v after voice.start: %s, %q", took.Round(100*time.Millisecond), code, words)
	if state != "ended" || code != "dialog_lost" || words != "The phone system lost the call" {
		t.Errorf("the call ended %s, cause %q, %q", state, code, words)
	}
	waitSIPp(t, pbx)
	if !strings.Contains(g.Log(), "session refresh refused") {
		t.Error("no warning about the refused refresh in the log")
	}
	if n := metricsOf(t, g)[`segue_calls_ended_total{cause="dialog_lost"}`]; n != 1 {
		t.Errorf(`segue_calls_ended_total{cause="dialog_lost"} = %v, want 1`, n)
	}
}
