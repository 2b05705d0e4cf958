package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
)

// TestConcurrentClaimsYieldOneHolder: nodes racing to claim one key at
// the revision they read get it once; the others are told it is taken.
func TestConcurrentClaimsYieldOneHolder(t *testing.T) {
	l := newMemLeases()
	ctx := context.Background()
	if _, err := l.Claim(ctx, "conv.x", "dead.1", 0); err != nil {
		t.Fatal(err)
	}
	_, rev, _ := l.Holder(ctx, "conv.x")
	var won sync.WaitGroup
	results := make(chan string, 16)
	for i := range 16 {
		won.Add(1)
		go func() {
			defer won.Done()
			inc := fmt.Sprintf("n%d.x", i)
			if _, err := l.Claim(ctx, "conv.x", inc, rev); err == nil {
				results <- inc
			} else if !errors.Is(err, errLeaseTaken) {
				t.Errorf("claim: %v", err)
			}
		}()
	}
	won.Wait()
	close(results)
	var winners []string
	for inc := range results {
		winners = append(winners, inc)
	}
	holder, _, _ := l.Holder(ctx, "conv.x")
	if len(winners) != 1 || holder != winners[0] {
		t.Fatalf("winners %v, holder %q", winners, holder)
	}
	if err := l.Free(ctx, "conv.x", rev); !errors.Is(err, errLeaseTaken) {
		t.Fatalf("free at a stale revision: %v", err)
	}
}

// TestOrphansPickedUpOnceAndOffered: conversations whose holder died
// are taken by the survivors scanning at the same time: each by exactly
// one node, whose lease names it, and a waiting one is offered to the
// agent at once, with no customer coming back.
func TestOrphansPickedUpOnceAndOffered(t *testing.T) {
	a, b := newClusterPair(t)
	ctx := context.Background()
	l := a.srv.node.leases.(*memLeases)
	for _, e := range []*env2{a, b} {
		if err := e.srv.node.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	aws, _ := b.agentWS(b.login("alice"))
	waitRemote(t, a, "alice", 1)
	dead := "gone.x"
	var ids []string
	for i := range 12 {
		c := &store.Conversation{ID: fmt.Sprintf("corphan%02d", i), State: store.StateWaiting, Queue: "support",
			Customer: store.Customer{Name: "Ann"}, TokenHash: make([]byte, 32), CreatedAt: time.Now().UTC()}
		if err := a.st.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Claim(ctx, convKey(c.ID), dead, 0); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	alive, _ := l.Alive(ctx)
	if alive[dead] || !alive[a.srv.node.inc] || !alive[b.srv.node.inc] {
		t.Fatalf("alive: %v", alive)
	}
	var wg sync.WaitGroup
	for _, e := range []*env2{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); e.srv.node.pickUpOrphans(ctx, alive) }()
	}
	wg.Wait()
	for _, id := range ids {
		inA, inB := a.srv.hub.holds(id), b.srv.hub.holds(id)
		holder, _, _ := l.Holder(ctx, convKey(id))
		switch {
		case inA && !inB && holder == a.srv.node.inc:
		case inB && !inA && holder == b.srv.node.inc:
		default:
			t.Fatalf("%s: held by a %v, by b %v, lease names %q", id, inA, inB, holder)
		}
	}
	// alice (max_chats 2) is offered the first of them.
	offer := decode[wireConversation](t, aws.expect("offer")["conversation"])
	if offer.State != store.StateWaiting || offer.Customer.Name != "Ann" {
		t.Fatalf("offer: %+v", offer)
	}
}

// TestCustomerTakesOverFromADeadNode: the customer comes back to node b
// while node a's life has ended (kill -9): b takes the lease as it is,
// without a word from a.
func TestCustomerTakesOverFromADeadNode(t *testing.T) {
	a, b := newClusterPair(t)
	ctx := context.Background()
	l := a.srv.node.leases.(*memLeases)
	id, token := a.startChat("Ann")
	if holder, _, _ := l.Holder(ctx, convKey(id)); holder != a.srv.node.inc {
		t.Fatalf("lease of a new conversation names %q, want %q", holder, a.srv.node.inc)
	}
	l.kill(a.srv.node.inc)
	b.customerWS(token)
	if holder, _, _ := l.Holder(ctx, convKey(id)); holder != b.srv.node.inc || !b.srv.hub.holds(id) {
		t.Fatalf("after the move the lease names %q; b holds it: %v", holder, b.srv.hub.holds(id))
	}
}

