package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestMergeBoard: a board built from several nodes' shares lists every
// node's waiting conversations of the supervisor's queues oldest first,
// counts them all, and puts each agent's conversations under the agent
// whatever node holds them; a conversation two shares list is shown once.
func TestMergeBoard(t *testing.T) {
	now := time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) time.Time { return now.Add(-ago) }
	w := func(id string, ago time.Duration) wireBoardWaits {
		return wireBoardWaits{ID: id, Customer: "cust " + id, Since: at(ago)}
	}
	c := func(agent, id, call string) shareConv {
		return shareConv{Agent: agent, wireBoardConv: wireBoardConv{ID: id, Queue: "support", Call: call}}
	}
	many := func(prefix string, n int, from time.Duration) []wireBoardWaits {
		var out []wireBoardWaits
		for i := range n {
			out = append(out, w(fmt.Sprintf("%s%02d", prefix, i), from-time.Duration(i)*time.Second))
		}
		return out
	}
	type queueWant struct {
		waiting int
		longest int
		ids     string // the list's ids, comma-separated
	}
	tests := []struct {
		name   string
		shares []*boardShare
		queues map[string]queueWant
		agents map[string]string // agent: its conversations' id/call, comma-separated
	}{
		{
			name: "one node",
			shares: []*boardShare{{Queues: []shareQueue{{Name: "support", Waiting: 2, List: []wireBoardWaits{w("c1", 90*time.Second), w("c2", 10*time.Second)}}},
				Convs: []shareConv{c("alice", "c3", "")}}},
			queues: map[string]queueWant{"support": {2, 90, "c1,c2"}, "billing": {0, 0, ""}},
			agents: map[string]string{"alice": "c3/", "bob": ""},
		},
		{
			name: "two nodes, oldest first across them",
			shares: []*boardShare{
				{Queues: []shareQueue{{Name: "support", Waiting: 2, List: []wireBoardWaits{w("a1", 30*time.Second), w("a2", 5*time.Second)}}}},
				{Node: "b", Queues: []shareQueue{{Name: "support", Waiting: 1, List: []wireBoardWaits{w("b1", 60*time.Second)}},
					{Name: "billing", Waiting: 1, List: []wireBoardWaits{w("b2", 20*time.Second)}}}},
			},
			queues: map[string]queueWant{"support": {3, 60, "b1,a1,a2"}, "billing": {1, 20, "b2"}},
			agents: map[string]string{"alice": "", "bob": ""},
		},
		{
			name: "an agent's conversations on both nodes, with their call states",
			shares: []*boardShare{
				{Convs: []shareConv{c("alice", "x2", ""), c("bob", "x9", "ringing")}},
				{Node: "b", Convs: []shareConv{c("alice", "x1", "connected"), c("carol", "x5", "")}},
			},
			queues: map[string]queueWant{"support": {0, 0, ""}, "billing": {0, 0, ""}},
			agents: map[string]string{"alice": "x1/connected,x2/", "bob": "x9/ringing"},
		},
		{
			name: "a conversation moving between nodes is shown once, as this node has it",
			shares: []*boardShare{
				{Convs: []shareConv{c("alice", "m1", "connected")}, Queues: []shareQueue{{Name: "support", Waiting: 1, List: []wireBoardWaits{w("m2", time.Second)}}}},
				{Node: "b", Convs: []shareConv{c("bob", "m1", "")}, Queues: []shareQueue{{Name: "support", Waiting: 2, List: []wireBoardWaits{w("m1", time.Minute), w("m2", time.Second)}}}},
			},
			queues: map[string]queueWant{"support": {1, 1, "m2"}, "billing": {0, 0, ""}},
			agents: map[string]string{"alice": "m1/connected", "bob": ""},
		},
		{
			name: "the list is capped, the count is not",
			shares: []*boardShare{
				{Queues: []shareQueue{{Name: "support", Waiting: 30, List: many("a", boardWaitingShown, 100*time.Second)}}},
				{Node: "b", Queues: []shareQueue{{Name: "support", Waiting: 25, List: many("b", boardWaitingShown, 200*time.Second)}}},
			},
			queues: map[string]queueWant{"support": {55, 200, strings.Join(ids(many("b", boardWaitingShown, 200*time.Second)), ",")}, "billing": {0, 0, ""}},
			agents: map[string]string{"alice": "", "bob": ""},
		},
		{
			name:   "a node whose clock runs ahead",
			shares: []*boardShare{nil, {Node: "b", Queues: []shareQueue{{Name: "billing", Waiting: 1, List: []wireBoardWaits{w("f1", -3*time.Second)}}}}},
			queues: map[string]queueWant{"support": {0, 0, ""}, "billing": {1, 0, "f1"}},
			agents: map[string]string{"alice": "", "bob": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			agents := []wireBoardAgent{{ID: "alice", Conversations: []wireBoardConv{}}, {ID: "bob", Conversations: []wireBoardConv{}}}
			b := mergeBoard(now, []string{"support", "billing"}, agents, tc.shares)
			if len(b.Queues) != 2 || b.Queues[0].Name != "support" || b.Queues[1].Name != "billing" {
				t.Fatalf("queues %+v, want support and billing in that order", b.Queues)
			}
			for _, q := range b.Queues {
				want := tc.queues[q.Name]
				got := queueWant{q.Waiting, q.LongestWaitS, strings.Join(ids(q.List), ",")}
				if got != want {
					t.Errorf("%s: %+v, want %+v", q.Name, got, want)
				}
				if (q.OldestSince == nil) != (len(q.List) == 0) || (q.OldestSince != nil && !q.OldestSince.Equal(q.List[0].Since)) {
					t.Errorf("%s: oldest since %v, list %+v", q.Name, q.OldestSince, q.List)
				}
			}
			if len(b.Agents) != 2 {
				t.Fatalf("agents %+v, want alice and bob only", b.Agents)
			}
			for _, a := range b.Agents {
				var got []string
				for _, c := range a.Conversations {
					got = append(got, c.ID+"/"+c.Call)
				}
				if g := strings.Join(got, ","); g != tc.agents[a.ID] {
					t.Errorf("%s holds %q, want %q", a.ID, g, tc.agents[a.ID])
				}
			}
		})
	}
}

