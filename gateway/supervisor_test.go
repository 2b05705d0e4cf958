package gateway

import (
	"encoding/json"
	"testing"
)

// withSupervisor adds Sam, a supervisor of the support queue (not of
// billing), to the test server's agents.
func withSupervisor(c *Config) {
	c.Agents = append(c.Agents, AgentConfig{ID: "sam", Name: "Sam", PasswordHash: testHash, Queues: []string{"support"},
		Role: RoleSupervisor, MaxChats: 1})
}

// nextBoard reads board frames until cond holds for one.
func nextBoard(t *testing.T, w *wsc, what string, cond func(wireBoard) bool) wireBoard {
	t.Helper()
	for range 50 {
		b := decode[wireBoard](t, json.RawMessage(frameJSON(t, w.expect("board"))))
		if cond(b) {
			return b
		}
	}
	t.Fatalf("no board with %s", what)
	return wireBoard{}
}

func frameJSON(t *testing.T, f map[string]json.RawMessage) []byte {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBoardOnlyForSupervisors: a plain agent's console and a customer's
// widget asking for the board are refused; a supervisor's gets it at
// once, then again on every change, without asking: a chat waiting in
// its queue, then an agent holding it, with today's counts from the
// store.
func TestBoardOnlyForSupervisors(t *testing.T) {
	e := newTestServer(t, withSupervisor)
	aws, _ := e.agentWS(e.login("alice"))
	aws.send(map[string]any{"type": "board.subscribe", "id": "b1"})
	if code := decode[string](t, aws.expectAny("error")["code"]); code != "not_supervisor" {
		t.Errorf("a plain agent's board.subscribe: error %q, want not_supervisor", code)
	}
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "board.subscribe", "id": "b2"})
	if code := decode[string](t, cws.expectAny("error")["code"]); code != "bad_frame" {
		t.Errorf("a customer's board.subscribe: error %q, want bad_frame", code)
	}

	sws, _ := e.agentWS(e.login("sam"))
	sws.send(map[string]any{"type": "presence", "state": "away"})
	sws.send(map[string]any{"type": "board.subscribe"})
	b := nextBoard(t, sws, "Ann waiting", func(b wireBoard) bool {
		return len(b.Queues) == 1 && b.Queues[0].Waiting == 1
	})
	if q := b.Queues[0]; q.Name != "support" || q.OldestSince == nil || len(q.List) != 1 || q.List[0].Customer != "Ann" {
		t.Errorf("support on the board: %+v", q)
	}
	if b.Today.Conversations != 1 || b.Today.Answered != 0 {
		t.Errorf("today: %+v, want 1 conversation, none answered", b.Today)
	}
	ids := []string{}
	for _, a := range b.Agents {
		ids = append(ids, a.ID+"/"+a.Presence)
	}
	if len(ids) != 3 || ids[0] != "alice/available" || ids[1] != "bob/offline" || ids[2] != "sam/away" {
		t.Errorf("agents on the board: %v, want alice available, bob offline, sam away", ids)
	}

	id2, _ := e.startChat("Bea")
	b = nextBoard(t, sws, "Bea waiting too", func(b wireBoard) bool { return b.Queues[0].Waiting == 2 })
	aws.send(map[string]any{"type": "accept", "conversation_id": id2})
	b = nextBoard(t, sws, "Alice holding Bea's chat", func(b wireBoard) bool {
		return b.Queues[0].Waiting == 1 && len(b.Agents[0].Conversations) == 1
	})
	if c := b.Agents[0].Conversations[0]; c.ID != id2 || c.Customer != "Bea" || c.Call != "" {
		t.Errorf("Alice's conversation on the board: %+v", c)
	}
	if b.Today.Conversations != 2 || b.Today.Answered != 1 {
		t.Errorf("today: %+v, want 2 conversations, 1 answered", b.Today)
	}
}

