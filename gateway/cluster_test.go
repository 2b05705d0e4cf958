package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/store"
)

// newClusterPair starts two gateways, nodes "a" and "b", sharing one store
// and one in-process bus, as two machines share PostgreSQL and NATS.
func newClusterPair(t *testing.T) (a, b *env2) {
	t.Helper()
	envs, _, _ := newClusterNodes(t)
	return envs[0], envs[1]
}

// aliceMax2 is the agents: section of newClusterPair.
var aliceMax2 = fmt.Sprintf("  - {id: alice, name: Alice, password_hash: %q, queues: [support], max_chats: 2}\n", testHash)

// newClusterNodes is newClusterPair that also returns the lease store and
// a function per node that stops its cluster loop, as a clean stop does.
func newClusterNodes(t *testing.T) ([]*env2, *memLeases, []context.CancelFunc) {
	t.Helper()
	return newClusterNodesWith(t, aliceMax2, true)
}

// newClusterPairWith starts nodes "a" and "b" on one store with agents,
// the agents: section's entries. With shareBus false each node has a
// bus and a lease store of its own: they share the database only, as two
// nodes that cannot hear each other.
func newClusterPairWith(t *testing.T, agents string, shareBus bool) (a, b *env2) {
	t.Helper()
	envs, _, _ := newClusterNodesWith(t, agents, shareBus)
	return envs[0], envs[1]
}

// newClusterNodesWith is newClusterPairWith that also returns node a's
// lease store and the functions that stop each node's cluster loop; opts
// apply to both nodes.
func newClusterNodesWith(t *testing.T, agents string, shareBus bool, opts ...Option) ([]*env2, *memLeases, []context.CancelFunc) {
	t.Helper()
	doc := `
http:
  public_url: "http://gateway.test"
  allowed_origins: ["https://shop.example.com"]
queues:
  - name: support
    offer_timeout: 5
agents:
` + agents
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "s.db"), filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	b0, l0 := newMemBus(), newMemLeases()
	buses := []*memBus{b0}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var envs []*env2
	var stops []context.CancelFunc
	for _, id := range []string{"a", "b"} {
		cfg, err := ParseConfig([]byte(doc), testEnv)
		if err != nil {
			t.Fatal(err)
		}
		bus, l := b0, l0
		if !shareBus && id != "a" {
			bus, l = newMemBus(), newMemLeases()
			buses = append(buses, bus)
		}
		srv, err := New(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)), append([]Option{withBus(id, bus, l)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		nctx, stop := context.WithCancel(ctx)
		stops = append(stops, stop)
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.node.run(nctx) }()
		envs = append(envs, &env2{t: t, srv: srv, ts: httptest.NewServer(srv.Handler()), st: st})
	}
	t.Cleanup(func() {
		for _, e := range envs {
			e.srv.hub.shutdown("test over")
			e.srv.closeMedia()
			e.ts.Close()
		}
		cancel()
		wg.Wait()
		for _, b := range buses {
			b.Close()
		}
		st.Close()
	})
	return envs, l0, stops
}

