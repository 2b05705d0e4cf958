package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/segue-rtc/segue/store"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"))
}

// The password of both test agents is "password1" (bcrypt cost 4).
const testHash = "$2a$04$TFH44CR/mg6x8p0onKZ1nu39JpgEu7NnTZIdl.c6t.Mw8QABuPn12"

type env2 struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
	st  store.Store
}

func newTestServer(t *testing.T, mutate func(*Config)) *env2 {
	t.Helper()
	return newTestServerOpts(t, mutate)
}

func newTestServerOpts(t *testing.T, mutate func(*Config), opts ...Option) *env2 {
	t.Helper()
	doc := fmt.Sprintf(`
http:
  public_url: "http://gateway.test"
  allowed_origins: ["https://shop.example.com"]
queues:
  - name: support
    offer_timeout: 1
  - name: billing
agents:
  - {id: alice, name: Alice, password_hash: %q, queues: [support, billing], max_chats: 2}
  - {id: bob, name: Bob, password_hash: %q, queues: [support]}
`, testHash, testHash)
	cfg, err := ParseConfig([]byte(doc), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "s.db"), filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := New(cfg, st, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.hub.shutdown("test over")
		srv.hangupAll(errShutdown)
		srv.closeMedia()
		srv.wg.Wait()
		ts.Close()
		st.Close()
	})
	return &env2{t: t, srv: srv, ts: ts, st: st}
}

