//go:build e2e

package test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"

	segue "github.com/segue-rtc/segue/gateway"
	"github.com/segue-rtc/segue/store/pgtest"
)

// Integration keys of the test gateways: crm reads and writes, reader
// only reads, old has expired.
const (
	e2eKeyCRM    = "sgk_e2e-crm-0123456789abcdefghijklmnopqrstuvwxyzAB"
	e2eKeyReader = "sgk_e2e-reader-0123456789abcdefghijklmnopqrstuvwxy"
	e2eKeyOld    = "sgk_e2e-old-0123456789abcdefghijklmnopqrstuvwxyzAB"
	e2eHookKey   = "e2e-webhook-secret-0123456789"
	e2eKeyRec    = "sgk_e2e-rec-0123456789abcdefghijklmnopqrstuvwxyzAB"
	e2eKeyEraser = "sgk_e2e-eraser-0123456789abcdefghijklmnopqrstuvwx"
)

func apiKeysYAML() string {
	return fmt.Sprintf(`  api_keys:
    - {name: crm, key_hash: %q, scopes: [conversations:read, conversations:write]}
    - {name: reader, key_hash: %q, scopes: [conversations:read]}
    - {name: old, key_hash: %q, scopes: [conversations:read], expires: 2020-01-01T00:00:00Z}
`, segue.HashAPIKey(e2eKeyCRM), segue.HashAPIKey(e2eKeyReader), segue.HashAPIKey(e2eKeyOld))
}

// apiReq is an integrations API request and what came back.
type apiReq struct {
	req    *http.Request
	status int
	header http.Header
	body   []byte
}

func integrationCall(t *testing.T, g *gateway, method, path, key, body string) *apiReq {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if body != "" {
		req.Body = io.NopCloser(strings.NewReader(body))
	}
	return &apiReq{req: req, status: res.StatusCode, header: res.Header, body: b}
}

// Every route of docs/openapi.yaml answers the real gateway's requests as
// documented: statuses and bodies validated against the spec, for the
// success and the refusals of each route, attacks included.
func TestIntegrationsAnswerAsDocumented(t *testing.T) {
	g := startGateway(t, withIntegrationsYAML(apiKeysYAML()+dataKeysYAML()))
	doc, check, seen := openAPIChecker(t, g)
	call := func(method, path, key, body string) *apiReq {
		t.Helper()
		return integrationCall(t, g, method, path, key, body)
	}
	integrationsChecks(t, g, check, call)
	// Every documented operation was checked with its success and a
	// refused key; a recording's file is fetched in TestRecordingAlways,
	// which needs a call.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if method+" "+path == "GET /api/v1/integrations/recordings/{id}" {
				continue
			}
			got := seen[method+" "+path]
			success := slices.ContainsFunc(got, func(s int) bool { return s >= 200 && s < 300 })
			refused := slices.Contains(got, 401) || slices.Contains(got, 403)
			if !success || !refused {
				t.Errorf("%s %s: checked with %v; want a success and a refusal", method, path, got)
			}
		}
	}
}

// dataKeysYAML adds a key that reads recordings and one that erases.
func dataKeysYAML() string {
	return fmt.Sprintf(`    - {name: rec, key_hash: %q, scopes: [recordings:read]}
    - {name: eraser, key_hash: %q, scopes: [data:erase]}
`, segue.HashAPIKey(e2eKeyRec), segue.HashAPIKey(e2eKeyEraser))
}

// openAPIChecker loads docs/openapi.yaml and returns a check that a
// reply has the wanted status and is as documented, with the statuses
// checked per documented operation.
func openAPIChecker(t *testing.T, g *gateway) (*openapi3.T, func(r *apiReq, want int) map[string]any, map[string][]int) {
	// Recordings are bytes, checked as such.
	openapi3filter.RegisterBodyDecoder("audio/ogg", openapi3filter.FileBodyDecoder)
	openapi3filter.RegisterBodyDecoder("audio/wav", openapi3filter.FileBodyDecoder)
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatal("docs/openapi.yaml is not OpenAPI 3.1")
	}
	doc.Servers = openapi3.Servers{{URL: g.URL}}
	router, err := legacyrouter.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	// seen records, per documented operation, the statuses checked.
	seen := map[string][]int{}
	check := func(r *apiReq, want int) map[string]any {
		t.Helper()
		if r.status != want {
			t.Errorf("%s %s: %d, want %d: %s", r.req.Method, r.req.URL.RequestURI(), r.status, want, r.body)
		}
		route, params, err := router.FindRoute(r.req)
		if err != nil {
			t.Fatalf("%s %s: not a documented route: %v", r.req.Method, r.req.URL.Path, err)
		}
		opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: r.req, PathParams: params, Route: route, Options: opts},
			Status:                 r.status, Header: r.header, Options: opts,
		}
		in.SetBodyBytes(r.body)
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			t.Errorf("%s %s %d: not as documented: %v\n%s", r.req.Method, r.req.URL.RequestURI(), r.status, err, r.body)
		}
		key := r.req.Method + " " + route.Path
		seen[key] = append(seen[key], r.status)
		var out map[string]any
		_ = json.Unmarshal(r.body, &out)
		return out
	}
	return doc, check, seen
}

