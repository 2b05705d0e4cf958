//go:build e2e && cluster

package test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// clusterBoard is what a test reads of a board frame.
type clusterBoard struct {
	Queues []struct {
		Name        string  `json:"name"`
		Waiting     int     `json:"waiting"`
		OldestSince *string `json:"oldest_since"`
		List        []struct {
			ID       string `json:"id"`
			Customer string `json:"customer"`
		} `json:"list"`
	} `json:"queues"`
	Agents []struct {
		ID            string `json:"id"`
		Conversations []struct {
			ID       string `json:"id"`
			Customer string `json:"customer"`
			Call     string `json:"call"`
		} `json:"conversations"`
	} `json:"agents"`
	Today struct {
		Conversations int `json:"conversations"`
		Answered      int `json:"answered"`
	} `json:"today"`
}

// waiting is the support queue's waiting count and listed ids.
func (b clusterBoard) waiting() (int, []string) {
	for _, q := range b.Queues {
		if q.Name == "support" {
			var ids []string
			for _, w := range q.List {
				ids = append(ids, w.ID)
			}
			return q.Waiting, ids
		}
	}
	return -1, nil
}

// holds lists the conversations the board shows under agent.
func (b clusterBoard) holds(agent string) []string {
	var ids []string
	for _, a := range b.Agents {
		if a.ID == agent {
			for _, c := range a.Conversations {
				ids = append(ids, c.ID)
			}
		}
	}
	return ids
}

// nextBoard reads board frames until cond holds for one.
func (w *wsConn) nextBoard(what string, cond func(clusterBoard) bool) clusterBoard {
	w.t.Helper()
	for range 50 {
		raw, _ := json.Marshal(w.expect("board"))
		var b clusterBoard
		if err := json.Unmarshal(raw, &b); err != nil {
			w.t.Fatalf("board %s: %v", raw, err)
		}
		if cond(b) {
			return b
		}
	}
	w.t.Fatalf("no board with %s in 50 boards", what)
	return clusterBoard{}
}

// TestClusterBoardAcrossNodes: Sam, a supervisor, watches the board on
// node 1. Ann's chat opens on node 2, then Bea's on node 1: the board
// lists both, Ann's first (the longer wait). Alice, her console on node
// 2, takes both: the board shows them under her, whichever node holds
// them. Sam reassigns Ann's chat, held by node 2, from node 1 to Bob
// (console on node 1); the transfer runs on node 2. When the chats end
// they leave the board. It logs how long Ann's chat took to reach node
// 1's board. make test-cluster runs it, on PostgreSQL and nats-server.
func TestClusterBoardAcrossNodes(t *testing.T) {
	c := startCluster(t, 2, withSupervisor())
	n1, n2 := c.nodes[0], c.nodes[1]
	sw := agentWS(t, n1, n1.login(t, "sam"))
	// Sam watches; he takes no chats.
	sw.send(map[string]any{"type": "presence", "state": "away"})
	sw.expect("presence")
	waitFor(t, "node 2 has Sam away", metricIs(t, n2, `segue_agents{state="away"}`, 1))
	sw.send(map[string]any{"type": "board.subscribe"})
	sw.nextBoard("the first board", func(clusterBoard) bool { return true })

	opened := time.Now()
	_, ann := n2.newConversation(t, "Ann")
	sw.nextBoard("Ann waiting", func(b clusterBoard) bool { n, _ := b.waiting(); return n == 1 })
	t.Logf("Ann's chat on node 2 was on node 1's board %s after it opened", time.Since(opened).Round(time.Millisecond))
	_, bea := n1.newConversation(t, "Bea")
	b := sw.nextBoard("Ann and Bea waiting", func(b clusterBoard) bool { n, _ := b.waiting(); return n == 2 })
	if _, ids := b.waiting(); fmt.Sprint(ids) != fmt.Sprint([]string{ann.ID, bea.ID}) {
		t.Fatalf("waiting on node 1's board: %v, want Ann's %s then Bea's %s", ids, ann.ID, bea.ID)
	}

	aw := agentWS(t, n2, n2.login(t, "alice"))
	aw.accept(ann.ID, "alice")
	aw.accept(bea.ID, "alice")
	b = sw.nextBoard("Alice holding both chats", func(b clusterBoard) bool {
		n, _ := b.waiting()
		return n == 0 && len(b.holds("alice")) == 2
	})
	for _, a := range b.Agents {
		for _, cv := range a.Conversations {
			if cv.Call != "" {
				t.Errorf("%s's chat %s shows a call: %q", a.ID, cv.ID, cv.Call)
			}
		}
	}

	bw := agentWS(t, n1, n1.login(t, "bob"))
	waitFor(t, "node 2 has Bob available", metricIs(t, n2, `segue_agents{state="available"}`, 2))
	sw.send(map[string]any{"type": "reassign", "conversation_id": ann.ID, "agent": "bob"})
	if f := bw.expect("history"); f["conversation_id"] != ann.ID {
		t.Fatalf("Bob's history: %v, want Ann's %s", f["conversation_id"], ann.ID)
	}
	sw.nextBoard("Bob holding Ann's chat", func(b clusterBoard) bool {
		return fmt.Sprint(b.holds("bob")) == fmt.Sprint([]string{ann.ID}) && fmt.Sprint(b.holds("alice")) == fmt.Sprint([]string{bea.ID})
	})

	bw.send(map[string]any{"type": "end", "conversation_id": ann.ID})
	aw.send(map[string]any{"type": "end", "conversation_id": bea.ID})
	b = sw.nextBoard("both chats ended", func(b clusterBoard) bool {
		return len(b.holds("alice")) == 0 && len(b.holds("bob")) == 0
	})
	if n, _ := b.waiting(); n != 0 || b.Today.Conversations != 2 || b.Today.Answered != 2 {
		t.Fatalf("after both ended: %d waiting, today %+v; want 0 waiting, 2 conversations, 2 answered", n, b.Today)
	}
}
