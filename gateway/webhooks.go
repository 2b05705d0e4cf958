package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/store"
)

// Webhooks. Every event is written to the store's outbox before anything
// is sent, one row per webhook that wants it; a delivery loop sends the
// first pending event of each (webhook, conversation) and removes it once
// the receiver answers 2xx. So events survive a restart and arrive at
// least once, in order per conversation: a failing event holds back the
// later ones of its conversation (to that webhook) and no others, until it
// is delivered or, after integrations.webhook_max_attempts, set aside as
// dead.

// Webhook delivery limits.
const (
	// webhookBatch is how many due events one round of the loop takes.
	webhookBatch = 32
	// webhookParallel is how many deliveries run at once.
	webhookParallel = 8
	// webhookMaxReply is how much of a receiver's reply is read.
	webhookMaxReply = 64 << 10
	// webhookIdle is the longest the loop sleeps with nothing due; new
	// events wake it at once.
	webhookIdle = 30 * time.Second
)

// Headers of a delivery.
const (
	headerSignature = "Segue-Signature"
	headerEvent     = "Segue-Event"
	headerEventID   = "Segue-Event-Id"
)

// webhooks queues events in the outbox and delivers them.
type webhooks struct {
	cfg    IntegrationsConfig
	hooks  map[string]*WebhookConfig
	names  []string
	st     store.Store
	log    *slog.Logger
	client *http.Client
	now    func() time.Time
	// wake is signalled when an event is queued.
	wake chan struct{}

	deliveries *prometheus.CounterVec
	pending    prometheus.Gauge
	dead       prometheus.Gauge
}

func newWebhooks(cfg *Config, st store.Store, log *slog.Logger, m *metrics) *webhooks {
	w := &webhooks{cfg: cfg.Integrations, hooks: map[string]*WebhookConfig{}, st: st, log: log, now: time.Now,
		wake: make(chan struct{}, 1)}
	for i := range cfg.Integrations.Webhooks {
		h := &cfg.Integrations.Webhooks[i]
		w.hooks[h.Name] = h
		w.names = append(w.names, h.Name)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxResponseHeaderBytes = webhookMaxReply
	w.client = &http.Client{Transport: tr, Timeout: cfg.Integrations.WebhookTimeout,
		// A receiver that redirects is misconfigured, or sends the signed
		// event somewhere the admin did not choose: the attempt fails.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	w.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "segue_webhook_deliveries_total",
		Help: "Webhook delivery attempts by webhook and result (delivered, failed, dead).",
	}, []string{"webhook", "result"})
	w.pending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "segue_webhook_outbox_pending", Help: "Webhook events waiting in the outbox to be delivered.",
	})
	w.dead = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "segue_webhook_dead_letters", Help: "Webhook events set aside after webhook_max_attempts failed attempts.",
	})
	m.reg.MustRegister(w.deliveries, w.pending, w.dead)
	return w
}

// webhookEvent is the body of a delivery.
type webhookEvent struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	CreatedAt    time.Time       `json:"created_at"`
	Conversation integrationConv `json:"conversation"`
	Data         any             `json:"data"`
}

// Emit queues an event of type typ about conversation c, with data, for
// every webhook that wants it. It returns once the event is in the
// outbox: delivery follows, after a restart if need be. Events of a
// conversation are delivered in the order Emit stored them. With no
// webhook for typ it does nothing.
func (w *webhooks) Emit(ctx context.Context, c *store.Conversation, typ string, data any) error {
	var rows []*store.WebhookEvent
	var body []byte
	for _, name := range w.names {
		if !w.hooks[name].wants(typ) {
			continue
		}
		if body == nil {
			if data == nil {
				data = struct{}{}
			}
			var err error
			body, err = json.Marshal(webhookEvent{ID: newID("ev_"), Type: typ, CreatedAt: w.now().UTC(),
				Conversation: toIntegrationConv(c), Data: data})
			if err != nil {
				return fmt.Errorf("gateway: webhook event %s: %w", typ, err)
			}
		}
		rows = append(rows, &store.WebhookEvent{Webhook: name, ConversationID: c.ID, Type: typ, Body: body})
	}
	if len(rows) == 0 {
		return nil
	}
	// The event happened: a caller giving up must not lose it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.st.AppendWebhookEvents(ctx, rows); err != nil {
		return fmt.Errorf("gateway: webhook event %s: %w", typ, err)
	}
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return nil
}

// emit is Emit for the gateway's own events: a failure is logged.
func (w *webhooks) emit(ctx context.Context, c *store.Conversation, typ string, data any) {
	if err := w.Emit(ctx, c, typ, data); err != nil {
		w.log.Error("webhook event not queued", "conv", c.ID, "event", typ, "err", err)
	}
}

// transcriptWebhooks maps the transcript's events to webhook events.
var transcriptWebhooks = map[string]string{
	"conversation.accepted":    "conversation.assigned",
	"conversation.transferred": "conversation.transferred",
	"conversation.ended":       "conversation.ended",
	"voice.connected":          "call.connected",
	"voice.ended":              "call.ended",
	"voice.failed":             "call.ended",
	"video.started":            "video.started",
	"video.ended":              "video.ended",
}

