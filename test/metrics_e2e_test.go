//go:build e2e

package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestMetricsMove: after a chat, a call to a desk phone (baresip) and a
// video session, the documented series of /metrics (admin listener)
// moved by what happened, and the admin /readyz lists the trunk's state.
func TestMetricsMove(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, deskToneHz, 0.5, time.Minute), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "1001", src)
	g := startVoiceGateway(t, toDeskPhone(phone))
	m0 := metricsOf(t, g)
	ctx := context.Background()

	// The chat: Ann writes, Alice accepts and answers.
	alice, bob := g.login(t, "alice"), g.login(t, "bob")
	aliceWS := agentWS(t, g, alice)
	annV := g.visitor(t, "127.0.0.2")
	annConv, annToken := annV.newConversation("Ann")
	ann := newRTCPeer(t, annV.socket(annToken), "", rtcOptions{toneHz: 1000})
	if err := sendFrame(ctx, ann.w, ann.frame(map[string]any{"type": "message", "id": "ann-1", "text": "Hello"})); err != nil {
		t.Fatal(err)
	}
	aliceWS.accept(annConv, "alice")
	aliceWS.send(map[string]any{"type": "message", "id": "alice-1", "conversation_id": annConv, "text": "Hi Ann"})

	// The call: Ann's mic rings Alice's desk phone; Ann hears it, then hangs up.
	if code := ann.offer("voice.start"); code != "" {
		t.Fatalf("voice.start: %s", code)
	}
	waitFor(t, "the call connected", func() error {
		if s := ann.state(); s != "connected" {
			return fmt.Errorf("call %q", s)
		}
		return nil
	})
	time.Sleep(1500 * time.Millisecond)
	if pcm := lastOf(ann.heard, time.Second); audiotest.PeakFrequency(pcm, 8000) < deskToneHz-10 || audiotest.PeakFrequency(pcm, 8000) > deskToneHz+10 {
		t.Errorf("Ann hears %.0f Hz, want the desk phone's %.0f", audiotest.PeakFrequency(pcm, 8000), deskToneHz)
	}
	if n := metricsOf(t, g)["segue_calls_active"]; n != 1 {
		t.Errorf("segue_calls_active = %v during the call, want 1", n)
	}
	if err := sendFrame(ctx, ann.w, ann.frame(map[string]any{"type": "voice.hangup"})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the call ended", func() error {
		if s := ann.state(); s != "ended" {
			return fmt.Errorf("call %q", s)
		}
		return nil
	})

	// The video: Bea's camera reaches Bob's console, which asks for key frames.
	beaV := g.visitor(t, "127.0.0.3")
	beaConv, beaToken := beaV.newConversation("Bea")
	agentWS(t, g, bob).accept(beaConv, "bob")
	bea := newRTCPeer(t, beaV.socket(beaToken), "", rtcOptions{})
	bea.camera("bea-camera", 30, 1000)
	if code := bea.offer("video.start"); code != "" {
		t.Fatalf("video.start: %s", code)
	}
	console := newRTCPeer(t, agentWS(t, g, bob), beaConv, rtcOptions{})
	console.camera("bob-camera", 10, 100)
	if code := console.offer("media.join"); code != "" {
		t.Fatalf("media.join: %s", code)
	}
	waitFor(t, "Bea's camera at Bob's console", func() error {
		if n := console.videoPackets(); n < 60 {
			return fmt.Errorf("%d packets", n)
		}
		return nil
	})
	m1 := metricsOf(t, g)

	moved := func(series string, want float64) {
		t.Helper()
		if d := m1[series] - m0[series]; d < want {
			t.Errorf("%s moved by %v, want at least %v", series, d, want)
		}
	}
	moved("segue_conversations_total", 2)
	moved(`segue_messages_total{kind="text",role="customer"}`, 1)
	moved(`segue_messages_total{kind="text",role="agent"}`, 1)
	moved(`segue_calls_total{outcome="ended_by_customer"}`, 1)
	moved("segue_call_setup_seconds_count", 1)
	moved("segue_call_loss_percent_count", 1)
	moved("segue_call_jitter_ms_count", 1)
	moved("segue_video_sessions_total", 1)
	moved("segue_video_relayed_packets_total", 60)
	moved("segue_video_relayed_bytes_total", 60*1000)
	moved("segue_video_pli_total", 1)
	for series, want := range map[string]float64{
		`segue_conversations_active{state="active"}`: 2,
		"segue_calls_active":                         0,
		"segue_video_sessions_active":                1,
		`segue_agents{state="available"}`:            2,
		`segue_trunk_calls_active{trunk="pbx"}`:      0,
	} {
		if got, ok := m1[series]; !ok || got != want {
			t.Errorf("%s = %v (exported %v), want %v", series, got, ok, want)
		}
	}
	if m1["segue_call_setup_seconds_sum"]-m0["segue_call_setup_seconds_sum"] <= 0 {
		t.Error("segue_call_setup_seconds_sum did not grow")
	}
	if _, ok := m1["segue_webrtc_nack_requested_total"]; !ok {
		t.Error("segue_webrtc_nack_requested_total is not exported")
	}

	res, err := http.Get(g.AdminURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "trunk pbx: ready") {
		t.Errorf("admin /readyz: %d\n%s", res.StatusCode, body)
	}
}
