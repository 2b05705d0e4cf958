package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Test API keys: crm may read and write, reader only read, old expired.
const (
	keyCRM    = "sgk_crm-test-key-0123456789abcdefghijklmnopqrstuv"
	keyReader = "sgk_reader-test-key-0123456789abcdefghijklmnopqrs"
	keyOld    = "sgk_old-test-key-0123456789abcdefghijklmnopqrstuv"
)

func withAPIKeys(c *Config) {
	c.Integrations.APIKeys = []APIKeyConfig{
		{Name: "crm", KeyHash: HashAPIKey(keyCRM), Scopes: []string{ScopeConversationsRead, ScopeConversationsWrite}},
		{Name: "reader", KeyHash: HashAPIKey(keyReader), Scopes: []string{ScopeConversationsRead}},
		{Name: "old", KeyHash: HashAPIKey(keyOld), Scopes: Scopes, Expires: time.Now().Add(-time.Hour)},
	}
}

// apiCall sends an integrations API request with key ("" for none) and
// returns the status and the decoded JSON body.
func (e *env2) apiCall(method, path, key, body string, hdr ...string) (int, map[string]any) {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.ts.URL+path, r)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(res.Body)
	if len(b) > 0 && json.Unmarshal(b, &out) != nil {
		e.t.Fatalf("%s %s: not JSON: %s", method, path, b)
	}
	return res.StatusCode, out
}

func errCode(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestIntegrationKeysAndScopes(t *testing.T) {
	e := newTestServer(t, withAPIKeys)
	id, token := e.startChat("Ann")
	list := "/api/v1/integrations/conversations"
	post := "/api/v1/integrations/conversations/" + id + "/messages"
	msg := `{"text":"hi","sender":{"role":"bot","name":"Helper"}}`
	for _, tc := range []struct {
		name, method, path, key, body string
		status                        int
		code                          string
	}{
		{"no key", "GET", list, "", "", 401, "unauthorized"},
		{"wrong key", "GET", list, "sgk_wrong", "", 401, "bad_api_key"},
		{"customer token is no key", "GET", list, token, "", 401, "bad_api_key"},
		{"expired key", "GET", list, keyOld, "", 401, "api_key_expired"},
		{"read-only key cannot write", "POST", post, keyReader, msg, 403, "insufficient_scope"},
		{"read key reads", "GET", list, keyReader, "", 200, ""},
		{"write key writes", "POST", post, keyCRM, msg, 201, ""},
	} {
		status, body := e.apiCall(tc.method, tc.path, tc.key, tc.body)
		if status != tc.status || errCode(body) != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.name, status, body, tc.status, tc.code)
		}
	}
	// An API key opens nothing outside the integrations API.
	if status, _ := e.apiCall("GET", "/api/v1/conversations/"+id, keyCRM, ""); status != 401 {
		t.Errorf("API key on the widget's route: %d", status)
	}
	// A page of another site cannot use a key through a browser.
	if status, body := e.apiCall("GET", list, keyCRM, "", "Origin", "https://shop.example.com"); status != 403 || errCode(body) != "origin" {
		t.Errorf("foreign origin: %d %v", status, body)
	}
	// Refused keys are limited per address, like sign-ins; a good key is
	// then refused too without being checked.
	for range maxFailedAPIKeysPerAddr {
		e.apiCall("GET", list, "sgk_guess", "")
	}
	if status, body := e.apiCall("GET", list, keyCRM, ""); status != 429 || errCode(body) != "api_key_locked" {
		t.Errorf("after %d refused keys: %d %v", maxFailedAPIKeysPerAddr, status, body)
	}
	if m := e.metricsText(); !strings.Contains(m, `segue_api_key_refusals_total{reason="bad_key"}`) {
		t.Errorf("refusals not counted:\n%s", m)
	}
}

