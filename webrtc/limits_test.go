package webrtc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	pwebrtc "github.com/pion/webrtc/v4"
)

// browserOffer returns a pion offer with an audio track and videos video
// tracks that it sends, and no candidates.
func browserOffer(t testing.TB, videos int) string {
	t.Helper()
	me := &pwebrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := pwebrtc.NewAPI(pwebrtc.WithMediaEngine(me)).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	mic, err := pwebrtc.NewTrackLocalStaticSample(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "customer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTrack(mic); err != nil {
		t.Fatal(err)
	}
	for i := range videos {
		cam, err := pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, fmt.Sprintf("cam%d", i), fmt.Sprintf("stream%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTrack(cam); err != nil {
			t.Fatal(err)
		}
	}
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// withSectionAttr adds an attribute line to the first media section of
// the given kind.
func withSectionAttr(sdp, kind, line string) string {
	i := strings.Index(sdp, "m="+kind+" ")
	j := strings.Index(sdp[i:], "\r\n") + i + 2
	return sdp[:j] + line + "\r\n" + sdp[j:]
}

// withSections appends n small VP8 sections with direction dir (port 0
// for "stopped").
func withSections(sdp string, n int, dir string) string {
	var b strings.Builder
	b.WriteString(sdp)
	for k := range n {
		port := 9
		if dir == "stopped" {
			port, dir = 0, "inactive"
		}
		fmt.Fprintf(&b, "m=video %d UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:x%d\r\na=%s\r\na=rtpmap:96 VP8/90000\r\n", port, k, dir)
	}
	return b.String()
}

func TestScreenDescriptionLimits(t *testing.T) {
	one := browserOffer(t, 1)
	two := browserOffer(t, 2)
	tests := []struct {
		name   string
		sdp    string
		reason string // "" when accepted
	}{
		{"audio and camera", one, ""},
		{"audio, camera and screen", two, ""},
		{"audio only", browserOffer(t, 0), ""},
		{"three videos sent", browserOffer(t, 3), SDPVideo},
		{"sixty videos sent", withSections(one, 59, "sendonly"), SDPVideo},
		{"360 media sections", withSections(one, 358, "recvonly"), SDPMediaSections},
		{"many videos the browser only receives", withSections(one, 40, "recvonly"), ""},
		{"stopped sections", withSections(one, 40, "stopped"), ""},
		{"sections no longer sending", withSections(two, 40, "inactive"), ""},
		{"a second audio", one + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a2\r\na=sendrecv\r\na=rtpmap:111 opus/48000/2\r\n", SDPAudio},
		{"data channel", one + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:dc\r\na=sctp-port:5000\r\n", SDPApplication},
		{"other media", one + "m=text 9 RTP/AVP 98\r\na=mid:t\r\n", SDPMediaKind},
		{"rid", withSectionAttr(one, "video", "a=rid:h send"), SDPSimulcast},
		{"simulcast", withSectionAttr(one, "video", "a=simulcast:send h;l"), SDPSimulcast},
		{"ssrc-group SIM", withSectionAttr(one, "video", "a=ssrc-group:SIM 1 2 3"), SDPSimulcast},
		{"ssrc-group FID", withSectionAttr(one, "video", "a=ssrc-group:FID 1 2"), ""},
		{"short ufrag", withSectionAttr(strings.ReplaceAll(one, "a=ice-ufrag:", "a=x-old-ufrag:"), "audio", "a=ice-ufrag:abc"), SDPICECredentials},
		{"ufrag with a colon", withSectionAttr(strings.ReplaceAll(one, "a=ice-ufrag:", "a=x-old-ufrag:"), "audio", "a=ice-ufrag:abcd:ef"), SDPICECredentials},
		{"short pwd", withSectionAttr(strings.ReplaceAll(one, "a=ice-pwd:", "a=x-old-pwd:"), "audio", "a=ice-pwd:tooshort"), SDPICECredentials},
		{"too many ssrc lines", withSectionAttr(one, "video", strings.TrimSuffix(strings.Repeat("a=ssrc:1 cname:x\r\n", 40), "\r\n")), SDPLines},
		{"too many extmap lines", withSectionAttr(one, "video", strings.TrimSuffix(strings.Repeat("a=extmap:1 urn:x\r\n", 40), "\r\n")), SDPLines},
		{"too many fmtp lines", withSectionAttr(one, "video", strings.TrimSuffix(strings.Repeat("a=fmtp:96 x=1\r\n", 80), "\r\n")), SDPLines},
		{"too many candidate lines", withSectionAttr(one, "audio", strings.TrimSuffix(strings.Repeat("a=candidate:1 1 udp 1 203.0.113.1 5000 typ host\r\n", 80), "\r\n")), SDPLines},
		{"over 64 KiB", withSectionAttr(one, "audio", "a=x-pad:"+strings.Repeat("p", MaxSDPBytes)), SDPTooLarge},
		{"garbage", "v=0\r\nthis is not sdp", SDPMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := screenDescription(tt.sdp, newRemotePolicy(nil), remoteGen{})
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if sc.sdp != tt.sdp {
					t.Error("a description without candidates was rewritten")
				}
				return
			}
			var le *LimitError
			if !errors.As(err, &le) || le.Reason != tt.reason {
				t.Fatalf("err = %v, want a LimitError %q", err, tt.reason)
			}
			if !errors.Is(err, ErrSDPRefused) || !errors.Is(err, ErrBadSDP) {
				t.Errorf("%v does not match ErrSDPRefused and ErrBadSDP", err)
			}
		})
	}
}

// TestScreenDescriptionCandidates: candidates in a description go through
// the address policy, the de-duplication and the cap; what is refused is
// left out of the SDP that pion gets.
func TestScreenDescriptionCandidates(t *testing.T) {
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf("a=candidate:%d 1 udp 2130706431 203.0.113.1 %d typ host", i, 5000+i))
	}
	for i := range 5 { // one address, different related addresses
		lines = append(lines, fmt.Sprintf("a=candidate:d%d 1 udp 1694498815 203.0.113.1 5000 typ srflx raddr 198.51.100.%d rport %d", i, i, 9000+i))
	}
	lines = append(lines,
		"a=candidate:p 1 udp 2130706431 10.0.0.1 5000 typ host",
		"a=candidate:l 1 udp 2130706431 127.0.0.3 5000 typ host",
		"a=candidate:m 1 udp 2130706431 169.254.169.254 80 typ host",
		"a=candidate:h 1 udp 2130706431 abc.local 5000 typ host",
		"a=candidate:t 1 tcp 1518280447 203.0.113.9 9 typ host tcptype active",
	)
	offer := withSectionAttr(browserOffer(t, 1), "audio", strings.Join(lines, "\r\n"))
	sc, err := screenDescription(offer, newRemotePolicy(nil), remoteGen{})
	if err != nil {
		t.Fatal(err)
	}
	kept := strings.Count(sc.sdp, "a=candidate:")
	if kept != MaxRemoteCandidates || len(sc.gen.seen) != MaxRemoteCandidates {
		t.Errorf("kept %d candidate lines, %d addresses; want %d", kept, len(sc.gen.seen), MaxRemoteCandidates)
	}
	for _, bad := range []string{"10.0.0.1", "127.0.0.3", "169.254.169.254", ".local", "tcptype", "raddr"} {
		if strings.Contains(sc.sdp, bad) {
			t.Errorf("%s left in the description", bad)
		}
	}
	count := map[string]int{}
	for _, r := range sc.refused {
		count[r]++
	}
	want := map[string]int{ReasonLimit: 8, ReasonDuplicate: 5, ReasonPrivate: 1, ReasonLoopback: 1, ReasonMetadata: 1, ReasonHostname: 1, ReasonProtocol: 1}
	for r, n := range want {
		if count[r] != n {
			t.Errorf("refused for %s: %d, want %d (all: %v)", r, count[r], n, count)
		}
	}

	// The same generation again (a re-offer): the addresses are known.
	again, err := screenDescription(offer, newRemotePolicy(nil), sc.gen)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(again.sdp, "a=candidate:"); n != MaxRemoteCandidates {
		t.Errorf("a re-offer of the same generation kept %d candidates", n)
	}
	// A new ufrag is a new generation, with a cap of its own.
	restart := strings.ReplaceAll(offer, "a=ice-ufrag:", "a=ice-ufrag:NEW")
	fresh, err := screenDescription(restart, newRemotePolicy(nil), sc.gen)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.gen.ufrag == sc.gen.ufrag || len(fresh.gen.seen) != MaxRemoteCandidates {
		t.Errorf("ICE restart: ufrag %q→%q, %d addresses", sc.gen.ufrag, fresh.gen.ufrag, len(fresh.gen.seen))
	}
}

