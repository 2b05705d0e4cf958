package webrtc_test

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/webrtc"
)

// signal stands for the gateway's WebSocket toward one browser.
type signal interface {
	Send(kind string, payload any)
}

// phone stands for the other leg of the call, a SIP call.
type phone interface {
	AudioIn() transcode.PCMWriter
	SwapAudioOut(w transcode.PCMWriter) transcode.PCMWriter
	SendDTMF(ctx context.Context, digits string) error
}

// Example shows how a gateway wires a browser's voice call: signalling over
// its own WebSocket, audio bridged to a phone leg as 8 kHz PCM.
func Example() {
	ctx := context.Background()
	cfg := webrtc.Config{}
	cfg.ApplyDefaults()
	eng, err := webrtc.New(cfg, slog.Default())
	if err != nil {
		return
	}

	var ws signal // the conversation's WebSocket
	var sip phone // the agent's desk phone, once answered
	if ws == nil || sip == nil {
		return // a sketch: nothing to connect to here
	}
	peer, err := eng.NewPeer(ctx, webrtc.PeerOptions{
		Name:           "conv-42/customer",
		OnICECandidate: func(c webrtc.ICECandidateInit) { ws.Send("candidate", c) },
		OnStateChange:  func(s webrtc.State) { ws.Send("call-status", s.String()) },
		OnDTMF: func(d rune) {
			go func() { _ = sip.SendDTMF(ctx, string(d)) }() // callbacks must not block
		},
	})
	if err != nil {
		return
	}
	defer peer.Close()

	// The browser's {"type":"offer","sdp":...} frame:
	var offerSDP string
	answer, err := peer.Answer(ctx, offerSDP)
	if err != nil {
		return
	}
	ws.Send("answer", answer)

	// Each {"type":"candidate","candidate":{...}} frame:
	var raw json.RawMessage
	var c webrtc.ICECandidateInit
	if json.Unmarshal(raw, &c) == nil {
		_ = peer.AddICECandidate(c)
	}

	// Both legs carry 8 kHz PCM: no resampler is needed.
	if old := peer.SwapAudioOut(sip.AudioIn()); old != nil {
		old.Close()
	}
	if old := sip.SwapAudioOut(peer.AudioIn()); old != nil {
		old.Close()
	}

	<-peer.Done() // the browser hung up, or its network failed for good
	_ = peer.Err()
}