func TestIntegrationSearchAndPaging(t *testing.T) {
	e := newTestServer(t, withAPIKeys)
	var ids []string
	for i := range 5 {
		id, token := e.startChat(fmt.Sprintf("Ann %d", i))
		ids = append(ids, id)
		w := e.customerWS(token)
		text := "hello"
		if i == 2 {
			text = "my parcel never arrived"
		}
		w.send(map[string]any{"type": "message", "id": "m1", "text": text})
		w.expect("ack")
		w.conn.CloseNow()
	}
	get := func(q string) (int, map[string]any) {
		t.Helper()
		return e.apiCall("GET", "/api/v1/integrations/conversations?"+q, keyReader, "")
	}
	convIDs := func(body map[string]any) []string {
		var out []string
		list, _ := body["conversations"].([]any)
		for _, c := range list {
			out = append(out, c.(map[string]any)["id"].(string))
		}
		return out
	}
	if status, body := get("q=" + url.QueryEscape("parcel")); status != 200 || fmt.Sprint(convIDs(body)) != "["+ids[2]+"]" {
		t.Errorf("full text: %d %v", status, body)
	}
	// Paging two at a time walks every conversation once, newest first.
	var seen []string
	cursor := ""
	for range 10 {
		status, body := get("limit=2&cursor=" + cursor)
		if status != 200 {
			t.Fatalf("page: %d %v", status, body)
		}
		seen = append(seen, convIDs(body)...)
		next, _ := body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 5 || seen[0] != ids[4] || seen[4] != ids[0] {
		t.Errorf("pages: %v of %v", seen, ids)
	}
	// Huge page sizes are capped, not refused.
	if status, body := get("limit=99999999999999999999"); status != 200 || len(convIDs(body)) != 5 {
		t.Errorf("huge limit: %d %v", status, body)
	}
	for _, tc := range []struct{ q, code string }{
		{"q=" + url.QueryEscape(`"unterminated`), "bad_query"},
		{"q=" + url.QueryEscape(`text:x OR`), "bad_query"},
		{"q=" + url.QueryEscape(`x'); DROP TABLE messages; --`), "bad_query"},
		{"q=" + strings.Repeat("a", maxSearchText+1), "bad_request"},
		{"limit=-1", "bad_request"},
		{"from=yesterday", "bad_request"},
		{"state=gone", "bad_request"},
		{"cursor=" + url.QueryEscape("not a cursor!"), "bad_request"},
	} {
		if status, body := get(tc.q); status != 400 || errCode(body) != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", tc.q, status, body, tc.code)
		}
	}
	// The transcript is intact after the injection attempts.
	if status, body := e.apiCall("GET", "/api/v1/integrations/conversations/"+ids[2], keyReader, ""); status != 200 ||
		len(body["messages"].([]any)) != 1 {
		t.Errorf("one conversation: %d %v", status, body)
	}
	if status, body := get("email=" + url.QueryEscape("x' OR '1'='1")); status != 200 || len(convIDs(body)) != 0 {
		t.Errorf("quote in a filter: %d %v", status, body)
	}
}

