//go:build e2e

package test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// soakTime is how long the abuser keeps at it.
const soakTime = 60 * time.Second

// TestWebRTCAbuseSoak: for a minute, one anonymous visitor (127.0.0.5)
// renegotiates (up to 100 times a second), NACKs every packet of the
// video it gets (200 NACKs a second), floods video.start from six more
// chats at once (up to 600 a second), and trickles candidates toward
// other loopback addresses (50 a second). Meanwhile another
// customer's call to Alice's desk phone (baresip) keeps carrying the
// phone's 440 Hz, and a third customer's camera keeps reaching Bob's
// console. The gateway's CPU stays bounded, the resends toward the
// abuser stay within a share of its video, and once it leaves the
// gateway's goroutines and memory come back to where they were.
func TestWebRTCAbuseSoak(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tone440.wav")
	if err := audiotest.WriteWAVFile(src, audiotest.Tone(8000, deskToneHz, 0.5, 3*time.Minute), 8000); err != nil {
		t.Fatal(err)
	}
	phone := peers.StartBaresip(t, "127.0.0.1", "1001", src)
	g := startVoiceGateway(t, toDeskPhone(phone))
	alice, bob := g.login(t, "alice"), g.login(t, "bob")
	aliceWS := agentWS(t, g, alice)

	// The call: Ann, from 127.0.0.2, with Alice.
	annV := g.visitor(t, "127.0.0.2")
	annConv, annToken := annV.newConversation("Ann")
	aliceWS.accept(annConv, "alice")
	ann := newRTCPeer(t, annV.socket(annToken), "", rtcOptions{toneHz: 1000})
	if code := ann.offer("voice.start"); code != "" {
		t.Fatalf("Ann's voice.start: %s", code)
	}
	waitFor(t, "Ann's call connected", func() error {
		if s := ann.state(); s != "connected" {
			return fmt.Errorf("call %q", s)
		}
		return nil
	})
	hears440 := func(when string) {
		t.Helper()
		pcm := lastOf(ann.heard, time.Second)
		f, l := audiotest.PeakFrequency(pcm, 8000), audiotest.Level(pcm)
		if f < 430 || f > 450 || l < -25 {
			t.Errorf("%s Ann hears %.0f Hz at %.1f dBFS, want the phone's 440 Hz", when, f, l)
		}
	}
	time.Sleep(2 * time.Second)
	hears440("before the abuse")

	// The video: Bea's camera, from 127.0.0.3, to Bob's console.
	beaV := g.visitor(t, "127.0.0.3")
	beaConv, beaToken := beaV.newConversation("Bea")
	agentWS(t, g, bob).accept(beaConv, "bob")
	bea := newRTCPeer(t, beaV.socket(beaToken), "", rtcOptions{toneHz: 700})
	bea.camera("bea-camera", 30, 1000)
	if code := bea.offer("video.start"); code != "" {
		t.Fatalf("Bea's video.start: %s", code)
	}
	bobConsole := newRTCPeer(t, agentWS(t, g, bob), beaConv, rtcOptions{toneHz: 500})
	if code := bobConsole.offer("media.join"); code != "" {
		t.Fatalf("Bob's media.join: %s", code)
	}
	waitFor(t, "Bea's camera at Bob's console", func() error {
		if n := bobConsole.videoPackets(); n < 60 {
			return fmt.Errorf("%d packets", n)
		}
		return nil
	})

	// Where the gateway stands before the abuser comes.
	time.Sleep(2 * time.Second)
	baseGoroutines := metricsOf(t, g)["go_goroutines"]
	baseRSS := rssOf(t, g.Pid())
	t.Logf("baseline: %.0f goroutines, RSS %d MB", baseGoroutines, baseRSS>>20)

	// The abuser, accepted by Alice, whose console camera (1.6 Mbit/s) it
	// receives, and then NACKs.
	abuserV := g.visitor(t, "127.0.0.5")
	malConv, malToken := abuserV.newConversation("Mallory")
	aliceWS.accept(malConv, "alice")
	mal := newRTCPeer(t, abuserV.socket(malToken), "", rtcOptions{noReplayWindow: true, toneHz: 300})
	mal.camera("mallory-camera", 15, 200)
	if code := mal.offer("video.start"); code != "" {
		t.Fatalf("the abuser's video.start: %s", code)
	}
	aliceConsole := newRTCPeer(t, agentWS(t, g, alice), malConv, rtcOptions{})
	aliceConsole.camera("alice-camera", 200, 1000)
	if code := aliceConsole.offer("media.join"); code != "" {
		t.Fatalf("Alice's media.join: %s", code)
	}
	var malSSRC uint32
	waitFor(t, "Alice's camera at the abuser", func() error {
		in, s := mal.video(0)
		if in.packets < 100 {
			return fmt.Errorf("%d packets", in.packets)
		}
		malSSRC = s
		return nil
	})
	// More chats of the abuser's, for video.start floods.
	floodOffer := throwawayOffer(t)
	var flood []*wsConn
	for range 6 {
		_, token := abuserV.newConversation("Mallory")
		flood = append(flood, abuserV.socket(token))
	}
	// A UDP port that counts what the gateway sends it.
	target := udpCounter(t, "127.0.0.9")

	ctx, stop := context.WithTimeout(context.Background(), soakTime)
	defer stop()
	var wg sync.WaitGroup
	var renegs, renegRefused, starts, startRefused, cands atomic.Int64
	var nacks, nackBytes int
	malBefore, _ := mal.video(malSSRC)
	cpu0, wall0 := procCPU(t, g.Pid()), time.Now()

	wg.Add(1)
	go func() { // NACKs for everything
		defer wg.Done()
		nacks, nackBytes = nackStorm(t, mal, malSSRC, ctx.Done())
	}()
	wg.Add(1)
	go func() { // renegotiations, up to 100 a second
		defer wg.Done()
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for ; ctx.Err() == nil; <-tk.C {
			if code := mal.offer("rtc.offer"); code != "" {
				renegRefused.Add(1)
			}
			renegs.Add(1)
		}
	}()
	for i, w := range flood {
		wg.Add(1)
		go func() { // video.start floods, six chats at once, up to 100 a second each
			defer wg.Done()
			tk := time.NewTicker(10 * time.Millisecond)
			defer tk.Stop()
			for n := 0; ctx.Err() == nil; n++ {
				<-tk.C
				ok, err := startStop(ctx, w, fmt.Sprintf("f%d:%d", i, n), floodOffer)
				if err != nil {
					return
				}
				starts.Add(1)
				if !ok {
					startRefused.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // trickled candidates toward other loopback addresses
		defer wg.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
			}
			addr, port := fmt.Sprintf("127.0.0.%d", 9+n%4), 40000+n%1000
			if n%2 == 0 {
				addr, port = target.ip, target.port
			}
			c := fmt.Sprintf("candidate:%d 1 udp %d %s %d typ host", n, 2130706431-n, addr, port)
			if sendFrame(ctx, mal.w, map[string]any{"type": "rtc.candidate", "candidate": map[string]any{"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}}) != nil {
				return
			}
			cands.Add(1)
		}
	}()

	// The legitimate sessions, every 10 s while the abuse goes on.
	lastVideo := bobConsole.videoPackets()
	for tick := time.NewTicker(10 * time.Second); ctx.Err() == nil; {
		select {
		case <-ctx.Done():
		case <-tick.C:
			if s := ann.state(); s != "connected" {
				t.Errorf("Ann's call is %q during the abuse", s)
			}
			hears440(fmt.Sprintf("after %v of abuse,", time.Since(wall0).Round(time.Second)))
			n := bobConsole.videoPackets()
			if n-lastVideo < 150 { // 30 packets a second are sent
				t.Errorf("Bob's console got %d packets of Bea's camera in 10 s", n-lastVideo)
			}
			lastVideo = n
		}
	}
	wg.Wait()
	cpu, wall := procCPU(t, g.Pid())-cpu0, time.Since(wall0)
	malAfter, _ := mal.video(malSSRC)
	m := metricsOf(t, g)
	video, resent := malAfter.bytes-malBefore.bytes, malAfter.resentBytes-malBefore.resentBytes
	t.Logf("abuse for %v: gateway CPU %.0f%% of a core; %d renegotiations (%d refused), %d video.start (%d refused), %d candidates (%d packets at %s:%d), %d NACKs (%d bytes)",
		wall.Round(time.Second), 100*cpu.Seconds()/wall.Seconds(), renegs.Load(), renegRefused.Load(), starts.Load(), startRefused.Load(),
		cands.Load(), target.packets.Load(), target.ip, target.port, nacks, nackBytes)
	t.Logf("the abuser got %d bytes of video and %d resent; gateway: %.0f bytes resent, NACK refusals budget %.0f rate %.0f repeat %.0f unavailable %.0f; media refused: peers_per_ip %.0f video_limit %.0f",
		video, resent, m["segue_webrtc_retransmit_bytes_total"], m[`segue_webrtc_nack_refused_total{reason="budget"}`],
		m[`segue_webrtc_nack_refused_total{reason="rate"}`], m[`segue_webrtc_nack_refused_total{reason="repeat"}`],
		m[`segue_webrtc_nack_refused_total{reason="unavailable"}`], m[`segue_media_refused_total{reason="peers_per_ip"}`],
		m[`segue_media_refused_total{reason="video_limit"}`])
	mal.mu.Lock()
	errCodes := map[string]int{}
	for _, c := range mal.errs {
		errCodes[c]++
	}
	mal.mu.Unlock()
	t.Logf("error frames to the abuser's main socket: %v", errCodes)
	if frac := cpu.Seconds() / wall.Seconds(); frac > 0.7 {
		t.Errorf("the gateway used %.0f%% of a core on average during the abuse, want under 70%%", 100*frac)
	}
	if video < 1_000_000 {
		t.Errorf("the abuser got only %d bytes of video: the storm had little to NACK", video)
	}
	if resent > 2*video {
		t.Errorf("%d bytes resent to the abuser for %d of video, want at most twice", resent, video)
	}
	if resent > video/3 {
		t.Errorf("resends were %.0f%% of the abuser's video, want the budget's share", 100*float64(resent)/float64(video))
	}
	if starts.Load() == 0 || renegs.Load() == 0 || nacks == 0 {
		t.Error("some of the abuse never ran")
	}

	// The legitimate sessions after the abuse.
	if s := ann.state(); s != "connected" {
		t.Errorf("Ann's call is %q after the abuse", s)
	}
	hears440("after the abuse")
	n := bobConsole.videoPackets()
	time.Sleep(2 * time.Second)
	if got := bobConsole.videoPackets() - n; got < 30 {
		t.Errorf("Bob's console got %d packets of Bea's camera in 2 s after the abuse", got)
	}

	// The abuser leaves (its pages close), and Alice leaves its video.
	mal.close()
	for _, w := range flood {
		_ = w.c.Close(websocket.StatusGoingAway, "")
	}
	aliceConsole.close()
	var goroutines float64
	var rss int64
	waitFor(t, "the gateway back to its baseline", func() error {
		goroutines, rss = metricsOf(t, g)["go_goroutines"], rssOf(t, g.Pid())
		if goroutines > baseGoroutines*1.1+20 {
			return fmt.Errorf("%.0f goroutines, baseline %.0f", goroutines, baseGoroutines)
		}
		return nil
	})
	t.Logf("after the abuser left: %.0f goroutines (baseline %.0f), RSS %d MB (baseline %d MB)", goroutines, baseGoroutines, rss>>20, baseRSS>>20)
	if rss > baseRSS*2+64<<20 {
		t.Errorf("RSS %d MB after the abuse, baseline %d MB", rss>>20, baseRSS>>20)
	}
	hears440("at the end")
}

// throwawayOffer is the offer of a peer connection with a camera and a
// microphone that then goes away: floods send it again and again, and the
// peers the gateway builds for it never connect.
func throwawayOffer(t *testing.T) string {
	t.Helper()
	pc, err := loopbackAPI(t).NewPeerConnection(pwebrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, kind := range []pwebrtc.RTPCodecType{pwebrtc.RTPCodecTypeAudio, pwebrtc.RTPCodecTypeVideo} {
		if _, err := pc.AddTransceiverFromKind(kind, pwebrtc.RTPTransceiverInit{Direction: pwebrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			t.Fatal(err)
		}
	}
	return gatheredOffer(t, pc)
}

// startStop sends video.start with offer on w and, once answered, stops
// the video again. It reports whether the start was answered; err is the
// socket's end.
func startStop(ctx context.Context, w *wsConn, id, offer string) (bool, error) {
	if err := sendFrame(ctx, w, map[string]any{"type": "video.start", "id": id, "sdp": offer}); err != nil {
		return false, err
	}
	for {
		f, err := w.read()
		if err != nil {
			return false, err
		}
		switch {
		case f.typ() == "rtc.answer":
			return true, sendFrame(ctx, w, map[string]any{"type": "video.stop"})
		case f.typ() == "error" && f["ref"] == id:
			return false, nil
		}
	}
}

// udpTarget counts the datagrams sent to one port.
type udpTarget struct {
	ip      string
	port    int
	packets atomic.Int64
}

func udpCounter(t *testing.T, ip string) *udpTarget {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	u := &udpTarget{ip: ip, port: conn.LocalAddr().(*net.UDPAddr).Port}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFromUDP(buf); err != nil {
				return
			}
			u.packets.Add(1)
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return u
}
