package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	"github.com/segue-rtc/segue/webrtc"
)

// FuzzRTCCandidateFrame feeds arbitrary WebSocket frames, as a customer's
// rtc.candidate, through the gateway's frame parsing (inFrame, then
// parseCandidate) and the address filter of a real peer that has
// answered an offer: nothing may panic, and every refusal is an API
// error the client gets as an error frame, never an internal one. The
// engine runs in loopback test mode: no check leaves for another address.
func FuzzRTCCandidateFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"rtc.candidate","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
		`{"type":"rtc.candidate","candidate":{"candidate":"candidate:2 1 udp 1694498815 127.0.0.1 5000 typ srflx raddr 10.0.0.1 rport 9"}}`,
		`{"type":"rtc.candidate","candidate":{"candidate":"candidate:3 1 udp 2130706431 10.0.0.1 5000 typ host"}}`,
		`{"type":"rtc.candidate","candidate":{"candidate":"candidate:4 1 udp 2130706431 169.254.169.254 80 typ host"}}`,
		`{"type":"rtc.candidate","candidate":{"candidate":"candidate:5 1 udp 2130706431 ::ffff:127.0.0.3 5000 typ host","usernameFragment":"ab:cd"}}`,
		`{"type":"rtc.candidate","candidate":{"candidate":""}}`,
		`{"type":"rtc.candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 1 typ host"}`,
		`{"type":"rtc.candidate","candidate":null}`,
		`{"type":"rtc.candidate"}`,
	} {
		f.Add([]byte(s))
	}
	log := slog.New(slog.DiscardHandler)
	eng, err := webrtc.New(webrtc.Config{}, log, webrtc.WithLoopbackOnly())
	if err != nil {
		f.Fatal(err)
	}
	// The browser's offer comes from a second peer of another engine.
	other, err := webrtc.New(webrtc.Config{}, log, webrtc.WithLoopbackOnly())
	if err != nil {
		f.Fatal(err)
	}
	ctx := context.Background()
	browser, err := other.NewPeer(ctx, webrtc.PeerOptions{Name: "browser"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { browser.Close() })
	offer, err := browser.Offer(ctx, false)
	if err != nil {
		f.Fatal(err)
	}
	// One answered peer serves many inputs; it ends when ICE gives up
	// (nothing answers its checks), and is then made again.
	var p browserPeer
	live := func(t testing.TB) browserPeer {
		if p != nil {
			select {
			case <-p.Done():
				p.Close()
			default:
				return p
			}
		}
		var err error
		if p, err = (pionPeers{eng: eng}).NewPeer(ctx, "fuzz", peerHooks{candidate: func(json.RawMessage) {}, dtmf: func(rune) {}}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Answer(ctx, offer); err != nil {
			t.Fatal(err)
		}
		return p
	}
	live(f)
	f.Cleanup(func() { p.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		var fr inFrame
		if json.Unmarshal(data, &fr) != nil {
			return
		}
		p := live(t)
		err := p.AddICECandidate(fr.Candidate)
		select {
		case <-p.Done():
			return // ended meanwhile: the next input gets a new peer
		default:
		}
		if err != nil && !errors.As(err, new(*apiError)) {
			t.Errorf("candidate %s: %v is not an API error", fr.Candidate, err)
		}
	})
}
