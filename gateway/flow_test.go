package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/segue-rtc/segue/store"
)

// checkHub verifies the hub's invariants: the waiting lists hold exactly
// the waiting conversations, sorted; every active conversation is held by
// its agent; offers and their counters agree; sockets point back at their
// conversation or agent.
func checkHub(h *hub) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	inLists := map[*conv]bool{}
	for q, list := range h.waiting {
		if len(list) == 0 {
			errs = append(errs, fmt.Errorf("queue %s: empty list kept", q))
		}
		if !slices.IsSortedFunc(list, convBefore) {
			errs = append(errs, fmt.Errorf("queue %s: list not sorted", q))
		}
		for _, cv := range list {
			if inLists[cv] {
				errs = append(errs, fmt.Errorf("%s listed twice", cv.c.ID))
			}
			inLists[cv] = true
			if cv.c.Queue != q || cv.c.State != store.StateWaiting || h.convs[cv.c.ID] != cv {
				errs = append(errs, fmt.Errorf("%s in queue %s's list: queue %s, state %s", cv.c.ID, q, cv.c.Queue, cv.c.State))
			}
		}
	}
	offers := map[string]int{}
	for id, cv := range h.convs {
		switch cv.c.State {
		case store.StateWaiting:
			if !inLists[cv] {
				errs = append(errs, fmt.Errorf("waiting %s missing from its queue list", id))
			}
			if cv.c.AgentID != "" {
				errs = append(errs, fmt.Errorf("waiting %s has agent %s", id, cv.c.AgentID))
			}
		case store.StateActive:
			a, ok := h.agents[cv.c.AgentID]
			if !ok || a.convs[id] != cv {
				errs = append(errs, fmt.Errorf("active %s not held by its agent %q", id, cv.c.AgentID))
			}
			if cv.offeredTo != "" {
				errs = append(errs, fmt.Errorf("active %s still offered to %s", id, cv.offeredTo))
			}
		default:
			errs = append(errs, fmt.Errorf("%s in state %s is live", id, cv.c.State))
		}
		if cv.offeredTo != "" {
			offers[cv.offeredTo]++
			if a := h.agents[cv.offeredTo]; a == nil || a.offered[id] != cv {
				errs = append(errs, fmt.Errorf("%s offered to %s, who does not list it", id, cv.offeredTo))
			}
		}
		for cl := range cv.customers {
			if cl.cv != cv || cl.role != store.RoleCustomer {
				errs = append(errs, fmt.Errorf("%s: customer socket of another conversation", id))
			}
		}
	}
	for id, a := range h.agents {
		if len(a.offered) != offers[id] {
			errs = append(errs, fmt.Errorf("agent %s lists %d offers, %d conversations say so", id, len(a.offered), offers[id]))
		}
		if len(a.convs) > a.maxChats {
			errs = append(errs, fmt.Errorf("agent %s holds %d conversations, over %d", id, len(a.convs), a.maxChats))
		}
		for cid, cv := range a.convs {
			if h.convs[cid] != cv || cv.c.AgentID != id {
				errs = append(errs, fmt.Errorf("agent %s holds %s, which is not its", id, cid))
			}
		}
		for cl := range a.clients {
			if cl.agentID != id {
				errs = append(errs, fmt.Errorf("agent %s has a socket of %q", id, cl.agentID))
			}
		}
	}
	if h.reservedTotal != 0 || len(h.reserved) != 0 {
		errs = append(errs, fmt.Errorf("reservations left: %d %v", h.reservedTotal, h.reserved))
	}
	return errors.Join(errs...)
}

func (e *env2) checkHub() {
	e.t.Helper()
	if err := checkHub(e.srv.hub); err != nil {
		e.t.Fatal(err)
	}
}

// advance moves the hub's clock forward by d.
func (e *env2) advance(d time.Duration) {
	h := e.srv.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	h.now = func() time.Time { return now.Add(d) }
}

