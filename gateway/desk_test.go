package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// deskCall makes a request with hc (an agent's cookie, or nil) and extra
// headers in pairs, and returns the status and body.
func (e *env2) deskCall(hc *http.Client, method, path, body string, headers ...string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func deskQueues(c *Config) {
	c.Queues[0].WrapUpCodes = []string{"Resolved", "Call back"}
	c.Queues[0].WrapUpRequired = true
	c.Queues[0].CannedReplies = []CannedReplyConfig{{Shortcut: "greet", Text: "Hello, how can I help?"}}
}

// TestNotesNeverReachTheCustomer: an internal note goes to the agents'
// consoles and the store, never to the customer's socket, history or
// transcript API; only agents who may read the conversation read or write
// its notes; the end asks for one of the queue's wrap-up codes, which is
// stored, counted and exported with the notes.
func TestNotesNeverReachTheCustomer(t *testing.T) {
	e := newTestServer(t, deskQueues)
	alice, bob := e.login("alice"), e.login("bob")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	cust := e.customerWS(token)
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")

	const secret = "internal: refund approved by the team lead"
	aws.send(map[string]any{"type": "note", "id": "n1", "conversation_id": id, "text": secret})
	f := aws.expect("note")
	note := decode[wireNote](t, f["note"])
	if note.Text != secret || note.Agent.ID != "alice" || note.ConversationID != id || decode[string](t, f["ref"]) != "n1" {
		t.Fatalf("note frame %v", f)
	}
	// The customer's socket gets the next message and nothing of the note.
	aws.send(map[string]any{"type": "message", "id": "m1", "conversation_id": id, "text": "marker"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		_, b, err := cust.conn.Read(ctx)
		if err != nil {
			t.Fatalf("customer socket: %v", err)
		}
		if strings.Contains(string(b), "refund approved") || strings.Contains(string(b), `"note"`) {
			t.Fatalf("the customer's socket got the note: %s", b)
		}
		if strings.Contains(string(b), "marker") {
			break
		}
	}
	// Nor does any customer read: the transcript, the conversation, a
	// fresh socket's welcome, its history, or the notes route itself.
	for _, path := range []string{"/api/v1/conversations/" + id + "/messages?after=0", "/api/v1/conversations/" + id} {
		if st, body := e.deskCall(nil, "GET", path, "", "Authorization", "Bearer "+token); st != 200 || strings.Contains(body, "refund") {
			t.Errorf("customer GET %s: %d %s", path, st, body)
		}
	}
	if st, body := e.deskCall(nil, "GET", "/api/v1/agent/conversations/"+id+"/notes", "", "Authorization", "Bearer "+token); st != 401 || strings.Contains(body, "refund") {
		t.Errorf("customer token on the notes route: %d %s", st, body)
	}
	w2, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	w2.send(map[string]any{"type": "hello", "token": token})
	w2.send(map[string]any{"type": "history", "before": 0})
	w2.send(map[string]any{"type": "note", "id": "evil", "conversation_id": id, "text": "customer note"})
	for _, typ := range []string{"welcome", "history", "error"} {
		f := w2.expect(typ)
		if b, _ := json.Marshal(f); strings.Contains(string(b), "refund") {
			t.Errorf("customer %s frame holds the note: %s", typ, b)
		}
	}

	// Bob, in the same queue, can neither read nor add notes to Alice's
	// live conversation.
	if st, _ := e.deskCall(bob, "GET", "/api/v1/agent/conversations/"+id+"/notes", ""); st != 403 {
		t.Errorf("bob reads alice's notes: %d", st)
	}
	bws, _ := e.agentWS(bob)
	bws.send(map[string]any{"type": "note", "id": "b1", "conversation_id": id, "text": "bob was here"})
	if f := bws.expect("error"); decode[string](t, f["code"]) != "forbidden" {
		t.Errorf("bob's note: %v", f)
	}

	// The queue asks for a wrap-up code, and only one of its own.
	aws.send(map[string]any{"type": "end", "conversation_id": id})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "wrap_up_required" {
		t.Errorf("end without a code: %v", f)
	}
	aws.send(map[string]any{"type": "end", "conversation_id": id, "wrap_up": "Sold a yacht"})
	if f := aws.expect("error"); decode[string](t, f["code"]) != "bad_wrap_up" {
		t.Errorf("end with a foreign code: %v", f)
	}
	aws.send(map[string]any{"type": "end", "conversation_id": id, "wrap_up": "Call back"})
	for {
		f := aws.expect("conversation")
		if decode[wireConversation](t, f["conversation"]).State == "ended" {
			break
		}
	}
	if c, err := e.st.Conversation(context.Background(), id); err != nil || c.WrapUp != "Call back" {
		t.Errorf("stored wrap-up %q, %v", c.WrapUp, err)
	}
	// The code is counted once the end is done, which may be just after
	// the console hears of it.
	waitUntil(t, "segue_wrap_ups_total{support,Call back} = 1", func() bool {
		return wrapUpsCounted(t, e.srv.metrics, "support", "Call back") == 1
	})
	st, body := e.deskCall(alice, "GET", "/api/v1/agent/conversations/"+id+"/notes", "")
	if st != 200 || !strings.Contains(body, secret) || !strings.Contains(body, `"wrap_up":"Call back"`) {
		t.Errorf("alice's notes after the end: %d %s", st, body)
	}
	dir := t.TempDir()
	if _, err := ExportConversation(context.Background(), e.st, id, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"transcript.json", "transcript.html"} {
		b, err := os.ReadFile(filepath.Join(dir, id, name))
		if err != nil || !strings.Contains(string(b), "refund approved") || !strings.Contains(string(b), "Call back") {
			t.Errorf("%s lacks the note or the wrap-up (%v):\n%s", name, err, b)
		}
	}
	// The customer's transcript after the end still holds no note.
	if _, body := e.deskCall(nil, "GET", "/api/v1/conversations/"+id+"/messages?after=0", "", "Authorization", "Bearer "+token); strings.Contains(body, "refund") || strings.Contains(body, "Call back") {
		t.Errorf("the customer's transcript after the end: %s", body)
	}
}

// TestSearchStaysWithinTheAgentsScope: an agent finds and opens the
// conversations of its queues and those it held, never another queue's
// nor another agent's live one; outsiders get nothing.
func TestSearchStaysWithinTheAgentsScope(t *testing.T) {
	e := newTestServer(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	aws, _ := e.agentWS(alice)
	bws, _ := e.agentWS(bob)
	// A billing conversation, Alice's queue only, held and ended by her.
	resp, err := http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{"name":"Ann Lee","queue":"billing"}`))
	if err != nil {
		t.Fatal(err)
	}
	var billing struct {
		Conversation wireConversation `json:"conversation"`
		Token        string           `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&billing); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	bill := billing.Conversation.ID
	cw := e.customerWS(billing.Token)
	cw.send(map[string]any{"type": "message", "id": "c1", "text": "my invoice 4711 is wrong"})
	cw.expect("ack")
	aws.send(map[string]any{"type": "accept", "conversation_id": bill})
	aws.expect("history")
	aws.send(map[string]any{"type": "note", "id": "n1", "conversation_id": bill, "text": "billing secret"})
	aws.expect("note")
	aws.send(map[string]any{"type": "end", "conversation_id": bill})
	for decode[wireConversation](t, aws.expect("conversation")["conversation"]).State != "ended" {
	}

	search := func(hc *http.Client, q string) (int, []string) {
		t.Helper()
		st, body := e.deskCall(hc, "GET", "/api/v1/agent/search?q="+url.QueryEscape(q), "")
		var out struct {
			Conversations []wireDeskConversation `json:"conversations"`
		}
		_ = json.Unmarshal([]byte(body), &out)
		var ids []string
		for _, c := range out.Conversations {
			ids = append(ids, c.ID)
		}
		return st, ids
	}
	for _, q := range []string{"Ann", "invoice 4711", "4711"} {
		if st, ids := search(alice, q); st != 200 || len(ids) != 1 || ids[0] != bill {
			t.Errorf("alice searching %q: %d %v", q, st, ids)
		}
		if st, ids := search(bob, q); st != 200 || len(ids) != 0 {
			t.Errorf("bob searching %q found %v (%d)", q, ids, st)
		}
	}
	// Alice opens it read-only; Bob is refused every way in.
	for _, path := range []string{"/api/v1/conversations/" + bill, "/api/v1/conversations/" + bill + "/messages?after=0",
		"/api/v1/agent/conversations/" + bill + "/notes", "/api/v1/agent/conversations/" + bill + "/earlier"} {
		if st, _ := e.deskCall(alice, "GET", path, ""); st != 200 {
			t.Errorf("alice GET %s: %d", path, st)
		}
		if st, body := e.deskCall(bob, "GET", path, ""); st != 403 || strings.Contains(body, "4711") || strings.Contains(body, "secret") {
			t.Errorf("bob GET %s: %d %s", path, st, body)
		}
	}
	bws.send(map[string]any{"type": "history", "conversation_id": bill})
	if f := bws.expect("error"); decode[string](t, f["code"]) != "forbidden" {
		t.Errorf("bob's history of a billing conversation: %v", f)
	}
	bws.send(map[string]any{"type": "note", "id": "b1", "conversation_id": bill, "text": "x"})
	if f := bws.expect("error"); decode[string](t, f["code"]) != "forbidden" {
		t.Errorf("bob's note on a billing conversation: %v", f)
	}
	// A support conversation Alice ended is readable by Bob, of support.
	id, _ := e.startChat("Zed")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	if st, _ := e.deskCall(bob, "GET", "/api/v1/conversations/"+id, ""); st != 403 {
		t.Errorf("bob reads alice's live support conversation: %d", st)
	}
	aws.send(map[string]any{"type": "end", "conversation_id": id})
	for decode[wireConversation](t, aws.expect("conversation")["conversation"]).State != "ended" {
	}
	if st, ids := search(bob, "zed"); st != 200 || len(ids) != 1 || ids[0] != id {
		t.Errorf("bob searching his queue's ended conversation: %d %v", st, ids)
	}

	// Outsiders: no cookie, a customer's token, a foreign origin, bad queries.
	if st, _ := e.deskCall(nil, "GET", "/api/v1/agent/search?q=ann", ""); st != 401 {
		t.Errorf("search without a session: %d", st)
	}
	if st, _ := e.deskCall(nil, "GET", "/api/v1/agent/search?q=ann", "", "Authorization", "Bearer "+billing.Token); st != 401 {
		t.Errorf("search with a customer token: %d", st)
	}
	if st, _ := e.deskCall(alice, "GET", "/api/v1/agent/search?q=ann", "", "Origin", "https://shop.example.com"); st != 401 {
		t.Errorf("search from an allowed embedding origin: %d", st)
	}
	for _, q := range []string{"", "   ", strings.Repeat("a ", 9), strings.Repeat("x", 201)} {
		if st, _ := search(alice, q); st != 400 {
			t.Errorf("search %q: %d, want 400", q, st)
		}
	}
	for _, q := range []string{`"`, `* OR NEAR(`, `%_\`, "ann' --"} {
		if st, ids := search(alice, q); st != 200 || len(ids) != 0 {
			t.Errorf("search %q: %d %v, want 200 and nothing", q, st, ids)
		}
	}
}

// TestEarlierConversationsOfAVerifiedCustomer: the same verified
// customer id or e-mail lists the customer's other conversations; an
// unverified one with the same e-mail lists nothing.
func TestEarlierConversationsOfAVerifiedCustomer(t *testing.T) {
	const secret = "0123456789abcdef-identity"
	e := newTestServer(t, func(c *Config) { c.Identity.Secret = secret })
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	start := func(body string) string {
		t.Helper()
		resp, err := http.Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Conversation wireConversation `json:"conversation"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 201 {
			t.Fatalf("start: %d %v", resp.StatusCode, err)
		}
		aws.send(map[string]any{"type": "accept", "conversation_id": out.Conversation.ID})
		aws.expect("history")
		aws.send(map[string]any{"type": "end", "conversation_id": out.Conversation.ID})
		for decode[wireConversation](t, aws.expect("conversation")["conversation"]).State != "ended" {
		}
		return out.Conversation.ID
	}
	ident := func(name, email, id string) string {
		return fmt.Sprintf(`{"identity":%q}`, SignIdentity(secret, name, email, id, time.Now().Add(time.Hour)))
	}
	first := start(ident("Ann Lee", "ann@example.com", "42"))
	second := start(ident("Ann Lee", "ANN@example.com", ""))
	start(`{"name":"Ann"}`) // unverified
	other := start(ident("Bea", "bea@example.com", "43"))
	now := start(ident("Ann Lee", "ann@example.com", "42"))
	st, body := e.deskCall(alice, "GET", "/api/v1/agent/conversations/"+now+"/earlier", "")
	var out struct {
		Conversations []wireDeskConversation `json:"conversations"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || st != 200 {
		t.Fatalf("earlier: %d %s", st, body)
	}
	var ids []string
	for _, c := range out.Conversations {
		ids = append(ids, c.ID)
	}
	if len(ids) != 2 || ids[0] != second || ids[1] != first {
		t.Errorf("earlier conversations %v, want [%s %s] (not %s)", ids, second, first, other)
	}
}

// TestCannedReplies: the queue's replies from the config, and the agent's
// own, which no other agent can see, change or delete.
func TestCannedReplies(t *testing.T) {
	e := newTestServer(t, deskQueues)
	alice, bob := e.login("alice"), e.login("bob")
	st, body := e.deskCall(alice, "POST", "/api/v1/agent/canned-replies", `{"shortcut":"bye","text":"Thanks, and goodbye!"}`)
	if st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	var created struct {
		CannedReply wireCannedReply `json:"canned_reply"`
	}
	if err := json.Unmarshal([]byte(body), &created); err != nil || created.CannedReply.ID == "" {
		t.Fatalf("create answer %s", body)
	}
	rid := created.CannedReply.ID
	if st, _ := e.deskCall(alice, "POST", "/api/v1/agent/canned-replies", `{"shortcut":"bye","text":"again"}`); st != 409 {
		t.Errorf("a second 'bye': %d", st)
	}
	st, body = e.deskCall(alice, "GET", "/api/v1/agent/desk", "")
	if st != 200 || !strings.Contains(body, `"shortcut":"greet"`) || !strings.Contains(body, "Thanks, and goodbye!") ||
		!strings.Contains(body, `"wrap_up_codes":["Resolved","Call back"]`) || !strings.Contains(body, `"wrap_up_required":true`) {
		t.Errorf("alice's desk: %d %s", st, body)
	}
	if _, body := e.deskCall(bob, "GET", "/api/v1/agent/desk", ""); strings.Contains(body, "goodbye") {
		t.Errorf("bob sees alice's reply: %s", body)
	}
	if st, _ := e.deskCall(bob, "POST", "/api/v1/agent/canned-replies", fmt.Sprintf(`{"id":%q,"shortcut":"x","text":"hijacked"}`, rid)); st != 404 {
		t.Errorf("bob edits alice's reply: %d", st)
	}
	if st, _ := e.deskCall(bob, "DELETE", "/api/v1/agent/canned-replies/"+rid, ""); st != 404 {
		t.Errorf("bob deletes alice's reply: %d", st)
	}
	for _, bad := range []string{`{"shortcut":"/x","text":"t"}`, `{"shortcut":"ok","text":"  "}`, `{"shortcut":"","text":"t"}`,
		fmt.Sprintf(`{"shortcut":"big","text":%q}`, strings.Repeat("x", maxReplyBytes+1)), `{"shortcut":"ok","text":"t","extra":1}`} {
		if st, _ := e.deskCall(alice, "POST", "/api/v1/agent/canned-replies", bad); st != 400 {
			t.Errorf("POST %s: %d, want 400", bad[:min(len(bad), 60)], st)
		}
	}
	if st, _ := e.deskCall(nil, "POST", "/api/v1/agent/canned-replies", `{"shortcut":"a","text":"b"}`); st != 401 {
		t.Errorf("without a session: %d", st)
	}
	if st, _ := e.deskCall(alice, "POST", "/api/v1/agent/canned-replies", `{"shortcut":"a","text":"b"}`, "Origin", "https://shop.example.com"); st != 401 {
		t.Errorf("from an embedding origin: %d", st)
	}
	if st, _ := e.deskCall(alice, "POST", "/api/v1/agent/canned-replies", fmt.Sprintf(`{"id":%q,"shortcut":"bye","text":"Bye now"}`, rid)); st != 200 {
		t.Errorf("alice edits her reply: %d", st)
	}
	if st, _ := e.deskCall(alice, "DELETE", "/api/v1/agent/canned-replies/"+rid, ""); st != 204 {
		t.Errorf("alice deletes her reply: %d", st)
	}
	if _, body := e.deskCall(alice, "GET", "/api/v1/agent/desk", ""); strings.Contains(body, "Bye now") {
		t.Errorf("deleted reply still listed: %s", body)
	}
}

func TestDeskConfigValidation(t *testing.T) {
	q := QueueConfig{Name: "support", WrapUpRequired: true,
		CannedReplies: []CannedReplyConfig{{Shortcut: "greet", Text: "Hi"}, {Shortcut: "GREET", Text: "Hey"}, {Shortcut: "/no", Text: ""}},
		WrapUpCodes:   []string{"Done", "Done", ""}}
	var got []string
	for _, err := range validateDeskQueue("queues[0]", q) {
		got = append(got, err.Error())
	}
	want := []string{
		`queues[0].canned_replies[1].shortcut: duplicate shortcut "GREET"`,
		`queues[0].canned_replies[2].shortcut: "/no" must be 1 to 32 letters, digits, '_', '.', '-', starting with a letter or digit`,
		`queues[0].canned_replies[2].text: required`,
		`queues[0].wrap_up_codes[1]: duplicate code "Done"`,
		`queues[0].wrap_up_codes[2]: must be 1 to 64 characters`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if errs := validateDeskQueue("queues[1]", QueueConfig{WrapUpRequired: true}); len(errs) != 1 ||
		errs[0].Error() != "queues[1].wrap_up_required: needs wrap_up_codes to choose from" {
		t.Errorf("required without codes: %v", errs)
	}
}

// wrapUpsCounted reads segue_wrap_ups_total{queue, code} from m.
func wrapUpsCounted(t *testing.T, m *metrics, queue, code string) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "segue_wrap_ups_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["queue"] == queue && labels["code"] == code {
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}