// integrationsChecks drives every route but a recording's file through
// its successes and refusals.
func integrationsChecks(t *testing.T, g *gateway, check func(r *apiReq, want int) map[string]any, call func(method, path, key, body string) *apiReq) {
	customer, conv := g.newConversation(t, "Ann")
	if status, b := customer.uploadFile(conv.ID, "note.txt", []byte("the parcel number is 42\n")); status != http.StatusCreated {
		t.Fatalf("upload: %d %s", status, b)
	}
	alice := g.login(t, "alice")
	aws, _, err := dialGateway(t, g, g.Origin(), http.Header{"Cookie": {alice.cookieHeader()}})
	if err != nil {
		t.Fatal(err)
	}
	aws.send(map[string]any{"type": "hello"})
	aws.expect("welcome")
	aws.send(map[string]any{"type": "accept", "conversation_id": conv.ID})
	aws.expect("history")

	base := "/api/v1/integrations/conversations"
	one := base + "/" + conv.ID
	post := `{"id":"crm-1","text":"Your parcel ships today","sender":{"role":"bot","name":"Parcel bot"}}`

	check(call("GET", base, e2eKeyReader, ""), 200)
	check(call("GET", base+"?q=parcel&limit=1000000", e2eKeyReader, ""), 200)
	check(call("GET", base+"?q="+url.QueryEscape(`"unclosed`), e2eKeyReader, ""), 400)
	check(call("GET", base+"?q="+url.QueryEscape(`parcel) OR 1=1; --`), e2eKeyReader, ""), 400)
	check(call("GET", base+"?cursor=bm90LWEtY3Vyc29y", e2eKeyReader, ""), 400)
	check(call("GET", base, "", ""), 401)
	check(call("GET", base, "sgk_not-a-key", ""), 401)
	check(call("GET", base, e2eKeyOld, ""), 401)
	created := check(call("POST", one+"/messages", e2eKeyCRM, post), 201)
	check(call("POST", one+"/messages", e2eKeyCRM, post), 200)
	check(call("POST", one+"/messages", e2eKeyCRM, `{"text":"x","sender":{"role":"agent","name":"Alice"}}`), 400)
	check(call("POST", one+"/messages", e2eKeyReader, post), 403)
	check(call("POST", base+"/c_nope/messages", e2eKeyCRM, post), 404)
	check(call("GET", one+"/messages?after=0&limit=1", e2eKeyReader, ""), 200)
	check(call("GET", one+"/messages?after=-5", e2eKeyReader, ""), 400)
	check(call("GET", one+"/messages", e2eKeyOld, ""), 401)
	check(call("GET", base+"/c_nope/messages", e2eKeyReader, ""), 404)
	check(call("POST", one+"/transfer", e2eKeyCRM, `{"agent":"bob","queue":"support"}`), 400)
	check(call("POST", one+"/transfer", e2eKeyReader, `{"queue":"support"}`), 403)
	check(call("POST", base+"/c_nope/transfer", e2eKeyCRM, `{"queue":"support"}`), 404)
	check(call("POST", one+"/transfer", e2eKeyCRM, `{"queue":"support"}`), 200)
	check(call("POST", one+"/transfer", e2eKeyCRM, `{"queue":"support"}`), 409)
	full := check(call("GET", one, e2eKeyReader, ""), 200)
	check(call("GET", base+"/c_nope", e2eKeyReader, ""), 404)
	check(call("GET", one, "", ""), 401)
	check(call("POST", one+"/end", e2eKeyReader, `{}`), 403)
	check(call("POST", one+"/end", e2eKeyCRM, `{"by":"me"}`), 400)
	check(call("POST", base+"/c_nope/end", e2eKeyCRM, `{}`), 404)
	check(call("POST", one+"/end", e2eKeyCRM, `{}`), 200)
	check(call("POST", one+"/end", e2eKeyCRM, `{}`), 409)
	check(call("POST", one+"/messages", e2eKeyCRM, `{"text":"late","sender":{"role":"system"}}`), 409)

	files, _ := full["files"].([]any)
	if len(files) != 1 {
		t.Fatalf("files: %v", full)
	}
	fileID := files[0].(map[string]any)["id"].(string)
	dl := call("GET", "/api/v1/integrations/files/"+fileID, e2eKeyReader, "")
	check(dl, 200)
	if string(dl.body) != "the parcel number is 42\n" {
		t.Errorf("file bytes: %q", dl.body)
	}
	check(call("GET", "/api/v1/integrations/files/f_nope", e2eKeyReader, ""), 404)
	check(call("GET", "/api/v1/integrations/files/"+fileID, "", ""), 401)

	// What was posted is stored, and the customer sees it as the bot's.
	msg := created["message"].(map[string]any)
	if msg["text"] != "Your parcel ships today" {
		t.Errorf("posted: %v", msg)
	}
	var sawBot bool
	for _, m := range customer.messages(conv.ID) {
		sawBot = sawBot || (m.From.Role == "bot" && m.From.Name == "Parcel bot" && m.Text == "Your parcel ships today")
	}
	if !sawBot {
		t.Error("the customer's transcript has no bot message")
	}
	if msgs, _ := full["messages"].([]any); len(msgs) < 3 {
		t.Errorf("transcript: %v", full["messages"])
	}

	// Recordings (none without a call) and erasure.
	check(call("GET", one+"/recordings", e2eKeyRec, ""), 200)
	check(call("GET", one+"/recordings", e2eKeyReader, ""), 403)
	check(call("GET", base+"/c_nope/recordings", e2eKeyRec, ""), 404)
	check(call("GET", "/api/v1/integrations/recordings/r_nope", e2eKeyRec, ""), 404)
	check(call("GET", "/api/v1/integrations/recordings/r_nope", e2eKeyReader, ""), 403)
	const erase = "/api/v1/integrations/customers/erase"
	check(call("POST", erase, e2eKeyCRM, `{"email":"ann@example.com"}`), 403)
	check(call("POST", erase, e2eKeyEraser, `{}`), 400)
	erased := check(call("POST", erase, e2eKeyEraser, `{"email":"nobody@example.com"}`), 200)
	if e, _ := erased["erased"].(map[string]any); e["conversations"] != 0.0 {
		t.Errorf("erased: %v", erased)
	}
	// The refused keys are counted, and no key reached the log.
	m := metricsOf(t, g)
	if m[`segue_api_key_refusals_total{reason="bad_key"}`] < 1 || m[`segue_api_key_refusals_total{reason="scope"}`] < 1 ||
		m[`segue_api_key_refusals_total{reason="expired"}`] < 1 {
		t.Errorf("refusal metrics: %v", m)
	}
	for _, k := range []string{e2eKeyCRM, e2eKeyReader, e2eKeyOld, "sgk_not-a-key"} {
		if strings.Contains(g.Log(), k) {
			t.Errorf("the log holds the key %s", k)
		}
	}
}

