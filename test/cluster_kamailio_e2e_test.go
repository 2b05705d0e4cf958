//go:build e2e && cluster

package test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestClusterPBXCallBackThroughKamailio: Kamailio (deploy/kamailio) is in
// front of two gateways. The customer's widget is on node 1; the PBX
// (SIPp) calls the conversation back through Kamailio twice, and
// Kamailio's round robin gives one of the INVITEs to node 2, which
// answers 302 with node 1's address; Kamailio follows it. Both times the
// customer's widget rings and the customer declines, which reaches the
// PBX as 603: the PBX never sees the redirect.
func TestClusterPBXCallBackThroughKamailio(t *testing.T) {
	startClusterPG(t)
	ns := peers.StartNATS(t)
	c := &cluster{nats: ns}
	var dispatch []string
	for i := 1; i <= 2; i++ {
		sipPort := peers.FreeUDPPort(t, "127.0.0.1")
		sipURI := "sip:127.0.0.1:" + strconv.Itoa(sipPort)
		dispatch = append(dispatch, sipURI)
		c.nodes = append(c.nodes, startGateway(t,
			withVoice(voiceConfig{trunks: []voiceTrunk{{name: "pbx", addr: "127.0.0.1:5999"}}, sipPort: sipPort}),
			func(o *gatewayOptions) {
				o.storeYAML = "  driver: postgres\n  dsn: \"${SEGUE_TEST_PG_DSN}\"\n"
				o.clusterYAML = fmt.Sprintf("cluster:\n  node_id: n%d\n  nats_url: %q\n  advertise:\n    sip: %q\n", i, ns.URL, sipURI)
			}))
	}
	n1, n2 := c.nodes[0], c.nodes[1]
	// Node 2 learns node 1's SIP address from its heartbeat.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(n2.Log(), "peer=n1"); {
		if time.Now().After(deadline) {
			t.Fatal("node 2 never heard from node 1")
		}
		time.Sleep(100 * time.Millisecond)
	}
	kam := peers.StartKamailio(t, "../deploy/kamailio/kamailio.cfg", dispatch)
	cust, conv := n1.newConversation(t, "Ann")
	cw := customerWS(t, n1, cust.token)

	for call := 1; call <= 2; call++ {
		pbx := peers.StartSIPp(t, "sipp/uac_conv_decline.xml", "127.0.0.1", "-set", "conv", conv.ID, "-m", "1", kam.Addr)
		if f := cw.expect("call.incoming"); f["conversation_id"] != conv.ID {
			t.Fatalf("call %d: the widget rings for %v", call, f["conversation_id"])
		}
		cw.send(map[string]any{"type": "voice.hangup", "conversation_id": conv.ID})
		waitSIPp(t, pbx)
	}
	if !strings.Contains(n2.Log(), "inbound call redirected to the conversation's node") {
		t.Fatalf("node 2 never redirected a call:\n%s", kam.Output())
	}
	if !strings.Contains(kam.Output(), "redirected by") {
		t.Fatalf("kamailio followed no redirect:\n%s", kam.Output())
	}

	// Node 2 is killed (kill -9): new call-backs still reach the widget,
	// Kamailio moving on to node 1 when node 2 does not answer.
	n2.Kill()
	for call := 1; call <= 2; call++ {
		pbx := peers.StartSIPp(t, "sipp/uac_conv_decline.xml", "127.0.0.1", "-set", "conv", conv.ID, "-m", "1", kam.Addr)
		cw.expect("call.incoming")
		cw.send(map[string]any{"type": "voice.hangup", "conversation_id": conv.ID})
		waitSIPp(t, pbx)
	}
}

// TestClusterVoiceAcrossNodesThroughKamailio: the customer is on node 1
// and Alice's console on node 2; she accepts the chat (through NATS) and
// the customer calls her desk phone, baresip, which node 1 reaches
// through Kamailio (the gateways' trunk). The call's media stays on node
// 1, where the customer's peer connection is; both directions carry the
// right tone at a sane level: the phone hears the customer's 1000 Hz,
// the customer the phone's 440 Hz.
func TestClusterVoiceAcrossNodesThroughKamailio(t *testing.T) {
	phone := startBaresipPhone(t)
	c, kam := startVoiceClusterBehindKamailio(t, phone)
	n1, n2 := c.nodes[0], c.nodes[1]
	aw := agentWS(t, n2, n2.login(t, "alice"))
	cust, conv := n1.newConversation(t, "Ann")
	cw := customerWS(t, n1, cust.token)
	acceptOffer(aw, conv.ID, "alice")

	b := newBrowser(t, 1000)
	callDeskPhone(t, cw, b, kam)
	if a1, a2 := metricsOf(t, n1)["segue_calls_active"], metricsOf(t, n2)["segue_calls_active"]; a1 != 1 || a2 != 0 {
		t.Errorf("calls on node 1: %v, on node 2: %v; want the call on node 1 only", a1, a2)
	}
	hangUpAndCheckAudio(t, cw, b, phone.Recordings)
}