// readUntilClosed reads frames until the socket closes and returns the
// close status and the error codes received on the way.
func (w *wsc) readUntilClosed() (websocket.StatusCode, []string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var codes []string
	for {
		_, b, err := w.conn.Read(ctx)
		if err != nil {
			return websocket.CloseStatus(err), codes
		}
		var f struct{ Type, Code string }
		if json.Unmarshal(b, &f) == nil && f.Type == "error" {
			codes = append(codes, f.Code)
		}
	}
}

func TestAbandonedConversationEndsByItself(t *testing.T) {
	e := newTestServer(t, func(c *Config) {
		c.Limits.AbandonedAfter = 10 * time.Minute
		c.Limits.MaxConversations = 2
	})
	bob := e.login("bob")
	bws, _ := e.agentWS(bob)
	gone, _ := e.startChat("Gone")
	stays, token := e.startChat("Stays")
	cws := e.customerWS(token)

	// A full gateway: the next customer is refused.
	resp, err := http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third chat at max_conversations 2: %d", resp.StatusCode)
	}
	if n := e.srv.hub.expireAbandoned(context.Background()); n != 0 {
		t.Fatalf("%d conversations expired before abandoned_after", n)
	}
	e.advance(10 * time.Minute)
	if n := e.srv.hub.expireAbandoned(context.Background()); n != 1 {
		t.Fatalf("expired %d conversations, want 1 (the one without a socket)", n)
	}
	for {
		f := bws.expect("queue.removed")
		if decode[string](t, f["conversation_id"]) == gone {
			break
		}
	}
	c, err := e.st.Conversation(context.Background(), gone)
	if err != nil || c.State != store.StateEnded {
		t.Fatalf("abandoned conversation: %+v %v", c, err)
	}
	ms, _ := e.st.Messages(context.Background(), gone, 0, 10)
	last := ms[len(ms)-1]
	var data map[string]string
	_ = json.Unmarshal(last.EventData, &data)
	if last.Event != "conversation.ended" || data["reason"] != "abandoned" {
		t.Fatalf("last transcript entry: %s %s", last.Event, last.EventData)
	}
	// The slot is free for a real customer.
	e.startChat("Next")
	e.checkHub()

	// The customer who stayed keeps the conversation; once the socket
	// closes, the time counts from then.
	cws.conn.CloseNow()
	waitUntil(t, "the socket to leave", e.hubHolds(func(h *hub) bool { return len(h.convs[stays].customers) == 0 }))
	if n := e.srv.hub.expireAbandoned(context.Background()); n != 0 {
		t.Fatalf("expired %d right after the customer left", n)
	}
	e.advance(10 * time.Minute)
	if n := e.srv.hub.expireAbandoned(context.Background()); n != 2 {
		t.Fatalf("expired %d, want both left", n)
	}
	e.checkHub()
}

func TestNewChatLimitKeysIPv6By64(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Limits.NewChatsPerIPPerMinute = 1 })
	start := func(remote string) int {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/conversations", strings.NewReader(`{}`))
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	if got := start("[2001:db8:1:2::1]:4000"); got != http.StatusCreated {
		t.Fatalf("first chat: %d", got)
	}
	if got := start("[2001:db8:1:2:ffff::9]:4000"); got != http.StatusTooManyRequests {
		t.Fatalf("another address of the same /64: %d, want 429", got)
	}
	if got := start("[2001:db8:1:3::1]:4000"); got != http.StatusCreated {
		t.Fatalf("another /64: %d", got)
	}
}

