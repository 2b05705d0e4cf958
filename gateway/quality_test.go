package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/webrtc"
)

// TestQualityCountsGatewayDrops checks that frames the gateway failed to
// carry weigh on the call's loss and MOS like network loss, per direction.
func TestQualityCountsGatewayDrops(t *testing.T) {
	clean := sip.MediaStats{PacketsSent: 1000, PacketsReceived: 1000, JitterMs: 2}
	tests := []struct {
		name        string
		sip         sip.MediaStats
		web         *webrtc.Stats
		toPhone     uint64
		toCustomer  uint64
		gwLoss      float64
		mosBelow    float64 // 0: a clean call
		mosAtLeast  float64
		networkLoss float64
	}{
		{name: "clean", sip: clean, mosAtLeast: 4.2},
		{name: "clock stalls toward the phone", sip: with(clean, func(s *sip.MediaStats) { s.PacketsSent, s.FramesSkippedSend = 840, 160 }),
			toPhone: 160, gwLoss: 16, mosBelow: 3},
		{name: "send queue overflow", sip: with(clean, func(s *sip.MediaStats) { s.FramesDroppedSend = 50 }),
			toPhone: 50, gwLoss: 5, mosBelow: 3.9},
		{name: "jitter buffer sheds toward the customer", sip: with(clean, func(s *sip.MediaStats) { s.FramesDroppedReceive = 160 }),
			toCustomer: 160, gwLoss: 16, mosBelow: 3},
		{name: "browser leg drops", sip: clean, web: &webrtc.Stats{
			Inbound:  webrtc.StreamStats{Packets: 1000, Dropped: 40},
			Outbound: webrtc.StreamStats{Packets: 970, Skipped: 30, Dropped: 20}},
			toPhone: 40, toCustomer: 50, gwLoss: 5, mosBelow: 3.9},
		{name: "network loss from the browser", sip: clean, web: &webrtc.Stats{
			Inbound: webrtc.StreamStats{Packets: 900, Lost: 100, FractionLost: 0.1}, Outbound: webrtc.StreamStats{Packets: 1000}},
			mosBelow: 3.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := qualityOf(tc.sip, tc.web)
			if q.FramesDroppedToPhone != tc.toPhone || q.FramesDroppedToCustomer != tc.toCustomer {
				t.Errorf("dropped to phone %d, to customer %d; want %d and %d", q.FramesDroppedToPhone, q.FramesDroppedToCustomer, tc.toPhone, tc.toCustomer)
			}
			if d := q.GatewayLossPercent - tc.gwLoss; d > 0.01 || d < -0.01 {
				t.Errorf("gateway loss %.2f %%, want %.2f %%", q.GatewayLossPercent, tc.gwLoss)
			}
			if tc.mosBelow > 0 && q.MOS >= tc.mosBelow {
				t.Errorf("MOS %.2f, want below %.2f", q.MOS, tc.mosBelow)
			}
			if tc.mosAtLeast > 0 && q.MOS < tc.mosAtLeast {
				t.Errorf("MOS %.2f, want at least %.2f", q.MOS, tc.mosAtLeast)
			}
		})
	}
}

// TestQualityBrowserConcealment checks that the browser leg's concealed
// frames reach the record with, apart, those rebuilt from the customer's
// in-band FEC, under their JSON keys.
func TestQualityBrowserConcealment(t *testing.T) {
	q := qualityOf(sip.MediaStats{PacketsSent: 500, PacketsReceived: 500}, &webrtc.Stats{
		Inbound: webrtc.StreamStats{Packets: 450, Lost: 50, FractionLost: 0.1, Concealed: 52, Recovered: 44}})
	if q.BrowserConcealed != 52 || q.BrowserFECRecovered != 44 {
		t.Errorf("browser concealed %d, from FEC %d; want 52 and 44", q.BrowserConcealed, q.BrowserFECRecovered)
	}
	b, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"browser_concealed":52`, `"browser_fec_recovered":44`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("record %s lacks %s", b, want)
		}
	}
}

// TestQualityOpusFEC checks that the share of frames coded toward the
// browser with FEC on, and the encoder's changes of effort, reach the
// record under their JSON keys; without an Opus encoder both are 0.
func TestQualityOpusFEC(t *testing.T) {
	q := qualityOf(sip.MediaStats{PacketsSent: 500, PacketsReceived: 500}, &webrtc.Stats{
		Outbound: webrtc.StreamStats{Packets: 500, Encoded: 480, FEC: 120, EffortSwitches: 3}})
	if q.FECPercentToCustomer != 25 || q.FECSwitchesToCustomer != 3 {
		t.Errorf("FEC %.1f %% with %d switches, want 25 %% and 3", q.FECPercentToCustomer, q.FECSwitchesToCustomer)
	}
	b, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"fec_percent_to_customer":25`, `"fec_switches_to_customer":3`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("record %s lacks %s", b, want)
		}
	}
	q = qualityOf(sip.MediaStats{PacketsSent: 500}, &webrtc.Stats{Codec: "PCMU", Outbound: webrtc.StreamStats{Packets: 500}})
	if q.FECPercentToCustomer != 0 || q.FECSwitchesToCustomer != 0 {
		t.Errorf("PCMU toward the browser: FEC %.1f %%, %d switches; want 0", q.FECPercentToCustomer, q.FECSwitchesToCustomer)
	}
}

func with(s sip.MediaStats, f func(*sip.MediaStats)) sip.MediaStats {
	f(&s)
	return s
}