// startVoiceClusterBehindKamailio starts PostgreSQL, nats-server, Kamailio
// and two gateways in its dispatcher set. The gateways' trunk "pbx" is
// Kamailio, the support queue's calls go through it, and Alice's desk
// phone is phone.
func startVoiceClusterBehindKamailio(t *testing.T, phone *peers.Baresip) (*cluster, *peers.Kamailio) {
	t.Helper()
	startClusterPG(t)
	c := &cluster{nats: peers.StartNATS(t)}
	var dispatch []string
	var sipPorts []int
	for range 2 {
		p := peers.FreeUDPPort(t, "127.0.0.1")
		sipPorts = append(sipPorts, p)
		dispatch = append(dispatch, "sip:127.0.0.1:"+strconv.Itoa(p))
	}
	kam := peers.StartKamailio(t, "../deploy/kamailio/kamailio.cfg", dispatch)
	for i := range 2 {
		c.nodes = append(c.nodes, startGateway(t,
			withVoice(voiceConfig{
				trunks:     []voiceTrunk{{name: "pbx", addr: kam.Addr}},
				queues:     []voiceQueue{{name: "support", trunk: "pbx"}},
				alicePhone: phone.URI(),
				sipPort:    sipPorts[i],
			}),
			func(o *gatewayOptions) {
				o.storeYAML = "  driver: postgres\n  dsn: \"${SEGUE_TEST_PG_DSN}\"\n"
				o.clusterYAML = fmt.Sprintf("cluster:\n  node_id: n%d\n  nats_url: %q\n  advertise:\n    sip: %q\n", i+1, c.nats.URL, dispatch[i])
			}))
	}
	return c, kam
}

// acceptOffer reads the agent's frames on aw until conversation id is
// offered, and accepts it as agent.
func acceptOffer(aw *wsConn, id, agent string) {
	aw.t.Helper()
	for {
		f := aw.expect("offer")
		if cv, _ := f["conversation"].(map[string]any); cv["id"] == id {
			break
		}
	}
	aw.accept(id, agent)
}

// callDeskPhone has the customer on cw call the agent's desk phone from
// the pion browser b, and waits until the call is connected.
func callDeskPhone(t *testing.T, cw *wsConn, b *pionBrowser, kam *peers.Kamailio) {
	t.Helper()
	cw.send(map[string]any{"type": "voice.start", "sdp": b.offer(t)})
	for {
		f := cw.expect2(b)
		if f.typ() != "call" {
			continue
		}
		c, _ := f["call"].(map[string]any)
		switch c["state"] {
		case "failed", "ended":
			t.Fatalf("call %v: %v\n%s", c["state"], c["reason"], kam.Output())
		case "connected":
			return
		}
	}
}

// hangUpAndCheckAudio lets a connected call run for 2.5 s, checks that
// the customer (browser b) hears the desk phone's 440 Hz at a sane level,
// hangs up from the widget cw, and checks that the desk phone heard the
// customer's 1000 Hz in its recording of the call, among recordings.
func hangUpAndCheckAudio(t *testing.T, cw *wsConn, b *pionBrowser, recordings func() (heard, sent []string)) {
	t.Helper()
	time.Sleep(2500 * time.Millisecond) // audio both ways
	atBrowser := lastOf(b.heard, time.Second)
	t.Logf("the customer hears %.0f Hz at %.1f dBFS", audiotest.PeakFrequency(atBrowser, 8000), audiotest.Level(atBrowser))
	if f := audiotest.PeakFrequency(atBrowser, 8000); f < 430 || f > 450 {
		t.Errorf("the customer heard a peak at %.0f Hz, want the desk phone's 440 Hz", f)
	}
	if l := audiotest.Level(atBrowser); l < -20 || l > 0 {
		t.Errorf("the customer heard %.1f dBFS, want about -6", l)
	}
	// The phone records what it hears from the first packet on: hang up
	// once it has more than the 2 s baresipHeard reads (8 kHz, 16 bits).
	waitFor(t, "the desk phone's recording", func() error {
		heard, _ := recordings()
		for _, f := range heard {
			if fi, err := os.Stat(f); err == nil && fi.Size() > 44+2*8000*22/10 {
				return nil
			}
		}
		return fmt.Errorf("no recording of 2.2 s in %v", heard)
	})
	cw.send(map[string]any{"type": "voice.hangup"})
	heard, rate := baresipHeard(t, recordings, time.Second, time.Second)
	t.Logf("the desk phone hears %.0f Hz at %.1f dBFS", audiotest.PeakFrequency(heard, rate), audiotest.Level(heard))
	if f := audiotest.PeakFrequency(heard, rate); f < 980 || f > 1020 {
		t.Errorf("the desk phone heard a peak at %.0f Hz, want the customer's 1000 Hz", f)
	}
	if l := audiotest.Level(heard); l < -20 || l > 0 {
		t.Errorf("the desk phone heard %.1f dBFS, want about -6", l)
	}
}

// expect2 reads the next frame, applying WebRTC signalling to b.
func (w *wsConn) expect2(b *pionBrowser) frame {
	w.t.Helper()
	for {
		f, err := w.read()
		if err != nil {
			w.t.Fatalf("reading frames: %v", err)
		}
		if !b.signalled(w.t, f) {
			return f
		}
	}
}