// waitRemote waits until node e sees n console sockets of agent id on the
// other node.
func waitRemote(t *testing.T, e *env2, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(frameWait)
	for {
		e.srv.node.mu.Lock()
		got := 0
		for _, r := range e.srv.node.remotes {
			for _, cl := range r.socks {
				if cl.agentID == id {
					got++
				}
			}
		}
		e.srv.node.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s sees %d remote sockets of %s, want %d", e.srv.node.id, got, id, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// expectMessage reads frames until message id arrives and returns it.
func expectMessage(t *testing.T, w *wsc, id string) wireMessage {
	t.Helper()
	for {
		m := decode[wireMessage](t, w.expect("message")["message"])
		if m.ID == id {
			return m
		}
	}
}

// TestChatAcrossNodes: a customer on node a and an agent on node b chat:
// the offer, the accept, messages both ways, typing and read receipts
// cross the bus; then the customer comes back on node b, which takes the
// conversation over, and nothing acknowledged is lost.
func TestChatAcrossNodes(t *testing.T) {
	a, b := newClusterPair(t)
	alice := b.login("alice") // the session is in the shared store
	aws, _ := b.agentWS(alice)
	waitRemote(t, a, "alice", 1)

	id, token := a.startChat("Ann")
	cws := a.customerWS(token)
	if offer := decode[wireConversation](t, aws.expect("offer")["conversation"]); offer.ID != id {
		t.Fatalf("offer on node b: %+v", offer)
	}
	cws.send(map[string]any{"type": "message", "id": "m1", "text": "hello from node a"})
	cws.expect("ack")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	if hist := decode[[]wireMessage](t, aws.expect("history")["messages"]); len(hist) == 0 || hist[0].Text != "hello from node a" {
		t.Fatalf("history on node b: %+v", hist)
	}
	if c := decode[wireConversation](t, cws.expect("conversation")["conversation"]); c.State != store.StateActive || c.Agent == nil || c.Agent.ID != "alice" {
		t.Fatalf("customer sees %+v", c)
	}
	aws.send(map[string]any{"type": "message", "id": "r1", "conversation_id": id, "text": "hello from node b"})
	if m := expectMessage(t, cws, "r1"); m.From.Role != store.RoleAgent || m.Text != "hello from node b" {
		t.Fatalf("reply on node a: %+v", m)
	}
	cws.send(map[string]any{"type": "message", "id": "m2", "text": "thanks"})
	if m := expectMessage(t, aws, "m2"); m.Text != "thanks" {
		t.Fatalf("message on node b: %+v", m)
	}
	cws.send(map[string]any{"type": "typing", "typing": true})
	if f := aws.expect("typing"); string(f["typing"]) != "true" {
		t.Fatalf("typing on node b: %v", f)
	}
	aws.send(map[string]any{"type": "read", "conversation_id": id, "seq": 99})
	if f := cws.expect("read"); decode[string](t, f["role"]) != "agent" {
		t.Fatalf("read receipt on node a: %v", f)
	}
	// An error from the owner reaches the console that sent the command.
	aws.send(map[string]any{"type": "message", "id": "", "conversation_id": id, "text": "no id"})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "bad_frame" {
		t.Fatalf("error from node a: %v", f)
	}

	// The customer comes back on node b: b takes the conversation over.
	cws2 := b.customerWS(token)
	if a.srv.hub.holds(id) || !b.srv.hub.holds(id) {
		t.Fatalf("after the customer moved: a holds %v, b holds %v", a.srv.hub.holds(id), b.srv.hub.holds(id))
	}
	cws2.send(map[string]any{"type": "message", "id": "m3", "text": "now on node b"})
	cws2.expect("ack")
	if m := expectMessage(t, aws, "m3"); m.Text != "now on node b" {
		t.Fatalf("message after the move: %+v", m)
	}
	aws.send(map[string]any{"type": "message", "id": "r2", "conversation_id": id, "text": "still here"})
	expectMessage(t, cws2, "r2")
	ms, err := a.st.MessagesBefore(context.Background(), id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range ms {
		if m.Role != store.RoleSystem {
			texts = append(texts, m.Text)
		}
	}
	if got := strings.Join(texts, "|"); got != "hello from node a|hello from node b|thanks|now on node b|still here" {
		t.Fatalf("transcript: %s", got)
	}
}

// TestAgentLeavingNodeWithdrawsOffers: when node b, which holds the
// agent's console, stops, node a takes the agent for offline and the
// conversation it offered waits for the next agent.
func TestAgentLeavingNodeWithdrawsOffers(t *testing.T) {
	a, b := newClusterPair(t)
	aws, _ := b.agentWS(b.login("alice"))
	waitRemote(t, a, "alice", 1)
	id, _ := a.startChat("Ann")
	if offer := decode[wireConversation](t, aws.expect("offer")["conversation"]); offer.ID != id {
		t.Fatalf("offer: %+v", offer)
	}
	aws.conn.CloseNow()
	waitRemote(t, a, "alice", 0)
	a.srv.hub.mu.Lock()
	offered := a.srv.hub.convs[id].offeredTo
	a.srv.hub.mu.Unlock()
	if offered != "" {
		t.Fatalf("still offered to %q after the console left", offered)
	}
}

// TestCleanStopFreesConversations: a node that stops cleanly gives up
// its conversations' leases, so that the node its customers come back on
// takes them at once rather than after the lease's life.
func TestCleanStopFreesConversations(t *testing.T) {
	envs, leases, stops := newClusterNodes(t)
	a, b := envs[0], envs[1]
	id, token := a.startChat("Ann")
	a.customerWS(token)
	if holder, _, _ := leases.Holder(context.Background(), convKey(id)); holder != a.srv.node.inc {
		t.Fatalf("conversation held by %q, want node a's %q", holder, a.srv.node.inc)
	}
	stops[0]()
	deadline := time.Now().Add(frameWait)
	for {
		holder, _, _ := leases.Holder(context.Background(), convKey(id))
		if holder == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a clean stop the conversation is still held by %q", holder)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// (Left to its life's end, the lease would have gone from node a to
	// node b, which picks up orphans, and never been free.)
	b.customerWS(token)
	if !b.srv.hub.holds(id) {
		t.Fatal("node b does not hold the conversation its customer came back to")
	}
}

func TestSubjectMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"segue.sock.a.*", "segue.sock.a.s1", true},
		{"segue.sock.a.*", "segue.sock.b.s1", false},
		{"segue.sock.a.*", "segue.sock.a.s1.x", false},
		{"segue.>", "segue.conv.x.cmd", true},
		{"segue.>", "segue", false},
		{"segue.conv.x.cmd", "segue.conv.x.cmd", true},
		{"segue.conv.x.cmd", "segue.conv.y.cmd", false},
	} {
		if got := subjectMatch(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("subjectMatch(%q, %q) = %v", tc.pattern, tc.subject, got)
		}
	}
}

func TestClusterConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster ClusterConfig
		driver  string
		want    []string
	}{
		{"absent", ClusterConfig{}, "sqlite", nil},
		{"good", ClusterConfig{NodeID: "gw-1", NATSURL: "nats://127.0.0.1:4222", Advertise: AdvertiseConfig{HTTP: "http://10.0.0.1:8080", SIP: "sip:10.0.0.1:5060"}}, "postgres", nil},
		{"bad", ClusterConfig{NodeID: "a.b", NATSURL: "http://x", Advertise: AdvertiseConfig{HTTP: "ftp://x", SIP: "10.0.0.1"}}, "postgres",
			[]string{"node_id:", "nats_url:", "advertise.http:", "advertise.sip:"}},
		{"no url", ClusterConfig{NodeID: "gw-1"}, "postgres", []string{"nats_url: required"}},
		{"sqlite", ClusterConfig{NodeID: "gw-1", NATSURL: "nats://127.0.0.1:4222"}, "sqlite", []string{"store.driver postgres"}},
		{"token and creds", ClusterConfig{NodeID: "gw-1", NATSURL: "nats://127.0.0.1:4222", NATSToken: "t", NATSCredentials: "/nonexistent/x.creds"}, "postgres",
			[]string{"nats_credentials: set nats_token or nats_credentials, not both", "nats_credentials: stat"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cluster.validate(tc.driver)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestClusterNATSTokenFromEnvironment: cluster.nats_token is a secret:
// ${NAME} in it comes from the environment, and a name that is not set
// is an error naming the key.
func TestClusterNATSTokenFromEnvironment(t *testing.T) {
	doc := fmt.Sprintf(`
store:
  driver: postgres
  dsn: "postgres://segue@db/segue"
queues: [{name: support}]
agents:
  - {id: alice, name: Alice, password_hash: %q, queues: [support]}
cluster:
  node_id: gw-1
  nats_url: "nats://127.0.0.1:4222"
  nats_token: "${SEGUE_TEST_SECRET}"
`, testHash)
	cfg, err := ParseConfig([]byte(doc), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.NATSToken != "0123456789abcdef-secret" {
		t.Fatalf("nats_token: %q", cfg.Cluster.NATSToken)
	}
	_, err = ParseConfig([]byte(strings.Replace(doc, "SEGUE_TEST_SECRET", "SEGUE_UNSET", 1)), testEnv)
	if err == nil || !strings.Contains(err.Error(), "cluster.nats_token") {
		t.Fatalf("unset variable: %v", err)
	}
}