func TestQueueFullOffersToLeaveAMessage(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Queues[0].MaxWaiting = 2 })
	bob := e.login("bob")
	bws, _ := e.agentWS(bob)
	e.startChat("One")
	e.startChat("Two")
	resp, err := http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{"queue":"support"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), `"queue_full"`) {
		t.Fatalf("third chat in a queue of 2: %d %s", resp.StatusCode, b)
	}
	// Another queue still takes chats.
	resp, err = http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{"queue":"billing"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("chat in another queue: %d", resp.StatusCode)
	}

	leave := func(body string) (int, []byte) {
		resp, err := http.Post(e.ts.URL+"/api/v1/left-messages", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	if code, b := leave(`{"queue":"support","email":"not an address","text":"hi"}`); code != http.StatusBadRequest {
		t.Fatalf("bad e-mail: %d %s", code, b)
	}
	code, b := leave(`{"queue":"support","name":"Ann","email":"ann@example.com","text":"Call me back about my bill"}`)
	if code != http.StatusCreated {
		t.Fatalf("leave a message: %d %s", code, b)
	}
	var out struct{ Conversation wireConversation }
	_ = json.Unmarshal(b, &out)
	if out.Conversation.State != store.StateLeft || out.Conversation.Customer.Email != "ann@example.com" {
		t.Fatalf("message left: %+v", out.Conversation)
	}
	left := decode[wireConversation](t, bws.expect("left.added")["conversation"])
	if left.ID != out.Conversation.ID {
		t.Fatalf("left.added: %+v", left)
	}
	// A console that connects later lists it, and reads it.
	_, welcome := e.agentWS(bob)
	if l := decode[[]wireConversation](t, welcome["left"]); len(l) != 1 || l[0].ID != left.ID {
		t.Fatalf("welcome left: %s", welcome["left"])
	}
	bws.send(map[string]any{"type": "history", "conversation_id": left.ID})
	h := bws.expect("history")
	ms := decode[[]wireMessage](t, h["messages"])
	if len(ms) != 2 || ms[0].Text != "Call me back about my bill" || ms[1].Event == nil || ms[1].Event.Name != "conversation.message_left" {
		t.Fatalf("left transcript: %+v", ms)
	}
	e.checkHub()
}

func TestQueueDiffsAndPages(t *testing.T) {
	e := newTestServer(t, func(c *Config) {
		c.Queues[0].MaxWaiting = 500
		c.Limits.NewChatsPerIPPerMinute = 500
	})
	// Away, bob gets no offers: the list is what this test reads.
	bob := e.login("bob")
	bws, _ := e.agentWS(bob)
	bws.send(map[string]any{"type": "presence", "state": "away"})
	bws.expect("presence")
	ids := make([]string, 0, queuePageSize+7)
	for i := range queuePageSize + 7 {
		id, _ := e.startChat(fmt.Sprint("c", i))
		ids = append(ids, id)
		f := bws.expect("queue.added")
		if got := decode[wireConversation](t, f["conversation"]).ID; got != id {
			t.Fatalf("queue.added %s, want %s", got, id)
		}
		if got := decode[int](t, f["total"]); got != i+1 {
			t.Fatalf("queue.added total %d, want %d", got, i+1)
		}
	}
	_, welcome := e.agentWS(bob)
	page := decode[[]wireConversation](t, welcome["queue"])
	if len(page) != queuePageSize || decode[int](t, welcome["queue_total"]) != len(ids) || string(welcome["queue_more"]) != "true" {
		t.Fatalf("welcome queue: %d items, total %s, more %s", len(page), welcome["queue_total"], welcome["queue_more"])
	}
	last := page[len(page)-1]
	bws.send(map[string]any{"type": "queue.page", "after": map[string]any{"created_at": last.CreatedAt, "id": last.ID}})
	f := bws.expect("queue.page")
	rest := decode[[]wireConversation](t, f["queue"])
	if string(f["more"]) != "false" || len(rest) != 7 {
		t.Fatalf("second page: %d items, more %s", len(rest), f["more"])
	}
	var got []string
	for _, c := range append(page, rest...) {
		got = append(got, c.ID)
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("pages are not the queue oldest first")
	}
	// Accepting removes it from every console's list.
	bws.send(map[string]any{"type": "presence", "state": "available"})
	bws.send(map[string]any{"type": "accept", "conversation_id": ids[3]})
	for {
		f := bws.expect("queue.removed")
		if decode[string](t, f["conversation_id"]) == ids[3] {
			if decode[int](t, f["total"]) != len(ids)-1 {
				t.Fatalf("total after accept: %s", f["total"])
			}
			break
		}
	}
	e.checkHub()
}

func TestWelcomeAndHistoryArePaged(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Limits.HistoryPageMessages = 50 })
	c := e.acceptedChat("Ann")
	ctx := context.Background()
	for i := range 118 { // with the accepted event: 119, and the first is the event
		if _, _, err := e.srv.hub.post(ctx, e.srv.hub.convs[c.id], &store.Message{ConversationID: c.id, ID: fmt.Sprint("m", i),
			Role: store.RoleCustomer, Kind: store.KindText, Text: strings.Repeat("x", 1000)}); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(raw json.RawMessage) []int64 {
		var out []int64
		for _, m := range decode[[]wireMessage](t, raw) {
			out = append(out, m.Seq)
		}
		return out
	}
	_, welcome := e.pageWS(c.token, nil, "p2")
	got := seqs(welcome["messages"])
	if len(got) != 50 || got[0] != 70 || got[49] != 119 || string(welcome["older"]) != "true" {
		t.Fatalf("customer welcome: %d messages %v..., older %s", len(got), got[:1], welcome["older"])
	}
	w, _ := e.pageWS(c.token, nil, "p3")
	for _, want := range []struct {
		before     int64
		first, n   int64
		olderAfter string
	}{{70, 20, 50, "true"}, {20, 1, 19, "false"}} {
		w.send(map[string]any{"type": "history", "before": want.before})
		f := w.expect("history")
		got := seqs(f["messages"])
		if int64(len(got)) != want.n || got[0] != want.first || string(f["older"]) != want.olderAfter {
			t.Fatalf("history before %d: %d messages from %d, older %s", want.before, len(got), got[0], f["older"])
		}
	}
	// A customer that reconnects after seq 110 gets the rest, nothing older.
	r, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	r.send(map[string]any{"type": "hello", "token": c.token, "after": 110})
	f := r.expect("welcome")
	if got := seqs(f["messages"]); len(got) != 9 || string(f["older"]) != "false" {
		t.Fatalf("resume after 110: %v older %s", got, f["older"])
	}
	// The console's welcome is paged per conversation.
	_, aw := e.agentWS(c.alice)
	if got := seqs(aw["messages"]); len(got) != 50 {
		t.Fatalf("console welcome: %d messages", len(got))
	}
	if older := decode[map[string]bool](t, aw["older"]); !older[c.id] {
		t.Fatalf("console welcome older: %s", aw["older"])
	}
}

