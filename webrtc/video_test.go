package webrtc

import (
	"bytes"
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"
)

// TestForwardVideo relays a customer's camera to an agent's console: the
// console gets the very payloads the customer sent, and its key frame
// requests reach the customer.
func TestForwardVideo(t *testing.T) {
	e := newTestEngine(t, Config{})

	customer := newBrowser(t, browserOptions{})
	var plis atomic.Int32
	camera := customer.addCamera(t, func(p rtcp.Packet) {
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			plis.Add(1)
		}
	})
	pc := connect(t, e, customer, PeerOptions{Name: "customer"})

	// The camera: numbered payloads, one frame per 20 ms.
	var seq uint16
	defer customer.film(func() {
		payload := make([]byte, 8)
		binary.BigEndian.PutUint32(payload[4:], uint32(seq))
		payload[0] = 0x10 // VP8 payload descriptor: start of partition
		if err := camera.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 1800, Marker: true}, Payload: payload}); err != nil {
			t.Errorf("camera: %v", err)
		}
		seq++
	})()

	var video *RemoteVideo
	select {
	case video = <-pc.videos:
	case <-timeoutC():
		t.Fatal("no OnVideoTrack for the camera")
	}
	if video.MimeType() != pwebrtc.MimeTypeVP8 || video.StreamID() != "customer-cam" {
		t.Errorf("video track %s %s, want VP8 customer-cam", video.MimeType(), video.StreamID())
	}
	if vs := pc.Videos(); len(vs) != 1 || vs[0] != video {
		t.Errorf("Videos() = %v, want the camera only", vs)
	}

	// The console keeps no SRTP replay window, so that it accepts the
	// resend of a packet it did get (NACKed below to test the cache).
	console := newBrowser(t, browserOptions{settings: func(se *pwebrtc.SettingEngine) {
		se.DisableSRTPReplayProtection(true)
	}})
	negotiationNeeded := make(chan struct{}, 4)
	pa := connect(t, e, console, PeerOptions{Name: "agent", OnNegotiationNeeded: func() { negotiationNeeded <- struct{}{} }})

	fwd, err := NewForwarder(video, pa.Peer)
	if err != nil {
		t.Fatalf("NewForwarder: %v", err)
	}
	select {
	case <-negotiationNeeded:
	case <-timeoutC():
		t.Error("no OnNegotiationNeeded after NewForwarder")
	}
	serverOffer(t, pa.Peer, console)

	eventually(t, "video at the console", func() bool {
		console.mu.Lock()
		defer console.mu.Unlock()
		return len(console.video) >= 20
	})
	console.mu.Lock()
	got := append([][]byte(nil), console.video...)
	var videoTrack *pwebrtc.TrackRemote
	for _, tr := range console.tracks {
		if tr.Kind() == pwebrtc.RTPCodecTypeVideo {
			videoTrack = tr
		}
	}
	console.mu.Unlock()
	first := binary.BigEndian.Uint32(got[0][4:])
	for i, p := range got {
		want := make([]byte, 8)
		want[0] = 0x10
		binary.BigEndian.PutUint32(want[4:], first+uint32(i))
		if !bytes.Equal(p, want) {
			t.Fatalf("console payload %d = %x, want %x: not relayed untouched and in order", i, p, want)
		}
	}

	// The console reports a packet lost; the gateway resends it from its
	// cache, without bothering the customer.
	console.mu.Lock()
	lostSeq, lostPayload := console.videoSeq[5], console.video[5]
	console.mu.Unlock()
	copies := func() int {
		console.mu.Lock()
		defer console.mu.Unlock()
		n := 0
		for i, p := range console.video {
			if console.videoSeq[i] == lostSeq && bytes.Equal(p, lostPayload) {
				n++
			}
		}
		return n
	}
	if err := console.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{
		MediaSSRC: uint32(videoTrack.SSRC()),
		Nacks:     []rtcp.NackPair{{PacketID: lostSeq}},
	}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the NACKed packet resent", func() bool { return copies() >= 2 })

	// The console asks for a key frame; the customer's camera gets it.
	before := plis.Load()
	if err := console.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(videoTrack.SSRC())}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "PLI at the customer", func() bool { return plis.Load() > before })

	if err := fwd.Close(); err != nil {
		t.Errorf("Forwarder.Close: %v", err)
	}
	select {
	case <-negotiationNeeded:
	case <-timeoutC():
		t.Error("no OnNegotiationNeeded after Forwarder.Close")
	}
	if err := fwd.Close(); err != nil {
		t.Errorf("second Forwarder.Close: %v", err)
	}
	serverOffer(t, pa.Peer, console)
	if n := fwd.Packets(); n < 20 {
		t.Errorf("Forwarder.Packets = %d, want at least 20", n)
	}
}

// serverOffer runs one gateway-initiated offer/answer with b.
func serverOffer(t *testing.T, p *Peer, b *browser) {
	t.Helper()
	ctx := context.Background()
	offer, err := p.Offer(ctx, false)
	if err != nil {
		t.Fatalf("Offer: %v", err)
	}
	b.setRemote(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: offer})
	answer, err := b.pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.pc.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	if err := p.SetAnswer(ctx, b.pc.LocalDescription().SDP); err != nil {
		t.Fatalf("SetAnswer: %v", err)
	}
}

// addCamera adds a VP8 camera track to b, before it connects; onRTCP
// sees each RTCP packet the gateway sends about it.
func (b *browser) addCamera(t *testing.T, onRTCP func(rtcp.Packet)) *pwebrtc.TrackLocalStaticRTP {
	t.Helper()
	camera, err := pwebrtc.NewTrackLocalStaticRTP(pwebrtc.RTPCodecCapability{MimeType: pwebrtc.MimeTypeVP8, ClockRate: 90000}, "camera", "customer-cam")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := b.pc.AddTrack(camera)
	if err != nil {
		t.Fatal(err)
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				onRTCP(p)
			}
		}
	}()
	return camera
}

// film calls frame every 20 ms until stop is called or b closes.
func (b *browser) film(frame func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pace(done, b.stop, frame)
	}()
	return func() { close(done); wg.Wait() }
}
