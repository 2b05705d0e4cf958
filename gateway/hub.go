package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segue-rtc/segue/store"
)

// Presence states of an agent.
const (
	presenceAvailable = "available"
	presenceAway      = "away"
	presenceOffline   = "offline"
)

// hub holds the live state: open conversations, agents and connected
// clients. Lock order: conv.mu before hub.mu; store I/O never runs under
// hub.mu, so one slow write cannot stall every conversation.
type hub struct {
	cfg     *Config
	store   store.Store
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	// voice: the gateway can place calls (a SIP stack and WebRTC). Set
	// once before serving.
	voice bool
	// video: the gateway has WebRTC. Set once before serving.
	video bool

	mu      sync.Mutex
	convs   map[string]*conv // waiting and active conversations
	agents  map[string]*agent
	queues  map[string]QueueConfig
	closing bool
	// peersByAddr counts the customer peer connections open or being set
	// up, by addrKey of the client address (limits.max_peers_per_ip).
	peersByAddr map[string]int
	// peerStarts counts the set-ups of customer peer connections by
	// addrKey (limits.peer_starts_per_ip_per_minute); it locks itself.
	peerStarts *slidingLimiter
}

// conv is an open conversation. mu serializes appends and their delivery,
// so every participant receives a conversation's messages in seq order.
type conv struct {
	mu sync.Mutex

	// Guarded by hub.mu.
	c         store.Conversation
	customers map[*client]struct{}
	offeredTo string
	offer     *time.Timer
	declined  map[string]bool
	preferred string
	preview   string
	voice     *voiceCall
	rtc       *customerRTC
	video     *videoSession
	mediaOnce sync.Once
	mstate    *mediaState

	// videoStarting counts the video starts being set up, which hold a
	// video session slot meanwhile (reserveVideoLocked). Guarded by
	// hub.mu.
	videoStarting int
}

type agent struct {
	cfg       AgentConfig
	maxChats  int
	presence  string // available or away: the agent's choice
	idleSince time.Time
	clients   map[*client]struct{}
	convs     map[string]*conv
}

func newHub(cfg *Config, st store.Store, log *slog.Logger, m *metrics) *hub {
	h := &hub{cfg: cfg, store: st, log: log, metrics: m, now: time.Now,
		convs: map[string]*conv{}, agents: map[string]*agent{}, queues: map[string]QueueConfig{}, peersByAddr: map[string]int{},
		peerStarts: newSlidingLimiter(cfg.Limits.PeerStartsPerIPPerMinute, time.Minute)}
	for _, q := range cfg.Queues {
		h.queues[q.Name] = q
	}
	for _, a := range cfg.Agents {
		h.agents[a.ID] = &agent{cfg: a, maxChats: cfg.MaxChats(a), presence: presenceAvailable,
			clients: map[*client]struct{}{}, convs: map[string]*conv{}}
	}
	return h
}

