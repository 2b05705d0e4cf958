//go:build e2e

package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

// Abuse of the web side by an anonymous visitor, against the real segue
// serve: every visitor here holds nothing but the token of a waiting
// conversation (or not even that), and the real customers and agents
// beside them must not notice.

// startChatAPI starts a conversation over HTTP and returns the status and,
// on 201, the conversation id and token.
func startChatAPI(t *testing.T, g *gateway) (int, string, string) {
	t.Helper()
	c := g.client(t)
	status, body := c.do(http.MethodPost, "/api/v1/conversations", strings.NewReader(`{"name":"bot"}`), "application/json")
	if status != http.StatusCreated {
		return status, "", ""
	}
	var out struct {
		Conversation conversation `json:"conversation"`
		Token        string       `json:"token"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return status, out.Conversation.ID, out.Token
}

// TestAbuseAbandonedChatsExpire: chats opened and left fill
// limits.max_conversations, then end by themselves after
// limits.abandoned_after, with a transcript event, and a real customer
// can start a chat again. A chat whose customer is still connected stays.
func TestAbuseAbandonedChatsExpire(t *testing.T) {
	g := startGateway(t, withYAML("", "", "", "  max_conversations: 6\n  abandoned_after: 2s\n"))
	// One real customer, connected all along.
	_, realID, realToken := startChatAPI(t, g)
	customerWS(t, g, realToken)
	var botTokens []string
	for range 5 {
		status, _, token := startChatAPI(t, g)
		if status != http.StatusCreated {
			t.Fatalf("bot chat: %d", status)
		}
		botTokens = append(botTokens, token)
	}
	if status, _, _ := startChatAPI(t, g); status != http.StatusServiceUnavailable {
		t.Fatalf("a chat past max_conversations: %d, want 503", status)
	}
	start := time.Now()
	var newToken string
	waitFor(t, "a free slot after abandoned_after", func() error {
		status, _, token := startChatAPI(t, g)
		if status != http.StatusCreated {
			return fmt.Errorf("status %d", status)
		}
		newToken = token
		return nil
	})
	if since := time.Since(start); since < time.Second {
		t.Errorf("a slot was free after %v, before abandoned_after (2 s) could pass", since)
	}
	// The new customer is a full participant.
	w := customerWS(t, g, newToken)
	w.send(map[string]any{"type": "message", "id": "hello", "text": "Is anyone there?"})
	w.expect("ack")

	// A bot's transcript ends with the abandoned event; the real customer's
	// conversation is still waiting.
	bot := g.client(t)
	bot.token = botTokens[0]
	id := strings.SplitN(botTokens[0], ".", 2)[0]
	var out struct {
		Messages []struct {
			Event *struct {
				Name string            `json:"name"`
				Data map[string]string `json:"data"`
			} `json:"event"`
		} `json:"messages"`
	}
	bot.json(http.MethodGet, "/api/v1/conversations/"+id+"/messages", nil, http.StatusOK, &out)
	last := out.Messages[len(out.Messages)-1]
	if last.Event == nil || last.Event.Name != "conversation.ended" || last.Event.Data["reason"] != "abandoned" {
		t.Fatalf("the bot's transcript does not end with an abandoned event: %+v", out.Messages)
	}
	real := g.client(t)
	real.token = realToken
	var got struct {
		Conversation conversation `json:"conversation"`
	}
	real.json(http.MethodGet, "/api/v1/conversations/"+realID, nil, http.StatusOK, &got)
	if got.Conversation.State != "waiting" {
		t.Fatalf("the connected customer's conversation is %s, want waiting", got.Conversation.State)
	}
}

// TestAbuseQueueFullShowsBusyForm: with queues[].max_waiting reached, the
// widget says "we are very busy" and takes an e-mail and a message, which
// the queue's agents then see.
func TestAbuseQueueFullShowsBusyForm(t *testing.T) {
	g := startGateway(t, withYAML("", "", "    max_waiting: 2\n", ""))
	for range 2 {
		if status, _, _ := startChatAPI(t, g); status != http.StatusCreated {
			t.Fatalf("filling the queue: %d", status)
		}
	}
	tb := openWidget(t, g, "busy customer")
	tb.send("Can someone call me back?")
	waitJS[bool](tb, "the busy form", fn("", `const b = q('busy'); return !!b && !b.hidden && !!q('busy-email');`))
	if got := call[string](tb, fn("", `return q('busy-message').value;`)); got != "Can someone call me back?" {
		t.Errorf("busy-message prefilled with %q", got)
	}
	tb.fill("busy-email", "ann@example.com")
	tb.click("busy-send")
	tb.waitText("busy-sent", "ann@example.com")

	// The agent finds it in the console's list of messages left.
	console := openConsole(t, g, "alice", "/console")
	waitJS[bool](console, "the message left in the console", fn("", `const i = q('left-item');
if (!i || !i.textContent.includes('ann@example.com')) return false; i.querySelector('button').click(); return true;`))
	console.waitMessage("Can someone call me back?")
	if hidden := call[bool](console, fn("", `return q('chat-input').closest('form').hidden;`)); !hidden {
		t.Errorf("the console offers to reply in a message left")
	}
}

// TestAbuseFloodingCustomerRateLimited: a customer flooding its socket
// gets rate_limited, few of its messages are stored, and the agent's
// console, which holds both the flooder's and another customer's
// conversation, stays connected and gets the other customer's message
// sent during the flood.
func TestAbuseFloodingCustomerRateLimited(t *testing.T) {
	g := startGateway(t)
	alice := g.login(t, "alice")
	aw := agentWS(t, g, alice)
	_, floodID, floodToken := startChatAPI(t, g)
	_, otherID, otherToken := startChatAPI(t, g)
	for _, id := range []string{floodID, otherID} {
		aw.send(map[string]any{"type": "accept", "conversation_id": id})
		aw.expect("history")
	}
	other := customerWS(t, g, otherToken)
	flood := customerWS(t, g, floodToken)

	// The console is read all along, as a browser would.
	var mu sync.Mutex
	var consoleErr error
	gotOther := make(chan struct{})
	var once sync.Once
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		for {
			f, err := aw.read()
			if err != nil {
				mu.Lock()
				consoleErr = err
				mu.Unlock()
				return
			}
			if f.typ() == "pong" {
				return
			}
			if m, ok := f["message"].(map[string]any); ok && f.typ() == "message" && m["text"] == "I am a real customer" {
				once.Do(func() { close(gotOther) })
			}
		}
	}()

	// 2 s of 4 KB messages at about 200 a second, ten times the rate.
	var acks, limited, retryAfter int
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			f, err := flood.read()
			if err != nil {
				return
			}
			switch {
			case f.typ() == "pong":
				return
			case f.typ() == "ack":
				acks++
			case f.typ() == "error" && f["code"] == "rate_limited":
				limited++
				if n, _ := f["retry_after"].(float64); int(n) > retryAfter {
					retryAfter = int(n)
				}
			}
		}
	}()
	text := strings.Repeat("x", 4000)
	start := time.Now()
	sentOther := false
	for i := 0; time.Since(start) < 2*time.Second; i++ {
		flood.send(map[string]any{"type": "message", "id": fmt.Sprint("f", i), "text": text})
		if !sentOther && time.Since(start) > time.Second {
			other.send(map[string]any{"type": "message", "id": "real", "text": "I am a real customer"})
			sentOther = true
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	select {
	case <-gotOther:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the console did not get the other customer's message during the flood (socket: %v)", consoleErr)
	}
	// The console is still connected: it answers a ping.
	aw.send(map[string]any{"type": "ping"})
	<-consoleDone
	if consoleErr != nil {
		t.Fatalf("the console's socket ended: %v", consoleErr)
	}
	// Once the bucket has refilled, a ping on the flooder's socket comes
	// back after the answers to everything it sent before.
	time.Sleep(1100 * time.Millisecond)
	flood.send(map[string]any{"type": "ping"})
	<-readDone
	// 20 frames a second, 40 at once, for the flood's duration.
	bound := 40 + int(elapsed.Seconds()*20) + 2
	if limited == 0 || retryAfter < 1 || acks > bound {
		t.Fatalf("flood: %d acks (at most %d), %d rate_limited, retry_after %d", acks, bound, limited, retryAfter)
	}
	stored := 0
	for _, m := range alice.messages(floodID) {
		if m.From.Role == "customer" {
			stored++
		}
	}
	if stored != acks {
		t.Fatalf("%d flood messages stored, %d acknowledged", stored, acks)
	}
	t.Logf("flood of %v: %d acknowledged, %d rate_limited", elapsed.Round(time.Millisecond), acks, limited)
}

// TestAbuseWelcomeBoundedWithLongHistory: with a long transcript, the
// welcome carries one page, and older pages come by history, in the API
// and in the widget when the customer scrolls back.
func TestAbuseWelcomeBoundedWithLongHistory(t *testing.T) {
	g := startGateway(t, withYAML("", "", "",
		"  messages_per_socket_per_second: 5000\n  bytes_per_socket_per_second: 100000000\n  history_page_messages: 50\n"))
	_, id, token := startChatAPI(t, g)
	w := customerWS(t, g, token)
	const n = 300
	text := strings.Repeat("y", 4000)
	for i := range n {
		w.send(map[string]any{"type": "message", "id": fmt.Sprint("h", i), "text": fmt.Sprintf("%d %s", i, text)})
	}
	for range n {
		w.expect("ack")
	}

	// A new socket's welcome is one page, whatever the transcript's length.
	c, _, err := websocket.Dial(context.Background(), g.WSURL(), &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {g.Origin()}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 24)
	b, _ := json.Marshal(map[string]any{"type": "hello", "token": token})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	_, raw, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var welcome struct {
		Type     string    `json:"type"`
		Messages []message `json:"messages"`
		Older    bool      `json:"older"`
	}
	if err := json.Unmarshal(raw, &welcome); err != nil || welcome.Type != "welcome" {
		t.Fatalf("welcome: %v %.200s", err, raw)
	}
	if len(welcome.Messages) != 50 || !welcome.Older || len(raw) > 50*4200+8192 {
		t.Fatalf("welcome: %d bytes, %d messages, older %v", len(raw), len(welcome.Messages), welcome.Older)
	}
	// Older pages, back to the first message.
	seen := map[int64]bool{}
	for _, m := range welcome.Messages {
		seen[m.Seq] = true
	}
	before := welcome.Messages[0].Seq
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("more pages than the transcript has")
		}
		w.send(map[string]any{"type": "history", "before": before})
		f := w.expect("history")
		raw, _ := json.Marshal(f["messages"])
		var ms []message
		_ = json.Unmarshal(raw, &ms)
		if len(ms) == 0 || len(ms) > 50 {
			t.Fatalf("a history page of %d messages", len(ms))
		}
		for _, m := range ms {
			seen[m.Seq] = true
		}
		before = ms[0].Seq
		if f["older"] != true {
			break
		}
	}
	if before != 1 || len(seen) != n {
		t.Fatalf("paged back to seq %d, %d messages in all, want 1 and %d", before, len(seen), n)
	}

	// The widget shows the latest page and fetches older ones.
	tb := newTab(t, "long history")
	tb.do(chromedp.Navigate(g.URL + "/"))
	session, _ := json.Marshal(widgetSession{ID: id, Token: token})
	call[bool](tb, fn("key, value", `localStorage.setItem(key, value); return true;`), "segue:"+g.Origin()+":conversation", string(session))
	tb.loadWidget(g)
	shown := waitJS[int](tb, "the latest page", fn("", `const b = q('history-more'); return msgs().length >= 50 && b && !b.hidden && msgs().length;`))
	tb.click("history-more")
	more := waitJS[int](tb, "an older page", fn("n", `return msgs().length > n && msgs().length;`), shown)
	// Whatever was loaded is the end of the transcript, in order.
	if first := call[string](tb, fn("", `return msgs()[0].text;`)); !strings.HasPrefix(first, fmt.Sprintf("%d ", n-more)) {
		t.Fatalf("the widget shows %d messages, the oldest %.10q, want message %d", more, first, n-more)
	}
}

// TestAbuseSocketCaps: sockets past limits.max_sockets_per_conversation
// and limits.max_sockets_per_ip are refused with too_many_sockets and a
// close with 1013; agents' consoles do not count against the address.
func TestAbuseSocketCaps(t *testing.T) {
	g := startGateway(t, withYAML("", "", "", "  max_sockets_per_conversation: 2\n  max_sockets_per_ip: 4\n"))
	refused := func(w *wsConn) {
		t.Helper()
		var codes []string
		for {
			f, err := w.read()
			if err != nil {
				if got := websocket.CloseStatus(err); got != websocket.StatusTryAgainLater {
					t.Fatalf("closed with %v (%v), want 1013", got, err)
				}
				break
			}
			if f.typ() == "error" {
				codes = append(codes, fmt.Sprint(f["code"]))
			}
		}
		if len(codes) != 1 || codes[0] != "too_many_sockets" {
			t.Fatalf("errors before the close: %v, want too_many_sockets", codes)
		}
	}
	_, _, tokenA := startChatAPI(t, g)
	a1 := customerWS(t, g, tokenA)
	customerWS(t, g, tokenA)
	w, _, err := dialGateway(t, g, g.Origin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": tokenA})
	refused(w)

	// Two more sockets from this address are allowed, the fifth is not.
	_, _, tokenB := startChatAPI(t, g)
	customerWS(t, g, tokenB)
	customerWS(t, g, tokenB)
	w, _, err = dialGateway(t, g, g.Origin(), nil)
	if err != nil {
		t.Fatal(err)
	}
	refused(w)

	// An agent's consoles connect all the same.
	alice := g.login(t, "alice")
	agentWS(t, g, alice)
	agentWS(t, g, alice)

	// A socket that closes gives its slot back.
	a1.c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "a slot freed by a closed socket", func() error {
		w, _, err := dialGateway(t, g, g.Origin(), nil)
		if err != nil {
			return err
		}
		defer w.c.CloseNow()
		w.send(map[string]any{"type": "hello", "token": tokenA})
		f, err := w.read()
		if err != nil {
			return err
		}
		if f.typ() != "welcome" {
			return errors.New("refused again")
		}
		return nil
	})
}
