package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/store"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// parisHours: weekdays 08:00-12:00 and 13:30-18:00, Saturday morning,
// closed on 2026-01-06.
func parisHours() *HoursConfig {
	return &HoursConfig{TimeZone: "Europe/Paris",
		Weekly:   map[string][]string{"mon-fri": {"08:00-12:00", "13:30-18:00"}, "sat": {"09:00-12:00"}},
		Holidays: []string{"2026-01-06"}}
}

func TestOpeningHours(t *testing.T) {
	s, err := parisHours().compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   string
		open bool
		next string
	}{
		{"2026-01-05T07:30:00Z", true, ""},                      // Monday 08:30 in Paris
		{"2026-01-05T11:15:00Z", false, "2026-01-05T12:30:00Z"}, // lunch: 13:30 Paris
		{"2026-01-05T17:00:00Z", false, "2026-01-07T07:00:00Z"}, // Monday evening; Tuesday is a holiday
		{"2026-01-06T09:00:00Z", false, "2026-01-07T07:00:00Z"}, // the holiday itself
		{"2026-01-09T20:00:00Z", false, "2026-01-10T08:00:00Z"}, // Friday night: Saturday 09:00
		{"2026-01-10T12:00:00Z", false, "2026-01-12T07:00:00Z"}, // Saturday afternoon: Monday
		{"2026-07-06T06:30:00Z", true, ""},                      // summer time: 08:30 in Paris
	} {
		at := mustTime(t, tc.at)
		if got := s.isOpen(at); got != tc.open {
			t.Errorf("%s: open %v, want %v", tc.at, got, tc.open)
		}
		if tc.next == "" {
			continue
		}
		next, ok := s.nextOpen(at)
		if !ok || !next.Equal(mustTime(t, tc.next)) {
			t.Errorf("%s: next opening %v (%v), want %s", tc.at, next.UTC(), ok, tc.next)
		}
	}
	never, err := (&HoursConfig{TimeZone: "UTC"}).compile()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := never.nextOpen(time.Now()); ok {
		t.Fatal("a queue with no opening hours opens at some time")
	}
}