// load rebuilds the in-memory state from the store after a start.
func (h *hub) load(ctx context.Context) error {
	open, err := h.store.OpenConversations(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range open {
		if _, ok := h.queues[c.Queue]; !ok {
			// The queue was removed from the config: send it to the first one.
			c.Queue = h.cfg.Queues[0].Name
		}
		cv := &conv{c: *c, customers: map[*client]struct{}{}, declined: map[string]bool{}}
		if a, ok := h.agents[c.AgentID]; ok && c.State == store.StateActive {
			a.convs[c.ID] = cv
		} else if c.State == store.StateActive {
			cv.c.State, cv.c.AgentID = store.StateWaiting, ""
		}
		h.convs[c.ID] = cv
	}
	h.updateGaugesLocked()
	h.routeLocked()
	return nil
}

func newID(prefix string) string {
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ---- views ----

func (h *hub) wireConvLocked(cv *conv) wireConversation {
	c := &cv.c
	w := wireConversation{ID: c.ID, State: c.State, Queue: c.Queue, CreatedAt: c.CreatedAt, LastSeq: c.LastSeq,
		Customer: wireCustomer{Name: c.Customer.Name, Email: c.Customer.Email, ExternalID: c.Customer.ExternalID, Verified: c.Customer.Verified},
		Read:     wireRead{Customer: c.ReadByCust, Agent: c.ReadByAgt}, Preview: cv.preview, OfferedTo: cv.offeredTo,
		Voice: h.voice && c.State != store.StateEnded && h.voicePolicyLocked(cv) == nil,
		Video: h.video && c.State != store.StateEnded && h.videoPolicyLocked(cv) == nil}
	if a, ok := h.agents[c.AgentID]; ok && c.AgentID != "" {
		w.Agent = &wireAgentRef{ID: a.cfg.ID, Name: a.cfg.Name}
	}
	return w
}

// wireStored renders a conversation that may not be live (ended).
func (h *hub) wireStored(c *store.Conversation) wireConversation {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cv, ok := h.convs[c.ID]; ok {
		return h.wireConvLocked(cv)
	}
	return h.wireConvLocked(&conv{c: *c})
}

func (h *hub) wireAgentLocked(a *agent) wireAgent {
	return wireAgent{ID: a.cfg.ID, Name: a.cfg.Name, Queues: a.cfg.Queues, Presence: h.presenceLocked(a), MaxChats: a.maxChats}
}

func (h *hub) presenceLocked(a *agent) string {
	if len(a.clients) == 0 {
		return presenceOffline
	}
	return a.presence
}

// queueForLocked lists the waiting conversations of a's queues, oldest first.
func (h *hub) queueForLocked(a *agent) []wireConversation {
	var out []wireConversation
	for _, cv := range h.convs {
		if cv.c.State == store.StateWaiting && slices.Contains(a.cfg.Queues, cv.c.Queue) {
			out = append(out, h.wireConvLocked(cv))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].ID < out[j].ID
		}
		return out[i].CreatedAt.Before(out[j].CreatedAt)
	})
	return out
}

func (h *hub) updateGaugesLocked() {
	waiting, active := 0, 0
	for _, cv := range h.convs {
		if cv.c.State == store.StateWaiting {
			waiting++
		} else {
			active++
		}
	}
	h.metrics.convActive.WithLabelValues(store.StateWaiting).Set(float64(waiting))
	h.metrics.convActive.WithLabelValues(store.StateActive).Set(float64(active))
	counts := map[string]int{presenceAvailable: 0, presenceAway: 0, presenceOffline: 0}
	for _, a := range h.agents {
		counts[h.presenceLocked(a)]++
	}
	for k, v := range counts {
		h.metrics.agents.WithLabelValues(k).Set(float64(v))
	}
}

// ---- delivery ----

// sendToConvLocked delivers v to everyone in the conversation: its
// customers and the assigned agent's consoles.
func (h *hub) sendToConvLocked(cv *conv, v any) {
	for cl := range cv.customers {
		cl.send(v)
	}
	if a, ok := h.agents[cv.c.AgentID]; ok {
		for cl := range a.clients {
			cl.send(v)
		}
	}
}

func (h *hub) sendToAgentLocked(a *agent, v any) {
	for cl := range a.clients {
		cl.send(v)
	}
}

// broadcastQueueLocked sends the waiting list to the agents of queue.
func (h *hub) broadcastQueueLocked(queue string) {
	for _, a := range h.agents {
		if len(a.clients) > 0 && slices.Contains(a.cfg.Queues, queue) {
			h.sendToAgentLocked(a, map[string]any{"type": "queue", "queue": h.queueForLocked(a)})
		}
	}
}

func (h *hub) broadcastConvLocked(cv *conv) {
	h.sendToConvLocked(cv, map[string]any{"type": "conversation", "conversation": h.wireConvLocked(cv)})
}

// ---- conversations ----

// createConversation stores a new waiting conversation and routes it.
func (h *hub) createConversation(ctx context.Context, c *store.Conversation, preferred string) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return ErrShuttingDown
	}
	if len(h.convs) >= h.cfg.Limits.MaxConversations {
		h.mu.Unlock()
		return errf(http.StatusServiceUnavailable, "busy", "too many open conversations; try again later")
	}
	if _, ok := h.queues[c.Queue]; !ok {
		h.mu.Unlock()
		return errf(http.StatusBadRequest, "bad_request", "unknown queue %q", c.Queue)
	}
	h.mu.Unlock()
	if err := h.store.CreateConversation(ctx, c); err != nil {
		return err
	}
	h.metrics.convTotal.Inc()
	h.mu.Lock()
	defer h.mu.Unlock()
	cv := &conv{c: *c, customers: map[*client]struct{}{}, declined: map[string]bool{}, preferred: preferred}
	h.convs[c.ID] = cv
	h.updateGaugesLocked()
	h.broadcastQueueLocked(c.Queue)
	h.routeLocked()
	return nil
}

