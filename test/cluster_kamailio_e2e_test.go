//go:build e2e && cluster

package test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
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
}