func TestMessageCapPerConversation(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Limits.MaxMessagesPerConversation = 3 })
	c := e.acceptedChat("Ann") // seq 1: the accepted event
	for i := range 2 {
		c.cws.send(map[string]any{"type": "message", "id": fmt.Sprint("m", i), "text": "hi"})
		c.cws.expect("ack")
	}
	c.cws.send(map[string]any{"type": "message", "id": "over", "text": "one more"})
	if f := c.cws.expect("error"); decode[string](t, f["code"]) != "conversation_full" || decode[string](t, f["ref"]) != "over" {
		t.Fatalf("past the cap: %v", f)
	}
	// The gateway's own events still go in: the agent can end it.
	c.aws.send(map[string]any{"type": "end", "conversation_id": c.id})
	for decode[wireConversation](t, c.cws.expect("conversation")["conversation"]).State != store.StateEnded {
	}
}

func TestSocketCaps(t *testing.T) {
	e := newTestServer(t, func(c *Config) {
		c.Limits.MaxSocketsPerConversation = 2
		c.Limits.MaxSocketsPerIP = 3
	})
	_, token := e.startChat("Ann")
	e.customerWS(token)
	e.customerWS(token)
	w, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": token})
	if code, errs := w.readUntilClosed(); code != websocket.StatusTryAgainLater || !slices.Contains(errs, "too_many_sockets") {
		t.Fatalf("third socket of a conversation: close %v, errors %v", code, errs)
	}
	// The third socket from this address is still allowed, the fourth not.
	_, token2 := e.startChat("Bea")
	e.customerWS(token2)
	w, _, err = e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if code, errs := w.readUntilClosed(); code != websocket.StatusTryAgainLater || !slices.Contains(errs, "too_many_sockets") {
		t.Fatalf("fourth socket from one address: close %v, errors %v", code, errs)
	}
	// Agents' consoles do not count against the address.
	alice := e.login("alice")
	for range 4 {
		e.agentWS(alice)
	}
	e.checkHub()
}