// conversation returns the live conversation, or the stored one (ended).
func (h *hub) lookup(ctx context.Context, id string) (*conv, *store.Conversation, error) {
	h.mu.Lock()
	cv, ok := h.convs[id]
	if ok {
		c := cv.c
		h.mu.Unlock()
		return cv, &c, nil
	}
	h.mu.Unlock()
	c, err := h.store.Conversation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	return nil, c, nil
}

// canAgentRead reports whether agent id may see conversation c: it holds
// or held it, or it waits in one of the agent's queues.
func (h *hub) canAgentRead(agentID string, c *store.Conversation) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[agentID]
	if !ok {
		return false
	}
	if c.AgentID == agentID || (c.State == store.StateEnded && c.LastAgentID == agentID) {
		return true
	}
	return c.State == store.StateWaiting && slices.Contains(a.cfg.Queues, c.Queue)
}

// post stores m in its conversation and delivers it. It returns the stored
// message and whether it was a duplicate (already stored, not re-sent).
func (h *hub) post(ctx context.Context, cv *conv, m *store.Message) (*store.Message, bool, error) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	h.mu.Lock()
	ended := cv.c.State == store.StateEnded
	h.mu.Unlock()
	if ended {
		return nil, false, ErrEnded
	}
	stored, dup, err := h.store.AppendMessage(ctx, m)
	if err != nil {
		return nil, false, err
	}
	if dup {
		return stored, true, nil
	}
	h.metrics.messages.WithLabelValues(stored.Role, stored.Kind).Inc()
	h.mu.Lock()
	defer h.mu.Unlock()
	cv.c.LastSeq = stored.Seq
	h.sendToConvLocked(cv, map[string]any{"type": "message", "message": toWireMessage(stored)})
	if stored.Role == store.RoleCustomer && cv.c.State == store.StateWaiting {
		switch stored.Kind {
		case store.KindText:
			cv.preview = truncate(stored.Text, 140)
		case store.KindFile:
			cv.preview = "📎 " + stored.File.Name
		}
		h.broadcastQueueLocked(cv.c.Queue)
	}
	return stored, false, nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// event posts a system event to the transcript.
func (h *hub) event(ctx context.Context, cv *conv, name, text string, data any) {
	raw, _ := json.Marshal(data)
	m := &store.Message{ConversationID: cv.c.ID, ID: newID("e_"), Role: store.RoleSystem, Kind: store.KindEvent,
		Text: text, Event: name, EventData: raw}
	if _, _, err := h.post(ctx, cv, m); err != nil && !errors.Is(err, ErrEnded) {
		h.log.Error("transcript event not stored", "conv", cv.c.ID, "event", name, "err", err)
	}
}

// saveLocked persists cv's conversation fields; called with hub.mu held.
// The write is small and keeps assignment and persistence in step.
func (h *hub) saveLocked(ctx context.Context, cv *conv) error {
	cv.c.UpdatedAt = h.now().UTC()
	return h.store.UpdateConversation(ctx, &cv.c)
}

// accept assigns a waiting conversation to agent id.
func (h *hub) accept(ctx context.Context, agentID, convID string) error {
	h.mu.Lock()
	a, ok := h.agents[agentID]
	cv, found := h.convs[convID]
	switch {
	case !ok:
		h.mu.Unlock()
		return ErrUnauthorized
	case !found:
		h.mu.Unlock()
		return ErrNotFound
	case cv.c.State != store.StateWaiting:
		h.mu.Unlock()
		return errf(http.StatusConflict, "taken", "the conversation is no longer waiting")
	case !slices.Contains(a.cfg.Queues, cv.c.Queue):
		h.mu.Unlock()
		return ErrForbidden
	case len(a.convs) >= a.maxChats:
		h.mu.Unlock()
		return errf(http.StatusConflict, "at_capacity", "you already hold %d conversations (the limit)", a.maxChats)
	}
	h.assignLocked(cv, a)
	err := h.saveLocked(ctx, cv)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	h.event(ctx, cv, "conversation.accepted", a.cfg.Name+" joined the conversation", map[string]string{"agent": a.cfg.ID})
	h.pushHistory(ctx, a, cv)
	return nil
}

