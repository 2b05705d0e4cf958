package webrtc

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"
)

// FuzzReceive feeds arbitrary payloads, as Opus and as PCMU from the
// browser, through the receive chain: nothing may panic, and only a codec
// panic (recovered) may end the peer.
func FuzzReceive(f *testing.F) {
	f.Add([]byte{}, false)
	f.Add([]byte{0xfc, 0xff, 0xfe}, false) // Opus TOC claiming a frame with no data
	f.Add([]byte{0x03, 0x00}, false)       // code 3 with a zero frame count
	f.Add([]byte{0x7b, 0x41, 0x00, 0xff, 0x80}, false)
	f.Add(make([]byte, 1275), false)
	f.Add([]byte{0xff, 0x7f, 0x00}, true)
	f.Fuzz(func(t *testing.T, payload []byte, pcmu bool) {
		e, err := New(Config{}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(0, 0)
		e.opts.now = func() time.Time { return now }
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		p := &Peer{e: e, log: e.log, ctx: ctx, cancel: cancel, in: newAudioIn(), out: newDiscardSwitch()}
		c := benchCodecs[0].params
		if pcmu {
			c = benchCodecs[1].params
		}
		rx, err := p.newRx(c)
		if err != nil {
			t.Fatal(err)
		}
		p.rx.Store(rx)
		for i := range 8 {
			rx.jitter.Push(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i) * 960, SSRC: 9}, Payload: payload})
			p.recvTick()
			now = now.Add(frameDur)
		}
	})
}

// FuzzAnswer feeds arbitrary offers to Answer: it must return an error or
// an answer, never panic.
func FuzzAnswer(f *testing.F) {
	me := &pwebrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		f.Fatal(err)
	}
	pc, err := pwebrtc.NewAPI(pwebrtc.WithMediaEngine(me)).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(pwebrtc.RTPCodecTypeAudio); err != nil {
		f.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromKind(pwebrtc.RTPCodecTypeVideo); err != nil {
		f.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		f.Fatal(err)
	}
	if err := pc.Close(); err != nil {
		f.Fatal(err)
	}
	f.Add(offer.SDP)
	f.Add("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
	f.Add("")
	e, err := New(Config{}, slog.New(slog.DiscardHandler), WithLoopbackOnly())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sdp string) {
		p, err := e.NewPeer(context.Background(), PeerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ans, err := p.Answer(context.Background(), sdp)
		if err == nil && ans == "" {
			t.Error("Answer returned neither an answer nor an error")
		}
	})
}
