package webrtc

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5/vnet"
	pwebrtc "github.com/pion/webrtc/v4"
)

// TestVideoCapFollowsViewer forwards a customer's camera, sent at a
// steady 1.6 Mbit/s, to a console whose downlink is then squeezed to
// 400 kbit/s on a virtual network. The gateway must tell the customer,
// with REMB, to send no more than the console can take; with the
// downlink restored, the cap must rise again.
func TestVideoCapFollowsViewer(t *testing.T) {
	lf := pionLoggerFactory{log: testLogger(t)}
	lan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "10.0.0.0/24", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	newNet := func(ip string) *vnet.Net {
		n, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{ip}})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	gwNet, custNet, consoleNet := newNet("10.0.0.1"), newNet("10.0.0.2"), newNet("10.0.0.3")
	// The console's downlink: a token bucket, generous at first.
	downlink := vnet.NewTBFQueue(50_000_000, 64*1024, 32*1024)
	consoleLink, err := vnet.NewQueue(consoleNet, downlink)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{lan.AddNet(gwNet), lan.AddNet(custNet), lan.AddNet(consoleLink), lan.Start()} {
		if step != nil {
			t.Fatal(step)
		}
	}
	t.Cleanup(func() {
		if err := lan.Stop(); err != nil {
			t.Errorf("router stop: %v", err)
		}
		consoleLink.Close()
	})
	onNet := func(n *vnet.Net) func(*pwebrtc.SettingEngine) {
		return func(se *pwebrtc.SettingEngine) {
			se.SetNet(n)
			se.SetIncludeLoopbackCandidate(false)
			se.SetIPFilter(func(net.IP) bool { return true })
			se.SetRemoteIPFilter(func(net.IP) bool { return true })
		}
	}
	e := newTestEngine(t, Config{AllowedRemoteNetworks: []string{"10.0.0.0/24"}}, withSettingEngine(onNet(gwNet)))

	customer := newBrowser(t, browserOptions{settings: onNet(custNet)})
	var remb atomic.Int64 // the last REMB bitrate the customer got
	camera := customer.addCamera(t, func(p rtcp.Packet) {
		if r, ok := p.(*rtcp.ReceiverEstimatedMaximumBitrate); ok {
			remb.Store(int64(r.Bitrate))
		}
	})
	pc := connect(t, e, customer, PeerOptions{Name: "customer"})

	// 20 ms frames of four 1000-byte packets: 1.6 Mbit/s, whatever the
	// cap says, as a sender that ignored it would.
	var seq uint16
	var frame uint32
	defer customer.film(func() {
		for i := range 4 {
			payload := make([]byte, 1000)
			if i == 0 {
				payload[0] = 0x10 // VP8: start of partition
			}
			binary.BigEndian.PutUint32(payload[4:], uint32(seq))
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: frame * 1800, Marker: i == 3}, Payload: payload}
			if err := camera.WriteRTP(pkt); err != nil {
				t.Errorf("camera: %v", err)
			}
			seq++
		}
		frame++
	})()

	var video *RemoteVideo
	select {
	case video = <-pc.videos:
	case <-timeoutC():
		t.Fatal("no OnVideoTrack for the camera")
	}
	console := newBrowser(t, browserOptions{settings: onNet(consoleNet)})
	pa := connect(t, e, console, PeerOptions{Name: "agent"})
	fwd, err := NewForwarder(video, pa.Peer)
	if err != nil {
		t.Fatalf("NewForwarder: %v", err)
	}
	defer fwd.Close()
	serverOffer(t, pa.Peer, console)
	eventually(t, "video at the console", func() bool {
		console.mu.Lock()
		defer console.mu.Unlock()
		return len(console.video) >= 100
	})

	// An open path must not hold the customer back.
	eventually(t, "a REMB of at least 1.6 Mbit/s on an open path", func() bool { return remb.Load() >= 1_600_000 })

	downlink.SetRate(400_000)
	eventually(t, "the REMB under the console's 400 kbit/s", func() bool {
		return remb.Load() > 0 && remb.Load() <= 400_000
	})
	if est := pa.SendEstimate(); est > 450_000 {
		t.Errorf("estimate toward the console %d bit/s, want at most the link's 400k and some", est)
	}

	downlink.SetRate(50_000_000)
	eventually(t, "the REMB back over 1 Mbit/s with the downlink restored", func() bool { return remb.Load() >= 1_000_000 })

	// Only the peer the gateway sends video to runs an estimator.
	if pa.bwe.built() == nil {
		t.Error("no estimator toward the console, which gets video")
	}
	if pc.bwe.built() != nil {
		t.Error("an estimator toward the customer, which gets no video")
	}
}

// TestLazyEstimator: the estimator of a peer that is sent no video is
// never built, reports the starting estimate, and once closed is not
// built any more.
func TestLazyEstimator(t *testing.T) {
	var l lazyBWE
	if got := l.GetTargetBitrate(); got != bweStart {
		t.Errorf("estimate before video %d, want %d", got, bweStart)
	}
	if l.built() != nil {
		t.Fatal("built without video")
	}
	est := l.start()
	if est == nil || l.start() != est || l.built() != est {
		t.Fatal("start did not build one estimator and keep it")
	}
	if got := l.GetTargetBitrate(); got != bweStart {
		t.Errorf("fresh estimate %d, want %d", got, bweStart)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var closed lazyBWE
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if closed.start() != nil {
		t.Error("built after Close")
	}
}
