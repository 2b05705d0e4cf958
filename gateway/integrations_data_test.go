package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/store"
)

// More test keys: rec reads recordings, eraser erases.
const (
	keyRec    = "sgk_rec-test-key-0123456789abcdefghijklmnopqrstuv"
	keyEraser = "sgk_eraser-test-key-0123456789abcdefghijklmnopqrs"
	keyNew    = "sgk_new-test-key-0123456789abcdefghijklmnopqrstuv"
)

func withDataKeys(c *Config) {
	withAPIKeys(c)
	c.Integrations.APIKeys = append(c.Integrations.APIKeys,
		APIKeyConfig{Name: "rec", KeyHash: HashAPIKey(keyRec), Scopes: []string{ScopeRecordingsRead}},
		APIKeyConfig{Name: "eraser", KeyHash: HashAPIKey(keyEraser), Scopes: []string{ScopeDataErase}})
}

// storeRecording stores an ended conversation of customer crm-7 with
// one recording whose file holds data.
func storeRecording(t *testing.T, st store.Store, data []byte) (*store.Conversation, *store.Recording) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	c := &store.Conversation{ID: "c_rec1", State: store.StateEnded, Queue: "support", CreatedAt: now, UpdatedAt: now, EndedAt: now, TokenHash: []byte("h"),
		Customer: store.Customer{Name: "Ann", Email: "ann@example.com", ExternalID: "crm-7", Verified: true}}
	if err := st.CreateConversation(ctx, c); err != nil {
		t.Fatal(err)
	}
	r := &store.Recording{ID: "r_rec1", ConversationID: c.ID, CallID: "k_1", Format: "wav", Type: "audio/wav"}
	f, err := st.CreateRecording(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r.Duration = 3 * time.Second
	if err := st.FinishRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	return c, r
}

