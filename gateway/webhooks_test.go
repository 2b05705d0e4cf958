package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/store"
)

const hookSecret = "whsec-test-0123456789"

// receiver is a webhook endpoint that checks signatures and keeps the
// events it accepted; fail decides, per request, to answer 500 instead.
type receiver struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	got  []webhookEvent
	fail func(n int) bool
	n    int
}

func newReceiver(t *testing.T, fail func(n int) bool) *receiver {
	rc := &receiver{t: t, fail: fail}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !validSignature(r.Header.Get(headerSignature), body, time.Now()) {
			t.Errorf("bad signature %q", r.Header.Get(headerSignature))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.n++
		if rc.fail != nil && rc.fail(rc.n) {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var ev webhookEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.Type != r.Header.Get(headerEvent) || ev.ID != r.Header.Get(headerEventID) {
			t.Errorf("event %s (%v) with headers %v", body, err, r.Header)
		}
		rc.got = append(rc.got, ev)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// validSignature checks Segue-Signature the way docs/integrations.md
// tells receivers to: HMAC-SHA256 of "t.body", a fresh t.
func validSignature(header string, body []byte, now time.Time) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	return hmac.Equal([]byte(want), []byte(sig))
}

func (rc *receiver) events() []webhookEvent {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]webhookEvent(nil), rc.got...)
}

// runWebhooks runs e's delivery loop until the test ends.
func (e *env2) runWebhooks() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.srv.webhooks.run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

func withHook(url string, attempts int, events ...string) func(*Config) {
	return func(c *Config) {
		c.Integrations.Webhooks = append(c.Integrations.Webhooks, WebhookConfig{Name: "crm", URL: url, Events: events, Secret: hookSecret})
		c.Integrations.WebhookMaxAttempts = attempts
		c.Integrations.WebhookRetryMin, c.Integrations.WebhookRetryMax = 10*time.Millisecond, 40*time.Millisecond
	}
}

// A receiver that fails at first gets every event, signed, in order, once
// it recovers; the failures are counted.
func TestWebhooksRetryInOrder(t *testing.T) {
	rc := newReceiver(t, func(n int) bool { return n <= 3 })
	e := newTestServer(t, withHook(rc.srv.URL, 100, "*"))
	e.runWebhooks()
	c := e.acceptedChat("Ann")
	for _, text := range []string{"one", "two", "three"} {
		c.cws.send(map[string]any{"type": "message", "id": text, "text": text})
		c.cws.expect("ack")
	}
	waitUntil(t, "five events", func() bool { return len(rc.events()) >= 5 })
	var got []string
	for _, ev := range rc.events() {
		s := ev.Type
		if ev.Type == "message.created" {
			b, _ := json.Marshal(ev.Data)
			var d struct {
				Message wireMessage `json:"message"`
			}
			_ = json.Unmarshal(b, &d)
			s += ":" + d.Message.Text
		}
		if ev.Conversation.ID != c.id {
			t.Errorf("event of %s", ev.Conversation.ID)
		}
		got = append(got, s)
	}
	want := "conversation.created conversation.assigned message.created:one message.created:two message.created:three"
	if strings.Join(got, " ") != want {
		t.Errorf("events:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	// The counters move once the receiver's answer is read, a moment
	// after the receiver saw the event.
	waitUntil(t, "the delivery counters", func() bool {
		m := e.metricsText()
		return strings.Contains(m, `segue_webhook_deliveries_total{result="failed",webhook="crm"} 3`) &&
			strings.Contains(m, `segue_webhook_deliveries_total{result="delivered",webhook="crm"} 5`)
	})
}

// An event that never gets through is set aside as dead after the last
// attempt, and the conversation's next events go on.
func TestWebhooksDeadLetter(t *testing.T) {
	rc := newReceiver(t, func(n int) bool { return n <= 2 })
	e := newTestServer(t, withHook(rc.srv.URL, 2, "conversation.created", "message.created"))
	e.runWebhooks()
	_, token := e.startChat("Ann")
	w := e.customerWS(token)
	w.send(map[string]any{"type": "message", "id": "m1", "text": "after the dead one"})
	w.expect("ack")
	waitUntil(t, "the message event", func() bool { return len(rc.events()) == 1 })
	if ev := rc.events()[0]; ev.Type != "message.created" {
		t.Errorf("delivered %s", ev.Type)
	}
	waitUntil(t, "the dead-letter gauge", func() bool {
		e.srv.webhooks.refreshGauges(context.Background())
		m := e.metricsText()
		return strings.Contains(m, "segue_webhook_dead_letters 1") && strings.Contains(m, "segue_webhook_outbox_pending 0")
	})
}

// A receiver's redirect is not followed: the attempt fails and the
// redirect's target hears nothing.
func TestWebhooksRefuseRedirects(t *testing.T) {
	var hits int
	var mu sync.Mutex
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { mu.Lock(); hits++; mu.Unlock() }))
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()
	e := newTestServer(t, withHook(redirect.URL, 1, "conversation.created"))
	e.runWebhooks()
	e.startChat("Ann")
	waitUntil(t, "the event dead", func() bool {
		return strings.Contains(e.metricsText(), `segue_webhook_deliveries_total{result="dead",webhook="crm"} 1`)
	})
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 {
		t.Errorf("the redirect was followed %d times", hits)
	}
}

