//go:build e2e

package test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"

	"github.com/segue-rtc/segue/transcode/audiotest"
	"github.com/segue-rtc/segue/webrtc"
)

// An anonymous visitor holds only a waiting conversation's token. With it
// the visitor opens a peer connection (video.start from the chat) and
// then tells the gateway where to send ICE connectivity checks: these
// tests are that visitor against the real segue serve, with its targets
// on 127.0.0.3 (UDP listeners that count what arrives) and in private
// ranges. The gateway runs in its loopback test mode; the visitor's own
// candidates and the legitimate customer's are on 127.0.0.1.

// udpTrap is UDP listeners on 127.0.0.3 that count the packets and STUN
// binding requests they receive.
type udpTrap struct {
	conns    []*net.UDPConn
	packets  atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	hit      map[int]int // port -> packets
	wg       sync.WaitGroup
}

func startTrap(t *testing.T, n int) *udpTrap {
	t.Helper()
	tr := &udpTrap{hit: map[int]int{}}
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
		if err != nil {
			t.Fatalf("listen on 127.0.0.3: %v", err)
		}
		tr.conns = append(tr.conns, c)
		port := c.LocalAddr().(*net.UDPAddr).Port
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			buf := make([]byte, 1500)
			for {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				tr.packets.Add(1)
				m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
				if stun.IsMessage(buf[:n]) && m.Decode() == nil && m.Type == stun.BindingRequest {
					tr.requests.Add(1)
				}
				tr.mu.Lock()
				tr.hit[port]++
				tr.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range tr.conns {
			c.Close()
		}
		tr.wg.Wait()
	})
	return tr
}

func (tr *udpTrap) ports() []int {
	out := make([]int, len(tr.conns))
	for i, c := range tr.conns {
		out[i] = c.LocalAddr().(*net.UDPAddr).Port
	}
	return out
}

// portsHit is how many listeners received anything.
func (tr *udpTrap) portsHit() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return len(tr.hit)
}

// sdpAttr returns the first value of a=key in sdp.
func sdpAttr(sdp, key string) string {
	for _, l := range strings.Split(sdp, "\r\n") {
		if v, ok := strings.CutPrefix(l, "a="+key+":"); ok {
			return v
		}
	}
	return ""
}

// withCandidates adds a=candidate lines to the first media section.
func withCandidates(sdp string, lines []string) string {
	if len(lines) == 0 {
		return sdp
	}
	i := strings.Index(sdp, "\r\nm=") + 2
	j := strings.Index(sdp[i:], "\r\n") + i + 2
	return sdp[:j] + "a=" + strings.Join(lines, "\r\na=") + "\r\n" + sdp[j:]
}

// iceVisitor is the abuser's socket and peer, set up with video.start.
type iceVisitor struct {
	w       *wsConn
	b       *pionBrowser
	offer   string
	ufrag   string // the visitor's own
	gwUfrag string
	gwPwd   string
	gwAddr  *net.UDPAddr // a host candidate of the gateway on 127.0.0.1
	frames  chan frame
}

// newVisitor opens a waiting conversation, connects as its customer and
// starts video from the chat with an offer carrying extra candidate
// lines; it waits for the answer and one 127.0.0.1 candidate of the
// gateway, then hands every later frame to v.frames.
func newICEVisitor(t *testing.T, g *gateway, extra []string) *iceVisitor {
	t.Helper()
	c, _ := g.newConversation(t, "Mallory")
	v := &iceVisitor{w: customerWS(t, g, c.token), b: newBrowser(t, 1000), frames: make(chan frame, 4096)}
	v.offer = v.b.offer(t)
	v.ufrag = sdpAttr(v.offer, "ice-ufrag")
	v.w.send(map[string]any{"type": "video.start", "id": "start", "sdp": withCandidates(v.offer, extra)})
	for v.gwAddr == nil || v.gwUfrag == "" {
		f, err := v.w.read()
		if err != nil {
			t.Fatalf("visitor: waiting for the answer: %v", err)
		}
		switch f.typ() {
		case "error":
			t.Fatalf("visitor: video.start refused: %v", f)
		case "rtc.answer":
			sdp, _ := f["sdp"].(string)
			v.gwUfrag, v.gwPwd = sdpAttr(sdp, "ice-ufrag"), sdpAttr(sdp, "ice-pwd")
		case "rtc.candidate":
			cand, _ := f["candidate"].(map[string]any)
			s, _ := cand["candidate"].(string)
			if fs := strings.Fields(s); len(fs) >= 8 && fs[4] == "127.0.0.1" && strings.EqualFold(fs[2], "udp") {
				port, _ := strconv.Atoi(fs[5])
				v.gwAddr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
			}
		}
	}
	go func() {
		for {
			f, err := v.w.read()
			if err != nil {
				close(v.frames)
				return
			}
			select {
			case v.frames <- f:
			default:
			}
		}
	}()
	return v
}

