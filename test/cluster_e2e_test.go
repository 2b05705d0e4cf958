//go:build e2e

package test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/segue-rtc/segue/store/pgtest"
	"github.com/segue-rtc/segue/test/peers"
)

// cluster is gateways sharing one PostgreSQL database and one NATS server.
type cluster struct {
	nats  *peers.NATS
	nodes []*gateway
}

// startCluster starts PostgreSQL, nats-server and n gateways, nodes
// "n1".."nN", on loopback with ports of their own.
func startCluster(t *testing.T, n int, opts ...func(*gatewayOptions)) *cluster {
	t.Helper()
	startClusterPG(t)
	return startClusterOn(t, peers.StartNATS(t), "", n, opts...)
}

// startClusterPG starts PostgreSQL with a database for the test, in
// SEGUE_TEST_PG_DSN.
func startClusterPG(t *testing.T) {
	t.Helper()
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })
	dsn, err := pg.NewDatabase(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SEGUE_TEST_PG_DSN", dsn)
}

// startClusterOn starts n gateways on a running nats-server, with
// clusterYAML's extra lines in each cluster section; PostgreSQL is
// already in SEGUE_TEST_PG_DSN.
func startClusterOn(t *testing.T, nats *peers.NATS, clusterYAML string, n int, opts ...func(*gatewayOptions)) *cluster {
	t.Helper()
	c := &cluster{nats: nats}
	for i := 1; i <= n; i++ {
		node := fmt.Sprintf("n%d", i)
		c.nodes = append(c.nodes, startGateway(t, append(opts, func(o *gatewayOptions) {
			o.storeYAML = "  driver: postgres\n  dsn: \"${SEGUE_TEST_PG_DSN}\"\n"
			o.clusterYAML = fmt.Sprintf("cluster:\n  node_id: %s\n  nats_url: %q\n%s", node, c.nats.URL, clusterYAML)
		})...))
	}
	return c
}

// expectText reads frames until a message with text arrives.
func (w *wsConn) expectText(text string) frame {
	w.t.Helper()
	for range 50 {
		f := w.expect("message")
		if m, _ := f["message"].(map[string]any); m != nil && m["text"] == text {
			return f
		}
	}
	w.t.Fatalf("no message %q in 50 messages", text)
	return nil
}

// TestClusterChatAcrossNodes: two gateways on one PostgreSQL and one
// nats-server. Alice's console is on node 2 and the customer on node 1:
// node 1 offers the conversation to Alice through NATS, her accept runs
// on node 1, messages, typing and read receipts cross both ways, and the
// transcript, read back from either node, has them all in order.
func TestClusterChatAcrossNodes(t *testing.T) {
	c := startCluster(t, 2)
	n1, n2 := c.nodes[0], c.nodes[1]
	alice := n2.login(t, "alice")
	aw := agentWS(t, n2, alice)

	cust, conv := n1.newConversation(t, "Ann")
	cw := customerWS(t, n1, cust.token)
	cw.send(map[string]any{"type": "message", "id": "m1", "text": "hello from node 1"})
	cw.expect("ack")
	for {
		f := aw.expect("offer")
		if cv, _ := f["conversation"].(map[string]any); cv["id"] == conv.ID {
			break
		}
	}
	aw.accept(conv.ID, "alice")
	aw.send(map[string]any{"type": "message", "id": "r1", "conversation_id": conv.ID, "text": "hello from node 2"})
	aw.expect("ack")
	cw.expectText("hello from node 2")
	cw.send(map[string]any{"type": "typing", "typing": true})
	if f := aw.expect("typing"); f["typing"] != true {
		t.Fatalf("typing on node 2: %v", f)
	}
	cw.send(map[string]any{"type": "message", "id": "m2", "text": "thanks"})
	aw.expectText("thanks")
	aw.send(map[string]any{"type": "read", "conversation_id": conv.ID, "seq": 99})
	if f := cw.expect("read"); f["role"] != "agent" {
		t.Fatalf("read receipt on node 1: %v", f)
	}
	for _, g := range c.nodes {
		var texts []string
		for _, m := range g.login(t, "alice").messages(conv.ID) {
			if m.From.Role != "system" {
				texts = append(texts, m.Text)
			}
		}
		if got := strings.Join(texts, "|"); got != "hello from node 1|hello from node 2|thanks" {
			t.Fatalf("transcript on %s: %s", g.URL, got)
		}
	}
}
