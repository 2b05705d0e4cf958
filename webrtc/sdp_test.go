package webrtc

import (
	"context"
	"strings"
	"testing"

	pwebrtc "github.com/pion/webrtc/v4"
)

func TestWithOpusHints(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "browser fmtp gets the hints",
			in:   "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n",
			want: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=rtpmap:0 PCMU/8000\r\n",
		},
		{
			name: "existing values are kept",
			in:   "a=rtpmap:109 OPUS/48000/2\na=fmtp:109 maxplaybackrate=16000\n",
			want: "a=rtpmap:109 OPUS/48000/2\na=fmtp:109 maxplaybackrate=16000;sprop-maxcapturerate=8000\n",
		},
		{
			name: "missing fmtp line is added",
			in:   "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n",
			want: "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=rtpmap:0 PCMU/8000\r\n",
		},
		{
			name: "no opus, no change",
			in:   "a=rtpmap:0 PCMU/8000\r\na=fmtp:96 x=1\r\n",
			want: "a=rtpmap:0 PCMU/8000\r\na=fmtp:96 x=1\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := withOpusHints(tc.in); got != tc.want {
				t.Errorf("withOpusHints:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestWithoutOpusHints(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "our offer loses the hints",
			in:   "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=rtpmap:0 PCMU/8000\r\n",
			want: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n",
		},
		{
			name: "any value, any case",
			in:   "a=rtpmap:109 OPUS/48000/2\na=fmtp:109 MaxPlaybackRate=16000;stereo=1\n",
			want: "a=rtpmap:109 OPUS/48000/2\na=fmtp:109 stereo=1\n",
		},
		{
			name: "an fmtp left empty goes",
			in:   "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=rtpmap:0 PCMU/8000\r\n",
			want: "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n",
		},
		{
			name: "other codecs keep theirs",
			in:   "a=rtpmap:0 PCMU/8000\r\na=fmtp:96 maxplaybackrate=8000\r\n",
			want: "a=rtpmap:0 PCMU/8000\r\na=fmtp:96 maxplaybackrate=8000\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := withoutOpusHints(tc.in); got != tc.want {
				t.Errorf("withoutOpusHints:\n got %q\nwant %q", got, tc.want)
			}
			if got := withoutOpusHints(withOpusHints(tc.want)); got != tc.want {
				t.Errorf("withoutOpusHints(withOpusHints):\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestWidebandSDP: a wideband peer leaves the narrowband hints out of its
// answers and offers, and puts them back once narrowband again.
func TestWidebandSDP(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p := connect(t, e, b, PeerOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	narrow := func(sdp string) bool { return strings.Contains(sdp, "maxplaybackrate=8000") }

	if p.Wideband() || !p.SetWideband(true) || p.SetWideband(true) || !p.Wideband() {
		t.Fatal("SetWideband does not report its changes")
	}
	// The browser offers (a re-offer, say).
	answer, err := p.Answer(ctx, b.offer(nil))
	if err != nil {
		t.Fatal(err)
	}
	b.setRemote(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: answer})
	if narrow(answer) || !strings.Contains(answer, "opus/48000") {
		t.Errorf("wideband answer:\n%s", answer)
	}
	// The gateway offers.
	gatewayOffer := func() string {
		t.Helper()
		offer, err := p.Offer(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		// Sent again after a reconnect, it is the same offer.
		if again := p.LocalOffer(); again != offer {
			t.Errorf("LocalOffer differs from the offer:\n%s\nwant\n%s", again, offer)
		}
		b.setRemote(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: offer})
		ans, err := b.pc.CreateAnswer(nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.pc.SetLocalDescription(ans); err != nil {
			t.Fatal(err)
		}
		if err := p.SetAnswer(ctx, b.pc.LocalDescription().SDP); err != nil {
			t.Fatal(err)
		}
		return offer
	}
	if offer := gatewayOffer(); narrow(offer) || strings.Contains(offer, "sprop-maxcapturerate") {
		t.Errorf("wideband offer:\n%s", offer)
	}
	if !p.SetWideband(false) {
		t.Fatal("SetWideband(false) reported no change")
	}
	if offer := gatewayOffer(); !narrow(offer) {
		t.Errorf("narrowband offer without the hints:\n%s", offer)
	}
}