func TestSocketTokenBucket(t *testing.T) {
	l := LimitsConfig{MessagesPerSocketPerSecond: 10, BytesPerSocketPerSecond: 1000, MaxFrameBytes: 3000}
	lim := newSocketLimiter(l)
	t0 := time.Unix(1000, 0)
	for i := range 20 {
		if ok, _ := lim.allow(10, t0); !ok {
			t.Fatalf("frame %d of the burst of 20 refused", i)
		}
	}
	ok, wait := lim.allow(10, t0)
	if ok || wait != 100*time.Millisecond || retrySeconds(wait) != 1 {
		t.Fatalf("21st frame: ok %v, wait %v", ok, wait)
	}
	if ok, _ := lim.allow(10, t0.Add(100*time.Millisecond)); !ok {
		t.Fatalf("a frame after 100 ms refused")
	}
	// Bytes: the bucket holds max_frame_bytes (over 2 s of the rate); one
	// such frame empties it.
	lim = newSocketLimiter(l)
	if ok, _ := lim.allow(3000, t0); !ok {
		t.Fatal("a max_frame_bytes frame refused")
	}
	ok, wait = lim.allow(500, t0)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("bytes past the bucket: ok %v wait %v", ok, wait)
	}
	for range 4*20 + 1 {
		lim.allow(1500, t0)
	}
	if !lim.floods() {
		t.Fatal("a client ignoring rate_limited is not flagged")
	}
}

func TestFloodingSocketIsRateLimited(t *testing.T) {
	e := newTestServer(t, func(c *Config) {
		c.Limits.MessagesPerSocketPerSecond = 5
	})
	c := e.acceptedChat("Ann")
	start := time.Now()
	const sent = 45 // under the 10 + 4×10 refused in a row that close the socket
	for i := range sent {
		c.cws.send(map[string]any{"type": "message", "id": fmt.Sprint("f", i), "text": "flood"})
	}
	acks, limited := 0, 0
	retry := 0
	for acks+limited < sent {
		f := c.cws.expect2("ack", "error")
		if decode[string](t, f["type"]) == "ack" {
			acks++
			continue
		}
		if decode[string](t, f["code"]) != "rate_limited" {
			t.Fatalf("error frame: %v", f)
		}
		limited++
		retry = decode[int](t, f["retry_after"])
	}
	elapsed := time.Since(start)
	// The bucket holds 2 s of 5 frames; more only as it refills.
	if bound := 10 + int(elapsed.Seconds()*5) + 1; acks > bound || limited == 0 || retry < 1 {
		t.Fatalf("%d acks (bound %d over %v), %d rate_limited (retry_after %d)", acks, bound, elapsed, limited, retry)
	}
}

// expect2 reads frames until one of type a or b arrives.
func (w *wsc) expect2(a, b string) map[string]json.RawMessage {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), frameWait)
	defer cancel()
	for {
		_, raw, err := w.conn.Read(ctx)
		if err != nil {
			w.t.Fatalf("waiting for %q or %q: %v", a, b, err)
		}
		var f map[string]json.RawMessage
		if err := json.Unmarshal(raw, &f); err != nil {
			w.t.Fatal(err)
		}
		if got := decode[string](w.t, f["type"]); got == a || got == b {
			return f
		}
	}
}