// hookReceiver is a CRM's webhook endpoint: it checks signatures, fails
// while failing is set, and keeps what it accepted, in arrival order.
type hookReceiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	failing bool
	tries   int
	got     []hookEvent
}

type hookEvent struct {
	ID           string `json:"id"`
	Type         string `json:"type"`
	Conversation struct {
		ID string `json:"id"`
	} `json:"conversation"`
	Data struct {
		Message struct {
			Text string `json:"text"`
		} `json:"message"`
	} `json:"data"`
	// Raw is the whole body.
	Raw json.RawMessage `json:"-"`
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{failing: true}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// The check docs/integrations.md gives receivers.
		var ts, sig string
		for _, part := range strings.Split(r.Header.Get("Segue-Signature"), ",") {
			k, v, _ := strings.Cut(part, "=")
			if k == "t" {
				ts = v
			} else if k == "v1" {
				sig = v
			}
		}
		mac := hmac.New(sha256.New, []byte(e2eHookKey))
		mac.Write([]byte(ts + "."))
		mac.Write(body)
		sec, _ := strconv.ParseInt(ts, 10, 64)
		if !hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(sig)) || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
			t.Errorf("bad signature %q on %s", r.Header.Get("Segue-Signature"), body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.tries++
		if h.failing {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev hookEvent
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&ev); err != nil {
			t.Errorf("event %s: %v", body, err)
		}
		ev.Raw = body
		h.got = append(h.got, ev)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// Webhooks reach a receiver that fails, then recovers, with the gateway
// restarted in between, then killed (SIGKILL) three times while messages
// keep coming and customers open conversations: every
// acknowledged message's event and every acknowledged conversation's
// conversation.created arrives, nothing lost, nothing out of order within
// a conversation. With each store driver.
func TestWebhooksSurviveFailuresAndRestart(t *testing.T) {
	for _, drv := range []string{"sqlite", "postgres"} {
		t.Run(drv, func(t *testing.T) { testWebhooksSurviveFailuresAndRestart(t, drv) })
	}
}

func testWebhooksSurviveFailuresAndRestart(t *testing.T, drv string) {
	rc := newHookReceiver(t)
	opts := []func(*gatewayOptions){withIntegrationsYAML(apiKeysYAML() + fmt.Sprintf(`  webhooks:
    - {name: crm, url: %q, events: [conversation.created, message.created, conversation.ended], secret: %q}
  webhook_retry_min: 50ms
  webhook_retry_max: 300ms
  webhook_max_attempts: 1000
`, rc.srv.URL, e2eHookKey))}
	if drv == "postgres" {
		pg, err := pgtest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pg.Stop() })
		dsn, err := pg.NewDatabase(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, func(o *gatewayOptions) { o.storeYAML = fmt.Sprintf("  driver: postgres\n  dsn: %q\n", dsn) })
	}
	g := startGateway(t, opts...)
	want := map[string][]string{}
	say := func(id, text string) {
		t.Helper()
		r := integrationCall(t, g, "POST", "/api/v1/integrations/conversations/"+id+"/messages", e2eKeyCRM,
			fmt.Sprintf(`{"text":%q,"sender":{"role":"bot","name":"Bot"}}`, text))
		if r.status != http.StatusCreated {
			t.Fatalf("post: %d %s", r.status, r.body)
		}
		want[id] = append(want[id], "message.created:"+text)
	}
	var ids []string
	for _, name := range []string{"Ann", "Ben"} {
		_, conv := g.newConversation(t, name)
		ids = append(ids, conv.ID)
		want[conv.ID] = []string{"conversation.created"}
	}
	for i := range 3 {
		for _, id := range ids {
			say(id, fmt.Sprintf("before restart %d", i))
		}
	}
	waitFor(t, "failed attempts", func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.tries < 4 {
			return fmt.Errorf("%d tries", rc.tries)
		}
		return nil
	})
	// The outbox gauge is read from the store within a second of a change.
	waitFor(t, "metrics while failing", func() error {
		if m := metricsOf(t, g); m["segue_webhook_outbox_pending"] < 1 || m[`segue_webhook_deliveries_total{result="failed",webhook="crm"}`] < 1 {
			return fmt.Errorf("pending %v, failed %v", m["segue_webhook_outbox_pending"],
				m[`segue_webhook_deliveries_total{result="failed",webhook="crm"}`])
		}
		return nil
	})
	g.Restart()
	for i := range 2 {
		for _, id := range ids {
			say(id, fmt.Sprintf("after restart %d", i))
		}
	}
	// Customers open conversations during the kills too. With
	// PostgreSQL, the events a killed gateway had taken for delivery stay
	// claimed until it starts again, alone on its database, and releases
	// them.
	acked, opened := crashWhilePosting(t, g, ids, 12)
	for id, texts := range acked {
		for _, text := range texts {
			want[id] = append(want[id], "message.created:"+text)
		}
	}
	// A conversation whose creation was acknowledged has its
	// conversation.created, written in the same transaction.
	for _, id := range opened {
		want[id] = []string{"conversation.created"}
	}
	if r := integrationCall(t, g, "POST", "/api/v1/integrations/conversations/"+ids[0]+"/end", e2eKeyCRM, `{}`); r.status != 200 {
		t.Fatalf("end: %d %s", r.status, r.body)
	}
	want[ids[0]] = append(want[ids[0]], "conversation.ended")
	rc.mu.Lock()
	rc.failing = false
	rc.mu.Unlock()

	total := 0
	for _, w := range want {
		total += len(w)
	}
	got := map[string][]string{}
	waitFor(t, "every event delivered", func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		clear(got)
		seen := map[string]bool{}
		n := 0
		for _, ev := range rc.got {
			if seen[ev.ID] {
				continue // at least once: a repeat is allowed, and ignored
			}
			seen[ev.ID] = true
			if want[ev.Conversation.ID] == nil {
				// A conversation created by a request the kill cut
				// short: its client never learned of it.
				continue
			}
			s := ev.Type
			if ev.Type == "message.created" {
				s += ":" + ev.Data.Message.Text
			}
			got[ev.Conversation.ID] = append(got[ev.Conversation.ID], s)
			n++
		}
		if n < total {
			var missing []string
			for id := range want {
				for _, w := range want[id] {
					if !slices.Contains(got[id], w) {
						missing = append(missing, id+" "+w)
					}
				}
			}
			return fmt.Errorf("%d of %d events; missing %v", n, total, missing)
		}
		return nil
	})
	for id := range want {
		if strings.Join(got[id], "|") != strings.Join(want[id], "|") {
			t.Errorf("conversation %s:\n got %v\nwant %v", id, got[id], want[id])
		}
	}
	waitFor(t, "an empty outbox", func() error {
		if p := metricsOf(t, g)["segue_webhook_outbox_pending"]; p != 0 {
			return fmt.Errorf("%v pending", p)
		}
		return nil
	})
}