// trickle sends one rtc.candidate frame.
func (v *iceVisitor) trickle(cand string) {
	v.w.send(map[string]any{"type": "rtc.candidate", "candidate": map[string]any{"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0}})
}

// prflx sends, from conn, a valid ICE binding request to the gateway's
// candidate: the gateway would learn conn's address as a peer-reflexive
// candidate (RFC 8445 §7.3.1.3) and check it.
func (v *iceVisitor) prflx(t *testing.T, conn *net.UDPConn) {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest,
		stun.NewUsername(v.gwUfrag+":"+v.ufrag), ice.AttrControlling(42), ice.PriorityAttr(2130706431), ice.UseCandidate(),
		stun.NewShortTermIntegrity(v.gwPwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := conn.WriteToUDP(m.Raw, v.gwAddr); err != nil {
			t.Fatal(err)
		}
	}
}

// errorsSeen returns the codes and messages of the error frames received
// so far, without waiting.
func (v *iceVisitor) errorsSeen() []string {
	var out []string
	for {
		select {
		case f, ok := <-v.frames:
			if !ok {
				return out
			}
			if f.typ() == "error" {
				out = append(out, fmt.Sprintf("%v: %v", f["code"], f["message"]))
			}
		default:
			return out
		}
	}
}

// refusedCounts reads segue_webrtc_candidates_refused_total by reason.
func refusedCounts(t *testing.T, g *gateway) map[string]int {
	t.Helper()
	out := map[string]int{}
	prefix := `segue_webrtc_candidates_refused_total{reason="`
	for k, v := range metricsOf(t, g) {
		if rest, ok := strings.CutPrefix(k, prefix); ok {
			out[rest[:strings.IndexByte(rest, '"')]] = int(v)
		}
	}
	return out
}

// privateTargets are candidates at addresses no visitor may aim at,
// whatever the loopback test mode allows. No packet leaves for them: the
// test fails if the gateway so much as counts one as accepted.
var privateTargets = []string{
	"1 1 udp 2130706431 10.0.0.1 5000 typ host",
	"2 1 udp 2130706431 192.168.1.1 5000 typ host",
	"3 1 udp 2130706431 172.16.0.1 5000 typ host",
	"4 1 udp 2130706431 100.64.0.1 5000 typ host",
	"5 1 udp 2130706431 169.254.169.254 80 typ host",
	"6 1 udp 2130706431 fd00::1 5000 typ host",
	"7 1 udp 2130706431 fd00:ec2::254 80 typ host",
	"8 1 udp 2130706431 0.0.0.0 5000 typ host",
	"9 1 udp 2130706431 224.0.0.251 5353 typ host",
	"10 1 udp 1694498815 10.1.2.3 5000 typ srflx raddr 203.0.113.1 rport 9",
	"11 1 udp 2130706431 169.254.10.10 5000 typ host",
	"12 1 udp 2130706431 fe80::1 5000 typ host",
}

// legitCall connects a pion customer's voice call to Alice's desk phone
// (baresip) on a conversation Alice has accepted, and returns its
// browser.
func legitCall(t *testing.T, g *gateway) *pionBrowser {
	t.Helper()
	c, conv := g.newConversation(t, "Ann Lee")
	w := customerWS(t, g, c.token)
	agentWS(t, g, g.login(t, "alice")).accept(conv.ID, "alice")
	b := newBrowser(t, 1000)
	w.send(map[string]any{"type": "voice.start", "id": "call", "sdp": b.offer(t)})
	for range 200 {
		f, err := w.read()
		if err != nil {
			t.Fatalf("legitimate call: %v", err)
		}
		if b.signalled(t, f) {
			continue
		}
		switch f.typ() {
		case "error":
			t.Fatalf("legitimate call refused: %v", f)
		case "call":
			call, _ := f["call"].(map[string]any)
			switch state, _ := call["state"].(string); state {
			case "connected":
				go func() { // keep the socket read
					for {
						if _, err := w.read(); err != nil {
							return
						}
					}
				}()
				return b
			case "failed", "ended":
				t.Fatalf("legitimate call %s: %v", state, call["reason"])
			}
		}
	}
	t.Fatal("the legitimate call did not connect in 200 frames")
	return nil
}

// hearsPhone checks the last second the customer heard: the desk phone's
// tone.
func hearsPhone(t *testing.T, b *pionBrowser, when string) {
	t.Helper()
	pcm := lastOf(b.heard, time.Second)
	if f := audiotest.PeakFrequency(pcm, 8000); f < 430 || f > 450 {
		t.Errorf("%s: the legitimate customer heard a peak at %.0f Hz, want the phone's %.0f Hz", when, f, deskToneHz)
	}
	if l := audiotest.Level(pcm); l < -20 {
		t.Errorf("%s: the legitimate customer heard %.1f dBFS", when, l)
	}
}

// TestICEAbuseNoSTUNToForbiddenTargets: with the loopback test mode
// allowing only 127.0.0.1/32, a visitor's 1,000 trickled candidates, the
// candidates in its offer and a peer-reflexive address, all aimed at
// listeners on 127.0.0.3 or at private, link-local and metadata
// addresses, make the gateway send nothing at all to 127.0.0.3; each is
// counted as refused. A legitimate call to a desk phone goes on with
// audio meanwhile.
func TestICEAbuseNoSTUNToForbiddenTargets(t *testing.T) {
	phone := startBaresipPhone(t)
	g := startVoiceGateway(t, toDeskPhone(phone), withRemoteNetworks("127.0.0.1/32"), withoutSocketFlowLimits)
	call := legitCall(t, g)

	trap := startTrap(t, 8)
	var inOffer []string
	for i, p := range trap.ports() {
		inOffer = append(inOffer, fmt.Sprintf("candidate:o%d 1 udp 2130706431 127.0.0.3 %d typ host", i, p))
	}
	for _, c := range privateTargets {
		inOffer = append(inOffer, "candidate:"+c)
	}
	v := newICEVisitor(t, g, inOffer)

	v.prflx(t, trap.conns[0])
	ports := trap.ports()
	for i := range 1000 {
		var cand string
		switch i % 4 {
		case 0, 1: // one listener, ever new related addresses
			cand = fmt.Sprintf("candidate:t%d 1 udp 1694498815 127.0.0.3 %d typ srflx raddr 198.51.100.%d rport %d", i, ports[i%len(ports)], i%250+1, 1024+i)
		case 2:
			cand = "candidate:" + privateTargets[i%len(privateTargets)]
		default:
			cand = fmt.Sprintf("candidate:m%d 1 udp 2130706431 ::ffff:127.0.0.3 %d typ host", i, ports[i%len(ports)])
		}
		v.trickle(cand)
	}
	v.prflx(t, trap.conns[1])

	time.Sleep(4 * time.Second) // connectivity checks go out within a second
	if n := trap.packets.Load(); n != 0 {
		t.Errorf("the listeners on 127.0.0.3 received %d packets (%d binding requests), want none", n, trap.requests.Load())
	}
	errs := v.errorsSeen()
	if !containsPrefix(errs, "rate_limited: too many signalling frames") {
		t.Errorf("no rate_limited error for the flood of candidate frames; errors: %v", errs)
	}
	counts := refusedCounts(t, g)
	t.Logf("refused candidates: %v", counts)
	for _, reason := range []string{"loopback", "private", "metadata", "link_local", "unspecified", "multicast", "mapped"} {
		if counts[reason] == 0 {
			t.Errorf("no candidate refused as %s: %v", reason, counts)
		}
	}
	hearsPhone(t, call, "after the abuse")
}

// TestICEAbuseCapped: with 127.0.0.0/8 allowed (so that 127.0.0.3 counts
// as a reachable network), a visitor's candidates toward 40 listeners, in
// its offer and trickled 1,000 times with ever new related addresses,
// reach at most MaxRemoteCandidates listeners with a bounded number of
// binding requests each. A peer-reflexive address in the allowed network
// is answered.
func TestICEAbuseCapped(t *testing.T) {
	g := startGateway(t, withoutSocketFlowLimits)
	trap := startTrap(t, 40)
	ports := trap.ports()
	var inOffer []string
	for i, p := range ports {
		inOffer = append(inOffer, fmt.Sprintf("candidate:o%d 1 udp 2130706431 127.0.0.3 %d typ host", i, p))
	}
	v := newICEVisitor(t, g, inOffer)
	for i := range 1000 {
		v.trickle(fmt.Sprintf("candidate:t%d 1 udp 1694498815 127.0.0.3 %d typ srflx raddr 198.51.100.%d rport %d", i, ports[i%len(ports)], i%250+1, 1024+i))
	}
	// The same binding request as in the test above, from an allowed
	// address, is answered: so the one above was refused for its
	// address, not for a fault of its own.
	allowed := startTrap(t, 1)
	v.prflx(t, allowed.conns[0])
	time.Sleep(4 * time.Second)
	if allowed.packets.Load() == 0 {
		t.Error("no answer to a valid binding request from an allowed address")
	}
	hit, reqs := trap.portsHit(), trap.requests.Load()
	t.Logf("%d of %d listeners reached, %d binding requests, %d packets", hit, len(ports), reqs, trap.packets.Load())
	if hit == 0 {
		t.Fatal("no listener reached: the allowed network is not checked at all")
	}
	if hit > webrtc.MaxRemoteCandidates {
		t.Errorf("%d listeners reached, want at most %d", hit, webrtc.MaxRemoteCandidates)
	}
	if lim := int64(webrtc.MaxRemoteCandidates * 20); reqs > lim {
		t.Errorf("%d binding requests, want at most %d", reqs, lim)
	}
	if counts := refusedCounts(t, g); counts["limit"] == 0 || counts["duplicate"] == 0 {
		t.Errorf("refused candidates %v, want some for limit and duplicate", counts)
	}
}

// minimalVideo is n small VP8 sections in direction dir.
func minimalVideo(n int, dir string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:x%d\r\na=%s\r\na=rtpmap:96 VP8/90000\r\n", i, dir)
	}
	return b.String()
}

// TestSDPAbuseRefused: a visitor's offers with 360 media sections, with
// 61 video tracks, with a data channel, and a flood of re-offers, are
// each refused with an error frame that says why; the gateway keeps
// answering a proper offer afterwards.
func TestSDPAbuseRefused(t *testing.T) {
	// Frames large enough to carry an SDP over the 64 KiB limit.
	g := startGateway(t, func(o *gatewayOptions) { o.maxFrameBytes = 1 << 20 })
	v := newICEVisitor(t, g, nil)
	expect := func(id, code, about string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case f, ok := <-v.frames:
				if !ok {
					t.Fatalf("%s: socket closed", id)
				}
				if f.typ() != "error" || f["ref"] != id {
					continue
				}
				msg, _ := f["message"].(string)
				if f["code"] != code || !strings.Contains(msg, about) {
					t.Fatalf("%s: error %v, want %s about %q", id, f, code, about)
				}
				return
			case <-deadline:
				t.Fatalf("%s: no error frame", id)
			}
		}
	}
	offer := v.offer
	v.w.send(map[string]any{"type": "rtc.offer", "id": "m360", "sdp": offer + minimalVideo(359, "recvonly")})
	expect("m360", "bad_offer", "360 media sections")
	v.w.send(map[string]any{"type": "rtc.offer", "id": "v61", "sdp": offer + minimalVideo(61, "sendonly")})
	expect("v61", "bad_offer", "video tracks sent")
	dc := offer + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:dc\r\na=sctp-port:5000\r\n"
	v.w.send(map[string]any{"type": "rtc.offer", "id": "dc", "sdp": dc})
	expect("dc", "bad_offer", "data channels")
	v.w.send(map[string]any{"type": "rtc.offer", "id": "big", "sdp": offer + "a=x-pad:" + strings.Repeat("p", webrtc.MaxSDPBytes)})
	expect("big", "too_large", "sdp over")

	// Re-offers: the peer takes MaxOffers in OfferWindow, counting those
	// above and video.start.
	for i := range 12 {
		v.w.send(map[string]any{"type": "rtc.offer", "id": fmt.Sprintf("re%d", i), "sdp": offer})
	}
	expect(fmt.Sprintf("re%d", webrtc.MaxOffers-4), "rate_limited", "too many offers")

	// The gateway is not stalled: another visitor still gets an answer.
	other := newICEVisitor(t, g, nil)
	if other.gwUfrag == "" {
		t.Fatal("no answer for a proper offer after the abuse")
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// withoutSocketFlowLimits lifts the per-socket frame and byte budgets
// (limits.messages_per_socket_per_second and bytes_per_socket_per_second,
// proven in web_abuse_e2e_test.go), which would close a flooding visitor's
// socket long before its thousand candidates arrive: these tests prove
// the ICE defences on their own.
func withoutSocketFlowLimits(o *gatewayOptions) {
	o.limitsYAML += "  messages_per_socket_per_second: 1000000\n  bytes_per_socket_per_second: 1000000000\n"
}