func ids(list []wireBoardWaits) []string {
	var out []string
	for _, w := range list {
		out = append(out, w.ID)
	}
	return out
}

// samYAML adds Sam, a supervisor of support, to agentsYAML's agents.
var samYAML = fmt.Sprintf("  - {id: sam, name: Sam, password_hash: %q, queues: [support], role: supervisor, max_chats: 1}\n", testHash)

// boardConv finds conversation id under agent on board b.
func boardConv(b wireBoard, agent, id string) *wireBoardConv {
	for _, a := range b.Agents {
		if a.ID != agent {
			continue
		}
		for i := range a.Conversations {
			if a.Conversations[i].ID == id {
				return &a.Conversations[i]
			}
		}
	}
	return nil
}

// TestBoardAcrossNodes: Sam's board is on node a; Ann's chat is on node
// b. Sam sees it wait, then under Alice (her console on node b) with the
// call state and monitoring node b knows of. His monitor.mode and his
// reassign to Bob (console on node a), sent on node a, run on node b;
// when Bob ends the chat, it leaves the board.
func TestBoardAcrossNodes(t *testing.T) {
	a, b := newClusterPairWith(t, agentsYAML(2)+samYAML, true)
	sws, _ := a.agentWS(a.login("sam"))
	sws.send(map[string]any{"type": "presence", "state": "away"})
	sws.expect("presence")
	waitAgent(t, b, "sam", "is away on node b", func(x *agent) bool { return x.presence == presenceAway })
	sws.send(map[string]any{"type": "board.subscribe"})
	nextBoard(t, sws, "the first board", func(wireBoard) bool { return true })

	id, token := b.startChat("Ann")
	b.customerWS(token)
	bd := nextBoard(t, sws, "Ann waiting on node b", func(bd wireBoard) bool { return bd.Queues[0].Waiting == 1 })
	if q := bd.Queues[0]; len(q.List) != 1 || q.List[0].ID != id || q.List[0].Customer != "Ann" || q.OldestSince == nil {
		t.Fatalf("support on node a's board: %+v", q)
	}

	aws, _ := b.agentWS(b.login("alice"))
	expectOffer(t, aws, id)
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	bd = nextBoard(t, sws, "Alice holding Ann's chat", func(bd wireBoard) bool {
		return bd.Queues[0].Waiting == 0 && boardConv(bd, "alice", id) != nil
	})
	if c := boardConv(bd, "alice", id); c.Customer != "Ann" || c.Queue != "support" || c.Call != "" || c.Monitor != nil {
		t.Fatalf("Ann's chat under Alice: %+v", c)
	}

	// What node b knows of the call and of Sam monitoring it reaches the
	// board on node a (a stand-in call and tap: no SIP here); Sam's
	// switch to whisper from node a runs on node b, where the tap is.
	h := b.srv.hub
	h.mu.Lock()
	cv := h.convs[id]
	cv.voice = &voiceCall{state: callConnected}
	h.mu.Unlock()
	b.srv.super.mu.Lock()
	b.srv.super.monitors = map[*conv]*monitorSession{cv: {supervisor: "sam", mode: monitorListen, tap: newCallTap(nil, time.Now)}}
	b.srv.super.mu.Unlock()
	b.srv.boardChanged()
	bd = nextBoard(t, sws, "Ann's call connected", func(bd wireBoard) bool {
		c := boardConv(bd, "alice", id)
		return c != nil && c.Call == callConnected
	})
	if m := boardConv(bd, "alice", id).Monitor; m == nil || *m != (wireMonitor{Supervisor: "sam", Mode: monitorListen}) {
		t.Fatalf("monitoring on the board: %+v", m)
	}
	sws.send(map[string]any{"type": "monitor.mode", "conversation_id": id, "state": monitorWhisper})
	if f := sws.expectAny("monitor", "error"); string(f["state"]) != `"`+monitorWhisper+`"` {
		t.Fatalf("Sam's monitor.mode from node a: %s", frameJSON(t, f))
	}
	nextBoard(t, sws, "Sam whispering", func(bd wireBoard) bool {
		c := boardConv(bd, "alice", id)
		return c != nil && c.Monitor != nil && c.Monitor.Mode == monitorWhisper
	})
	h.mu.Lock()
	cv.voice = nil
	h.mu.Unlock()
	b.srv.super.mu.Lock()
	b.srv.super.monitors = nil
	b.srv.super.mu.Unlock()
	b.srv.boardChanged()

	bws, _ := a.agentWS(a.login("bob"))
	waitRemote(t, b, "bob", 1)
	sws.send(map[string]any{"type": "reassign", "conversation_id": id, "agent": "bob"})
	if f := bws.expect("history"); decode[string](t, f["conversation_id"]) != id {
		t.Fatalf("Bob's history: %v", f)
	}
	if !b.srv.hub.holds(id) || a.srv.hub.holds(id) {
		t.Fatalf("after the reassignment node b holds it: %v, node a: %v", b.srv.hub.holds(id), a.srv.hub.holds(id))
	}
	nextBoard(t, sws, "Bob holding Ann's chat", func(bd wireBoard) bool {
		c := boardConv(bd, "bob", id)
		return c != nil && c.Call == "" && boardConv(bd, "alice", id) == nil
	})

	bws.send(map[string]any{"type": "end", "conversation_id": id})
	nextBoard(t, sws, "Ann's chat gone", func(bd wireBoard) bool {
		return boardConv(bd, "bob", id) == nil && bd.Queues[0].Waiting == 0 && bd.Today.Conversations == 1
	})
}

