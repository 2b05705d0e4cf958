//go:build e2e

package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// nackStorm has p ask, every 5 ms until stop, for the last 1,024 packets
// of the video stream ssrc it receives: NACKs for everything, with a new
// newest packet in most of them. It returns the RTCP bytes it sent.
func nackStorm(t *testing.T, p *rtcPeer, ssrc uint32, stop <-chan struct{}) (nacks, bytes int) {
	t.Helper()
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return nacks, bytes
		case <-tk.C:
		}
		in, _ := p.video(ssrc)
		lost := make([]uint16, 1024)
		for i := range lost {
			lost[i] = in.newest - 1023 + uint16(i)
		}
		pkts := []rtcp.Packet{&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(lost)}}
		raw, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Errorf("NACK: %v", err)
			return nacks, bytes
		}
		if err := p.pc.WriteRTCP(pkts); err != nil {
			return nacks, bytes
		}
		nacks++
		bytes += len(raw)
	}
}

// TestNACKStormIsBudgeted: a visitor whose agent turned the console's
// camera on (1.6 Mbit/s toward it) asks, every 5 ms for 3 s, for the last
// 1,024 packets again. The gateway resends a budgeted share only: fewer
// bytes than the NACKs took (where pion's responder alone resent ×1,859
// the NACKs' bytes), and a fraction of the video itself; the refusals
// show in the metrics.
func TestNACKStormIsBudgeted(t *testing.T) {
	g := startGateway(t)
	abuser := g.visitor(t, "127.0.0.5")
	convID, token := abuser.newConversation("Mallory")
	alice := g.login(t, "alice")
	agentWS(t, g, alice).accept(convID, "alice")

	cust := newRTCPeer(t, abuser.socket(token), "", rtcOptions{noReplayWindow: true})
	cust.camera("abuser-camera", 10, 100)
	if code := cust.offer("video.start"); code != "" {
		t.Fatalf("video.start: %s", code)
	}
	console := newRTCPeer(t, agentWS(t, g, alice), convID, rtcOptions{})
	console.camera("alice-camera", 200, 1000) // 1.6 Mbit/s
	if code := console.offer("media.join"); code != "" {
		t.Fatalf("media.join: %s", code)
	}
	var ssrc uint32
	waitFor(t, "Alice's camera at the visitor", func() error {
		in, s := cust.video(0)
		if in.packets < 200 {
			return fmt.Errorf("%d packets so far", in.packets)
		}
		ssrc = s
		return nil
	})

	before, _ := cust.video(ssrc)
	m0 := metricsOf(t, g)
	cpu0, wall0 := procCPU(t, g.Pid()), time.Now()
	stop := make(chan struct{})
	time.AfterFunc(3*time.Second, func() { close(stop) })
	nacks, nackBytes := nackStorm(t, cust, ssrc, stop)
	cpu := procCPU(t, g.Pid()) - cpu0
	wall := time.Since(wall0)
	time.Sleep(500 * time.Millisecond) // resends in flight land
	after, _ := cust.video(ssrc)
	m1 := metricsOf(t, g)

	media := after.bytes - before.bytes
	resent := after.resentBytes - before.resentBytes
	gwResent := m1["segue_webrtc_retransmit_bytes_total"] - m0["segue_webrtc_retransmit_bytes_total"]
	t.Logf("%d NACKs (%d bytes) in %v: the visitor got %d bytes of video and %d resent (gateway: %.0f); the gateway used %.0f%% of a core",
		nacks, nackBytes, wall.Round(time.Millisecond), media, resent, gwResent, 100*cpu.Seconds()/wall.Seconds())
	t.Logf("refused: budget %.0f, rate %.0f, repeat %.0f, unavailable %.0f",
		m1[`segue_webrtc_nack_refused_total{reason="budget"}`], m1[`segue_webrtc_nack_refused_total{reason="rate"}`],
		m1[`segue_webrtc_nack_refused_total{reason="repeat"}`], m1[`segue_webrtc_nack_refused_total{reason="unavailable"}`])
	if media < 200_000 {
		t.Fatalf("only %d bytes of video arrived during the storm", media)
	}
	if ratio := float64(resent) / float64(nackBytes); ratio > 1.5 {
		t.Errorf("amplification: %d bytes resent for %d bytes of NACK (×%.2f), want at most ×1.5", resent, nackBytes, ratio)
	}
	if share := float64(resent) / float64(media); share > 0.3 {
		t.Errorf("resends were %.0f%% of the video's bytes, want at most 30%%", 100*share)
	}
	if resent == 0 || gwResent == 0 {
		t.Errorf("nothing resent (visitor %d, gateway %.0f): the budget should still answer some NACKs", resent, gwResent)
	}
	if m1[`segue_webrtc_nack_refused_total{reason="budget"}`] == 0 {
		t.Error("no refusal for the budget in segue_webrtc_nack_refused_total")
	}
	if frac := cpu.Seconds() / wall.Seconds(); frac > 0.6 {
		t.Errorf("the gateway used %.0f%% of a core during the storm, want under 60%%", 100*frac)
	}
}
