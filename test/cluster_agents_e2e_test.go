//go:build e2e && cluster

package test

import (
	"fmt"
	"slices"
	"testing"
)

// metricIs returns a waitFor condition: node g's metric name is want.
func metricIs(t *testing.T, g *gateway, name string, want float64) func() error {
	return func() error {
		if got := metricsOf(t, g)[name]; got != want {
			return fmt.Errorf("%s is %v, want %v", name, got, want)
		}
		return nil
	}
}

// syncQueue asks console w's node for a page of its queue and reads
// frames until the answer, which lists the waiting conversations that
// node holds. The
// node sends a frame it routes to w before that answer, so an offer of
// one of refused made by w's own node by then is among the frames read:
// it fails the test.
func (w *wsConn) syncQueue(refused ...string) (waiting []string) {
	w.t.Helper()
	w.send(map[string]any{"type": "queue.page", "after": map[string]any{"created_at": "2000-01-01T00:00:00Z", "id": "c"}})
	for range 50 {
		f, err := w.read()
		if err != nil {
			w.t.Fatalf("waiting for the queue page: %v", err)
		}
		switch f.typ() {
		case "offer":
			if cv, _ := f["conversation"].(map[string]any); slices.Contains(refused, cv["id"].(string)) {
				w.t.Fatalf("conversation %s offered: %v", cv["id"], f)
			}
		case "queue.page":
			list, _ := f["queue"].([]any)
			for _, c := range list {
				if c, _ := c.(map[string]any); c != nil {
					waiting = append(waiting, c["id"].(string))
				}
			}
			return waiting
		}
	}
	w.t.Fatal("no queue page in 50 frames")
	return nil
}

// expectOfferOf reads frames until the offer of conversation id.
func (w *wsConn) expectOfferOf(id string) {
	w.t.Helper()
	for range 50 {
		if cv, _ := w.expect("offer")["conversation"].(map[string]any); cv["id"] == id {
			return
		}
	}
	w.t.Fatalf("no offer of %s in 50 offers", id)
}

// expectError reads frames until an error frame and checks its code.
func (w *wsConn) expectError(code string) {
	w.t.Helper()
	if f := w.expect("error"); f["code"] != code {
		w.t.Fatalf("error %v, want code %s", f, code)
	}
}

// TestClusterMaxChatsAcrossNodes: Alice (max_chats 1) signs in on node 2
// and takes a conversation of a customer on node 1. A second customer on
// node 1 and one on node 2 then wait: neither node offers them to her
// and her accepts are refused (at_capacity), the database holding one
// conversation of hers. When she ends the first, she is offered the
// next; with it she is full again, so the last one waits until that one
// ends. make test-cluster runs it, on PostgreSQL and nats-server.
func TestClusterMaxChatsAcrossNodes(t *testing.T) {
	c := startCluster(t, 2, func(o *gatewayOptions) { o.maxChats = 1 })
	n1, n2 := c.nodes[0], c.nodes[1]
	aw := agentWS(t, n2, n2.login(t, "alice"))
	waitFor(t, "node 1 sees Alice online", metricIs(t, n1, `segue_agents{state="available"}`, 1))

	_, first := n1.newConversation(t, "Ann")
	aw.expectOfferOf(first.ID)
	aw.accept(first.ID, "alice")
	waitFor(t, "node 2 counts Alice at capacity", metricIs(t, n2, "segue_agents_at_capacity", 1))

	_, second := n1.newConversation(t, "Bea")
	_, third := n2.newConversation(t, "Cid")
	// The page lists what node 2 holds: the third.
	if waiting := aw.syncQueue(second.ID, third.ID); !slices.Contains(waiting, third.ID) {
		t.Fatalf("waiting on node 2: %v, want %s", waiting, third.ID)
	}
	aw.send(map[string]any{"type": "accept", "conversation_id": second.ID})
	aw.expectError("at_capacity")
	aw.send(map[string]any{"type": "accept", "conversation_id": third.ID})
	aw.expectError("at_capacity")
	for _, g := range c.nodes {
		if m := metricsOf(t, g); m[`segue_conversations_active{state="waiting"}`] != 1 {
			t.Fatalf("%s: waiting %v, want 1", g.URL, m[`segue_conversations_active{state="waiting"}`])
		}
	}

	aw.send(map[string]any{"type": "end", "conversation_id": first.ID})
	aw.expectOfferOf(second.ID)
	aw.accept(second.ID, "alice")
	// Node 2 may have offered the third before it heard she took the
	// second; the database refuses it all the same.
	aw.send(map[string]any{"type": "accept", "conversation_id": third.ID})
	aw.expectError("at_capacity")
	waitFor(t, "node 2 counts Alice at capacity again", metricIs(t, n2, "segue_agents_at_capacity", 1))
	aw.syncQueue(third.ID)

	aw.send(map[string]any{"type": "end", "conversation_id": second.ID})
	aw.expectOfferOf(third.ID)
	aw.accept(third.ID, "alice")
}

// TestClusterAwayOnOneNodeAwayEverywhere: Alice has a console on each
// node and sets "away" on node 2's. Node 1 learns it: a customer's
// conversation there is not offered to her (not to her console on node
// 1, where node 1's offers would show first), and it is offered to her
// on both consoles once she is available again on node 2.
func TestClusterAwayOnOneNodeAwayEverywhere(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	alice := n2.login(t, "alice")
	onB := agentWS(t, n2, alice)
	onA := agentWS(t, n1, alice)

	onB.send(map[string]any{"type": "presence", "state": "away"})
	onB.expect("presence")
	if f := onA.expect("presence"); f["state"] != "away" {
		t.Fatalf("her console on node 1: %v", f)
	}
	waitFor(t, "node 1 has Alice away", metricIs(t, n1, `segue_agents{state="away"}`, 1))

	_, conv := n1.newConversation(t, "Ann")
	if waiting := onA.syncQueue(conv.ID); !slices.Contains(waiting, conv.ID) {
		t.Fatalf("waiting on node 1: %v, want %s", waiting, conv.ID)
	}

	onB.send(map[string]any{"type": "presence", "state": "available"})
	onA.expectOfferOf(conv.ID)
	onB.expectOfferOf(conv.ID)
	onB.accept(conv.ID, "alice")
}