// TestBoardForgetsNodeThatLeft: a node that stops takes its waiting
// conversations off the other nodes' boards at once.
func TestBoardForgetsNodeThatLeft(t *testing.T) {
	envs, _, stops := newClusterNodesWith(t, agentsYAML(2)+samYAML, true)
	a, b := envs[0], envs[1]
	sws, _ := a.agentWS(a.login("sam"))
	sws.send(map[string]any{"type": "presence", "state": "away"})
	sws.send(map[string]any{"type": "board.subscribe"})
	id, _ := b.startChat("Ann")
	nextBoard(t, sws, "Ann waiting on node b", func(bd wireBoard) bool {
		return bd.Queues[0].Waiting == 1 && bd.Queues[0].List[0].ID == id
	})
	stops[1]()
	nextBoard(t, sws, "node b's conversations gone", func(bd wireBoard) bool { return bd.Queues[0].Waiting == 0 })
}

// TestShareOfLostNodeExpires: the share of a node not heard from for
// nodeExpiry goes with the node, and that of a node never heard from by
// heartbeat goes on its own then; a node's own share and one without a
// node id are not kept.
func TestShareOfLostNodeExpires(t *testing.T) {
	a, _ := newClusterPair(t)
	n := a.srv.node
	start := time.Now()
	n.mu.Lock()
	n.remotes["c"] = &remoteNode{seen: start, socks: map[string]*client{}}
	n.mu.Unlock()
	share := func(node, conv string) []byte {
		b, _ := json.Marshal(boardShare{Node: node, Queues: []shareQueue{{Name: "support", Waiting: 1,
			List: []wireBoardWaits{{ID: conv, Since: start}}}}})
		return b
	}
	n.takeShare(subjBoard, share("c", "c1"))
	n.takeShare(subjBoard, share("ghost", "g1"))
	n.takeShare(subjBoard, share(n.id, "mine"))       // its own share is no other node's
	n.takeShare(subjBoard, []byte(`{"node":"../x"}`)) // no node id
	// Node b names no supervisor in its configuration: it sends no share.
	held := func() string {
		var out []string
		for _, sh := range n.boardShares() {
			out = append(out, sh.Node)
		}
		return strings.Join(out, ",")
	}
	if got := held(); got != "c,ghost" {
		t.Fatalf("shares held: %s, want c,ghost", got)
	}
	n.expire(start.Add(nodeExpiry / 2))
	if got := held(); got != "c,ghost" {
		t.Fatalf("shares held before nodeExpiry: %s, want c,ghost", got)
	}
	n.expire(start.Add(nodeExpiry + time.Second))
	if got := held(); got != "" {
		t.Fatalf("shares held after nodeExpiry: %s, want none", got)
	}
}