// emitMessage queues the webhook events of a message just stored in
// conversation c (as it was when the message was stored): message.created
// for words and files, file.uploaded for files, and the event's own type
// for the transcript's events that have one.
func (w *webhooks) emitMessage(ctx context.Context, c store.Conversation, m *store.Message) {
	if len(w.names) == 0 {
		return
	}
	c.LastSeq = m.Seq
	switch m.Kind {
	case store.KindText, store.KindFile:
		w.emit(ctx, &c, "message.created", map[string]any{"message": toWireMessage(m)})
		if m.Kind == store.KindFile && m.File != nil {
			w.emit(ctx, &c, "file.uploaded", map[string]any{"message_id": m.ID,
				"file": integrationFileInfo{ID: m.File.ID, Name: m.File.Name, Type: m.File.Type, Size: m.File.Size, CreatedAt: m.File.CreatedAt}})
		}
	case store.KindEvent:
		typ, ok := transcriptWebhooks[m.Event]
		if !ok {
			return
		}
		if typ == "conversation.ended" {
			// The event is written just before the conversation closes.
			c.State, c.AgentID, c.EndedAt = store.StateEnded, "", m.CreatedAt
		}
		data := json.RawMessage(m.EventData)
		if len(data) == 0 || string(data) == "null" {
			data = json.RawMessage(`{}`)
		}
		w.emit(ctx, &c, typ, data)
	}
}

// run delivers due events until ctx ends. What is left pending stays in
// the outbox for the next run.
func (w *webhooks) run(ctx context.Context) {
	if len(w.names) == 0 {
		return
	}
	for ctx.Err() == nil {
		w.refreshGauges(ctx)
		due, err := w.st.DueWebhookEvents(ctx, w.names, w.now(), webhookBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("webhook outbox not read", "err", err)
			}
			w.sleep(ctx, time.Second)
			continue
		}
		if len(due) > 0 {
			w.deliverAll(ctx, due)
			continue
		}
		wait := webhookIdle
		if next, err := w.st.NextWebhookAttempt(ctx, w.names); err == nil && !next.IsZero() {
			wait = min(wait, max(next.Sub(w.now()), 10*time.Millisecond))
		}
		w.sleep(ctx, wait)
	}
}

func (w *webhooks) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-w.wake:
	}
}

func (w *webhooks) refreshGauges(ctx context.Context) {
	n, err := w.st.CountWebhookEvents(ctx)
	if err != nil {
		return
	}
	w.pending.Set(float64(n.Pending))
	w.dead.Set(float64(n.Dead))
}

// deliverAll sends a batch, at most webhookParallel at a time; each
// event is the head of its own conversation, so order holds.
func (w *webhooks) deliverAll(ctx context.Context, due []*store.WebhookEvent) {
	sem := make(chan struct{}, webhookParallel)
	var wg sync.WaitGroup
	for _, e := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			w.deliverOne(ctx, e)
		}()
	}
	wg.Wait()
}

// deliverOne makes one attempt and records its outcome.
func (w *webhooks) deliverOne(ctx context.Context, e *store.WebhookEvent) {
	hook := w.hooks[e.Webhook]
	err := w.send(ctx, hook, e)
	if err != nil && ctx.Err() != nil {
		return // stopping: the attempt does not count, the event stays due
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err == nil {
		e.State = store.WebhookDelivered
		w.deliveries.WithLabelValues(e.Webhook, "delivered").Inc()
	} else {
		e.Attempts++
		e.LastError = truncate(err.Error(), 500)
		if e.Attempts >= w.cfg.WebhookMaxAttempts {
			e.State = store.WebhookDead
			w.deliveries.WithLabelValues(e.Webhook, "dead").Inc()
			w.log.Error("webhook event dead after its last attempt", "webhook", e.Webhook, "event", e.Type,
				"conv", e.ConversationID, "attempts", e.Attempts, "err", err)
		} else {
			e.NextAt = w.now().Add(w.backoff(e.Attempts))
			w.deliveries.WithLabelValues(e.Webhook, "failed").Inc()
			w.log.Warn("webhook delivery failed", "webhook", e.Webhook, "event", e.Type, "conv", e.ConversationID,
				"attempts", e.Attempts, "next_at", e.NextAt, "err", err)
		}
	}
	if uerr := w.st.UpdateWebhookEvent(uctx, e); uerr != nil {
		w.log.Error("webhook outbox not updated", "webhook", e.Webhook, "seq", e.Seq, "err", uerr)
	}
}

// backoff is the wait after the n-th failed attempt: webhook_retry_min,
// doubling, at most webhook_retry_max.
func (w *webhooks) backoff(n int) time.Duration {
	d := w.cfg.WebhookRetryMin
	for i := 1; i < n && d < w.cfg.WebhookRetryMax; i++ {
		d *= 2
	}
	return min(d, w.cfg.WebhookRetryMax)
}

// signature is the Segue-Signature header of body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the
// webhook's secret>". The time inside the signed text lets receivers
// refuse replays of old deliveries.
func signature(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// errWebhookStatus is a receiver's reply other than 2xx.
var errWebhookStatus = errors.New("gateway: webhook receiver refused the event")

// send POSTs one event; any reply but 2xx is a failure.
func (w *webhooks) send(ctx context.Context, hook *WebhookConfig, e *store.WebhookEvent) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(e.Body))
	if err != nil {
		return err
	}
	var head struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(e.Body, &head)
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "segue-webhook/1")
	h.Set(headerEvent, e.Type)
	h.Set(headerEventID, head.ID)
	h.Set(headerSignature, signature(hook.Secret, w.now(), e.Body))
	res, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, webhookMaxReply))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		if res.StatusCode >= 300 && res.StatusCode < 400 {
			return fmt.Errorf("%w: redirect %d not followed", errWebhookStatus, res.StatusCode)
		}
		return fmt.Errorf("%w: status %d", errWebhookStatus, res.StatusCode)
	}
	return nil
}
