package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segue-rtc/segue/store"
)

// leftPageSize is how many messages left a console lists.
const leftPageSize = 20

// leaveMessage stores a message a customer leaves. Outside the queue's
// opening hours, or when none of its agents is logged in, it becomes a
// waiting conversation for the next agent (leaveForNextAgent). While the
// queue is full (queues[].max_waiting) it is a conversation in state
// left, never routed,
// with the customer's e-mail, their text and a conversation.message_left
// event. The queue's agents see it in their consoles and answer by
// e-mail. It counts as a new chat for limits.new_chats_per_ip_per_minute.
func (s *Server) leaveMessage(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name     string `json:"name"`
		Email    string `json:"email"`
		Text     string `json:"text"`
		Queue    string `json:"queue"`
		Identity string `json:"identity"`
	}
	if err := decodeJSON(r, 16<<10, &body); err != nil {
		return err
	}
	if ok, wait := s.limiter.allow(addrKey(s.clientIP(r)), time.Now()); !ok {
		s.metrics.rateLimitedChats.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		return errf(http.StatusTooManyRequests, "rate_limited", "too many messages from this address; try again later")
	}
	email := strings.TrimSpace(body.Email)
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email || len(email) > 254 {
		return errf(http.StatusBadRequest, "bad_email", "please give a valid e-mail address")
	}
	text := strings.TrimSpace(body.Text)
	if text == "" {
		return errf(http.StatusBadRequest, "bad_request", "the message is empty")
	}
	if len(body.Text) > s.cfg.Limits.MaxMessageBytes {
		return errf(http.StatusRequestEntityTooLarge, "too_large", "message over %d bytes", s.cfg.Limits.MaxMessageBytes)
	}
	queue, ok := s.hub.queueFor(body.Queue)
	if !ok {
		return errf(http.StatusBadRequest, "bad_request", "unknown queue %q", queue)
	}
	cust := store.Customer{Name: truncate(strings.TrimSpace(body.Name), 80), Email: email}
	if body.Identity != "" {
		id, err := verifyIdentity(s.cfg.Identity.Secret, body.Identity, time.Now())
		if err != nil {
			return errf(http.StatusUnauthorized, "bad_identity", "%v", err)
		}
		cust = id
		if cust.Email == "" {
			cust.Email = email
		}
	}
	now := time.Now().UTC()
	c := &store.Conversation{ID: newID("c_"), State: store.StateLeft, Queue: queue, Customer: cust,
		CreatedAt: now, UpdatedAt: now, EndedAt: now, ClientIP: s.clientIP(r), TokenHash: hashToken(randomToken())}
	// Outside opening hours, or with nobody logged in, the message waits
	// for the next agent as a conversation of the queue; a full queue
	// keeps it aside for the agents to answer by e-mail.
	if st, err := s.hub.status(queue); err == nil && !st.Open {
		err := s.leaveForNextAgent(r.Context(), c, body.Text)
		if err == nil {
			s.log.Info("message left for the next agent", "conv", c.ID, "queue", queue, "reason", st.Reason)
			return writeJSON(w, http.StatusCreated, map[string]any{"conversation": s.hub.wireStored(c)})
		}
		if !errors.Is(err, errQueueFull) {
			return err
		}
		c.State, c.EndedAt, c.Origin = store.StateLeft, now, ""
	}
	// The CRM hears of it as of any conversation: conversation.created
	// and message.created, each in the transaction of what it announces.
	if err := s.webhooks.createConversation(r.Context(), c); err != nil {
		return err
	}
	for _, m := range []*store.Message{
		{ConversationID: c.ID, ID: newID("m_"), Role: store.RoleCustomer, SenderName: cust.Name, Kind: store.KindText, Text: body.Text},
		{ConversationID: c.ID, ID: newID("e_"), Role: store.RoleSystem, Kind: store.KindEvent, Event: "conversation.message_left",
			Text: "Left a message while every agent was busy: answer by e-mail to " + cust.Email, EventData: mustJSON(map[string]string{"email": cust.Email})},
	} {
		events, wake := s.webhooks.messageEvents(*c)
		stored, _, err := s.store.AppendMessageEvents(r.Context(), m, events)
		if err != nil {
			return err
		}
		if wake != nil {
			wake()
		}
		c.LastSeq = stored.Seq
	}
	s.log.Info("message left", "conv", c.ID, "queue", queue)
	s.hub.announceLeft(c)
	return writeJSON(w, http.StatusCreated, map[string]any{"conversation": s.hub.wireStored(c)})
}

// announceLeft tells the online agents of c's queue about a message left.
func (h *hub) announceLeft(c *store.Conversation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.wireConvLocked(&conv{c: *c})
	for _, a := range h.agents {
		if slices.Contains(a.cfg.Queues, c.Queue) {
			h.sendToAgentLocked(a, map[string]any{"type": "left.added", "conversation": w})
		}
	}
}

// leftFor lists the latest messages left in agent a's queues.
func (h *hub) leftFor(ctx context.Context, queues []string) ([]wireConversation, error) {
	cs, err := h.store.LeftConversations(ctx, queues, leftPageSize)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]wireConversation, 0, len(cs))
	for _, c := range cs {
		out = append(out, h.wireConvLocked(&conv{c: *c}))
	}
	return out, nil
}

// queue returns the queue named name.
func (c *Config) queue(name string) (QueueConfig, bool) {
	for _, q := range c.Queues {
		if q.Name == name {
			return q, true
		}
	}
	return QueueConfig{}, false
}

// mustJSON encodes v, which must be encodable (maps of strings).
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only for values that cannot be encoded: a bug
	}
	return b
}

// messagePage reads the page GET .../messages asks for: up to limit
// (default and at most maxHistory) messages after the seq "after", or,
// with "before", the latest ones before that seq.
func (s *Server) messagePage(ctx context.Context, convID string, q url.Values) ([]*store.Message, error) {
	limit := maxHistory
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, errf(http.StatusBadRequest, "bad_request", "limit must be a positive number")
		}
		limit = min(n, maxHistory)
	}
	if v := q.Get("before"); v != "" {
		before, err := strconv.ParseInt(v, 10, 64)
		if err != nil || before < 0 {
			return nil, errf(http.StatusBadRequest, "bad_request", "before must be a seq")
		}
		return s.store.MessagesBefore(ctx, convID, before, limit)
	}
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	return s.store.Messages(ctx, convID, after, limit)
}