func TestOpeningHoursValidation(t *testing.T) {
	doc := fmt.Sprintf(`
queues:
  - name: support
    hours:
      time_zone: Mars/Olympus
      weekly:
        mon-fry: ["08:00-18:00"]
        tue: ["18:00-08:00", "8-12", "09:00-25:00"]
      holidays: ["2026-13-01", "christmas"]
agents:
  - {id: alice, name: Alice, password_hash: %q, queues: [support]}
clock:
  now: "yesterday"
`, testHash)
	_, err := ParseConfig([]byte(doc), testEnv)
	if err == nil {
		t.Fatal("bad hours accepted")
	}
	for _, want := range []string{
		`queues[0].hours.time_zone: "Mars/Olympus" is not an IANA time zone`,
		`queues[0].hours.weekly.mon-fry: not a day`,
		`queues[0].hours.weekly.tue[0]: "18:00-08:00" ends before it starts`,
		`queues[0].hours.weekly.tue[1]: "8-12" is not a range`,
		`queues[0].hours.weekly.tue[2]: "09:00-25:00" is not a range`,
		`queues[0].hours.holidays[0]: "2026-13-01" is not a date`,
		`queues[0].hours.holidays[1]: "christmas" is not a date`,
		`clock.now: "yesterday" is not an RFC 3339 time`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// getJSON fetches url and decodes its JSON body into out.
func getJSON(t *testing.T, hc *http.Client, url string, out any) int {
	t.Helper()
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestClosedQueueMessageWaitsForNextAgent: outside opening hours the
// status says when the queue opens; a message left then is a waiting
// conversation that the first agent to log in is offered, and that never
// expires as abandoned.
func TestClosedQueueMessageWaitsForNextAgent(t *testing.T) {
	e := newTestServer(t, func(c *Config) {
		c.Queues[0].Hours = parisHours()
		c.Clock.Now = "2026-01-04T19:00:00Z" // Sunday evening
		c.Limits.AbandonedAfter = time.Minute
	})
	var st queueStatus
	if code := getJSON(t, nil, e.ts.URL+"/api/v1/queue-status?queue=support", &st); code != http.StatusOK {
		t.Fatalf("status: %d", code)
	}
	if st.Open || st.Reason != reasonClosed || st.NextOpen == nil || !st.NextOpen.Equal(mustTime(t, "2026-01-05T07:00:00Z")) ||
		st.TimeZone != "Europe/Paris" {
		t.Fatalf("closed queue: %+v", st)
	}
	// billing has no hours but nobody logged in.
	st = queueStatus{}
	getJSON(t, nil, e.ts.URL+"/api/v1/queue-status?queue=billing", &st)
	if st.Open || st.Reason != reasonNoAgents || st.NextOpen != nil {
		t.Fatalf("unstaffed queue: %+v", st)
	}
	if code := getJSON(t, nil, e.ts.URL+"/api/v1/queue-status?queue=nope", nil); code != http.StatusNotFound {
		t.Fatalf("unknown queue: %d", code)
	}

	hostile := `<img src=x onerror=alert(1)> "quoted" & more`
	body, _ := json.Marshal(map[string]string{"queue": "support", "name": "Ann <b>", "email": "ann@example.com", "text": hostile})
	resp, err := http.Post(e.ts.URL+"/api/v1/left-messages", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct{ Conversation wireConversation }
	_ = json.Unmarshal(b, &out)
	if resp.StatusCode != http.StatusCreated || out.Conversation.State != store.StateWaiting || out.Conversation.Origin != store.OriginMessage {
		t.Fatalf("message left while closed: %d %s", resp.StatusCode, b)
	}
	id := out.Conversation.ID
	e.advance(10 * time.Minute)
	if n := e.srv.hub.expireAbandoned(context.Background()); n != 0 {
		t.Fatalf("%d left messages expired as abandoned", n)
	}
	bob := e.login("bob")
	bws, _ := e.agentWS(bob)
	offer := decode[wireConversation](t, bws.expect("offer")["conversation"])
	if offer.ID != id || offer.Customer.Email != "ann@example.com" || offer.Preview != hostile {
		t.Fatalf("offer: %+v", offer)
	}
	bws.send(map[string]any{"type": "accept", "conversation_id": id})
	h := bws.expect("history")
	ms := decode[[]wireMessage](t, h["messages"])
	if len(ms) < 2 || ms[0].Text != hostile || ms[1].Event == nil || ms[1].Event.Name != "conversation.message_left" {
		t.Fatalf("transcript of the left message: %+v", ms)
	}
	e.checkHub()
}

// TestQueuePositionAndEstimate: three customers wait; the third is told
// it is third, then second once an agent takes the first, with the
// median wait of the conversations answered in the last hour.
func TestQueuePositionAndEstimate(t *testing.T) {
	e := newTestServer(t, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	aws.send(map[string]any{"type": "presence", "state": "away"})
	aws.expect("presence")
	var ids []string
	var socks []*wsc
	for i := range 3 {
		id, token := e.startChat(fmt.Sprint("customer ", i+1))
		ids = append(ids, id)
		w, _, err := e.dial(nil, "https://shop.example.com")
		if err != nil {
			t.Fatal(err)
		}
		w.send(map[string]any{"type": "hello", "token": token})
		welcome := w.expect("welcome")
		p := decode[wireQueuePosition](t, welcome["queue_position"])
		if p.Position != i+1 || p.Waiting != i+1 || p.EstimatedWaitSeconds != 0 {
			t.Fatalf("customer %d's welcome: %+v", i+1, p)
		}
		socks = append(socks, w)
	}
	// The first waited two minutes when Alice takes it.
	e.advance(2 * time.Minute)
	aws.send(map[string]any{"type": "accept", "conversation_id": ids[0]})
	if p := frameAs[wireQueuePosition](t, socks[1].expect("queue.position")); p.Position != 1 || p.ConversationID != ids[1] {
		t.Fatalf("second customer after the first was taken: %+v", p)
	}
	for {
		p := frameAs[wireQueuePosition](t, socks[2].expect("queue.position"))
		if p.Position != 2 || p.Waiting != 2 {
			t.Fatalf("third customer after the first was taken: %+v", p)
		}
		if p.EstimatedWaitSeconds == 120 {
			break
		}
		if p.EstimatedWaitSeconds != 0 {
			t.Fatalf("estimate %d s, want the first customer's 120 s", p.EstimatedWaitSeconds)
		}
	}
	// A reconnecting customer learns its place in the welcome.
	_, token := e.startChat("customer 4")
	w := e.customerWSWelcome(token)
	if p := decode[wireQueuePosition](t, w["queue_position"]); p.Position != 3 || p.EstimatedWaitSeconds != 120 {
		t.Fatalf("fourth customer's welcome: %+v", p)
	}
	e.checkHub()
}

// frameAs decodes a whole frame as a T.
func frameAs[T any](t *testing.T, f map[string]json.RawMessage) T {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return decode[T](t, b)
}

// customerWSWelcome connects a customer socket and returns its welcome.
func (e *env2) customerWSWelcome(token string) map[string]json.RawMessage {
	e.t.Helper()
	w, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		e.t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": token})
	return w.expect("welcome")
}

// rate posts a rating to conversation id with a customer token (or an
// agent's client), and returns the status and body.
func (e *env2) rate(hc *http.Client, id, token, body string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/v1/conversations/"+id+"/rating", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
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

// TestRatingAttacked: only the customer of an ended conversation rates
// it, once, 1 to 5, with a bounded comment; the agent's console hears of
// it and the conversation carries it.
func TestRatingAttacked(t *testing.T) {
	e := newTestServer(t, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	otherID, otherToken := e.startChat("Mallory")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	if code, b := e.rate(nil, id, token, `{"score":5}`); code != http.StatusConflict || !strings.Contains(b, "not_ended") {
		t.Fatalf("rating before the end: %d %s", code, b)
	}
	aws.send(map[string]any{"type": "end", "conversation_id": id})
	for {
		c := decode[wireConversation](t, aws.expect("conversation")["conversation"])
		if c.ID == id && c.State == store.StateEnded {
			break
		}
	}
	for _, tc := range []struct {
		name, token, body string
		hc                *http.Client
		want              int
	}{
		{"no credentials", "", `{"score":4}`, nil, http.StatusUnauthorized},
		{"another conversation's token", otherToken, `{"score":1,"comment":"bad"}`, nil, http.StatusForbidden},
		{"a forged token", id + ".forged", `{"score":1}`, nil, http.StatusUnauthorized},
		{"the agent", "", `{"score":5}`, alice, http.StatusForbidden},
		{"score 0", token, `{"score":0}`, nil, http.StatusBadRequest},
		{"score 6", token, `{"score":6}`, nil, http.StatusBadRequest},
		{"negative score", token, `{"score":-3}`, nil, http.StatusBadRequest},
		{"fractional score", token, `{"score":4.5}`, nil, http.StatusBadRequest},
		{"score as text", token, `{"score":"5"}`, nil, http.StatusBadRequest},
		{"unknown field", token, `{"score":5,"agent":"bob"}`, nil, http.StatusBadRequest},
		{"comment too long", token, fmt.Sprintf(`{"score":4,"comment":%q}`, strings.Repeat("é", maxRatingComment+1)), nil, http.StatusRequestEntityTooLarge},
		{"huge body", token, fmt.Sprintf(`{"score":4,"comment":%q}`, strings.Repeat("x", 1<<20)), nil, http.StatusBadRequest},
	} {
		if code, b := e.rate(tc.hc, id, tc.token, tc.body); code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, code, b, tc.want)
		}
	}
	comment := `<script>alert(1)</script> helpful, "thanks"`
	body, _ := json.Marshal(map[string]any{"score": 4, "comment": comment})
	if code, b := e.rate(nil, id, token, string(body)); code != http.StatusCreated {
		t.Fatalf("rating: %d %s", code, b)
	}
	got := decode[wireConversation](t, aws.expect("conversation")["conversation"])
	if got.ID != id || got.Rating == nil || got.Rating.Score != 4 || got.Rating.Comment != comment {
		t.Fatalf("the console's conversation after the rating: %+v", got)
	}
	if code, b := e.rate(nil, id, token, `{"score":1,"comment":"changed my mind"}`); code != http.StatusConflict || !strings.Contains(b, "already_rated") {
		t.Fatalf("second rating: %d %s", code, b)
	}
	c, err := e.st.Conversation(context.Background(), id)
	if err != nil || c.Rating.Score != 4 || c.Rating.Comment != comment {
		t.Fatalf("stored rating: %+v, %v", c.Rating, err)
	}
	if c, _ := e.st.Conversation(context.Background(), otherID); c.Rating.Score != 0 {
		t.Fatalf("the other conversation was rated: %+v", c.Rating)
	}
	// The transcript API exports it with the conversation.
	var out struct{ Conversation wireConversation }
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/api/v1/conversations/"+id, nil)
	resp, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if out.Conversation.Rating == nil || out.Conversation.Rating.Score != 4 {
		t.Fatalf("GET conversation: %+v", out.Conversation)
	}
	e.checkHub()
}

// TestQueueStatusAttacked: anyone may ask whether a queue takes chats,
// so the answer says only that (open, why not, when it opens): never who
// is logged in nor how many. A made-up queue name is 404 without the name
// echoed back, whatever it holds, and the route takes no writes.
func TestQueueStatusAttacked(t *testing.T) {
	e := newTestServer(t, nil)
	alice := e.login("alice")
	e.agentWS(alice)
	var st map[string]any
	if code := getJSON(t, nil, e.ts.URL+"/api/v1/queue-status?queue=support", &st); code != http.StatusOK || st["open"] != true {
		t.Fatalf("staffed queue: %d %v", code, st)
	}
	for k := range st {
		if !slices.Contains([]string{"queue", "open", "reason", "next_open", "time_zone"}, k) {
			t.Errorf("queue-status tells outsiders %q: %v", k, st)
		}
	}
	if raw, _ := json.Marshal(st); strings.Contains(string(raw), "alice") || strings.Contains(string(raw), "Alice") {
		t.Errorf("queue-status names an agent: %s", raw)
	}
	for _, q := range []string{"../../segue.db", "<script>alert(1)</script>", "support\x00", "support' OR '1'='1", "SUPPORT", strings.Repeat("q", 4096)} {
		resp, err := http.Get(e.ts.URL + "/api/v1/queue-status?queue=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("queue %.40q: %d, want 404", q, resp.StatusCode)
		}
		if strings.Contains(string(b), q) || strings.Contains(string(b), "<script>") {
			t.Errorf("queue %.40q is echoed back: %s", q, b)
		}
	}
	resp, err := http.Post(e.ts.URL+"/api/v1/queue-status?queue=support", "application/json", strings.NewReader(`{"open":false}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Errorf("POST to queue-status: %d, want a refusal", resp.StatusCode)
	}
	st = nil
	if getJSON(t, nil, e.ts.URL+"/api/v1/queue-status?queue=support", &st); st["open"] != true {
		t.Errorf("after the POST the queue reads %v", st)
	}
	e.checkHub()
}
