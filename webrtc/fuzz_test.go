package webrtc

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
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

// FuzzAnswer feeds arbitrary offers to Answer, through the real peer
// construction and the browser limits (limits.go): it must return an
// error or an answer, never panic, and an offer it applied must keep to
// the limits: at most maxMediaSections sections, no m=application, one
// audio and two sent videos at most, and at most MaxRemoteCandidates
// remote addresses, each allowed by the address policy. The engine runs
// in loopback test mode, so no check leaves for another address.
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
	f.Add(withSectionAttr(offer.SDP, "audio", "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"+
		"a=candidate:2 1 udp 1694498815 127.0.0.1 5000 typ srflx raddr 10.0.0.1 rport 9\r\n"+
		"a=candidate:3 1 udp 2130706431 10.0.0.1 5000 typ host\r\n"+
		"a=candidate:4 1 udp 2130706431 169.254.169.254 80 typ host"))
	f.Add(offer.SDP + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sctp-port:5000\r\n")
	f.Add(withSectionAttr(offer.SDP, "video", "a=rid:h send\r\na=simulcast:send h"))
	f.Add(withSections(offer.SDP, 3, "sendonly"))
	f.Add("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n")
	f.Add("")
	e, err := New(Config{}, slog.New(slog.DiscardHandler), WithLoopbackOnly())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, offerSDP string) {
		p, err := e.NewPeer(context.Background(), PeerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		ans, err := p.Answer(context.Background(), offerSDP)
		if err != nil {
			if p.pc.RemoteDescription() != nil && errors.Is(err, ErrSDPRefused) {
				t.Error("a refused offer was applied")
			}
			return
		}
		if ans == "" {
			t.Error("Answer returned neither an answer nor an error")
		}
		applied := p.pc.RemoteDescription()
		if applied == nil {
			t.Fatal("Answer succeeded with no remote description")
		}
		if _, err := screenDescription(applied.SDP, e.policy, remoteGen{}); err != nil {
			t.Errorf("the applied offer breaks a limit: %v", err)
		}
		var sd sdp.SessionDescription
		if err := sd.UnmarshalString(applied.SDP); err != nil {
			t.Fatalf("the applied offer does not parse: %v", err)
		}
		seen := map[netip.AddrPort]bool{}
		for _, md := range sd.MediaDescriptions {
			for _, a := range md.Attributes {
				if a.Key != "candidate" {
					continue
				}
				ap, reason := e.policy.parseRemoteCandidate(a.Value)
				if reason != "" {
					t.Errorf("candidate %q applied though refused (%s)", a.Value, reason)
				}
				seen[ap] = true
			}
		}
		if len(seen) > MaxRemoteCandidates {
			t.Errorf("%d remote addresses applied, want at most %d", len(seen), MaxRemoteCandidates)
		}
	})
}

// FuzzAddICECandidate feeds arbitrary trickled RTCIceCandidateInit JSON
// to one peer that has applied an offer: nothing may panic, errors are
// ErrBadCandidate or ErrTooManyCandidates, and the addresses the peer
// takes stay within MaxRemoteCandidates and the address policy.
func FuzzAddICECandidate(f *testing.F) {
	for _, s := range []string{
		`{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}`,
		`{"candidate":"candidate:2 1 udp 1694498815 127.0.0.1 5001 typ srflx raddr 198.51.100.1 rport 9"}`,
		`{"candidate":"candidate:3 1 udp 2130706431 10.0.0.1 5000 typ host"}`,
		`{"candidate":"candidate:4 1 udp 2130706431 ::ffff:127.0.0.1 5000 typ host","usernameFragment":"abcd"}`,
		`{"candidate":"candidate:5 1 udp 2130706431 169.254.169.254 80 typ host","usernameFragment":"a b"}`,
		`{"candidate":"candidate:6 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active"}`,
		`{"candidate":"candidate:7 1 udp 2130706431 x.local 5000 typ host"}`,
		`{"candidate":""}`,
		`{"candidate":"candidate:"}`,
		`{}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	e, err := New(Config{}, slog.New(slog.DiscardHandler), WithLoopbackOnly())
	if err != nil {
		f.Fatal(err)
	}
	offer := browserOffer(f, 1)
	// One answered peer serves many inputs; it ends when ICE gives up
	// (no browser answers its checks), and is then made again.
	var p *Peer
	live := func(t testing.TB) *Peer {
		if p != nil && p.Err() == nil {
			return p
		}
		if p != nil {
			p.Close()
		}
		var err error
		if p, err = e.NewPeer(context.Background(), PeerOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Answer(context.Background(), offer); err != nil {
			t.Fatal(err)
		}
		return p
	}
	live(f)
	f.Cleanup(func() { p.Close() })
	f.Fuzz(func(t *testing.T, raw []byte) {
		var c ICECandidateInit
		if json.Unmarshal(raw, &c) != nil {
			return
		}
		p := live(t)
		err := p.AddICECandidate(c)
		if err != nil && !errors.Is(err, ErrBadCandidate) && !errors.Is(err, ErrTooManyCandidates) && (!errors.Is(err, ErrClosed) || p.Err() == nil) {
			t.Errorf("AddICECandidate(%s): %v", raw, err)
		}
		p.sigMu.Lock()
		defer p.sigMu.Unlock()
		if len(p.gen.seen) > MaxRemoteCandidates {
			t.Errorf("%d addresses taken", len(p.gen.seen))
		}
		for ap := range p.gen.seen {
			if r := e.policy.check(ap.Addr()); r != "" {
				t.Errorf("%s taken though refused (%s)", ap, r)
			}
		}
	})
}
