package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// agentsYAML is the agents: section of the tests below: Alice and Bob
// in support, each taking maxChats conversations at once.
func agentsYAML(maxChats int) string {
	return fmt.Sprintf(`  - {id: alice, name: Alice, password_hash: %q, queues: [support], max_chats: %d}
  - {id: bob, name: Bob, password_hash: %q, queues: [support], max_chats: %d}
`, testHash, maxChats, testHash, maxChats)
}

// waitAgent waits until agent id on node e satisfies cond (read under
// hub.mu).
func waitAgent(t *testing.T, e *env2, id, what string, cond func(a *agent) bool) {
	t.Helper()
	deadline := time.Now().Add(frameWait)
	for {
		h := e.srv.hub
		h.mu.Lock()
		ok := cond(h.agents[id])
		h.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s: %s: %s never did", e.srv.node.id, id, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// offeredTo is who conversation id on node e is offered to now.
func offeredTo(e *env2, id string) string {
	h := e.srv.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if cv, ok := h.convs[id]; ok {
		return cv.offeredTo
	}
	return "(not held)"
}

// expectOffer reads frames until the offer of conversation id arrives.
func expectOffer(t *testing.T, w *wsc, id string) {
	t.Helper()
	for {
		if c := decode[wireConversation](t, w.expect("offer")["conversation"]); c.ID == id {
			return
		}
	}
}

// TestMaxChatsAcrossNodes: Alice (max_chats 1) has her console on node
// b and takes a conversation held by node a. Node b then counts it: its
// own customer's conversation is not offered to her, and her accept of
// it is refused; once she ends the first, the second is offered.
func TestMaxChatsAcrossNodes(t *testing.T) {
	a, b := newClusterPairWith(t, agentsYAML(1), true)
	aws, _ := b.agentWS(b.login("alice"))
	waitRemote(t, a, "alice", 1)

	id1, _ := a.startChat("Ann")
	expectOffer(t, aws, id1)
	aws.send(map[string]any{"type": "accept", "conversation_id": id1})
	aws.expect("history")
	waitAgent(t, b, "alice", "counts node a's conversation", func(x *agent) bool { return x.elsewhere.convs == 1 && len(x.convs) == 0 })

	id2, _ := b.startChat("Bea") // routed as it is created
	if got := offeredTo(b, id2); got != "" {
		t.Fatalf("node b offered its conversation to %q while Alice holds her one conversation on node a", got)
	}
	aws.send(map[string]any{"type": "accept", "conversation_id": id2})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "at_capacity" {
		t.Fatalf("accept of a second conversation: %v", f)
	}

	aws.send(map[string]any{"type": "end", "conversation_id": id1})
	expectOffer(t, aws, id2)
	aws.send(map[string]any{"type": "accept", "conversation_id": id2})
	aws.expect("history")
}

// TestNodesThatCannotHearEachOtherStillKeepMaxChats: two nodes share the
// database but not the bus, so neither knows what the other holds; both
// accept a conversation for Alice (max_chats 1) at once. The store
// counts her conversations as it assigns: exactly one accept goes
// through, and a transfer to her on the other node is refused too.
func TestNodesThatCannotHearEachOtherStillKeepMaxChats(t *testing.T) {
	a, b := newClusterPairWith(t, agentsYAML(1), false)
	id1, _ := a.startChat("Ann")
	id2, _ := b.startChat("Bea")
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, e := range []*env2{a, b} {
		id := []string{id1, id2}[i]
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = e.srv.hub.accept(context.Background(), "alice", id) }()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		var ae *apiError
		switch {
		case err == nil:
			won++
		case errors.As(err, &ae) && ae.Code == "at_capacity":
		default:
			t.Fatalf("accept on node %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d accepts went through, want 1: %v", won, errs)
	}
	// Bob takes the other one, on the node that lost, and cannot
	// transfer it to Alice either.
	lost, id := b, id2
	if errs[0] != nil {
		lost, id = a, id1
	}
	if err := lost.srv.hub.accept(context.Background(), "bob", id); err != nil {
		t.Fatal(err)
	}
	cv, _, err := lost.srv.hub.lookup(context.Background(), id)
	if err != nil || cv == nil {
		t.Fatalf("lookup %s: %v", id, err)
	}
	// Alice is online for the transfer: a console of hers on that node.
	aws, _ := lost.agentWS(lost.login("alice"))
	defer aws.conn.CloseNow()
	var ae *apiError
	if err := lost.srv.hub.transfer(context.Background(), "bob", cv, "alice", ""); !errors.As(err, &ae) || ae.Code != "at_capacity" {
		t.Fatalf("transfer to Alice, full on the other node: %v", err)
	}
}

func TestPresenceNewer(t *testing.T) {
	for _, tc := range []struct {
		ver     uint64
		by      string
		thanVer uint64
		thanBy  string
		want    bool
	}{
		{2, "a", 1, "b", true},
		{1, "b", 2, "a", false},
		{3, "b", 3, "a", true}, // made at once on two nodes: the id decides, the same everywhere
		{3, "a", 3, "b", false},
		{3, "a", 3, "a", false},
		{1, "a", 0, "", true},
	} {
		if got := presenceNewer(tc.ver, tc.by, tc.thanVer, tc.thanBy); got != tc.want {
			t.Errorf("presenceNewer(%d, %q, %d, %q) = %v", tc.ver, tc.by, tc.thanVer, tc.thanBy, got)
		}
	}
}

// TestAwayOnOneNodeIsAwayEverywhere: Alice sets "away" on her console on
// node b; node a, which holds the customer, does not offer her its
// conversation, and does once she is available again. A choice made on a
// console on node a reaches node b the same way.
func TestAwayOnOneNodeIsAwayEverywhere(t *testing.T) {
	a, b := newClusterPairWith(t, agentsYAML(2), true)
	alice := b.login("alice")
	aws, _ := b.agentWS(alice)
	waitRemote(t, a, "alice", 1)
	aws.send(map[string]any{"type": "presence", "state": "away"})
	aws.expect("presence")
	waitAgent(t, a, "alice", "is away", func(x *agent) bool { return a.srv.hub.presenceLocked(x) == presenceAway })

	id, _ := a.startChat("Ann")
	if got := offeredTo(a, id); got != "" {
		t.Fatalf("node a offered the conversation to %q, away on node b", got)
	}
	aws.send(map[string]any{"type": "presence", "state": "available"})
	expectOffer(t, aws, id)

	// The other way: a console of hers on node a sets away.
	aws2, _ := a.agentWS(alice)
	waitRemote(t, b, "alice", 1)
	aws2.send(map[string]any{"type": "presence", "state": "away"})
	aws2.expect("presence")
	waitAgent(t, b, "alice", "is away", func(x *agent) bool { return b.srv.hub.presenceLocked(x) == presenceAway })
	if f := aws.expect("presence"); decode[string](t, f["state"]) != presenceAway {
		t.Fatalf("her console on node b: %v", f)
	}
}

// TestLongestIdleAcrossNodes: Alice and Bob have their consoles on node
// b, Alice first, so node a counts her idle longer. Then Alice takes and
// ends a conversation on node b: Bob is now the one idle longest, and
// node a offers its next conversation to him.
func TestLongestIdleAcrossNodes(t *testing.T) {
	a, b := newClusterPairWith(t, agentsYAML(2), true)
	aws, _ := b.agentWS(b.login("alice"))
	waitRemote(t, a, "alice", 1)
	bws, _ := b.agentWS(b.login("bob"))
	waitRemote(t, a, "bob", 1)

	id1, _ := b.startChat("Ann")
	expectOffer(t, aws, id1)
	aws.send(map[string]any{"type": "accept", "conversation_id": id1})
	aws.expect("history")
	aws.send(map[string]any{"type": "end", "conversation_id": id1})
	var bobIdle time.Time
	waitAgent(t, a, "alice", "is idle for less time than Bob", func(x *agent) bool {
		bobIdle = a.srv.hub.agents["bob"].idleSince
		return x.idleSince.After(bobIdle) && x.elsewhere.convs == 0
	})

	id2, _ := a.startChat("Bea")
	if got := offeredTo(a, id2); got != "bob" {
		t.Fatalf("node a offered its conversation to %q, want bob (idle since %v)", got, bobIdle)
	}
	expectOffer(t, bws, id2)
}

// TestHeartbeatAgentsChecked: what a heartbeat says of an agent is taken
// only when it makes sense: negative or huge counts and unknown presence
// states are dropped, an agent this gateway does not know changes
// nothing, and an idle time ahead of this node's clock is taken as now.
func TestHeartbeatAgentsChecked(t *testing.T) {
	carol := fmt.Sprintf("  - {id: carol, name: Carol, password_hash: %q, queues: [support]}\n", testHash)
	a, _ := newClusterPairWith(t, agentsYAML(2)+carol, false)
	n := a.srv.node
	n.apply(heartbeat{Node: "x", Sockets: []beatSocket{}, Agents: []beatAgent{
		{ID: "alice", Convs: -3, Offered: 1},
		{ID: "bob", Convs: maxBeatCount + 1},
		{ID: "bob", Presence: "gone", PresenceVer: 9, Offered: 2},
		{ID: "mallory", Convs: 5, Presence: presenceAway, PresenceVer: 1},
		{ID: "carol", IdleSince: time.Now().Add(time.Hour)},
	}})
	h := a.srv.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if al := h.agents["alice"]; al.elsewhere != (agentLoad{}) {
		t.Errorf("alice after negative counts: %+v", al.elsewhere)
	}
	if bo := h.agents["bob"]; bo.elsewhere != (agentLoad{offered: 2}) || bo.presence != presenceAvailable || bo.presenceVer != 0 {
		t.Errorf("bob after a bad presence: %+v %s %d", bo.elsewhere, bo.presence, bo.presenceVer)
	}
	if c := h.agents["carol"]; !c.idleSince.Before(time.Now().Add(time.Minute)) {
		t.Errorf("carol idle since %v, from a clock an hour ahead", c.idleSince)
	}
	if _, ok := h.agents["mallory"]; ok {
		t.Error("an unknown agent was added")
	}
}