func TestWebhookBackoffDoublesUpToTheMax(t *testing.T) {
	w := &webhooks{cfg: IntegrationsConfig{WebhookRetryMin: time.Second, WebhookRetryMax: 10 * time.Second}}
	var got []time.Duration
	for n := 1; n <= 6; n++ {
		got = append(got, w.backoff(n))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff: %v, want %v", got, want)
		}
	}
}

func TestSignatureMatchesTheDocumentedCheck(t *testing.T) {
	body := []byte(`{"id":"ev_1"}`)
	now := time.Now()
	if !validSignature(signature(hookSecret, now, body), body, now) {
		t.Fatal("own signature refused")
	}
	if validSignature(signature(hookSecret, now, body), []byte(`{"id":"ev_2"}`), now) {
		t.Fatal("signature of another body accepted")
	}
	if validSignature(signature(hookSecret, now.Add(-time.Hour), body), body, now) {
		t.Fatal("an old delivery accepted")
	}
}

// A message's webhook event is in the outbox by the time the message is
// acknowledged, with no delivery loop running, and shows the message as
// stored: its seq (the conversation's last) and its time.
func TestMessageEventsAreQueuedWithTheMessage(t *testing.T) {
	e := newTestServer(t, withHook("http://127.0.0.1:9/never", 10, "message.created"))
	_, token := e.startChat("Ann")
	w := e.customerWS(token)
	w.send(map[string]any{"type": "message", "id": "m1", "text": "hello"})
	ack := w.expect("ack")
	seq := decode[int64](t, ack["seq"])
	due, err := e.st.DueWebhookEvents(context.Background(), "", []string{"crm"}, time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 || due[0].Type != "message.created" {
		t.Fatalf("outbox at the ack: %v %v", due, err)
	}
	var ev struct {
		CreatedAt    time.Time `json:"created_at"`
		Conversation struct {
			LastSeq int64 `json:"last_seq"`
		} `json:"conversation"`
		Data struct {
			Message wireMessage `json:"message"`
		} `json:"data"`
	}
	if err := json.Unmarshal(due[0].Body, &ev); err != nil {
		t.Fatal(err)
	}
	m := ev.Data.Message
	if m.ID != "m1" || m.Text != "hello" || m.Seq != seq || ev.Conversation.LastSeq != seq || !ev.CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("event at seq %d: %s", seq, due[0].Body)
	}
}

// The outbox gauges tell what the store holds whether or not a delivery
// loop runs: dead and pending events of a webhook no longer configured
// count from the start, a replay with no webhook to deliver it moves an
// event from dead to pending, and once a reload brings the webhook back
// and its receiver takes everything, both fall to zero.
func TestWebhookGaugesWithoutDeliveryLoops(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	evs := []*store.WebhookEvent{
		{Webhook: "crm", ConversationID: "c_1", Type: "conversation.created", Body: []byte(`{"id":"ev_1","type":"conversation.created"}`)},
		{Webhook: "crm", ConversationID: "c_2", Type: "conversation.created", Body: []byte(`{"id":"ev_2","type":"conversation.created"}`)},
	}
	if err := e.st.AppendWebhookEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	evs[1].State, evs[1].Attempts, evs[1].LastError = store.WebhookDead, 5, "status 500"
	if err := e.st.UpdateWebhookEvent(ctx, evs[1]); err != nil {
		t.Fatal(err)
	}
	gauges := func(pending, dead int) func() bool {
		return func() bool {
			return metricLine(t, e, "segue_webhook_outbox_pending ") == fmt.Sprint("segue_webhook_outbox_pending ", pending) &&
				metricLine(t, e, "segue_webhook_dead_letters ") == fmt.Sprint("segue_webhook_dead_letters ", dead)
		}
	}
	e.runWebhooks()
	waitUntil(t, "1 pending and 1 dead with no webhook configured", gauges(1, 1))

	admin := httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(admin.Close)
	res, err := http.Post(admin.URL+"/admin/webhooks/replay?webhook=crm", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	waitUntil(t, "2 pending and none dead after the replay", gauges(2, 0))

	rc := newReceiver(t, nil)
	next := *e.srv.cfg
	withHook(rc.srv.URL, 10, "*")(&next)
	if _, err := e.srv.Reload(ctx, &next); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "both events delivered", func() bool { return len(rc.events()) == 2 })
	waitUntil(t, "nothing pending or dead once delivered", gauges(0, 0))
}

// updateRecorder is a store that keeps a copy of every outcome recorded
// for a webhook event.
type updateRecorder struct {
	store.Store
	mu      sync.Mutex
	updates []store.WebhookEvent
}