// TestPeerScreensTrickledCandidates runs trickled candidates through a
// real peer: private and special addresses are dropped and counted,
// duplicates are dropped, the cap answers ErrTooManyCandidates, and a
// stale or malformed generation is refused. The engine runs in loopback
// test mode, so no packet leaves for the public addresses used here.
func TestPeerScreensTrickledCandidates(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	p, err := e.NewPeer(context.Background(), PeerOptions{Name: "screen"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Early candidates wait for the description, within the cap.
	early := "candidate:e 1 udp 2130706431 203.0.113.200 4000 typ host"
	if err := p.AddICECandidate(ICECandidateInit{Candidate: early}); err != nil {
		t.Fatalf("early candidate: %v", err)
	}
	if _, err := p.Answer(context.Background(), b.offer(nil)); err != nil {
		t.Fatal(err)
	}
	p.sigMu.Lock()
	ufrag, known := p.gen.ufrag, len(p.gen.seen)
	p.sigMu.Unlock()
	// What the browser's own offer brought may already count (its
	// gathering can list one address twice): only what follows is
	// checked below.
	refused := func() map[string]uint64 {
		m := map[string]uint64{}
		for _, r := range e.CandidateRefusals() {
			m[r.Reason] = r.Count
		}
		return m
	}
	before := refused()
	if known < 1 {
		t.Fatalf("the early candidate was not taken: %d addresses", known)
	}
	add := func(c string, uf *string) error {
		return p.AddICECandidate(ICECandidateInit{Candidate: c, UsernameFragment: uf})
	}
	for _, c := range []string{
		"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host",
		"candidate:2 1 udp 2130706431 192.168.1.1 5000 typ host",
		"candidate:4 1 udp 2130706431 169.254.169.254 80 typ host",
		"candidate:5 1 udp 2130706431 ::ffff:127.0.0.1 5000 typ host",
		"candidate:6 1 udp 2130706431 0.0.0.0 5000 typ host",
		"candidate:7 1 udp 2130706431 224.0.0.1 5000 typ host",
	} {
		if err := add(c, nil); err != nil {
			t.Errorf("%s: %v, want dropped without error", c, err)
		}
	}
	for i := 0; known+i < MaxRemoteCandidates; i++ {
		c := fmt.Sprintf("candidate:%d 1 udp 2130706431 203.0.113.1 %d typ host", i, 5000+i)
		if err := add(c, &ufrag); err != nil {
			t.Fatalf("candidate %d of the cap: %v", known+i+1, err)
		}
		dup := fmt.Sprintf("candidate:d%d 1 udp 1694498815 203.0.113.1 %d typ srflx raddr 198.51.100.1 rport %d", i, 5000+i, 7000+i)
		if err := add(dup, nil); err != nil {
			t.Fatalf("duplicate: %v", err)
		}
	}
	if err := add("candidate:x 1 udp 2130706431 203.0.113.2 6000 typ host", nil); !errors.Is(err, ErrTooManyCandidates) {
		t.Errorf("past the cap: %v, want ErrTooManyCandidates", err)
	}
	stale := "olduf"
	if err := add("candidate:s 1 udp 2130706431 203.0.113.3 6000 typ host", &stale); err != nil {
		t.Errorf("stale generation: %v, want dropped", err)
	}
	bad := "bad ufrag"
	if err := add("candidate:b 1 udp 2130706431 203.0.113.3 6000 typ host", &bad); !errors.Is(err, ErrBadCandidate) {
		t.Errorf("invalid usernameFragment: %v, want ErrBadCandidate", err)
	}
	if err := add("candidate:garbage", nil); !errors.Is(err, ErrBadCandidate) {
		t.Errorf("malformed: %v, want ErrBadCandidate", err)
	}
	if err := add("", nil); err != nil {
		t.Errorf("end of candidates: %v", err)
	}
	p.sigMu.Lock()
	if n := len(p.gen.seen); n != MaxRemoteCandidates {
		t.Errorf("%d addresses taken, want %d", n, MaxRemoteCandidates)
	}
	p.sigMu.Unlock()
	got := refused()
	for r, n := range before {
		got[r] -= n
	}
	want := map[string]uint64{ReasonPrivate: 2, ReasonMetadata: 1, ReasonMapped: 1, ReasonUnspecified: 1,
		ReasonMulticast: 1, ReasonLimit: 1, ReasonStale: 1, ReasonMalformed: 2, ReasonDuplicate: uint64(MaxRemoteCandidates - known)}
	for r, n := range want {
		if got[r] != n {
			t.Errorf("refused for %s: %d, want %d (all: %v)", r, got[r], n, got)
		}
	}
}

// TestPeerOfferRate: a browser may offer MaxOffers times per OfferWindow
// on one peer; the next offer is refused and changes nothing.
func TestPeerOfferRate(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	tp := connect(t, e, b, PeerOptions{Name: "rate"})
	for range MaxOffers - 1 { // connect made the first
		b.negotiate(tp.Peer, nil)
	}
	_, err := tp.Answer(context.Background(), b.offer(nil))
	if !errors.Is(err, ErrRenegotiationRate) {
		t.Fatalf("offer %d within %v: %v, want ErrRenegotiationRate", MaxOffers+1, OfferWindow, err)
	}
	if tp.State() != StateConnected {
		t.Errorf("state %s after the refused offer", tp.State())
	}
	found := false
	for _, r := range e.DescriptionRefusals() {
		found = found || (r.Reason == SDPRate && r.Count == 1)
	}
	if !found {
		t.Errorf("refusals %v, want rate: 1", e.DescriptionRefusals())
	}
}

func TestOfferGate(t *testing.T) {
	var g offerGate
	t0 := time.Unix(1000, 0)
	for i := range MaxOffers {
		if _, ok := g.allow(t0.Add(time.Duration(i) * time.Millisecond)); !ok {
			t.Fatalf("offer %d refused", i+1)
		}
	}
	wait, ok := g.allow(t0.Add(time.Second))
	if ok || wait != OfferWindow-time.Second {
		t.Fatalf("offer past the limit: ok %v, wait %v", ok, wait)
	}
	if _, ok := g.allow(t0.Add(OfferWindow + time.Millisecond)); !ok {
		t.Fatal("refused once the first offer left the window")
	}
}

// TestPeerRefusesDataChannel: an offer with a data channel is refused
// before anything is applied.
func TestPeerRefusesDataChannel(t *testing.T) {
	e := newTestEngine(t, Config{})
	b := newBrowser(t, browserOptions{})
	if _, err := b.pc.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	p, err := e.NewPeer(context.Background(), PeerOptions{Name: "dc"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, err = p.Answer(context.Background(), b.offer(nil))
	var le *LimitError
	if !errors.As(err, &le) || le.Reason != SDPApplication {
		t.Fatalf("Answer: %v, want a LimitError %q", err, SDPApplication)
	}
	if p.pc.RemoteDescription() != nil {
		t.Error("the refused offer was applied")
	}
}

// TestForwardedIDs: a forwarded track carries ids the gateway made, not
// the browser's.
func TestForwardedIDs(t *testing.T) {
	e := newTestEngine(t, Config{})
	p, err := e.NewPeer(context.Background(), PeerOptions{Name: "ids"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, b := p.ForwardedStreamID("customer-cam"), p.ForwardedStreamID("customer-screen")
	if a == b || strings.Contains(a, "customer") || a != p.ForwardedStreamID("customer-cam") {
		t.Errorf("stream ids %q, %q", a, b)
	}
	q, err := e.NewPeer(context.Background(), PeerOptions{Name: "ids2"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.ForwardedStreamID("customer-cam") == a {
		t.Error("two peers map a stream id alike")
	}
	if x, y := newTrackID(), newTrackID(); x == y || !strings.HasPrefix(x, "v") {
		t.Errorf("track ids %q, %q", x, y)
	}
}