func TestSendQueueDropsTypingBeforeClosing(t *testing.T) {
	cl := newClient(nil, discardLog(), newMetrics())
	// A flood of typing indicators of one conversation coalesces.
	for i := range 10000 {
		cl.sendTyping("c1", []byte(fmt.Sprintf(`{"type":"typing","typing":%v}`, i%2 == 0)))
	}
	if n := cl.pending(); n != 1 {
		t.Fatalf("%d typing frames queued, want 1", n)
	}
	b, _, _ := cl.next()
	if string(b) != `{"type":"typing","typing":false}` {
		t.Fatalf("coalesced typing frame: %s", b)
	}
	// A frame of the conversation in between keeps the order.
	cl.sendTyping("c1", []byte(`1`))
	cl.enqueue(outFrame{data: []byte(`msg`), conv: "c1"})
	cl.sendTyping("c1", []byte(`2`))
	if n := cl.pending(); n != 3 {
		t.Fatalf("typing around a message: %d queued, want 3", n)
	}
	for cl.pending() > 0 {
		cl.next()
	}
	// Past half the queue, typing is dropped; at the cap the droppable
	// frames go first; only then is the socket closed.
	for i := range sendBuffer / 2 {
		cl.enqueue(outFrame{data: []byte(`e`), conv: fmt.Sprint("e", i)})
	}
	cl.sendTyping("c9", []byte(`t`))
	if n := cl.pending(); n != sendBuffer/2 {
		t.Fatalf("typing queued past half the buffer: %d", n)
	}
	for i := cl.pending(); i < sendBuffer; i++ {
		cl.enqueue(outFrame{data: []byte(`e`)})
	}
	select {
	case <-cl.quit:
		t.Fatal("closed at exactly the cap")
	default:
	}
	cl.enqueue(outFrame{data: []byte(`one too many`)})
	select {
	case <-cl.quit:
	default:
		t.Fatal("a socket past its queue cap is not closed")
	}
	if cl.code != websocket.StatusTryAgainLater {
		t.Fatalf("close code %v", cl.code)
	}
}

// TestSlowConsoleDoesNotHoldUpOthers: a console that reads nothing is
// closed once its queue is full, while another console of the agent gets
// every message, in order.
func TestSlowConsoleDoesNotHoldUpOthers(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Limits.MessagesPerSocketPerSecond = 1000 })
	c := e.acceptedChat("Ann")
	h := e.srv.hub
	slow := newClient(nil, discardLog(), e.srv.metrics)
	slow.role, slow.agentID = store.RoleAgent, "alice"
	h.mu.Lock()
	h.agents["alice"].clients[slow] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.agents["alice"].clients, slow)
		h.mu.Unlock()
	}()
	seqs := make(chan int64, 2*sendBuffer)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(seqs)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for n := 0; n <= sendBuffer; {
			_, b, err := c.aws.conn.Read(ctx)
			if err != nil {
				return
			}
			var f struct {
				Type    string
				Message wireMessage
			}
			if json.Unmarshal(b, &f) == nil && f.Type == "message" {
				seqs <- f.Message.Seq
				n++
			}
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-slow.quit:
		default:
			c.cws.send(map[string]any{"type": "message", "id": fmt.Sprint("m", i), "text": "x"})
			c.cws.expect("ack")
			continue
		}
		break
	}
	wg.Wait()
	var got []int64
	for s := range seqs {
		got = append(got, s)
	}
	if len(got) <= sendBuffer {
		t.Fatalf("the live console got %d messages, want over %d", len(got), sendBuffer)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("the live console got seq %d after %d", got[i], got[i-1])
		}
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestLeftMessagesAttacked: the anonymous "leave a message" form cannot
// be used to fill the store: it shares the address's budget of new chats,
// refuses oversized and hostile input, and an unknown queue.
func TestLeftMessagesAttacked(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Limits.NewChatsPerIPPerMinute = 3 })
	leave := func(body string) int {
		resp, err := http.Post(e.ts.URL+"/api/v1/left-messages", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"unknown queue", `{"queue":"nope","email":"a@example.com","text":"hi"}`, http.StatusBadRequest},
		{"header injection in the e-mail", `{"email":"a@example.com\r\nBcc: x@example.com","text":"hi"}`, http.StatusBadRequest},
		{"too long", `{"email":"a@example.com","text":"` + strings.Repeat("x", 8<<10) + `"}`, http.StatusRequestEntityTooLarge},
		{"not JSON", `{"email":`, http.StatusBadRequest},
	} {
		if code := leave(tc.body); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	// The three well-formed refusals above spent the address's budget of
	// 3 (unparsable bodies cost nothing): the next one, however well
	// formed, is refused.
	if code := leave(`{"email":"a@example.com","text":"hi"}`); code != http.StatusTooManyRequests {
		t.Fatalf("past the per-address budget: %d, want 429", code)
	}
	e.checkHub()
}