func (u *updateRecorder) UpdateWebhookEvent(ctx context.Context, e *store.WebhookEvent) error {
	u.mu.Lock()
	u.updates = append(u.updates, *e)
	u.mu.Unlock()
	return u.Store.UpdateWebhookEvent(ctx, e)
}

// An attempt cut short by the gateway stopping does not count, and the
// event goes back to the outbox as it was (which, with PostgreSQL, ends
// its claim), still due for the next run.
func TestWebhookStopGivesTheEventBack(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sq, err := store.OpenSQLite(ctx, filepath.Join(dir, "s.db"), filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	st := &updateRecorder{Store: sq}
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(hang.Close)
	t.Cleanup(func() { close(release) })
	cfg := &Config{Integrations: IntegrationsConfig{WebhookTimeout: time.Hour, WebhookMaxAttempts: 3,
		WebhookRetryMin: time.Second, WebhookRetryMax: time.Minute}}
	withHook(hang.URL, 3, "*")(cfg)
	cfg.Integrations.WebhookTimeout = time.Hour
	w := newWebhooks(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics())
	ev := &store.WebhookEvent{Webhook: "crm", ConversationID: "c_1", Type: "conversation.created", Body: []byte(`{"id":"ev_1"}`)}
	if err := st.AppendWebhookEvents(ctx, []*store.WebhookEvent{ev}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.run(runCtx) }()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the event was never sent")
	}
	stop()
	<-done
	st.mu.Lock()
	updates := st.updates
	st.mu.Unlock()
	if len(updates) != 1 || updates[0].Seq != ev.Seq || updates[0].State != store.WebhookPending || updates[0].Attempts != 0 {
		t.Fatalf("outcomes recorded: %+v, want the event given back unchanged", updates)
	}
	due, err := sq.DueWebhookEvents(ctx, "", []string{"crm"}, time.Now(), 10)
	if err != nil || len(due) != 1 || due[0].Seq != ev.Seq || due[0].Attempts != 0 {
		t.Fatalf("due after the stop: %+v %v", due, err)
	}
}

// releaseRecorder is a store that counts the releases of outbox claims.
type releaseRecorder struct {
	store.Store
	mu       sync.Mutex
	released int
}

func (r *releaseRecorder) ReleaseWebhookClaims(ctx context.Context, claimant string) (int, error) {
	r.mu.Lock()
	r.released++
	r.mu.Unlock()
	return r.Store.ReleaseWebhookClaims(ctx, claimant)
}

// A gateway alone on its database releases, as its deliverer starts, the
// claims its last run left on the outbox; a cluster's node never does,
// since other nodes may be delivering what they claimed.
func TestWebhookClaimsReleasedWhenAlone(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		t.Run(fmt.Sprint("cluster=", cluster), func(t *testing.T) {
			dir := t.TempDir()
			sq, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "s.db"), filepath.Join(dir, "files"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sq.Close() })
			st := &releaseRecorder{Store: sq}
			cfg := &Config{}
			if cluster {
				cfg.Cluster.NodeID = "n1"
			}
			w := newWebhooks(cfg, st, slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics())
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); w.run(ctx) }()
			// run releases the claims, or not, before anything else: once
			// it returned, it has done what it would.
			stop()
			<-done
			st.mu.Lock()
			defer st.mu.Unlock()
			if want := map[bool]int{false: 1, true: 0}[cluster]; st.released != want {
				t.Errorf("claims released %d times, want %d", st.released, want)
			}
		})
	}
}

// A message left while the queue is full is a conversation the CRM hears
// of like any other: conversation.created, then message.created.
func TestWebhooksOfAMessageLeftWhileBusy(t *testing.T) {
	rc := newReceiver(t, nil)
	e := newTestServer(t, func(c *Config) {
		c.Queues[0].MaxWaiting = 1
		withHook(rc.srv.URL, 5, "conversation.created", "message.created")(c)
	})
	e.runWebhooks()
	bob := e.login("bob")
	e.agentWS(bob)
	e.startChat("One")
	resp, err := http.Post(e.ts.URL+"/api/v1/left-messages", "application/json",
		strings.NewReader(`{"queue":"support","name":"Ann","email":"ann@example.com","text":"Call me back"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out struct{ Conversation wireConversation }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || out.Conversation.State != store.StateLeft {
		t.Fatalf("leave a message: %d %+v", resp.StatusCode, out.Conversation)
	}
	waitUntil(t, "the left conversation's events", func() bool {
		n := 0
		for _, ev := range rc.events() {
			if ev.Conversation.ID == out.Conversation.ID {
				n++
			}
		}
		return n >= 2
	})
	var got []string
	for _, ev := range rc.events() {
		if ev.Conversation.ID == out.Conversation.ID {
			got = append(got, ev.Type)
		}
	}
	if strings.Join(got, " ") != "conversation.created message.created" {
		t.Fatalf("events of the message left: %v", got)
	}
}