// TestGatewayDropsRecorded checks that frames the phone leg failed to send
// reach the call record, the transcript's voice.ended and the metrics.
func TestGatewayDropsRecorded(t *testing.T) {
	phone := newFakeLeg()
	phone.drops = sip.MediaStats{PacketsSent: 900, FramesSkippedSend: 70, FramesDroppedSend: 30, FramesDroppedReceive: 12}
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	e := voiceServer(t, phones, &fakePeers{}, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	cws.send(map[string]any{"type": "voice.hangup"})
	c := waitCall(t, cws, callEnded)
	if c.Quality == nil || c.Quality.FramesDroppedToPhone != 100 || c.Quality.FramesDroppedToCustomer != 12 || c.Quality.GatewayLossPercent < 9 {
		t.Fatalf("ended call's quality: %+v", c.Quality)
	}

	calls, err := e.st.Calls(context.Background(), id)
	if err != nil || len(calls) != 1 {
		t.Fatalf("call records: %+v %v", calls, err)
	}
	var rec quality
	if err := json.Unmarshal(calls[0].Stats, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.FramesDroppedToPhone != 100 || rec.FramesDroppedToCustomer != 12 || rec.GatewayLossPercent != c.Quality.GatewayLossPercent || rec.MOS >= 3.9 {
		t.Errorf("call record quality: %+v", rec)
	}

	metrics := e.metricsText()
	for _, want := range []string{
		`segue_media_frames_dropped_total{direction="send",leg="sip",reason="clock_stall"} 70`,
		`segue_media_frames_dropped_total{direction="send",leg="sip",reason="queue_overflow"} 30`,
		`segue_media_frames_dropped_total{direction="receive",leg="sip",reason="jitter_drop"} 12`,
		`segue_media_frames_dropped_total{direction="send",leg="webrtc",reason="clock_stall"} 0`,
		`segue_call_gateway_loss_percent_count 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestBrowserDropsRecorded checks that the frames the browser leg's
// receive jitter buffer shed (they never reach the phone) and those its
// send clock skipped or its queue dropped (they never reach the customer)
// are in the call record, so that the record's frames_dropped_to_* add up
// to segue_media_frames_dropped_total, series by series.
func TestBrowserDropsRecorded(t *testing.T) {
	phone := newFakeLeg()
	phone.drops = sip.MediaStats{PacketsSent: 900, FramesSkippedSend: 7, FramesDroppedSend: 3, FramesDroppedReceive: 5}
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	peers := &fakePeers{stats: &webrtc.Stats{
		Inbound:  webrtc.StreamStats{Packets: 1000, Dropped: 165},
		Outbound: webrtc.StreamStats{Packets: 950, Skipped: 40, Dropped: 11},
	}}
	e := voiceServer(t, phones, peers, nil)
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	cws.send(map[string]any{"type": "voice.hangup"})
	c := waitCall(t, cws, callEnded)
	// Toward the phone: the SIP leg's 7 + 3 and the browser leg's 165
	// jitter drops; toward the customer: the SIP leg's 5 jitter drops and
	// the browser leg's 40 + 11.
	const toPhone, toCustomer = 175, 56
	if c.Quality == nil || c.Quality.FramesDroppedToPhone != toPhone || c.Quality.FramesDroppedToCustomer != toCustomer {
		t.Fatalf("ended call's quality: %+v, want %d frames dropped toward the phone and %d toward the customer", c.Quality, toPhone, toCustomer)
	}
	calls, err := e.st.Calls(context.Background(), id)
	if err != nil || len(calls) != 1 {
		t.Fatalf("call records: %+v %v", calls, err)
	}
	var rec quality
	if err := json.Unmarshal(calls[0].Stats, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.FramesDroppedToPhone != toPhone || rec.FramesDroppedToCustomer != toCustomer {
		t.Errorf("call record: %d frames dropped toward the phone, %d toward the customer; want %d and %d",
			rec.FramesDroppedToPhone, rec.FramesDroppedToCustomer, toPhone, toCustomer)
	}
	metrics := e.metricsText()
	for _, want := range []string{
		`segue_media_frames_dropped_total{direction="receive",leg="webrtc",reason="jitter_drop"} 165`,
		`segue_media_frames_dropped_total{direction="send",leg="webrtc",reason="clock_stall"} 40`,
		`segue_media_frames_dropped_total{direction="send",leg="webrtc",reason="queue_overflow"} 11`,
		`segue_media_frames_dropped_total{direction="receive",leg="sip",reason="jitter_drop"} 5`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	sum := 0.0
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "segue_media_frames_dropped_total{") {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				sum += v
			}
		}
	}
	if sum != toPhone+toCustomer {
		t.Errorf("segue_media_frames_dropped_total sums %v, the record's frames_dropped_to_* %d", sum, toPhone+toCustomer)
	}
}

// TestVoiceEndedAfterIgnoredBye checks that a phone leg whose hang-up
// outlasts the teardown's time (a PBX that ignores BYE) does not cost the
// transcript the call's voice.ended.
func TestVoiceEndedAfterIgnoredBye(t *testing.T) {
	old := eventTimeout
	eventTimeout = time.Second
	t.Cleanup(func() { eventTimeout = old })
	phone := newFakeLeg()
	phone.closeDelay = eventTimeout + 500*time.Millisecond
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	e := voiceServer(t, phones, &fakePeers{}, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	cws.send(map[string]any{"type": "voice.hangup"})
	waitCall(t, cws, callEnded)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ms, err := e.st.Messages(context.Background(), id, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Event == "voice.ended" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("voice.ended not stored")
}
