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
	"reflect"
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
	// webhookGaugesEvery is how often the outbox gauges are read from the
	// store when nothing here changed it (another gateway sharing a
	// PostgreSQL outbox may have); webhookGaugesGap is the least time
	// between two reads, however busy the outbox.
	webhookGaugesEvery = 15 * time.Second
	webhookGaugesGap   = time.Second
)

// Headers of a delivery.
const (
	headerSignature = "Segue-Signature"
	headerEvent     = "Segue-Event"
	headerEventID   = "Segue-Event-Id"
)

// webhooks queues events in the outbox and delivers them: one delivery
// loop per webhook, so that a receiver that hangs or fails delays only
// the events owed to it.
type webhooks struct {
	st     store.Store
	log    *slog.Logger
	client *http.Client
	now    func() time.Time

	// mu guards cfg, hooks, names and runCtx, which a reload swaps.
	mu    sync.Mutex
	cfg   IntegrationsConfig
	hooks map[string]*hookLoop
	names []string
	// runCtx is run's context while it runs: loops of webhooks a reload
	// adds start under it.
	runCtx context.Context
	loops  sync.WaitGroup

	deliveries *prometheus.CounterVec
	pending    prometheus.Gauge
	dead       prometheus.Gauge
	// gaugesDue is signalled when the outbox changed, for the gauges to
	// be read again from the store (gaugeLoop).
	gaugesDue chan struct{}
	// alone is set for a gateway that is no cluster's node: the only one
	// on its database, whose claims on the outbox at start are those its
	// own last run left.
	alone bool
	// claimant names this gateway on the events it claims in a shared
	// outbox: a cluster's node's incarnation, set before run. The other
	// nodes release its claims once it is dead (releaseDeadClaims).
	claimant string
}

// hookLoop is one webhook and its delivery loop.
type hookLoop struct {
	// cfg is the webhook's configuration (webhooks.mu).
	cfg WebhookConfig
	// wake is signalled when an event for this webhook is queued.
	wake chan struct{}
	// stop ends the loop; nil while it is not running (webhooks.mu).
	stop context.CancelFunc
}