// TestTakeoverFromADeadNodeEndsItsCalls: node a carried a call in each
// of two conversations when it died (kill -9): the store shows them
// answered and unfinished, with their dialogs. Node b takes one
// conversation as its customer comes back and picks the other up as an
// orphan: both records are closed, the transcripts say the calls ended,
// and each dialog gets its BYE from b, so neither the desk phones nor the
// records wait for a call nobody carries. A conversation handed over by
// a live node keeps its record: that node ends its own calls.
func TestTakeoverFromADeadNodeEndsItsCalls(t *testing.T) {
	phones := &restartPhones{fakePhones: &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }},
		ready: make(chan struct{}), got: make(chan struct{}, 4)}
	close(phones.ready)
	envs, l, _ := newClusterNodesWith(t, aliceMax2, true, withPhones(phones))
	a, b := envs[0], envs[1]
	ctx := context.Background()
	for _, e := range envs {
		if err := e.srv.node.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}
	leftUp := func(conv, call string) {
		t.Helper()
		answered := time.Now().Add(-30 * time.Second)
		r := &store.CallRecord{ID: call, ConversationID: conv, Kind: "voice", Direction: "outbound",
			Target: "sip:1001@pbx.test", StartedAt: answered.Add(-2 * time.Second), AnsweredAt: answered}
		raw, _ := json.Marshal(sip.Dialog{Trunk: "pbx", Transport: "udp", CallID: call + "@segue", LocalTag: "l",
			RemoteTag: "r", RemoteTarget: "sip:1001@192.0.2.10:5060", CSeq: 2})
		if err := a.st.SaveCall(ctx, r); err != nil {
			t.Fatal(err)
		}
		if err := a.st.SaveCallDialog(ctx, call, raw); err != nil {
			t.Fatal(err)
		}
	}
	moved, movedToken := a.startChat("Moved")
	back, backToken := a.startChat("Back")
	orphan, _ := a.startChat("Orphan")
	leftUp(moved, "k_moved")
	leftUp(back, "k_back")
	leftUp(orphan, "k_orphan")

	// Handed over by a live node: b ends nothing.
	b.customerWS(movedToken)
	if !b.srv.hub.holds(moved) {
		t.Fatal("b did not take the conversation handed over")
	}

	l.kill(a.srv.node.inc)
	alive, _ := l.Alive(ctx)
	b.customerWS(backToken)
	b.srv.node.pickUpOrphans(ctx, alive)
	if !b.srv.hub.holds(back) || !b.srv.hub.holds(orphan) {
		t.Fatalf("b holds the returning customer's: %v, the orphan: %v", b.srv.hub.holds(back), b.srv.hub.holds(orphan))
	}
	for range 2 {
		select {
		case <-phones.got:
		case <-time.After(10 * time.Second):
			t.Fatal("no BYE for a call the dead node left up")
		}
	}
	phones.mu.Lock()
	var ended []string
	for _, d := range phones.ended {
		ended = append(ended, d.CallID)
	}
	phones.mu.Unlock()
	slices.Sort(ended)
	if strings.Join(ended, " ") != "k_back@segue k_orphan@segue" {
		t.Fatalf("dialogs ended: %v", ended)
	}
	for _, c := range []struct {
		conv, call string
		ended      bool
	}{{moved, "k_moved", false}, {back, "k_back", true}, {orphan, "k_orphan", true}} {
		calls, err := b.st.Calls(ctx, c.conv)
		if err != nil || len(calls) != 1 {
			t.Fatalf("%s: call records %+v, %v", c.call, calls, err)
		}
		if got := !calls[0].EndedAt.IsZero(); got != c.ended {
			t.Errorf("%s: record ended %v, want %v (cause %q)", c.call, got, c.ended, calls[0].Cause)
		}
		msgs, err := b.st.Messages(ctx, c.conv, 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		said := slices.ContainsFunc(msgs, func(m *store.Message) bool {
			return m.Kind == store.KindEvent && m.Event == "voice.ended" && strings.HasPrefix(m.Text, "Call ended: ")
		})
		if said != c.ended {
			t.Errorf("%s: the transcript says the call ended: %v, want %v", c.call, said, c.ended)
		}
	}
	if l := metricLine(t, b, `segue_calls_recovered_total{result="bye"}`); !strings.HasSuffix(l, " 2") {
		t.Fatalf("metric: %q", l)
	}
}