func TestIntegrationPostEndTransfer(t *testing.T) {
	e := newTestServer(t, withAPIKeys)
	c := e.acceptedChat("Ann")
	bob := e.login("bob")
	bws, _ := e.agentWS(bob)
	base := "/api/v1/integrations/conversations/" + c.id
	status, body := e.apiCall("POST", base+"/messages", keyCRM, `{"id":"o-1","text":"Your order shipped","sender":{"role":"bot","name":"Order bot"}}`)
	if status != 201 {
		t.Fatalf("post: %d %v", status, body)
	}
	// Both sides hear the bot at once.
	for _, w := range []*wsc{c.cws, c.aws} {
		m := decode[wireMessage](t, w.expect("message")["message"])
		if m.Text != "Your order shipped" || m.From.Role != "bot" || m.From.Name != "Order bot" {
			t.Errorf("delivered: %+v", m)
		}
	}
	// The same id again is not stored twice.
	if status, _ := e.apiCall("POST", base+"/messages", keyCRM, `{"id":"o-1","text":"Your order shipped","sender":{"role":"bot","name":"Order bot"}}`); status != 200 {
		t.Errorf("repeat: %d", status)
	}
	for _, bad := range []string{`{"text":"x","sender":{"role":"agent","name":"Alice"}}`, `{"text":"","sender":{"role":"bot","name":"B"}}`,
		`{"text":"x","sender":{"role":"bot"}}`, `{"text":"x","extra":1,"sender":{"role":"system"}}`} {
		if status, body := e.apiCall("POST", base+"/messages", keyCRM, bad); status != 400 {
			t.Errorf("%s: %d %v", bad, status, body)
		}
	}
	if status, body := e.apiCall("POST", base+"/transfer", keyCRM, `{"agent":"bob"}`); status != 200 ||
		body["conversation"].(map[string]any)["agent_id"] != "bob" {
		t.Fatalf("transfer: %d %v", status, body)
	}
	bws.expect("history")
	if status, body := e.apiCall("POST", base+"/end", keyCRM, `{}`); status != 200 ||
		body["conversation"].(map[string]any)["state"] != "ended" {
		t.Fatalf("end: %d %v", status, body)
	}
	if status, body := e.apiCall("POST", base+"/end", keyCRM, `{}`); status != 409 || errCode(body) != "ended" {
		t.Errorf("end again: %d %v", status, body)
	}
	status, body = e.apiCall("GET", base, keyReader, "")
	if status != 200 {
		t.Fatalf("get: %d %v", status, body)
	}
	var events []string
	for _, m := range body["messages"].([]any) {
		mm := m.(map[string]any)
		if ev, ok := mm["event"].(map[string]any); ok {
			events = append(events, ev["name"].(string))
		} else {
			events = append(events, mm["from"].(map[string]any)["role"].(string))
		}
	}
	if got := strings.Join(events, " "); got != "conversation.accepted bot conversation.transferred conversation.ended" {
		t.Errorf("transcript: %s", got)
	}
	if status, _ := e.apiCall("GET", "/api/v1/integrations/conversations/nope", keyReader, ""); status != 404 {
		t.Errorf("unknown conversation: %d", status)
	}
}

func TestIntegrationsConfigErrorsNameTheKey(t *testing.T) {
	doc := `
queues: [{name: support}]
integrations:
  api_keys:
    - {name: crm, key_hash: "md5:abc", scopes: [admin]}
    - {name: crm, scopes: []}
  webhooks:
    - {name: hook, url: "ftp://crm.example.com", events: [call.answered], secret: short}
    - {name: hook2, url: "https://user:pw@crm.example.com", events: ["*"], secret: "${HOOK_SECRET}"}
  webhook_max_attempts: -1
  webhook_retry_min: 2m
  webhook_retry_max: 1m
`
	_, err := ParseConfig([]byte(doc), func(string) (string, bool) { return "0123456789abcdef", true })
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"integrations.api_keys[0].key_hash: not \"sha256:\"",
		"integrations.api_keys[0].scopes[0]: \"admin\" is not one of",
		"integrations.api_keys[1].name: duplicate key name \"crm\"",
		"integrations.api_keys[1].key_hash: required",
		"integrations.api_keys[1].scopes: at least one of",
		"integrations.webhooks[0].url: \"ftp://crm.example.com\" is not an http:// or https:// URL",
		"integrations.webhooks[0].events[0]: unknown event \"call.answered\"",
		"integrations.webhooks[0].secret: required, at least 16 characters",
		"integrations.webhooks[1].url: must not carry a user or password",
		"integrations.webhook_max_attempts: must be positive",
		"integrations.webhook_retry_max: must be at least webhook_retry_min",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "webhooks[1].secret") {
		t.Errorf("the secret from the environment was not expanded: %v", err)
	}
}