// crashWhilePosting posts messages to each conversation of ids, one at a
// time per conversation as an integration does, and kills the gateway
// (SIGKILL) three times meanwhile, each time some messages after the
// last start, starting it again at once. A post that gets no answer is
// sent again, with the same id, until the gateway acknowledges it (201,
// or 200 for one it had stored before it died): what a client that
// never gives up does. Meanwhile customers open opens conversations,
// each trying again until one is acknowledged (201). It returns the
// acknowledged texts per conversation, in order, and the conversations
// whose opening was acknowledged.
func crashWhilePosting(t *testing.T, g *gateway, ids []string, opens int) (map[string][]string, []string) {
	t.Helper()
	const perConv, kills = 30, 3
	hc := &http.Client{Timeout: 10 * time.Second}
	open := func() (string, error) {
		req, err := http.NewRequest("POST", g.URL+"/api/v1/conversations", strings.NewReader(`{"name":"Cy","queue":"support"}`))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", g.Origin())
		res, err := hc.Do(req)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		var out struct {
			Conversation conversation `json:"conversation"`
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusCreated || json.Unmarshal(b, &out) != nil || out.Conversation.ID == "" {
			return "", fmt.Errorf("%d %s", res.StatusCode, b)
		}
		return out.Conversation.ID, nil
	}
	post := func(conv, id, text string) error {
		body := fmt.Sprintf(`{"id":%q,"text":%q,"sender":{"role":"bot","name":"Bot"}}`, id, text)
		req, err := http.NewRequest("POST", g.URL+"/api/v1/integrations/conversations/"+conv+"/messages", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e2eKeyCRM)
		res, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", res.StatusCode, b)
		}
		return nil
	}
	var mu sync.Mutex
	acked := map[string][]string{}
	var opened []string
	total := 0
	ackedN := func() int {
		mu.Lock()
		defer mu.Unlock()
		return total
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, conv := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perConv {
				text := fmt.Sprintf("crash %d", i)
				deadline := time.Now().Add(60 * time.Second)
				for {
					err := post(conv, fmt.Sprintf("crash-%s-%d", conv, i), text)
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s %q never acknowledged: %v", conv, text, err)
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
				mu.Lock()
				acked[conv] = append(acked[conv], text)
				total++
				mu.Unlock()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range opens {
			deadline := time.Now().Add(60 * time.Second)
			for {
				id, err := open()
				if err == nil {
					mu.Lock()
					opened = append(opened, id)
					mu.Unlock()
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("no conversation opened: %v", err)
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for k := range kills {
		at := (k + 1) * len(ids) * perConv / (kills + 1)
		waitFor(t, fmt.Sprintf("%d messages acknowledged", at), func() error {
			if n := ackedN(); n < at {
				return fmt.Errorf("%d acknowledged", n)
			}
			return nil
		})
		mu.Lock()
		t.Logf("kill %d: %d messages and %d conversations acknowledged", k+1, total, len(opened))
		mu.Unlock()
		g.Kill()
		g.Start()
	}
	waitFor(t, "every message acknowledged", func() error {
		if n := ackedN(); n < len(ids)*perConv {
			return fmt.Errorf("%d of %d acknowledged", n, len(ids)*perConv)
		}
		return nil
	})
	waitFor(t, "every opening acknowledged", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(opened) < opens {
			return fmt.Errorf("%d of %d opened", len(opened), opens)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	return acked, opened
}