// TestCommandHandlerRefusesForgedCommands: the owner of a conversation
// runs only what a node of the cluster would send; malformed or forged
// commands are refused with bad_frame and change nothing.
func TestCommandHandlerRefusesForgedCommands(t *testing.T) {
	a, b := newClusterPair(t)
	b.agentWS(b.login("alice"))
	waitRemote(t, a, "alice", 1)
	id, _ := a.startChat("Ann")
	var sock string
	a.srv.node.mu.Lock()
	for _, r := range a.srv.node.remotes {
		for s := range r.socks {
			sock = s
		}
	}
	a.srv.node.mu.Unlock()
	accept := fmt.Sprintf(`{"type":"accept","conversation_id":%q}`, id)
	for _, tc := range []struct{ name, cmd string }{
		{"not JSON", `{"op":`},
		{"binary", "\x00\xff\xfe"},
		{"unknown op", `{"op":"drop_table","node":"b"}`},
		{"release from a bad node name", `{"op":"release","node":"b.*"}`},
		{"release posing as the owner", `{"op":"release","node":"a"}`},
		{"frame for another conversation", `{"node":"b","socket":"` + sock + `","agent":"alice","frame":{"type":"accept","conversation_id":"c_other"}}`},
		{"frame not an object", `{"node":"b","socket":"` + sock + `","agent":"alice","frame":"accept"}`},
		{"unknown agent", `{"node":"b","socket":"` + sock + `","agent":"mallory","frame":` + accept + `}`},
		{"node never heard from", `{"node":"z","socket":"` + sock + `","agent":"alice","frame":` + accept + `}`},
		{"socket with a wildcard", `{"node":"b","socket":"s.>","agent":"alice","frame":` + accept + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r commandReply
			if err := json.Unmarshal(a.srv.node.command(id, []byte(tc.cmd)), &r); err != nil {
				t.Fatal(err)
			}
			if r.Code != "bad_frame" || r.Status != http.StatusBadRequest {
				t.Fatalf("reply %+v, want bad_frame", r)
			}
			a.srv.hub.mu.Lock()
			cv := a.srv.hub.convs[id]
			a.srv.hub.mu.Unlock()
			if cv == nil || cv.c.State != store.StateWaiting {
				t.Fatalf("the conversation changed: %+v", cv)
			}
		})
	}
	// The genuine command goes through.
	var r commandReply
	_ = json.Unmarshal(a.srv.node.command(id, []byte(`{"node":"b","socket":"`+sock+`","agent":"alice","frame":`+accept+`}`)), &r)
	if r.Code != "" {
		t.Fatalf("genuine accept refused: %+v", r)
	}
}

// TestPBXCallRedirectedToTheHoldingNode: a PBX's INVITE for a
// conversation held by node a reaches node b, which answers 302 with
// node a's advertised SIP address and the same user (RFC 3261 §21.3.3);
// a conversation nobody holds is still 404.
func TestPBXCallRedirectedToTheHoldingNode(t *testing.T) {
	a, b := newClusterPair(t)
	id, _ := a.startChat("Ann")
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.srv.node.mu.Lock()
		r := b.srv.node.remotes["a"]
		if r != nil {
			r.sip = "sip:10.0.0.1:5070" // as a's heartbeat would say
		}
		b.srv.node.mu.Unlock()
		if r != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node b never heard from node a")
		}
		time.Sleep(10 * time.Millisecond)
	}
	prefix := b.srv.cfg.SIP.InboundPrefix
	err := b.srv.handleInvite(context.Background(), &fakeInvite{user: prefix + id, ringing: make(chan struct{})})
	var se *sip.StatusError
	if !errors.As(err, &se) || se.Code != 302 || se.Contact != "sip:"+prefix+id+"@10.0.0.1:5070" {
		t.Fatalf("invite on the other node: %v (%+v)", err, se)
	}
	err = b.srv.handleInvite(context.Background(), &fakeInvite{user: prefix + "c_nobody", ringing: make(chan struct{})})
	if !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("invite for no conversation: %v", err)
	}
}

// TestUploadForwardedToTheHoldingNode: the customer's widget is on node
// a and its file upload reaches node b (a load balancer without
// stickiness): b forwards it to a's advertised HTTP address, a stores
// it and the widget gets the message, and the conversation stays on a.
func TestUploadForwardedToTheHoldingNode(t *testing.T) {
	a, b := newClusterPair(t)
	id, token := a.startChat("Ann")
	cws := a.customerWS(token)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.srv.node.mu.Lock()
		r := b.srv.node.remotes["a"]
		if r != nil {
			r.http = a.ts.URL // as a's heartbeat would say
		}
		b.srv.node.mu.Unlock()
		if r != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node b never heard from node a")
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp := upload(t, b.ts.URL+"/api/v1/conversations/"+id+"/files", token, "notes.txt", []byte("hello"), "id", "f1")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload through node b: %d", resp.StatusCode)
	}
	if m := expectMessage(t, cws, "f1"); m.File == nil || m.File.Name != "notes.txt" {
		t.Fatalf("file message on node a: %+v", m)
	}
	if !a.srv.hub.holds(id) || b.srv.hub.holds(id) {
		t.Fatalf("after the upload a holds it: %v, b holds it: %v", a.srv.hub.holds(id), b.srv.hub.holds(id))
	}
}