// startChat opens a conversation as a customer and returns id and token.
func (e *env2) startChat(name string) (string, string) {
	e.t.Helper()
	resp, err := http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(fmt.Sprintf(`{"name":%q}`, name)))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("create conversation: %d %s", resp.StatusCode, b)
	}
	var out struct {
		Conversation wireConversation `json:"conversation"`
		Token        string           `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatal(err)
	}
	return out.Conversation.ID, out.Token
}

// login returns an HTTP client holding agent id's session cookie.
func (e *env2) login(id string) *http.Client {
	e.t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Post(e.ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(fmt.Sprintf(`{"id":%q,"password":"password1"}`, id)))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("login %s: %d", id, resp.StatusCode)
	}
	return c
}

type wsc struct {
	t    *testing.T
	conn *websocket.Conn
}

func (e *env2) dial(hc *http.Client, origin string) (*wsc, *http.Response, error) {
	h := http.Header{}
	if origin != "" {
		h.Set("Origin", origin)
	}
	conn, resp, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(e.ts.URL, "http")+"/api/v1/ws",
		&websocket.DialOptions{HTTPClient: hc, HTTPHeader: h})
	if err != nil {
		return nil, resp, err
	}
	conn.SetReadLimit(1 << 22)
	w := &wsc{t: e.t, conn: conn}
	e.t.Cleanup(func() { conn.CloseNow() })
	return w, resp, nil
}

func (e *env2) customerWS(token string) *wsc {
	e.t.Helper()
	w, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		e.t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": token})
	w.expect("welcome")
	return w
}

func (e *env2) agentWS(hc *http.Client) (*wsc, map[string]json.RawMessage) {
	e.t.Helper()
	w, _, err := e.dial(hc, "")
	if err != nil {
		e.t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello"})
	return w, w.expect("welcome")
}

func (w *wsc) send(v any) {
	w.t.Helper()
	b, _ := json.Marshal(v)
	if err := w.conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		w.t.Fatal(err)
	}
}

// expect reads frames until one of type typ arrives (others are skipped).
func (w *wsc) expect(typ string) map[string]json.RawMessage {
	w.t.Helper()
	return w.expectAny(typ)
}

func decode[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

func TestChatBetweenCustomerAndAgent(t *testing.T) {
	e := newTestServer(t, nil)
	alice := e.login("alice")
	aws, welcome := e.agentWS(alice)
	if a := decode[wireAgent](t, welcome["agent"]); a.ID != "alice" || a.Presence != presenceAvailable {
		t.Fatalf("welcome agent: %+v", a)
	}
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)

	offer := decode[wireConversation](t, aws.expect("offer")["conversation"])
	if offer.ID != id || offer.Customer.Name != "Ann" {
		t.Fatalf("offer: %+v", offer)
	}
	cws.send(map[string]any{"type": "message", "id": "m1", "text": "my meter is broken"})
	if ack := cws.expect("ack"); decode[int64](t, ack["seq"]) != 1 {
		t.Fatalf("ack: %s", ack["seq"])
	}
	// The queue changes reach the console as diffs.
	for {
		f := aws.expect("queue.updated")
		q := decode[wireConversation](t, f["conversation"])
		if q.ID != id || decode[int](t, f["total"]) != 1 {
			t.Fatalf("queue update after message: %s", f["conversation"])
		}
		if q.Preview == "my meter is broken" {
			break
		}
	}
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	hist := decode[[]wireMessage](t, aws.expect("history")["messages"])
	if len(hist) < 1 || hist[0].Text != "my meter is broken" {
		t.Fatalf("history: %+v", hist)
	}
	conv := decode[wireConversation](t, cws.expect("conversation")["conversation"])
	if conv.State != store.StateActive || conv.Agent == nil || conv.Agent.Name != "Alice" {
		t.Fatalf("customer sees conversation %+v", conv)
	}
	aws.send(map[string]any{"type": "message", "id": "r1", "conversation_id": id, "text": "Let me check."})
	for {
		m := decode[wireMessage](t, cws.expect("message")["message"])
		if m.ID == "r1" {
			if m.From.Role != store.RoleAgent || m.From.Name != "Alice" || m.Text != "Let me check." {
				t.Fatalf("reply: %+v", m)
			}
			break
		}
	}
	// Typing and read receipts cross over.
	cws.send(map[string]any{"type": "typing", "typing": true})
	if f := aws.expect("typing"); string(f["typing"]) != "true" || decode[string](t, f["role"]) != "customer" {
		t.Fatalf("typing: %v", f)
	}
	cws.send(map[string]any{"type": "read", "seq": 99})
	if f := aws.expect("read"); decode[int64](t, f["seq"]) != 3 {
		t.Fatalf("read receipt clamps to the last seq (3): %s", f["seq"])
	}
	// The agent ends the conversation; the customer hears of it and can no longer post.
	aws.send(map[string]any{"type": "end", "conversation_id": id})
	for {
		c := decode[wireConversation](t, cws.expect("conversation")["conversation"])
		if c.State == store.StateEnded {
			break
		}
	}
	cws.send(map[string]any{"type": "message", "id": "late", "text": "still there?"})
	if f := cws.expect("error"); decode[string](t, f["code"]) != "ended" {
		t.Fatalf("message after end: %v", f)
	}
}

func TestMessagesAreDeduplicatedAndResumable(t *testing.T) {
	e := newTestServer(t, nil)
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)
	for i := 0; i < 2; i++ {
		cws.send(map[string]any{"type": "message", "id": "same", "text": "once"})
		if ack := cws.expect("ack"); decode[int64](t, ack["seq"]) != 1 {
			t.Fatalf("ack %d: %s", i, ack["seq"])
		}
	}
	cws.send(map[string]any{"type": "message", "id": "two", "text": "twice"})
	cws.expect("ack")
	ms, err := e.st.Messages(context.Background(), id, 0, 10)
	if err != nil || len(ms) != 2 {
		t.Fatalf("stored %d messages (%v), want 2", len(ms), err)
	}
	// A reconnect with after=1 gets only what it has not seen.
	w, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": token, "after": 1})
	got := decode[[]wireMessage](t, w.expect("welcome")["messages"])
	if len(got) != 1 || got[0].ID != "two" {
		t.Fatalf("resume after 1: %+v", got)
	}
}

func TestMalformedFramesGetErrorsAndOversizeCloses(t *testing.T) {
	e := newTestServer(t, nil)
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	bad := []struct {
		frame string
		code  string
	}{
		{`not json`, "bad_frame"},
		{`{"type":"teleport"}`, "bad_frame"},
		{`{"type":"message","text":"no id"}`, "bad_frame"},
		{`{"type":"message","id":"x","text":"   "}`, "bad_frame"},
		{`{"type":"message","id":"x","text":"` + strings.Repeat("a", 5000) + `"}`, "too_large"},
		{`{"type":"typing"}`, "bad_frame"},
		{`{"type":"accept","conversation_id":"c_x"}`, "bad_frame"},
		{`{"type":"hello","token":"x"}`, "bad_frame"},
		{`[1,2,3]`, "bad_frame"},
	}
	for _, b := range bad {
		if err := cws.conn.Write(context.Background(), websocket.MessageText, []byte(b.frame)); err != nil {
			t.Fatal(err)
		}
		if f := cws.expect("error"); decode[string](t, f["code"]) != b.code {
			t.Fatalf("frame %.40q: error %s, want %s", b.frame, f["code"], b.code)
		}
	}
	// Still serving after all that.
	cws.send(map[string]any{"type": "ping"})
	cws.expect("pong")
	// A frame over limits.max_frame_bytes closes with 1009.
	huge := `{"type":"message","id":"h","text":"` + strings.Repeat("a", 70000) + `"}`
	_ = cws.conn.Write(context.Background(), websocket.MessageText, []byte(huge))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := cws.conn.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
		t.Fatalf("close status %v (%v), want 1009", got, err)
	}
}

func TestHelloIsRequiredAndChecked(t *testing.T) {
	e := newTestServer(t, nil)
	for _, hello := range []string{`{"type":"hello","token":"c_nope.secret"}`, `{"type":"hello"}`, `{"type":"message"}`} {
		w, _, err := e.dial(nil, "https://shop.example.com")
		if err != nil {
			t.Fatal(err)
		}
		_ = w.conn.Write(context.Background(), websocket.MessageText, []byte(hello))
		f := w.expect("error")
		if code := decode[string](t, f["code"]); code != "unauthorized" && code != "bad_frame" {
			t.Fatalf("hello %s: %s", hello, code)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _, err = w.conn.Read(ctx)
		cancel()
		if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
			t.Fatalf("hello %s: close %v", hello, err)
		}
	}
}

func TestOriginsAreChecked(t *testing.T) {
	e := newTestServer(t, nil)
	req, _ := http.NewRequest("POST", e.ts.URL+"/api/v1/conversations", strings.NewReader(`{}`))
	req.Header.Set("Origin", "https://evil.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST from a foreign origin: %d", resp.StatusCode)
	}
	if _, resp, err := e.dial(nil, "https://evil.example"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("WebSocket from a foreign origin: %v %v", err, resp)
	}
	req, _ = http.NewRequest("OPTIONS", e.ts.URL+"/api/v1/conversations", nil)
	req.Header.Set("Origin", "https://shop.example.com")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight from an allowed origin: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestAgentsSeeOnlyTheirConversations(t *testing.T) {
	e := newTestServer(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	aws, _ := e.agentWS(alice)
	id, _ := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	resp, err := bob.Get(e.ts.URL + "/api/v1/conversations/" + id + "/messages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bob reads alice's conversation: %d", resp.StatusCode)
	}
	resp, err = alice.Get(e.ts.URL + "/api/v1/conversations/" + id + "/messages")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice reads her conversation: %d", resp.StatusCode)
	}
	// Another customer's token does not open this conversation either.
	_, other := e.startChat("Eve")
	req, _ := http.NewRequest("GET", e.ts.URL+"/api/v1/conversations/"+id+"/messages", nil)
	req.Header.Set("Authorization", "Bearer "+other)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another customer's token: %d", resp.StatusCode)
	}
	bws, _ := e.agentWS(bob)
	bws.send(map[string]any{"type": "message", "id": "x", "conversation_id": id, "text": "hi"})
	if f := bws.expect("error"); decode[string](t, f["code"]) != "forbidden" {
		t.Fatalf("bob posts into alice's conversation: %v", f)
	}
}

func TestLoginRefusesBadPasswords(t *testing.T) {
	e := newTestServer(t, nil)
	for _, body := range []string{`{"id":"alice","password":"wrong"}`, `{"id":"nobody","password":"password1"}`, `{"id":1}`} {
		resp, err := http.Post(e.ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("login %s: %d", body, resp.StatusCode)
		}
		if len(resp.Cookies()) != 0 {
			t.Fatalf("login %s set a cookie", body)
		}
	}
}

func TestRoutingOffersLongestIdleThenMovesOn(t *testing.T) {
	e := newTestServer(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	aws, _ := e.agentWS(alice)
	time.Sleep(20 * time.Millisecond)
	bws, _ := e.agentWS(bob)
	id, _ := e.startChat("Ann")
	// Alice has been idle longest: she is offered first.
	if c := decode[wireConversation](t, aws.expect("offer")["conversation"]); c.ID != id {
		t.Fatalf("alice's offer: %+v", c)
	}
	// She lets it pass (offer_timeout 1 s): it moves to Bob.
	if c := decode[wireConversation](t, bws.expect("offer")["conversation"]); c.ID != id {
		t.Fatalf("bob's offer: %+v", c)
	}
	bws.send(map[string]any{"type": "accept", "conversation_id": id})
	bws.expect("history")
	// A second accept loses the race.
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "taken" {
		t.Fatalf("second accept: %v", f)
	}
}

func TestTransferKeepsHistoryAndCapacityIsEnforced(t *testing.T) {
	e := newTestServer(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	aws, _ := e.agentWS(alice)
	bws, _ := e.agentWS(bob)
	bws.send(map[string]any{"type": "presence", "state": "away"})
	bws.expect("presence")
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "message", "id": "m1", "text": "hello"})
	cws.expect("ack")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	aws.send(map[string]any{"type": "transfer", "conversation_id": id, "agent": "bob"})
	hist := decode[[]wireMessage](t, bws.expect("history")["messages"])
	if len(hist) < 2 || hist[0].Text != "hello" {
		t.Fatalf("bob's history after transfer: %+v", hist)
	}
	for {
		c := decode[wireConversation](t, cws.expect("conversation")["conversation"])
		if c.Agent != nil && c.Agent.ID == "bob" {
			break
		}
	}
	// Alice holds at most two conversations.
	for i := 0; i < 2; i++ {
		cid, _ := e.startChat(fmt.Sprint("c", i))
		aws.send(map[string]any{"type": "accept", "conversation_id": cid})
		aws.expect("history")
	}
	cid, _ := e.startChat("one too many")
	aws.send(map[string]any{"type": "accept", "conversation_id": cid})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "at_capacity" {
		t.Fatalf("accept past max_chats: %v", f)
	}
}

func TestNewChatsPerIPAreLimited(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Limits.NewChatsPerIPPerMinute = 2 })
	e.srv.limiter = newIPLimiter(2, time.Minute)
	e.startChat("1")
	e.startChat("2")
	resp, err := http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third chat in a minute: %d %v", resp.StatusCode, resp.Header)
	}
}

func upload(t *testing.T, url, token, name string, data []byte, fields ...string) *http.Response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i := 0; i+1 < len(fields); i += 2 {
		mw.WriteField(fields[i], fields[i+1])
	}
	fw, _ := mw.CreateFormFile("file", name)
	fw.Write(data)
	mw.Close()
	req, _ := http.NewRequest("POST", url, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

var pngHeader = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89")

func TestUploadsAreCheckedAndServedSafely(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Store.MaxUploadBytes = 1000; c.Limits.MaxUploadsPerConversation = 2 })
	id, token := e.startChat("Ann")
	url := e.ts.URL + "/api/v1/conversations/" + id + "/files"

	resp := upload(t, url, token, "../../evil.png", pngHeader)
	var out struct{ Message wireMessage }
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || out.Message.File == nil || out.Message.File.Name != "evil.png" || !out.Message.File.Image {
		t.Fatalf("png upload: %d %+v", resp.StatusCode, out.Message.File)
	}
	for _, c := range []struct {
		name string
		data []byte
		want int
	}{
		{"page.html", []byte("<html><script>alert(1)</script></html>"), http.StatusUnsupportedMediaType},
		{"x.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>`), http.StatusUnsupportedMediaType},
		{"big.txt", bytes.Repeat([]byte("a"), 1001), http.StatusRequestEntityTooLarge},
		{"fake.docx", []byte("PK\x03\x04 not really a zip"), http.StatusUnsupportedMediaType},
	} {
		resp := upload(t, url, token, c.name, c.data)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("%s: %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	resp = upload(t, url, token, "notes.txt", []byte("hello"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("second file: %d", resp.StatusCode)
	}
	resp = upload(t, url, token, "third.txt", []byte("hello"))
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("file past max_uploads_per_conversation: %d", resp.StatusCode)
	}

	get := func(tok string) *http.Response {
		req, _ := http.NewRequest("GET", e.ts.URL+"/api/v1/files/"+out.Message.File.ID, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp = get(token)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, pngHeader) || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("download: %v", resp.Header)
	}
	_, other := e.startChat("Eve")
	for _, tok := range []string{"", other} {
		resp = get(tok)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
			t.Fatalf("download by a stranger (%q): %d", tok, resp.StatusCode)
		}
	}
}

