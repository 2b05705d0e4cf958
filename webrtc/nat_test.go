package webrtc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestNAT runs a call on a virtual network: the gateway sits behind a 1:1
// NAT and announces its public address from nat_1to1_ips; the customer
// sits behind a port-restricted NAT with no STUN server. Only the public
// host candidate of the gateway can work, and the call must connect and
// carry audio over it.
func TestNAT(t *testing.T) {
	lf := pionLoggerFactory{log: testLogger(t)}
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "1.2.3.0/24", LoggerFactory: lf})
	if err != nil {
		t.Fatal(err)
	}
	gwLAN, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR:          "10.0.0.0/24",
		StaticIPs:     []string{"1.2.3.4/10.0.0.4"},
		NATType:       &vnet.NATType{Mode: vnet.NATModeNAT1To1},
		LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	custLAN, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR:      "192.168.1.0/24",
		StaticIPs: []string{"1.2.3.5"},
		NATType: &vnet.NATType{
			MappingBehavior:   vnet.EndpointIndependent,
			FilteringBehavior: vnet.EndpointAddrPortDependent,
		},
		LoggerFactory: lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	gwNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.0.0.4"}})
	if err != nil {
		t.Fatal(err)
	}
	custNet, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"192.168.1.2"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		wan.AddRouter(gwLAN), wan.AddRouter(custLAN),
		gwLAN.AddNet(gwNet), custLAN.AddNet(custNet),
		wan.Start(),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	t.Cleanup(func() {
		if err := wan.Stop(); err != nil {
			t.Errorf("router stop: %v", err)
		}
	})

	e, err := New(Config{NAT1To1IPs: []string{"1.2.3.4"}}, testLogger(t),
		WithICETimeouts(2*time.Second, 3*time.Second),
		withSettingEngine(func(se *pwebrtc.SettingEngine) {
			se.SetNet(gwNet)
			se.SetNetworkTypes([]pwebrtc.NetworkType{pwebrtc.NetworkTypeUDP4})
		}))
	if err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t, browserOptions{settings: func(se *pwebrtc.SettingEngine) {
		se.SetNet(custNet)
		se.SetIncludeLoopbackCandidate(false)
		se.SetIPFilter(func(net.IP) bool { return true })
		se.SetRemoteIPFilter(func(net.IP) bool { return true })
	}})

	// Record the gateway's candidates on their way to the browser.
	var mu sync.Mutex
	var sent []string
	b2 := &candidateTap{b: b, mu: &mu, sent: &sent}
	p := connectWith(t, e, b, PeerOptions{Name: "nat"}, b2.add)

	heard := audiotest.NewRecorder(8000)
	p.SwapAudioOut(heard)
	defer b.sendTone(1000)()
	defer playTone(t, p.AudioIn(), 440)()
	assertTone(t, "gateway heard", heardMore(t, "audio through the NATs", heard, time.Second), 1000)
	assertTone(t, "browser heard", heardMore(t, "audio at the browser", b.heard, time.Second), 440)

	mu.Lock()
	defer mu.Unlock()
	public := false
	for _, c := range sent {
		if strings.Contains(c, "10.0.0.4") {
			t.Errorf("candidate %q gives away the private address", c)
		}
		if strings.Contains(c, "1.2.3.4") && strings.Contains(c, "typ host") {
			public = true
		}
	}
	if !public {
		t.Errorf("no host candidate with the public address among %q", sent)
	}
}

type candidateTap struct {
	b    *browser
	mu   *sync.Mutex
	sent *[]string
}

func (c *candidateTap) add(ci ICECandidateInit) {
	c.mu.Lock()
	*c.sent = append(*c.sent, ci.Candidate)
	c.mu.Unlock()
	c.b.addCandidate(ci)
}

// TestUDPMux runs two calls through an Engine whose peers share one UDP
// port (udp_mux_port): both connect and carry audio, their candidates
// carry that port, and Close releases it.
func TestUDPMux(t *testing.T) {
	// A free port, found by the system; nothing is fixed.
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	e := newTestEngine(t, Config{UDPMuxPort: port})
	var mu sync.Mutex
	var sent []string
	var peers []*testPeer
	var browsers []*browser
	for range 2 {
		b := newBrowser(t, browserOptions{})
		tap := &candidateTap{b: b, mu: &mu, sent: &sent}
		peers = append(peers, connectWith(t, e, b, PeerOptions{}, tap.add))
		browsers = append(browsers, b)
	}
	for i, p := range peers {
		heard := audiotest.NewRecorder(8000)
		p.SwapAudioOut(heard)
		stop := browsers[i].sendTone(1000)
		assertTone(t, "gateway heard", heardMore(t, "audio through the shared port", heard, time.Second), 1000)
		stop()
	}
	mu.Lock()
	n := 0
	for _, c := range sent {
		if c == "" {
			continue
		}
		n++
		if !strings.Contains(c, fmt.Sprintf(" %d typ ", port)) {
			t.Errorf("candidate %q does not use the shared port %d", c, port)
		}
	}
	mu.Unlock()
	if n < 2 {
		t.Errorf("%d candidates trickled for two peers", n)
	}
	for _, p := range peers {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if err := e.Close(); err != nil {
		t.Errorf("Engine.Close: %v", err)
	}
	if _, err := e.NewPeer(context.Background(), PeerOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewPeer after Engine.Close = %v, want ErrClosed", err)
	}
	// The port is free again.
	l, err = net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Errorf("port %d still taken after Close: %v", port, err)
	} else {
		l.Close()
	}
}