// TestSupervisorReadsAndReassigns: a supervisor reads a conversation
// Alice holds in its queue and hands it to Bob through the transfer
// path; the customer sees Bob, Alice loses it. A plain agent may not
// reassign, and the supervisor may neither read nor move a conversation
// of a queue it does not supervise.
func TestSupervisorReadsAndReassigns(t *testing.T) {
	e := newTestServer(t, withSupervisor)
	aws, _ := e.agentWS(e.login("alice"))
	bws, _ := e.agentWS(e.login("bob"))
	sws, _ := e.agentWS(e.login("sam"))
	sws.send(map[string]any{"type": "presence", "state": "away"})
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "message", "id": "m1", "text": "my meter is broken"})
	cws.expect("ack")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")

	sws.send(map[string]any{"type": "history", "conversation_id": id})
	hist := decode[[]wireMessage](t, sws.expect("history")["messages"])
	if len(hist) == 0 || hist[0].Text != "my meter is broken" {
		t.Fatalf("the supervisor reads %+v", hist)
	}

	bws.send(map[string]any{"type": "reassign", "conversation_id": id, "agent": "bob", "id": "r1"})
	if code := decode[string](t, bws.expectAny("error")["code"]); code != "not_supervisor" {
		t.Errorf("a plain agent's reassign: error %q, want not_supervisor", code)
	}

	sws.send(map[string]any{"type": "reassign", "conversation_id": id, "agent": "bob"})
	if h := decode[[]wireMessage](t, bws.expect("history")["messages"]); len(h) == 0 || h[0].Text != "my meter is broken" {
		t.Errorf("Bob's history after the reassignment: %+v", h)
	}
	for {
		c := decode[wireConversation](t, cws.expect("conversation")["conversation"])
		if c.Agent != nil && c.Agent.ID == "bob" {
			break
		}
	}
	for {
		c := decode[wireConversation](t, aws.expect("conversation")["conversation"])
		if c.ID == id && (c.Agent == nil || c.Agent.ID != "alice") {
			break
		}
	}
	e.srv.hub.mu.Lock()
	holder := e.srv.hub.convs[id].c.AgentID
	_, alice := e.srv.hub.agents["alice"].convs[id]
	e.srv.hub.mu.Unlock()
	if holder != "bob" || alice {
		t.Errorf("after the reassignment the holder is %q (Alice still has it: %v)", holder, alice)
	}

	// A waiting conversation goes straight to an agent.
	bea, _ := e.startChat("Bea")
	sws.send(map[string]any{"type": "reassign", "conversation_id": bea, "agent": "alice"})
	for {
		f := aws.expect("history")
		if decode[string](t, f["conversation_id"]) == bea {
			break
		}
	}

	// A billing conversation is outside Sam's queues.
	bill, _ := e.startChat("Cem")
	e.srv.hub.mu.Lock()
	e.srv.hub.dequeueLocked(e.srv.hub.convs[bill])
	e.srv.hub.convs[bill].c.Queue = "billing"
	e.srv.hub.enqueueLocked(e.srv.hub.convs[bill])
	e.srv.hub.mu.Unlock()
	sws.send(map[string]any{"type": "history", "conversation_id": bill, "id": "h2"})
	if code := decode[string](t, sws.expectAny("error")["code"]); code != "forbidden" {
		t.Errorf("the supervisor reading another queue's conversation: error %q, want forbidden", code)
	}
	sws.send(map[string]any{"type": "reassign", "conversation_id": bill, "agent": "alice", "id": "r2"})
	if code := decode[string](t, sws.expectAny("error")["code"]); code != "not_supervisor" {
		t.Errorf("the supervisor moving another queue's conversation: error %q, want not_supervisor", code)
	}
	sws.send(map[string]any{"type": "monitor.start", "conversation_id": bill, "sdp": "v=0", "id": "m1"})
	if code := decode[string](t, sws.expectAny("error")["code"]); code != "voice_unavailable" && code != "not_supervisor" {
		t.Errorf("monitoring another queue's call: error %q", code)
	}
}
