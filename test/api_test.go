//go:build e2e

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsConn is a Go WebSocket client of the gateway.
type wsConn struct {
	t testing.TB
	c *websocket.Conn
}

// dialGateway opens /api/v1/ws with the given Origin and extra headers.
func dialGateway(t testing.TB, g *gateway, origin string, header http.Header) (*wsConn, *http.Response, error) {
	t.Helper()
	if header == nil {
		header = http.Header{}
	}
	header.Set("Origin", origin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, res, err := websocket.Dial(ctx, g.WSURL(), &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		return nil, res, err
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsConn{t: t, c: c}, res, nil
}

func (w *wsConn) writeText(s string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return w.c.Write(ctx, websocket.MessageText, []byte(s))
}

func (w *wsConn) send(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.writeText(string(b)); err != nil {
		w.t.Fatalf("ws write: %v", err)
	}
}

// frame is any server frame, decoded loosely.
type frame map[string]any

func (f frame) typ() string { s, _ := f["type"].(string); return s }

// signalled applies an rtc.answer or rtc.candidate frame to the pion
// browser b, and reports whether f was one.
func (b *pionBrowser) signalled(t testing.TB, f frame) bool {
	t.Helper()
	switch f.typ() {
	case "rtc.answer":
		sdp, _ := f["sdp"].(string)
		if err := b.answered(sdp); err != nil {
			t.Fatalf("the gateway's answer: %v", err)
		}
	case "rtc.candidate":
		raw, _ := json.Marshal(f["candidate"])
		b.candidate(raw)
	default:
		return false
	}
	return true
}

// read returns the next frame, or the error that ended the socket.
func (w *wsConn) read() (frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, b, err := w.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	var f frame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("frame %q is not JSON: %w", b, err)
	}
	return f, nil
}

// expect reads frames until one of type typ arrives (skipping others, such
// as queue updates) and returns it.
func (w *wsConn) expect(typ string) frame {
	w.t.Helper()
	for range 50 {
		f, err := w.read()
		if err != nil {
			w.t.Fatalf("waiting for a %q frame: %v", typ, err)
		}
		if f.typ() == typ {
			return f
		}
	}
	w.t.Fatalf("no %q frame in 50 frames", typ)
	return nil
}

// customerWS connects as the customer of a conversation and says hello.
func customerWS(t testing.TB, g *gateway, token string) *wsConn {
	t.Helper()
	w, _, err := dialGateway(t, g, g.Origin(), nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	w.send(map[string]any{"type": "hello", "token": token, "after": 0})
	w.expect("welcome")
	return w
}

// agentWS connects with an agent's session cookie and says hello.
func agentWS(t testing.TB, g *gateway, agent *client) *wsConn {
	t.Helper()
	w, _, err := dialGateway(t, g, g.Origin(), http.Header{"Cookie": {agent.cookieHeader()}})
	if err != nil {
		t.Fatalf("dial as agent: %v", err)
	}
	w.send(map[string]any{"type": "hello", "after": map[string]int{}})
	w.expect("welcome")
	return w
}

// accept takes a waiting conversation over the agent's socket and waits
// until the gateway reports it assigned.
func (w *wsConn) accept(convID, agentID string) {
	w.t.Helper()
	w.send(map[string]any{"type": "accept", "conversation_id": convID})
	for range 50 {
		f := w.expect("conversation")
		c, _ := f["conversation"].(map[string]any)
		a, _ := c["agent"].(map[string]any)
		if c["id"] == convID && a != nil && a["id"] == agentID {
			return
		}
	}
	w.t.Fatalf("conversation %s was not assigned to %s", convID, agentID)
}

func TestDisallowedOriginRefused(t *testing.T) {
	const shop, evil = "http://shop.example", "http://evil.example"
	g := startGateway(t, func(o *gatewayOptions) { o.extraOrigins = []string{shop} })

	// HTTP: the same request passes from the gateway's origin and fails from another.
	c := g.client(t)
	c.json(http.MethodPost, "/api/v1/conversations", map[string]string{"queue": "support"}, http.StatusCreated, nil)
	c.origin = evil
	status, body := c.do(http.MethodPost, "/api/v1/conversations", strings.NewReader(`{"queue":"support"}`), "application/json")
	if status != http.StatusForbidden {
		t.Errorf("POST /api/v1/conversations from %s: status %d, want 403: %s", evil, status, body)
	}
	status, body = c.do(http.MethodPost, "/api/v1/agent/login", strings.NewReader(`{"id":"alice","password":"`+agentPasswords["alice"]+`"}`), "application/json")
	if status != http.StatusForbidden {
		t.Errorf("POST /api/v1/agent/login from %s: status %d, want 403: %s", evil, status, body)
	}

	// An allowed site gets CORS headers; the other one does not.
	for origin, want := range map[string]string{shop: shop, evil: ""} {
		req, err := http.NewRequest(http.MethodOptions, g.URL+"/api/v1/conversations", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("preflight from %s: Access-Control-Allow-Origin %q, want %q", origin, got, want)
		}
	}

	// WebSocket: the handshake is refused with 403.
	_, res, err := dialGateway(t, g, evil, nil)
	if err == nil {
		t.Fatalf("WebSocket handshake from %s succeeded", evil)
	}
	if res == nil || res.StatusCode != http.StatusForbidden {
		code := 0
		if res != nil {
			code = res.StatusCode
		}
		t.Errorf("WebSocket handshake from %s: status %d, want 403 (%v)", evil, code, err)
	}
	for _, origin := range []string{g.Origin(), shop} {
		if _, _, err := dialGateway(t, g, origin, nil); err != nil {
			t.Errorf("WebSocket handshake from %s: %v", origin, err)
		}
	}
}

// uploadFile posts a file to a conversation as the given client.
func (c *client) uploadFile(convID, name string, data []byte) (int, []byte) {
	c.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := fw.Write(data); err != nil {
		c.t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		c.t.Fatal(err)
	}
	return c.do(http.MethodPost, "/api/v1/conversations/"+convID+"/files", &buf, mw.FormDataContentType())
}

func TestAgentCannotReadOthersConversation(t *testing.T) {
	g := startGateway(t)
	customer, conv := g.newConversation(t, "Ann")
	other, otherConv := g.newConversation(t, "Ben")

	alice := g.login(t, "alice")
	aliceWS := agentWS(t, g, alice)
	aliceWS.accept(conv.ID, "alice")

	status, body := customer.uploadFile(conv.ID, "note.txt", []byte("private note of Ann\n"))
	if status != http.StatusCreated {
		t.Fatalf("customer upload: status %d: %s", status, body)
	}
	var up struct {
		Message message `json:"message"`
	}
	if err := json.Unmarshal(body, &up); err != nil || up.Message.File == nil {
		t.Fatalf("upload answer %s: %v", body, err)
	}
	fileID := up.Message.File.ID

	// Alice, the assigned agent, may read it all.
	for _, path := range []string{"/api/v1/conversations/" + conv.ID, "/api/v1/conversations/" + conv.ID + "/messages?after=0", "/api/v1/files/" + fileID} {
		if status, body := alice.do(http.MethodGet, path, nil, ""); status != http.StatusOK {
			t.Errorf("alice GET %s: status %d, want 200: %s", path, status, body)
		}
	}

	// Bob is in the same queue but the conversation is Alice's.
	bob := g.login(t, "bob")
	denied := func(who string, c *client, method, path string, body []byte) {
		t.Helper()
		status, resp := c.do(method, path, bytes.NewReader(body), "application/json")
		if status != http.StatusForbidden && status != http.StatusNotFound {
			t.Errorf("%s %s %s: status %d, want 403 or 404: %s", who, method, path, status, resp)
		}
		if bytes.Contains(resp, []byte("private note")) {
			t.Errorf("%s %s %s leaked the file's content", who, method, path)
		}
	}
	denied("bob", bob, http.MethodGet, "/api/v1/conversations/"+conv.ID, nil)
	denied("bob", bob, http.MethodGet, "/api/v1/conversations/"+conv.ID+"/messages?after=0", nil)
	denied("bob", bob, http.MethodGet, "/api/v1/files/"+fileID, nil)
	if status, _ := bob.uploadFile(conv.ID, "x.txt", []byte("hello\n")); status != http.StatusForbidden && status != http.StatusNotFound {
		t.Errorf("bob uploaded into alice's conversation: status %d", status)
	}

	// Another customer's token does not open it either; nor does no token.
	denied("other customer", other, http.MethodGet, "/api/v1/conversations/"+conv.ID, nil)
	denied("other customer", other, http.MethodGet, "/api/v1/files/"+fileID, nil)
	anon := g.client(t)
	if status, _ := anon.do(http.MethodGet, "/api/v1/conversations/"+conv.ID+"/messages?after=0", nil, ""); status != http.StatusUnauthorized && status != http.StatusForbidden && status != http.StatusNotFound {
		t.Errorf("anonymous GET messages: status %d", status)
	}
	if status, _ := other.do(http.MethodGet, "/api/v1/conversations/"+otherConv.ID, nil, ""); status != http.StatusOK {
		t.Errorf("customer GET own conversation: status %d, want 200", status)
	}

	// Over the WebSocket, bob cannot post into it.
	bobWS := agentWS(t, g, bob)
	bobWS.send(map[string]any{"type": "message", "id": "bob-1", "text": "let me in", "conversation_id": conv.ID})
	e := bobWS.expect("error")
	if e["ref"] != "bob-1" {
		t.Errorf("bob's message got error %v, want ref bob-1", e)
	}
	for _, m := range alice.messages(conv.ID) {
		if m.Text == "let me in" {
			t.Errorf("bob's message was stored in alice's conversation")
		}
	}
}

func TestWebSocketMalformedFrames(t *testing.T) {
	g := startGateway(t)
	customer, _ := g.newConversation(t, "Ann")
	w := customerWS(t, g, customer.token)

	for _, bad := range []string{
		`not json at all`,
		`{"type": "no-such-frame"}`,
		`{"no_type": true}`,
		`{"type": "message"}`,
		`{"type": "message", "id": "m1"}`,
		`{"type": "read", "seq": "seven"}`,
		`[1, 2, 3]`,
	} {
		if err := w.writeText(bad); err != nil {
			t.Fatalf("write %s: %v", bad, err)
		}
		f, err := w.read()
		if err != nil {
			t.Fatalf("after %s the socket failed: %v", bad, err)
		}
		if f.typ() != "error" {
			t.Errorf("after %s got %v, want an error frame", bad, f)
		} else if f["code"] == nil || f["code"] == "" {
			t.Errorf("error frame for %s has no code: %v", bad, f)
		}
	}

	// A text over limits.max_message_bytes (4096 by default) is refused
	// with an error that names the message.
	w.send(map[string]any{"type": "message", "id": "long-1", "text": strings.Repeat("é", 2100)})
	e := w.expect("error")
	if e["ref"] != "long-1" {
		t.Errorf("error for an oversized text: %v, want ref long-1", e)
	}

	// The socket still works.
	w.send(map[string]any{"type": "ping"})
	w.expect("pong")
	w.send(map[string]any{"type": "message", "id": "ok-1", "text": "still here"})
	ack := w.expect("ack")
	if ack["id"] != "ok-1" {
		t.Errorf("ack %v, want id ok-1", ack)
	}
}

func TestWebSocketOversizedFrameCloses1009(t *testing.T) {
	g := startGateway(t, func(o *gatewayOptions) { o.maxFrameBytes = 8192 })
	customer, _ := g.newConversation(t, "Ann")
	w := customerWS(t, g, customer.token)

	big := fmt.Sprintf(`{"type":"message","id":"big-1","text":%q}`, strings.Repeat("x", 20000))
	if err := w.writeText(big); err != nil {
		// The server may close while we are still writing.
		if websocket.CloseStatus(err) != websocket.StatusMessageTooBig && !errors.Is(err, context.DeadlineExceeded) {
			t.Logf("write: %v", err)
		}
	}
	for {
		_, err := w.read()
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
			t.Fatalf("socket ended with %v (status %d), want close 1009", err, got)
		}
		break
	}
}
