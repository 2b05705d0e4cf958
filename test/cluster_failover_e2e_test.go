//go:build e2e && cluster

package test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/segue-rtc/segue/test/peers"
)

// TestClusterNodeDiesCustomerResumes: the customer's node is killed (kill
// -9) while Alice, on the other node, holds the conversation. The
// customer reconnects to the survivor with the last seq it saw, gets every
// acknowledged message, and the chat goes on with Alice; the transcript
// has every acknowledged message once, in order. make test-cluster runs
// it.
func TestClusterNodeDiesCustomerResumes(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	aw := agentWS(t, n2, n2.login(t, "alice"))

	cust, conv := n1.newConversation(t, "Ann")
	cw := customerWS(t, n1, cust.token)
	for {
		f := aw.expect("offer")
		if cv, _ := f["conversation"].(map[string]any); cv["id"] == conv.ID {
			break
		}
	}
	aw.accept(conv.ID, "alice")
	var acked []string
	for _, text := range []string{"one", "two", "three"} {
		cw.send(map[string]any{"type": "message", "id": "m-" + text, "text": text})
		cw.expect("ack")
		acked = append(acked, text)
		aw.expectText(text)
	}
	aw.send(map[string]any{"type": "message", "id": "r1", "conversation_id": conv.ID, "text": "agent before"})
	aw.expect("ack")
	acked = append(acked, "agent before")
	cw.expectText("agent before")

	n1.Kill()

	// The widget reconnects to the survivor, from seq 0 here to check
	// that everything acknowledged is served.
	w, _, err := dialGateway(t, n2, n2.Origin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": cust.token, "after": 0})
	welcome := w.expect("welcome")
	var got []string
	msgs, _ := welcome["messages"].([]any)
	for _, m := range msgs {
		if m, _ := m.(map[string]any); m != nil {
			if from, _ := m["from"].(map[string]any); from["role"] != "system" {
				got = append(got, m["text"].(string))
			}
		}
	}
	if strings.Join(got, "|") != strings.Join(acked, "|") {
		t.Fatalf("after the failover the customer gets %q, want %q", got, acked)
	}
	w.send(map[string]any{"type": "message", "id": "m-after", "text": "after the crash"})
	w.expect("ack")
	aw.expectText("after the crash")
	aw.send(map[string]any{"type": "message", "id": "r2", "conversation_id": conv.ID, "text": "still with you"})
	aw.expect("ack")
	w.expectText("still with you")

	var texts []string
	for _, m := range n2.login(t, "alice").messages(conv.ID) {
		if m.From.Role != "system" {
			texts = append(texts, m.Text)
		}
	}
	want := strings.Join(append(acked, "after the crash", "still with you"), "|")
	if got := strings.Join(texts, "|"); got != want {
		t.Fatalf("transcript: %s, want %s", got, want)
	}
}

// TestClusterDeadNodesWaitingConversationOffered: node 1 holds a waiting
// conversation whose customer never comes back, and offers it to Alice,
// whose console is on node 2; node 1 is killed (kill -9) mid-offer. Node
// 2 takes the conversation's lease once node 1's life has expired and
// offers it to Alice again within seconds, with no customer
// reconnecting; she accepts it on node 2.
func TestClusterDeadNodesWaitingConversationOffered(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	aw := agentWS(t, n2, n2.login(t, "alice"))
	_, conv := n1.newConversation(t, "Ann")
	expectOffer := func() {
		t.Helper()
		for {
			f := aw.expect("offer")
			if cv, _ := f["conversation"].(map[string]any); cv["id"] == conv.ID {
				return
			}
		}
	}
	expectOffer() // from node 1

	n1.Kill()
	killed := time.Now()
	expectOffer() // from node 2
	t.Logf("offered again by the survivor %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	aw.accept(conv.ID, "alice")
	if got := metricsOf(t, n2)[`segue_conversations_active{state="active"}`]; got != 1 {
		t.Fatalf("active conversations on the survivor: %v", got)
	}
}

// TestClusterTrunkRegistrationMoves: two nodes share a trunk that
// registers with a SIPp registrar. Exactly one node holds the
// registration; when it is killed (kill -9), the other registers within
// seconds.
func TestClusterTrunkRegistrationMoves(t *testing.T) {
	registrar := peers.StartSIPp(t, "sipp/registrar_ok.xml", "127.0.0.1")
	c := startCluster(t, 2, withVoice(voiceConfig{trunks: []voiceTrunk{{name: "pbx", addr: registrar.Addr()}}}),
		withYAML("", "    register: true\n    username: segue\n    register_expiry: 20\n", "", ""))
	const series = `segue_trunk_registered{trunk="pbx"}`
	registered := func() []*gateway {
		var out []*gateway
		for _, g := range c.nodes {
			if g.Pid() != 0 && metricsOf(t, g)[series] == 1 {
				out = append(out, g)
			}
		}
		return out
	}
	waitOne := func(within time.Duration) *gateway {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if r := registered(); len(r) == 1 {
				return r[0]
			} else if len(r) > 1 {
				t.Fatalf("%d nodes hold the trunk's registration", len(r))
			}
			if time.Now().After(deadline) {
				t.Fatalf("no node registered the trunk within %s:\n%s", within, registrar.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	holder := waitOne(15 * time.Second)
	// The other node stays out while the holder lives.
	for range 10 {
		if r := registered(); len(r) != 1 || r[0] != holder {
			t.Fatalf("registration holders changed while the holder lives: %d", len(r))
		}
		time.Sleep(100 * time.Millisecond)
	}
	holder.Kill()
	killed := time.Now()
	survivor := waitOne(15 * time.Second)
	if survivor == holder {
		t.Fatal("the killed node still counts as registered")
	}
	t.Logf("the trunk registration moved %s after the kill", time.Since(killed).Round(100*time.Millisecond))
}

// TestClusterNATSRefusesOutsiders: with nats-server asking for a token,
// a node given cluster.nats_token (from the environment) joins and
// serves, while a client without the token, or with a guessed one,
// cannot connect, so it can neither read the cluster's events nor send
// commands to its nodes.
func TestClusterNATSRefusesOutsiders(t *testing.T) {
	const token = "cluster-token-7f3a9c"
	t.Setenv("SEGUE_TEST_NATS_TOKEN", token)
	startClusterPG(t)
	ns := peers.StartNATS(t, "--auth", token)
	c := startClusterOn(t, ns, "  nats_token: \"${SEGUE_TEST_NATS_TOKEN}\"\n", 1)
	cust, _ := c.nodes[0].newConversation(t, "Ann")
	customerWS(t, c.nodes[0], cust.token)
	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"no token", nil},
		{"guessed token", []nats.Option{nats.Token("guess")}},
	} {
		nc, err := nats.Connect(ns.URL, append(tc.opts, nats.Timeout(2*time.Second))...)
		if err == nil {
			nc.Close()
			t.Fatalf("%s: an outsider connected to the cluster's NATS", tc.name)
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
}

// TestClusterNodeDiesNewCallWorks: Kamailio is in front of two gateways;
// the customer is on node 1 and Alice's console on node 2. They chat, and
// the customer calls Alice's desk phone (baresip), a call node 1
// carries. Node 1 is killed (kill -9) mid-call. The widget reconnects to
// node 2 as it does, with its token and the last seq it saw, and is
// served only what came after; the chat goes on, and the customer calls
// again: node 2 dials the phone through Kamailio, the phone answers, both
// directions carry the right tone at a sane level, and node 2 writes the
// call's record. The call node 1 left up is ended by node 2: its record
// closed, its dialog hung up. make test-cluster runs it.
func TestClusterNodeDiesNewCallWorks(t *testing.T) {
	phone := startBaresipPhone(t)
	c, kam := startVoiceClusterBehindKamailio(t, phone)
	n1, n2 := c.nodes[0], c.nodes[1]
	alice := n2.login(t, "alice")
	aw := agentWS(t, n2, alice)
	cust, conv := n1.newConversation(t, "Ann")
	cw := customerWS(t, n1, cust.token)
	acceptOffer(aw, conv.ID, "alice")
	cw.send(map[string]any{"type": "message", "id": "m1", "text": "can we talk?"})
	cw.expect("ack")
	aw.expectText("can we talk?")
	aw.send(map[string]any{"type": "message", "id": "r1", "conversation_id": conv.ID, "text": "sure, call me"})
	aw.expect("ack")
	m, _ := cw.expectText("sure, call me")["message"].(map[string]any)
	lastSeq, _ := m["seq"].(float64)
	if lastSeq == 0 {
		t.Fatalf("the agent's message has no seq: %v", m)
	}
	callDeskPhone(t, cw, newBrowser(t, 1000), kam)
	if got := metricsOf(t, n1)["segue_calls_active"]; got != 1 {
		t.Fatalf("calls on node 1: %v, want 1", got)
	}

	n1.Kill()

	w, _, err := dialGateway(t, n2, n2.Origin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": cust.token, "after": lastSeq})
	msgs, _ := w.expect("welcome")["messages"].([]any)
	for _, m := range msgs {
		if m, _ := m.(map[string]any); m != nil && m["seq"].(float64) <= lastSeq {
			t.Fatalf("resuming after seq %v, the survivor serves %v again", lastSeq, m)
		}
	}
	w.send(map[string]any{"type": "message", "id": "m2", "text": "cut off, calling again"})
	w.expect("ack")
	aw.expectText("cut off, calling again")

	heardBefore, _ := phone.Recordings()
	b := newBrowser(t, 1000)
	callDeskPhone(t, w, b, kam)
	if got := metricsOf(t, n2)["segue_calls_active"]; got != 1 {
		t.Errorf("calls on the survivor: %v, want 1", got)
	}
	hangUpAndCheckAudio(t, w, b, recordingsSince(phone, heardBefore))

	type callRecord struct {
		Kind       string  `json:"kind"`
		Target     string  `json:"target"`
		AnsweredAt *string `json:"answered_at"`
		EndedAt    *string `json:"ended_at"`
		Cause      string  `json:"cause"`
	}
	var out struct {
		Calls []callRecord `json:"calls"`
	}
	waitFor(t, "the call records", func() error {
		alice.json(http.MethodGet, "/api/v1/conversations/"+conv.ID+"/calls", nil, http.StatusOK, &out)
		if len(out.Calls) != 2 || out.Calls[0].EndedAt == nil || out.Calls[1].EndedAt == nil {
			return fmt.Errorf("call records: %+v", out.Calls)
		}
		return nil
	})
	for i, r := range out.Calls {
		t.Logf("call record %d: %+v", i+1, r)
		if r.Kind != "voice" || r.AnsweredAt == nil || r.Target == "" {
			t.Errorf("call record %d: %+v, want an answered voice call with its target", i+1, r)
		}
	}
	if c := out.Calls[0].Cause; c != "The gateway restarted" {
		t.Errorf("the dead node's call ended with %q, want the survivor's \"The gateway restarted\"", c)
	}
	// Both calls are over at the desk phone: the survivor sent the dead
	// node's call its BYE.
	waitFor(t, "the desk phone's calls ending", func() error {
		if n := strings.Count(phone.Output(), "Call with sip:segue@127.0.0.1 terminated"); n != 2 {
			return fmt.Errorf("%d of 2 calls ended at the desk phone", n)
		}
		return nil
	})
}

// recordingsSince is phone's Recordings without the files in heard
// before, which are earlier calls'.
func recordingsSince(phone *peers.Baresip, before []string) func() (heard, sent []string) {
	return func() (heard, sent []string) {
		h, s := phone.Recordings()
		for _, f := range h {
			if !slices.Contains(before, f) {
				heard = append(heard, f)
			}
		}
		return heard, s
	}
}