func newWebhooks(cfg *Config, st store.Store, log *slog.Logger, m *metrics) *webhooks {
	w := &webhooks{st: st, log: log, now: time.Now, hooks: map[string]*hookLoop{}, gaugesDue: make(chan struct{}, 1),
		alone: !cfg.Cluster.Enabled()}
	w.update(cfg.Integrations)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxResponseHeaderBytes = webhookMaxReply
	// Each attempt is bounded by integrations.webhook_timeout through its
	// context, which a reload may change.
	w.client = &http.Client{Transport: tr,
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

// WebhooksChange says what a reload changed in integrations.webhooks.
type WebhooksChange struct {
	Added, Changed, Removed []string
}

// update applies an integrations section (validated already): the
// retry settings, and the webhooks. A new webhook's loop starts, a
// removed one's stops (its undelivered events stay in the outbox under
// its name, and go on if a webhook of that name comes back), a changed
// one's next attempt uses its new URL, secret and events.
func (w *webhooks) update(c IntegrationsConfig) WebhooksChange {
	var ch WebhooksChange
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg = c
	w.names = w.names[:0]
	seen := map[string]bool{}
	for _, h := range c.Webhooks {
		seen[h.Name] = true
		w.names = append(w.names, h.Name)
		if l, ok := w.hooks[h.Name]; ok {
			if !reflect.DeepEqual(l.cfg, h) {
				l.cfg = h
				ch.Changed = append(ch.Changed, h.Name)
			}
			continue
		}
		l := &hookLoop{cfg: h, wake: make(chan struct{}, 1)}
		w.hooks[h.Name] = l
		w.startLocked(h.Name, l)
		ch.Added = append(ch.Added, h.Name)
	}
	for name, l := range w.hooks {
		if seen[name] {
			continue
		}
		if l.stop != nil {
			l.stop()
		}
		delete(w.hooks, name)
		ch.Removed = append(ch.Removed, name)
	}
	w.outboxChanged()
	return ch
}

// startLocked starts l's delivery loop if run is running; w.mu held.
func (w *webhooks) startLocked(name string, l *hookLoop) {
	if w.runCtx == nil || w.runCtx.Err() != nil {
		return
	}
	ctx, stop := context.WithCancel(w.runCtx)
	l.stop = stop
	w.loops.Add(1)
	go func() {
		defer w.loops.Done()
		w.loop(ctx, name, l)
	}()
}

// settings returns the retry settings in force.
func (w *webhooks) settings() IntegrationsConfig {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cfg
}

// hook returns the configuration of webhook name, if it is configured.
func (w *webhooks) hook(name string) (WebhookConfig, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l, ok := w.hooks[name]
	if !ok {
		return WebhookConfig{}, false
	}
	return l.cfg, true
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
// webhook for typ it does nothing. It is for events no store write
// causes (call.ringing): those of a message are written with the message
// (messageEvents), conversation.created with the conversation
// (createConversation) and recording.ready with the recording's end
// (finishRecording).
func (w *webhooks) Emit(ctx context.Context, c *store.Conversation, typ string, data any) error {
	rows, wake, err := w.rows(c, typ, w.now(), data)
	if err != nil || len(rows) == 0 {
		return err
	}
	// The event happened: a caller giving up must not lose it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := w.st.AppendWebhookEvents(ctx, rows); err != nil {
		return fmt.Errorf("gateway: webhook event %s: %w", typ, err)
	}
	w.queued(wake)
	return nil
}

// rows gives the outbox rows of an event of type typ about conversation
// c, created at at, with data: one per webhook that wants it, sharing
// one body; and the wake channels of those webhooks' loops.
func (w *webhooks) rows(c *store.Conversation, typ string, at time.Time, data any) ([]*store.WebhookEvent, []chan struct{}, error) {
	var rows []*store.WebhookEvent
	var wake []chan struct{}
	var body []byte
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, name := range w.names {
		l := w.hooks[name]
		if !l.cfg.wants(typ) {
			continue
		}
		if body == nil {
			var err error
			if body, err = eventBody(c, typ, at, data); err != nil {
				return nil, nil, err
			}
		}
		rows = append(rows, &store.WebhookEvent{Webhook: name, ConversationID: c.ID, Type: typ, Body: body})
		wake = append(wake, l.wake)
	}
	return rows, wake, nil
}

// createConversation stores the new conversation c with its
// conversation.created events, in one transaction: a conversation stored
// never lacks them.
func (w *webhooks) createConversation(ctx context.Context, c *store.Conversation) error {
	at := c.CreatedAt
	if at.IsZero() {
		at = w.now()
	}
	rows, wake, err := w.rows(c, "conversation.created", at, nil)
	if err != nil {
		return err
	}
	if err := w.st.CreateConversationEvents(ctx, c, rows); err != nil {
		return err
	}
	w.queued(wake)
	return nil
}

// finishRecording records r's end with its recording.ready events, in
// one transaction: a finished recording never lacks them. c is the
// recording's conversation as the events show it; info gives the
// event's view of the recording as the store finished it.
func (w *webhooks) finishRecording(ctx context.Context, c *store.Conversation, r *store.Recording, info func(*store.Recording) any) error {
	var wake []chan struct{}
	err := w.st.FinishRecordingEvents(ctx, r, func(done *store.Recording) ([]*store.WebhookEvent, error) {
		rows, woken, err := w.rows(c, "recording.ready", done.EndedAt, map[string]any{"recording": info(done)})
		wake = woken
		return rows, err
	})
	if err != nil {
		return err
	}
	w.queued(wake)
	return nil
}

// eventBody is the body of an event of type typ about conversation c,
// created at at, with data; a new id.
func eventBody(c *store.Conversation, typ string, at time.Time, data any) ([]byte, error) {
	if data == nil {
		data = struct{}{}
	}
	body, err := json.Marshal(webhookEvent{ID: newID("ev_"), Type: typ, CreatedAt: at.UTC(),
		Conversation: toIntegrationConv(c), Data: data})
	if err != nil {
		return nil, fmt.Errorf("gateway: webhook event %s: %w", typ, err)
	}
	return body, nil
}

// queued tells the delivery loops wake, and the gauges, that events were
// queued for them.
func (w *webhooks) queued(wake []chan struct{}) {
	if len(wake) > 0 {
		wakeLoops(wake)
		w.outboxChanged()
	}
}

// outboxChanged has the gauges read again from the store, soon; it never
// waits.
func (w *webhooks) outboxChanged() {
	select {
	case w.gaugesDue <- struct{}{}:
	default:
	}
}

// wakeLoops signals each delivery loop's wake channel, without waiting.
func wakeLoops(wake []chan struct{}) {
	for _, c := range wake {
		select {
		case c <- struct{}{}:
		default:
		}
	}
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

// messageEvents returns what store.AppendMessageEvents needs to write the
// webhook events of a message about to be stored in conversation c (as
// it is now) in the message's own transaction, so that a stored message
// never lacks its events: events gives them from the stored message, and
// wake, called once the append returned, tells the delivery loops. Both
// are nil when no webhook is configured. The events are message.created
// for words and files, file.uploaded for files, and the event's own type
// for the transcript's events that have one.
func (w *webhooks) messageEvents(c store.Conversation) (events store.OutboxFunc, wake func()) {
	type hook struct {
		name string
		cfg  WebhookConfig
		wake chan struct{}
	}
	w.mu.Lock()
	hooks := make([]hook, 0, len(w.names))
	for _, name := range w.names {
		l := w.hooks[name]
		hooks = append(hooks, hook{name: name, cfg: l.cfg, wake: l.wake})
	}
	w.mu.Unlock()
	if len(hooks) == 0 {
		return nil, nil
	}
	// woken is written by events, on the store's writer, and read by wake
	// after the append returned.
	var woken []chan struct{}
	events = func(m *store.Message) ([]*store.WebhookEvent, error) {
		woken = woken[:0]
		var rows []*store.WebhookEvent
		for _, ev := range messageWebhooks(c, m) {
			var body []byte
			for _, h := range hooks {
				if !h.cfg.wants(ev.typ) {
					continue
				}
				if body == nil {
					var err error
					if body, err = eventBody(&ev.conv, ev.typ, m.CreatedAt, ev.data); err != nil {
						return nil, err
					}
				}
				rows = append(rows, &store.WebhookEvent{Webhook: h.name, ConversationID: m.ConversationID, Type: ev.typ, Body: body})
				woken = append(woken, h.wake)
			}
		}
		return rows, nil
	}
	return events, func() { w.queued(woken) }
}

// messageWebhook is one webhook event a message causes: its type, the
// conversation as the event shows it, and its data.
type messageWebhook struct {
	typ  string
	conv store.Conversation
	data any
}

// messageWebhooks lists the webhook events of message m, stored in
// conversation c (as it was when the message was stored).
func messageWebhooks(c store.Conversation, m *store.Message) []messageWebhook {
	c.LastSeq = m.Seq
	switch m.Kind {
	case store.KindText, store.KindFile:
		out := []messageWebhook{{"message.created", c, map[string]any{"message": toWireMessage(m)}}}
		if m.Kind == store.KindFile && m.File != nil {
			out = append(out, messageWebhook{"file.uploaded", c, map[string]any{"message_id": m.ID,
				"file": integrationFileInfo{ID: m.File.ID, Name: m.File.Name, Type: m.File.Type, Size: m.File.Size, CreatedAt: m.File.CreatedAt}}})
		}
		return out
	case store.KindEvent:
		typ, ok := transcriptWebhooks[m.Event]
		if !ok {
			return nil
		}
		if typ == "conversation.ended" {
			// The event is written just before the conversation closes.
			c.State, c.AgentID, c.EndedAt = store.StateEnded, "", m.CreatedAt
		}
		data := json.RawMessage(m.EventData)
		if len(data) == 0 || string(data) == "null" {
			data = json.RawMessage(`{}`)
		}
		return []messageWebhook{{typ, c, data}}
	}
	return nil
}

// run runs a delivery loop per webhook until ctx ends, and those of
// webhooks a reload adds meanwhile. What is left pending stays in the
// outbox for the next run.
func (w *webhooks) run(ctx context.Context) {
	if w.alone {
		// A run killed mid-delivery left its events claimed: they would
		// wait for the claims to lapse, minutes, before going on.
		if n, err := w.st.ReleaseWebhookClaims(ctx, ""); err != nil {
			w.log.Error("webhook claims of the last run not released", "err", err)
		} else if n > 0 {
			w.log.Info("webhook claims of the last run released", "events", n)
		}
	}
	w.mu.Lock()
	w.runCtx = ctx
	for _, name := range w.names {
		w.startLocked(name, w.hooks[name])
	}
	w.mu.Unlock()
	w.loops.Add(1)
	go func() {
		defer w.loops.Done()
		w.gaugeLoop(ctx)
	}()
	<-ctx.Done()
	w.loops.Wait()
	w.client.CloseIdleConnections()
}

// loop delivers the due events of webhook name until ctx ends (the
// gateway stops, or a reload removed the webhook).
func (w *webhooks) loop(ctx context.Context, name string, l *hookLoop) {
	names := []string{name}
	for ctx.Err() == nil {
		due, err := w.st.DueWebhookEvents(ctx, w.claimant, names, w.now(), webhookBatch)
		if err != nil {
			if ctx.Err() == nil {
				w.log.Error("webhook outbox not read", "webhook", name, "err", err)
			}
			sleepOrWake(ctx, l.wake, time.Second)
			continue
		}
		if len(due) > 0 {
			w.deliverAll(ctx, due)
			continue
		}
		wait := webhookIdle
		if next, err := w.st.NextWebhookAttempt(ctx, names); err == nil && !next.IsZero() {
			wait = min(wait, max(next.Sub(w.now()), 10*time.Millisecond))
		}
		sleepOrWake(ctx, l.wake, wait)
	}
}

// sleepOrWake waits d, or less if ctx ends or wake is signalled.
func sleepOrWake(ctx context.Context, wake <-chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}

// wakeAll makes every loop look at the outbox again at once.
func (w *webhooks) wakeAll() {
	w.mu.Lock()
	for _, l := range w.hooks {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
	w.outboxChanged()
}

// gaugeLoop keeps the outbox gauges true until ctx ends: it reads them
// from the store at the start, after every change made here (an event
// queued, an attempt recorded, a replay, a reload), at most once per
// webhookGaugesGap, and every webhookGaugesEvery regardless. So they
// hold whether or not any delivery loop runs: with every webhook removed
// by a reload, dead and pending events still count.
func (w *webhooks) gaugeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		w.refreshGauges(ctx)
		sleepOrWake(ctx, nil, webhookGaugesGap)
		sleepOrWake(ctx, w.gaugesDue, webhookGaugesEvery-webhookGaugesGap)
	}
}

// refreshGauges sets the gauges from the store's counts.
func (w *webhooks) refreshGauges(ctx context.Context) {
	n, err := w.st.CountWebhookEvents(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("webhook outbox not counted", "err", err)
		}
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
	hook, ok := w.hook(e.Webhook)
	if !ok {
		w.giveBack(ctx, e) // removed by a reload: the event waits in the outbox
		return
	}
	set := w.settings()
	actx, cancel := context.WithTimeout(ctx, set.WebhookTimeout)
	err := w.send(actx, &hook, e)
	cancel()
	if err != nil && ctx.Err() != nil {
		w.giveBack(ctx, e) // stopping: the attempt does not count, the event stays due
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err == nil {
		e.State = store.WebhookDelivered
		w.deliveries.WithLabelValues(e.Webhook, "delivered").Inc()
	} else {
		e.Attempts++
		e.LastError = truncate(err.Error(), 500)
		if e.Attempts >= set.WebhookMaxAttempts {
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
	w.outboxChanged()
}

// giveBack returns e, taken for delivery but not attempted to the end,
// to the outbox as it was: with PostgreSQL, DueWebhookEvents claimed it
// for minutes, and a gateway that stops or drops the webhook must not
// hold it back from the next run or another gateway that long.
func (w *webhooks) giveBack(ctx context.Context, e *store.WebhookEvent) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.st.UpdateWebhookEvent(uctx, e); err != nil {
		w.log.Warn("webhook event not given back", "webhook", e.Webhook, "seq", e.Seq, "err", err)
	}
}

// backoff is the wait after the n-th failed attempt: webhook_retry_min,
// doubling, at most webhook_retry_max.
func (w *webhooks) backoff(n int) time.Duration {
	set := w.settings()
	d := set.WebhookRetryMin
	for i := 1; i < n && d < set.WebhookRetryMax; i++ {
		d *= 2
	}
	return min(d, set.WebhookRetryMax)
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