func TestSniffType(t *testing.T) {
	tests := []struct {
		name string
		head []byte
		want string
	}{
		{"a.png", pngHeader, "image/png"},
		{"a.jpg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF"), "image/jpeg"},
		{"a.pdf", []byte("%PDF-1.7\n"), "application/pdf"},
		{"a.txt", []byte("plain words"), "text/plain; charset=utf-8"},
		{"a.csv", []byte("a,b\n1,2\n"), "text/csv; charset=utf-8"},
		{"a.doc", append([]byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}, make([]byte, 20)...), "application/msword"},
		{"a.docx", []byte("PK\x03\x04\x14\x00"), officeTypes[".docx"]},
		{"a.zip", []byte("PK\x03\x04\x14\x00"), ""},
		{"a.exe", []byte("MZ\x90\x00"), ""},
		{"a.html", []byte("<!DOCTYPE html><p>"), ""},
		{"a.txt", []byte{0xff, 0xfe, 0x00, 0x41}, ""},
		{"a.txt", []byte("caf\xc3"), ""},
		{"a.svg", []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sniffType(tt.head, tt.name, true)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("accepted as %q", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestIdentityTokens(t *testing.T) {
	secret := "0123456789abcdef-secret"
	now := time.Now()
	good := SignIdentity(secret, "Ann Lee", "ann@example.com", "42", now.Add(time.Hour))
	c, err := verifyIdentity(secret, good, now)
	if err != nil || !c.Verified || c.Email != "ann@example.com" || c.ExternalID != "42" {
		t.Fatalf("good token: %+v %v", c, err)
	}
	for name, tok := range map[string]string{
		"expired":    SignIdentity(secret, "Ann", "", "", now.Add(-time.Second)),
		"other key":  SignIdentity("another-secret-0123", "Ann", "", "", now.Add(time.Hour)),
		"tampered":   strings.Replace(good, good[:4], "eyJv", 1),
		"no dot":     "abc",
		"empty":      "",
		"bad base64": "!!!." + strings.Split(good, ".")[1],
	} {
		if _, err := verifyIdentity(secret, tok, now); err == nil {
			t.Errorf("%s token accepted", name)
		}
	}
	if _, err := verifyIdentity("", good, now); err == nil {
		t.Error("token accepted with identity disabled")
	}
}

func TestRestartKeepsConversationsAndSessions(t *testing.T) {
	e := newTestServer(t, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	// A second server over the same store sees the same state.
	srv2, err := New(e.srv.cfg, e.st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv2.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(srv2.Handler())
	defer ts2.Close()
	defer srv2.hub.shutdown("test over")
	resp, err := alice.Get(ts2.URL + "/api/v1/agent/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("session after restart: %d", resp.StatusCode)
	}
	_, c, err := srv2.customerConversation(context.Background(), token)
	if err != nil || c.AgentID != "alice" || c.State != store.StateActive {
		t.Fatalf("conversation after restart: %+v %v", c, err)
	}
}

func TestShutdownClosesSocketsWithReason(t *testing.T) {
	e := newTestServer(t, nil)
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	e.srv.hub.shutdown("server restarting")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := cws.conn.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "server restarting" {
		t.Fatalf("close: %v", err)
	}
	resp, err := http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("new chat while shutting down: %d", resp.StatusCode)
	}
}

func TestFailedLoginsAreLimited(t *testing.T) {
	e := newTestServer(t, nil)
	for i := 0; i < maxFailedLoginsPerAgent; i++ {
		resp, err := http.Post(e.ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(`{"id":"alice","password":"guess"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
	}
	// Even the right password is refused from that address for a while.
	resp, err := http.Post(e.ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(`{"id":"alice","password":"password1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d", maxFailedLoginsPerAgent, resp.StatusCode)
	}
}

func TestSnapshotsAreImagesAndLeaveAnEvent(t *testing.T) {
	e := newTestServer(t, nil)
	id, token := e.startChat("Ann")
	url := e.ts.URL + "/api/v1/conversations/" + id + "/files"
	resp := upload(t, url, token, "snap.txt", []byte("not an image"), "kind", "snapshot")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text as a snapshot: %d", resp.StatusCode)
	}
	resp = upload(t, url, token, "snapshot.png", pngHeader, "kind", "snapshot")
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("snapshot: %d", resp.StatusCode)
	}
	ms, err := e.st.Messages(context.Background(), id, 0, 10)
	if err != nil || len(ms) != 2 || ms[0].Kind != store.KindFile || ms[1].Event != "snapshot.taken" {
		t.Fatalf("transcript after a snapshot: %+v %v", ms, err)
	}
}

// TestSenderGetsItsMessageThenItsAck: the socket that sent a message
// gets the message, then its ack, and nothing in between, while the
// agent's console gets the message; a message sent again gets only an
// ack, with the first one's seq.
func TestSenderGetsItsMessageThenItsAck(t *testing.T) {
	e := newTestServer(t, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)
	aws.expect("offer")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	for {
		c := decode[wireConversation](t, cws.expect("conversation")["conversation"])
		if c.State == store.StateActive {
			break
		}
	}
	// What the acceptance sent the customer is read up to a pong.
	cws.send(map[string]any{"type": "ping"})
	cws.expect("pong")
	next := func(w *wsc) map[string]json.RawMessage {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, b, err := w.conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]json.RawMessage
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatalf("frame %s: %v", b, err)
		}
		return f
	}
	for i := range 3 {
		mid := fmt.Sprint("m", i)
		cws.send(map[string]any{"type": "message", "id": mid, "text": "hello " + mid})
		f := next(cws)
		if m := decode[wireMessage](t, f["message"]); decode[string](t, f["type"]) != "message" || m.ID != mid || m.Seq < 1 {
			t.Fatalf("message %d: the sender first got %v", i, f)
		}
		seq := decode[wireMessage](t, f["message"]).Seq
		ack := next(cws)
		if decode[string](t, ack["type"]) != "ack" || decode[string](t, ack["id"]) != mid ||
			decode[int64](t, ack["seq"]) != seq || decode[string](t, ack["conversation_id"]) != id {
			t.Fatalf("message %d: then %v, want its ack with seq %d", i, ack, seq)
		}
		if m := decode[wireMessage](t, aws.expect("message")["message"]); m.ID != mid || m.Seq != seq {
			t.Fatalf("message %d: the agent got %+v", i, m)
		}
	}
	cws.send(map[string]any{"type": "message", "id": "m1", "text": "hello again"})
	if ack := next(cws); decode[string](t, ack["type"]) != "ack" || decode[string](t, ack["id"]) != "m1" {
		t.Fatalf("message sent again: got %v, want only its ack", ack)
	}
	cws.send(map[string]any{"type": "ping"})
	if f := next(cws); decode[string](t, f["type"]) != "pong" {
		t.Fatalf("after the duplicate's ack: %v", f)
	}
}