func rawGet(t *testing.T, url, key string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// A recordings:read key lists a conversation's recordings and fetches
// one, whole or a range of it; other keys are refused with the scope
// named.
func TestIntegrationRecordings(t *testing.T) {
	e := newTestServer(t, withDataKeys)
	data := []byte(strings.Repeat("0123456789", 100))
	c, r := storeRecording(t, e.st, data)

	code, body := e.apiCall("GET", "/api/v1/integrations/conversations/"+c.ID+"/recordings", keyRec, "")
	recs, _ := body["recordings"].([]any)
	if code != http.StatusOK || len(recs) != 1 {
		t.Fatalf("list: %d %v", code, body)
	}
	got := recs[0].(map[string]any)
	if got["id"] != r.ID || got["call"] != "k_1" || got["conversation"] != c.ID || got["format"] != "wav" ||
		got["duration_s"] != 3.0 || got["size"] != float64(len(data)) || got["url"] != "http://gateway.test/api/v1/integrations/recordings/"+r.ID {
		t.Errorf("listed: %v", got)
	}
	if code, body := e.apiCall("GET", "/api/v1/integrations/conversations/"+c.ID+"/recordings", keyReader, ""); code != http.StatusForbidden || errCode(body) != "insufficient_scope" {
		t.Errorf("a conversations:read key lists recordings: %d %v", code, body)
	}
	if code, _ := e.apiCall("GET", "/api/v1/integrations/conversations/c_nope/recordings", keyRec, ""); code != http.StatusNotFound {
		t.Errorf("recordings of no conversation: %d", code)
	}

	url := e.ts.URL + "/api/v1/integrations/recordings/" + r.ID
	res, b := rawGet(t, url, keyRec)
	if res.StatusCode != http.StatusOK || string(b) != string(data) || res.Header.Get("Content-Type") != "audio/wav" {
		t.Errorf("whole file: %d %s, %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(b))
	}
	res, b = rawGet(t, url, keyRec, "Range", "bytes=995-")
	if res.StatusCode != http.StatusPartialContent || string(b) != "56789" || res.Header.Get("Content-Range") != "bytes 995-999/1000" {
		t.Errorf("range: %d %q %s", res.StatusCode, b, res.Header.Get("Content-Range"))
	}
	res, _ = rawGet(t, url, keyReader)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(res.Header.Get("WWW-Authenticate"), `scope="recordings:read"`) {
		t.Errorf("a conversations:read key fetched a recording: %d %v", res.StatusCode, res.Header)
	}
	for _, id := range []string{"r_nope", "..%2Fs.db", strings.Repeat("r", 65)} {
		if res, _ := rawGet(t, e.ts.URL+"/api/v1/integrations/recordings/"+id, keyRec); res.StatusCode != http.StatusNotFound {
			t.Errorf("recording %q: %d", id, res.StatusCode)
		}
	}
}

// A data:erase key erases a customer's closed conversations with their
// recordings and says what it erased; an open conversation is kept and
// named; other keys and bodies without a customer are refused.
func TestIntegrationErase(t *testing.T) {
	e := newTestServer(t, withDataKeys)
	c, r := storeRecording(t, e.st, []byte("RIFF...."))
	const path = "/api/v1/integrations/customers/erase"
	if code, body := e.apiCall("POST", path, keyCRM, `{"customer_id":"crm-7"}`); code != http.StatusForbidden || errCode(body) != "insufficient_scope" {
		t.Errorf("a conversations:write key erased: %d %v", code, body)
	}
	for _, b := range []string{`{}`, `{"customer_id":"  "}`, `{"customer":"crm-7"}`, `not json`} {
		if code, _ := e.apiCall("POST", path, keyEraser, b); code != http.StatusBadRequest {
			t.Errorf("erase %s: %d", b, code)
		}
	}
	open, _ := e.startChat("Ann")
	if err := e.st.UpdateConversation(context.Background(), func() *store.Conversation {
		oc, _ := e.st.Conversation(context.Background(), open)
		oc.Customer.ExternalID = "crm-7"
		return oc
	}()); err != nil {
		t.Fatal(err)
	}
	code, body := e.apiCall("POST", path, keyEraser, `{"customer_id":"crm-7"}`)
	er, _ := body["erased"].(map[string]any)
	if code != http.StatusOK || er["conversations"] != 1.0 || er["recordings"] != 1.0 ||
		fmt.Sprint(er["conversation_ids"]) != "["+c.ID+"]" || fmt.Sprint(er["open"]) != "["+open+"]" {
		t.Fatalf("erase: %d %v", code, body)
	}
	if _, err := e.st.Recording(context.Background(), r.ID); err == nil {
		t.Error("the recording is still stored")
	}
	if res, _ := rawGet(t, e.ts.URL+"/api/v1/integrations/recordings/"+r.ID, keyRec); res.StatusCode != http.StatusNotFound {
		t.Errorf("the erased recording: %d", res.StatusCode)
	}
	if code, body := e.apiCall("POST", path, keyEraser, `{"email":"nobody@example.com"}`); code != http.StatusOK ||
		body["erased"].(map[string]any)["conversations"] != 0.0 {
		t.Errorf("erase of nobody: %d %v", code, body)
	}
}

// A reload swaps the API keys (a new key works, a removed one is refused
// at once) and the webhooks (a removed one hears nothing more, a new one
// hears what follows).
func TestReloadIntegrations(t *testing.T) {
	rcA := newReceiver(t, nil)
	rcB := newReceiver(t, nil)
	e := newTestServer(t, func(c *Config) {
		withAPIKeys(c)
		withHook(rcA.srv.URL, 10, "conversation.created")(c)
	})
	e.runWebhooks()
	first, _ := e.startChat("Ann")
	waitUntil(t, "the first event at A", func() bool { return len(rcA.events()) == 1 })
	if code, _ := e.apiCall("GET", "/api/v1/integrations/conversations", keyNew, ""); code != http.StatusUnauthorized {
		t.Fatalf("the new key before the reload: %d", code)
	}

	next := *e.srv.cfg
	next.Integrations.APIKeys = []APIKeyConfig{
		{Name: "crm", KeyHash: HashAPIKey(keyCRM), Scopes: []string{ScopeConversationsRead}},
		{Name: "new", KeyHash: HashAPIKey(keyNew), Scopes: []string{ScopeConversationsRead}},
	}
	next.Integrations.Webhooks = []WebhookConfig{{Name: "crm2", URL: rcB.srv.URL, Events: []string{"*"}, Secret: hookSecret}}
	res, err := e.srv.Reload(context.Background(), &next)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res.APIKeysAdded, res.APIKeysChanged, res.APIKeysRemoved, res.WebhooksAdded, res.WebhooksRemoved) !=
		"[new] [crm] [old reader] [crm2] [crm]" {
		t.Errorf("reload result: %+v", res)
	}
	if code, _ := e.apiCall("GET", "/api/v1/integrations/conversations", keyNew, ""); code != http.StatusOK {
		t.Errorf("the new key after the reload: %d", code)
	}
	if code, _ := e.apiCall("GET", "/api/v1/integrations/conversations", keyReader, ""); code != http.StatusUnauthorized {
		t.Errorf("the removed key after the reload: %d", code)
	}
	if code, _ := e.apiCall("POST", "/api/v1/integrations/conversations/"+first+"/end", keyCRM, `{}`); code != http.StatusForbidden {
		t.Errorf("crm lost conversations:write but ended a conversation: %d", code)
	}
	second, _ := e.startChat("Ben")
	waitUntil(t, "the second event at B", func() bool { return len(rcB.events()) >= 1 })
	if ev := rcB.events()[0]; ev.Type != "conversation.created" || ev.Conversation.ID != second {
		t.Errorf("B got %s of %s", ev.Type, ev.Conversation.ID)
	}
	if n := len(rcA.events()); n != 1 {
		t.Errorf("the removed webhook got %d events", n)
	}
}

// A receiver that hangs holds back only its own webhook: another
// webhook gets every event meanwhile.
func TestWebhookHangingReceiverDelaysOnlyItself(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	hung := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(hung) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	fast := newReceiver(t, nil)
	e := newTestServer(t, func(c *Config) {
		c.Integrations.Webhooks = []WebhookConfig{
			{Name: "slow", URL: slow.URL, Events: []string{"*"}, Secret: hookSecret},
			{Name: "fast", URL: fast.srv.URL, Events: []string{"*"}, Secret: hookSecret},
		}
		c.Integrations.WebhookTimeout = time.Hour
	})
	e.runWebhooks()
	_, token := e.startChat("Ann")
	<-hung
	w := e.customerWS(token)
	for _, text := range []string{"one", "two", "three"} {
		w.send(map[string]any{"type": "message", "id": text, "text": text})
		w.expect("ack")
	}
	waitUntil(t, "four events at the fast webhook", func() bool { return len(fast.events()) == 4 })
	select {
	case <-release:
		t.Fatal("the slow receiver was released")
	default:
	}
}

// A dead event is listed on the admin listener and, replayed, delivered.
func TestWebhookReplay(t *testing.T) {
	var failing sync.Mutex
	broken := true
	rc := newReceiver(t, func(int) bool { failing.Lock(); defer failing.Unlock(); return broken })
	e := newTestServer(t, withHook(rc.srv.URL, 1, "conversation.created"))
	e.runWebhooks()
	id, _ := e.startChat("Ann")
	admin := httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(admin.Close)
	var dead struct{ Events []DeadEvent }
	waitUntil(t, "a dead event", func() bool {
		res, err := http.Get(admin.URL + "/admin/webhooks/dead?webhook=crm")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		_ = json.NewDecoder(res.Body).Decode(&dead)
		return len(dead.Events) == 1
	})
	if ev := dead.Events[0]; ev.Conversation != id || ev.Type != "conversation.created" || ev.Attempts != 1 || !strings.Contains(ev.LastError, "500") {
		t.Errorf("dead: %+v", ev)
	}
	failing.Lock()
	broken = false
	failing.Unlock()
	res, err := http.Post(admin.URL+"/admin/webhooks/replay?seq=x", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("replay of seq x: %d", res.StatusCode)
	}
	res, err = http.Post(admin.URL+"/admin/webhooks/replay?webhook=crm", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var rr ReplayResult
	_ = json.NewDecoder(res.Body).Decode(&rr)
	res.Body.Close()
	if rr.Replayed != 1 {
		t.Errorf("replayed %d", rr.Replayed)
	}
	waitUntil(t, "the replayed event", func() bool { return len(rc.events()) == 1 })
	if ev := rc.events()[0]; ev.Conversation.ID != id || ev.Type != "conversation.created" {
		t.Errorf("delivered %s of %s", ev.Type, ev.Conversation.ID)
	}
}

// file.uploaded, conversation.transferred and the video events reach a
// webhook with their documented data.
func TestWebhookConversationEvents(t *testing.T) {
	rc := newReceiver(t, nil)
	e := newTestServer(t, func(c *Config) {
		withAPIKeys(c)
		withHook(rc.srv.URL, 10, "conversation.assigned", "conversation.transferred", "file.uploaded", "video.started", "video.ended")(c)
	})
	e.runWebhooks()
	c := e.acceptedChat("Ann")
	resp := upload(t, e.ts.URL+"/api/v1/conversations/"+c.id+"/files", c.token, "dot.png", pngHeader)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	cv, _, err := e.srv.hub.lookup(context.Background(), c.id)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.hub.event(context.Background(), cv, "video.started", "Video started", map[string]string{"codec": "VP8"})
	e.srv.hub.event(context.Background(), cv, "video.ended", "Video ended", nil)
	if code, body := e.apiCall("POST", "/api/v1/integrations/conversations/"+c.id+"/transfer", keyCRM, `{"queue":"billing"}`); code != http.StatusOK {
		t.Fatalf("transfer: %d %v", code, body)
	}
	waitUntil(t, "five events", func() bool { return len(rc.events()) >= 5 })
	var types []string
	data := map[string]map[string]any{}
	for _, ev := range rc.events() {
		types = append(types, ev.Type)
		b, _ := json.Marshal(ev.Data)
		var d map[string]any
		_ = json.Unmarshal(b, &d)
		data[ev.Type] = d
	}
	if want := []string{"conversation.assigned", "file.uploaded", "video.started", "video.ended", "conversation.transferred"}; !slices.Equal(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
	if data["conversation.assigned"]["agent"] != "alice" {
		t.Errorf("assigned: %v", data["conversation.assigned"])
	}
	f, _ := data["file.uploaded"]["file"].(map[string]any)
	if f["name"] != "dot.png" || f["type"] != "image/png" || f["size"] != float64(len(pngHeader)) || data["file.uploaded"]["message_id"] == "" {
		t.Errorf("file.uploaded: %v", data["file.uploaded"])
	}
	if data["video.started"]["codec"] != "VP8" {
		t.Errorf("video.started: %v", data["video.started"])
	}
	if tr := data["conversation.transferred"]; tr["queue"] != "billing" || tr["from"] != "alice" {
		t.Errorf("conversation.transferred: %v", tr)
	}
}