// assignLocked gives cv to a and tells everyone concerned.
func (h *hub) assignLocked(cv *conv, a *agent) {
	h.clearOfferLocked(cv)
	cv.c.State, cv.c.AgentID, cv.c.LastAgentID = store.StateActive, a.cfg.ID, a.cfg.ID
	cv.preview = ""
	a.convs[cv.c.ID] = cv
	a.idleSince = h.now()
	h.updateGaugesLocked()
	h.broadcastConvLocked(cv)
	h.broadcastQueueLocked(cv.c.Queue)
}

// pushHistory sends an agent who just got a conversation its transcript.
func (h *hub) pushHistory(ctx context.Context, a *agent, cv *conv) {
	ms, err := h.store.Messages(ctx, cv.c.ID, 0, 10000)
	if err != nil {
		h.log.Error("history not loaded", "conv", cv.c.ID, "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sendToAgentLocked(a, map[string]any{"type": "history", "conversation_id": cv.c.ID, "messages": toWireMessages(ms)})
}

// release takes cv away from its agent (end or transfer); hub.mu held.
func (h *hub) releaseLocked(cv *conv) *agent {
	a, ok := h.agents[cv.c.AgentID]
	if !ok {
		return nil
	}
	delete(a.convs, cv.c.ID)
	a.idleSince = h.now()
	return a
}

// end closes the conversation; by is the agent id or "" for the customer.
func (h *hub) end(ctx context.Context, cv *conv, byAgent string) error {
	h.mu.Lock()
	if cv.c.State == store.StateEnded {
		h.mu.Unlock()
		return nil
	}
	if byAgent != "" && cv.c.AgentID != byAgent {
		h.mu.Unlock()
		return ErrForbidden
	}
	h.mu.Unlock()
	who := "the customer"
	if a := h.agentName(byAgent); a != "" {
		who = a
	}
	h.event(ctx, cv, "conversation.ended", "Conversation ended by "+who, map[string]string{"by": byAgent})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clearOfferLocked(cv)
	if cv.voice != nil {
		cv.voice.cancel(errConversationEnd)
	}
	a := h.releaseLocked(cv)
	cv.c.State, cv.c.AgentID, cv.c.EndedAt = store.StateEnded, "", h.now().UTC()
	err := h.saveLocked(ctx, cv)
	w := h.wireConvLocked(cv)
	frame := map[string]any{"type": "conversation", "conversation": w}
	for cl := range cv.customers {
		cl.send(frame)
	}
	if a != nil {
		h.sendToAgentLocked(a, frame)
	}
	delete(h.convs, cv.c.ID)
	h.updateGaugesLocked()
	h.broadcastQueueLocked(cv.c.Queue)
	h.routeLocked()
	return err
}

func (h *hub) agentName(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.agents[id]; ok {
		return a.cfg.Name
	}
	return ""
}

// transfer hands cv from its agent to another agent or back to a queue.
func (h *hub) transfer(ctx context.Context, byAgent string, cv *conv, toAgent, toQueue string) error {
	h.mu.Lock()
	if cv.c.State != store.StateActive || cv.c.AgentID != byAgent {
		h.mu.Unlock()
		return ErrForbidden
	}
	var text string
	data := map[string]string{"from": byAgent}
	switch {
	case toAgent != "":
		b, ok := h.agents[toAgent]
		if !ok || toAgent == byAgent {
			h.mu.Unlock()
			return errf(http.StatusBadRequest, "bad_request", "unknown agent %q", toAgent)
		}
		if h.presenceLocked(b) == presenceOffline {
			h.mu.Unlock()
			return errf(http.StatusConflict, "unavailable", "%s is offline", b.cfg.Name)
		}
		if len(b.convs) >= b.maxChats {
			h.mu.Unlock()
			return errf(http.StatusConflict, "at_capacity", "%s holds the most conversations allowed", b.cfg.Name)
		}
		old := h.releaseLocked(cv)
		if !slices.Contains(b.cfg.Queues, cv.c.Queue) {
			cv.c.Queue = b.cfg.Queues[0]
		}
		h.assignLocked(cv, b)
		if old != nil {
			h.sendToAgentLocked(old, map[string]any{"type": "conversation", "conversation": h.wireConvLocked(cv)})
		}
		text, data["agent"] = "Transferred to "+b.cfg.Name, toAgent
		defer h.pushHistory(ctx, b, cv)
	case toQueue != "":
		if _, ok := h.queues[toQueue]; !ok {
			h.mu.Unlock()
			return errf(http.StatusBadRequest, "bad_request", "unknown queue %q", toQueue)
		}
		old := h.releaseLocked(cv)
		cv.c.State, cv.c.AgentID, cv.c.Queue = store.StateWaiting, "", toQueue
		cv.declined = map[string]bool{byAgent: true}
		h.updateGaugesLocked()
		h.broadcastConvLocked(cv)
		if old != nil {
			h.sendToAgentLocked(old, map[string]any{"type": "conversation", "conversation": h.wireConvLocked(cv)})
		}
		h.broadcastQueueLocked(toQueue)
		h.routeLocked()
		text, data["queue"] = "Transferred to the "+toQueue+" queue", toQueue
	default:
		h.mu.Unlock()
		return errf(http.StatusBadRequest, "bad_request", "transfer needs agent or queue")
	}
	err := h.saveLocked(ctx, cv)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	h.event(ctx, cv, "conversation.transferred", text, data)
	return nil
}

// ---- routing ----

func (h *hub) eligibleLocked(a *agent, queue string) bool {
	return h.presenceLocked(a) == presenceAvailable && len(a.convs) < a.maxChats && slices.Contains(a.cfg.Queues, queue)
}

func (h *hub) pendingOffersLocked(agentID string) int {
	n := 0
	for _, cv := range h.convs {
		if cv.offeredTo == agentID {
			n++
		}
	}
	return n
}

// routeLocked offers every waiting conversation without a live offer to
// the best agent: the customer's previous agent when available, otherwise
// the agent of its queue idle the longest (fewest pending offers first).
func (h *hub) routeLocked() {
	if h.closing {
		return
	}
	waiting := make([]*conv, 0)
	for _, cv := range h.convs {
		if cv.c.State == store.StateWaiting {
			waiting = append(waiting, cv)
		}
	}
	sort.Slice(waiting, func(i, j int) bool { return waiting[i].c.CreatedAt.Before(waiting[j].c.CreatedAt) })
	for _, cv := range waiting {
		if cv.offeredTo != "" {
			if a, ok := h.agents[cv.offeredTo]; ok && h.eligibleLocked(a, cv.c.Queue) {
				continue
			}
			h.clearOfferLocked(cv)
		}
		if a := h.pickLocked(cv); a != nil {
			h.offerLocked(cv, a)
		}
	}
}

func (h *hub) pickLocked(cv *conv) *agent {
	if p, ok := h.agents[cv.preferred]; ok && !cv.declined[p.cfg.ID] && h.eligibleLocked(p, cv.c.Queue) {
		return p
	}
	var cands []*agent
	for _, a := range h.agents {
		if h.eligibleLocked(a, cv.c.Queue) {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	fresh := cands[:0:0]
	for _, a := range cands {
		if !cv.declined[a.cfg.ID] {
			fresh = append(fresh, a)
		}
	}
	if len(fresh) == 0 {
		// Everyone let the offer pass: start another round.
		cv.declined = map[string]bool{}
		fresh = cands
	}
	sort.Slice(fresh, func(i, j int) bool {
		pi, pj := h.pendingOffersLocked(fresh[i].cfg.ID), h.pendingOffersLocked(fresh[j].cfg.ID)
		if pi != pj {
			return pi < pj
		}
		if !fresh[i].idleSince.Equal(fresh[j].idleSince) {
			return fresh[i].idleSince.Before(fresh[j].idleSince)
		}
		return fresh[i].cfg.ID < fresh[j].cfg.ID
	})
	return fresh[0]
}

func (h *hub) offerLocked(cv *conv, a *agent) {
	cv.offeredTo = a.cfg.ID
	timeout := time.Duration(h.queues[cv.c.Queue].OfferTimeout) * time.Second
	id, agentID := cv.c.ID, a.cfg.ID
	cv.offer = time.AfterFunc(timeout, func() { h.offerExpired(id, agentID) })
	h.sendToAgentLocked(a, map[string]any{"type": "offer", "conversation": h.wireConvLocked(cv)})
	h.broadcastQueueLocked(cv.c.Queue)
	h.log.Debug("conversation offered", "conv", id, "agent", agentID)
}

func (h *hub) clearOfferLocked(cv *conv) {
	if cv.offer != nil {
		cv.offer.Stop()
		cv.offer = nil
	}
	cv.offeredTo = ""
}

func (h *hub) offerExpired(convID, agentID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cv, ok := h.convs[convID]
	if !ok || cv.offeredTo != agentID || cv.c.State != store.StateWaiting {
		return
	}
	cv.declined[agentID] = true
	h.clearOfferLocked(cv)
	h.routeLocked()
}

// ---- agents ----

func (h *hub) setPresence(agentID, state string) error {
	if state != presenceAvailable && state != presenceAway {
		return errf(http.StatusBadRequest, "bad_request", "presence must be available or away")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[agentID]
	if !ok {
		return ErrUnauthorized
	}
	if a.presence != state && state == presenceAvailable {
		a.idleSince = h.now()
	}
	a.presence = state
	h.sendToAgentLocked(a, map[string]any{"type": "presence", "state": state})
	h.updateGaugesLocked()
	h.broadcastAgentsLocked()
	h.routeLocked()
	return nil
}

// ---- shutdown ----

// shutdown stops routing and closes every client with reason.
func (h *hub) shutdown(reason string) {
	h.mu.Lock()
	h.closing = true
	var all []*client
	for _, cv := range h.convs {
		h.clearOfferLocked(cv)
		for cl := range cv.customers {
			all = append(all, cl)
		}
	}
	for _, a := range h.agents {
		for cl := range a.clients {
			all = append(all, cl)
		}
	}
	h.mu.Unlock()
	for _, cl := range all {
		cl.closeWith(statusGoingAway, reason)
	}
}

func (h *hub) isClosing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// ---- small relays ----

// relay sends v to the other side of the conversation from role.
func (h *hub) relay(cv *conv, fromRole string, v any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fromRole == store.RoleAgent {
		for cl := range cv.customers {
			cl.send(v)
		}
		return
	}
	if a, ok := h.agents[cv.c.AgentID]; ok {
		h.sendToAgentLocked(a, v)
	}
}

// markRead records a read receipt up to seq and tells the other side.
// The write touches the read mark only and runs outside hub.mu, so read
// receipts, the most frequent write, never hold up other conversations.
func (h *hub) markRead(ctx context.Context, cv *conv, role string, seq int64) error {
	h.mu.Lock()
	seq = min(seq, cv.c.LastSeq)
	mark := &cv.c.ReadByCust
	if role == store.RoleAgent {
		mark = &cv.c.ReadByAgt
	}
	if seq <= *mark {
		h.mu.Unlock()
		return nil
	}
	*mark = seq
	id := cv.c.ID
	h.mu.Unlock()
	if err := h.store.MarkRead(ctx, id, role, seq); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sendToConvLocked(cv, map[string]any{"type": "read", "conversation_id": id, "role": role, "seq": seq})
	return nil
}

type wireAgentPresence struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Presence string `json:"presence"`
}

func (h *hub) agentListLocked() []wireAgentPresence {
	out := make([]wireAgentPresence, 0, len(h.agents))
	for _, a := range h.agents {
		out = append(out, wireAgentPresence{ID: a.cfg.ID, Name: a.cfg.Name, Presence: h.presenceLocked(a)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (h *hub) queueNamesLocked() []string {
	out := make([]string, 0, len(h.cfg.Queues))
	for _, q := range h.cfg.Queues {
		out = append(out, q.Name)
	}
	return out
}

// broadcastAgentsLocked tells every console who is online (transfer lists).
func (h *hub) broadcastAgentsLocked() {
	list := h.agentListLocked()
	for _, a := range h.agents {
		h.sendToAgentLocked(a, map[string]any{"type": "agents", "agents": list})
	}
}