// TestLargeShareFitsTheBus: the share of a node holding 10,000
// conversations for agents is over a megabyte of JSON, NATS's default
// limit on a message; it goes gzipped, well under it, and another node
// takes it whole. A small share stays plain JSON, and plain JSON (from a
// node of an earlier version) is still taken.
func TestLargeShareFitsTheBus(t *testing.T) {
	const natsMaxPayload = 1 << 20
	big := &boardShare{Node: "c"}
	for i := range 10000 {
		big.Convs = append(big.Convs, shareConv{Agent: fmt.Sprintf("agent-%04d", i/5), wireBoardConv: wireBoardConv{
			ID: newID("c"), Customer: fmt.Sprintf("Customer %d of the spring campaign", i), Queue: "support", Call: callConnected, Video: i%7 == 0}})
	}
	plain, err := json.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encodeShare(big)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) <= natsMaxPayload || len(enc) >= natsMaxPayload/4 {
		t.Fatalf("10,000 conversations: %d bytes of JSON, %d on the bus; want over 1 MiB and under a quarter of it", len(plain), len(enc))
	}
	var back boardShare
	if err := decodeShare(enc, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, big) {
		t.Fatal("the gzipped share did not decode to what was sent")
	}

	small := &boardShare{Node: "c", Queues: []shareQueue{{Name: "support", Waiting: 1, List: []wireBoardWaits{{ID: "c1", Customer: "Ann"}}}}}
	if enc, err := encodeShare(small); err != nil || !json.Valid(enc) {
		t.Fatalf("a small share: %q, %v; want plain JSON", enc, err)
	}

	a, _ := newClusterPair(t)
	n := a.srv.node
	n.mu.Lock()
	n.remotes["c"] = &remoteNode{seen: time.Now(), socks: map[string]*client{}}
	n.remotes["d"] = &remoteNode{seen: time.Now(), socks: map[string]*client{}}
	n.mu.Unlock()
	n.takeShare(subjBoard, enc)
	n.takeShare(subjBoard, []byte(`{"node":"d","queues":[{"name":"support","waiting":2}]}`))
	got := map[string]*boardShare{}
	for _, sh := range n.boardShares() {
		got[sh.Node] = sh
	}
	if c := got["c"]; c == nil || len(c.Convs) != 10000 {
		t.Fatalf("node c's gzipped share: %+v", c)
	}
	if d := got["d"]; d == nil || len(d.Queues) != 1 || d.Queues[0].Waiting != 2 {
		t.Fatalf("node d's plain share: %+v", d)
	}
}

// TestShareBombRefused: a gzipped share that inflates past maxShareBytes
// is refused without being read whole, and the share held before it is
// kept.
func TestShareBombRefused(t *testing.T) {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	_, _ = w.Write([]byte(`{"node":"c","queues":[{"name":"`))
	zeros := make([]byte, 1<<20)
	for range maxShareBytes>>20 + 1 {
		_, _ = w.Write(zeros)
	}
	_ = w.Close()
	var sh boardShare
	if err := decodeShare(z.Bytes(), &sh); !errors.Is(err, errShareTooLarge) {
		t.Fatalf("a share inflating past %d bytes: %v, want errShareTooLarge", maxShareBytes, err)
	}

	a, _ := newClusterPair(t)
	n := a.srv.node
	n.mu.Lock()
	n.remotes["c"] = &remoteNode{seen: time.Now(), socks: map[string]*client{}}
	n.mu.Unlock()
	n.takeShare(subjBoard, []byte(`{"node":"c","queues":[{"name":"support","waiting":3}]}`))
	n.takeShare(subjBoard, z.Bytes())
	if shs := n.boardShares(); len(shs) != 1 || shs[0].Queues[0].Waiting != 3 {
		t.Fatalf("shares after the bomb: %+v, want node c's earlier share", shs)
	}
	if _, err := gzip.NewReader(bytes.NewReader([]byte{0x1f, 0x8b, 0})); err == nil {
		t.Fatal("a truncated gzip header read")
	}
	if err := decodeShare([]byte{0x1f, 0x8b, 0}, &sh); err == nil {
		t.Fatal("a truncated gzip share decoded")
	}
}
