package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segue-rtc/segue/store"
)

const (
	// waitWindow is how far back the wait estimate looks: the median wait
	// of the conversations of a queue answered in the last hour.
	waitWindow = time.Hour
	// waitSamples caps how many recent waits one estimate reads.
	waitSamples = 500
	// maxRatingComment is the longest rating comment, in characters.
	maxRatingComment = 1000
)

// Reasons a queue does not take chats now (queueStatus.Reason).
const (
	reasonClosed   = "closed"
	reasonHoliday  = "holiday"
	reasonNoAgents = "no_agents"
)

// queueStatus is what the widget learns before a chat starts: whether the
// queue is open, and if not why and when it opens again.
type queueStatus struct {
	Queue string `json:"queue"`
	// Open: within opening hours and at least one of the queue's agents
	// is logged in.
	Open bool `json:"open"`
	// Reason is closed, holiday or no_agents when Open is false.
	Reason string `json:"reason,omitempty"`
	// NextOpen is when the queue opens again (outside hours only).
	NextOpen *time.Time `json:"next_open,omitempty"`
	// TimeZone is the zone of the queue's opening hours.
	TimeZone string `json:"time_zone,omitempty"`
}

// wireQueuePosition is a waiting customer's place in the queue.
type wireQueuePosition struct {
	Type           string `json:"type"`
	ConversationID string `json:"conversation_id"`
	Position       int    `json:"position"`
	Waiting        int    `json:"waiting"`
	// EstimatedWaitSeconds is the median wait of the queue's conversations
	// answered in the last hour; absent without such history.
	EstimatedWaitSeconds int `json:"estimated_wait_seconds,omitempty"`
}

// wireRating is a conversation's satisfaction rating.
type wireRating struct {
	Score   int       `json:"score"`
	Comment string    `json:"comment,omitempty"`
	At      time.Time `json:"at"`
}

// customerCare is the hub's state for customers before and after the
// chat: opening hours and wait estimates.
type customerCare struct {
	schedules map[string]*schedule
	// clock is what opening hours are judged by (clock.now or time.Now).
	clock func() time.Time
	// estimates are each queue's median recent wait; guarded by hub.mu.
	estimates map[string]time.Duration
}

func newCustomerCare(cfg *Config) *customerCare {
	c := &customerCare{schedules: map[string]*schedule{}, clock: time.Now, estimates: map[string]time.Duration{}}
	for _, q := range cfg.Queues {
		if q.Hours != nil {
			if s, err := q.Hours.compile(); err == nil {
				c.schedules[q.Name] = s
			}
		}
	}
	if t, err := time.Parse(time.RFC3339, cfg.Clock.Now); err == nil {
		c.clock = func() time.Time { return t }
	}
	return c
}

// status reports whether queue takes chats now.
func (h *hub) status(queue string) (queueStatus, error) {
	if _, ok := h.queues[queue]; !ok {
		return queueStatus{}, ErrNotFound
	}
	st := queueStatus{Queue: queue, Open: true}
	if s := h.care.schedules[queue]; s != nil {
		now := h.care.clock()
		st.TimeZone = s.loc.String()
		if !s.isOpen(now) {
			st.Open, st.Reason = false, reasonClosed
			if s.holidays[now.In(s.loc).Format(time.DateOnly)] {
				st.Reason = reasonHoliday
			}
			if next, ok := s.nextOpen(now); ok {
				next = next.UTC()
				st.NextOpen = &next
			}
			return st, nil
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.agents {
		if slices.Contains(a.cfg.Queues, queue) && h.presenceLocked(a) != presenceOffline {
			return st, nil
		}
	}
	st.Open, st.Reason = false, reasonNoAgents
	return st, nil
}

// getQueueStatus answers GET /api/v1/queue-status?queue=NAME (the first
// queue without one).
func (s *Server) getQueueStatus(w http.ResponseWriter, r *http.Request) error {
	queue := r.URL.Query().Get("queue")
	if queue == "" {
		queue = s.cfg.Queues[0].Name
	}
	st, err := s.hub.status(queue)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

// positionLocked is cv's place in its queue, or nil when it does not wait.
func (h *hub) positionLocked(cv *conv) *wireQueuePosition {
	if cv == nil || cv.c.State != store.StateWaiting {
		return nil
	}
	list := h.waiting[cv.c.Queue]
	i := slices.Index(list, cv)
	if i < 0 {
		return nil
	}
	return &wireQueuePosition{Type: "queue.position", ConversationID: cv.c.ID, Position: i + 1, Waiting: len(list),
		EstimatedWaitSeconds: int(h.care.estimates[cv.c.Queue].Round(time.Second) / time.Second)}
}

// positionOf is positionLocked taking hub.mu.
func (h *hub) positionOf(cv *conv) *wireQueuePosition {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.positionLocked(cv)
}

// positionsChangedLocked sends a queue.position frame to the customers of
// every conversation waiting in queue whose place or estimate changed
// since their last frame; all, when force is set.
func (h *hub) positionsChangedLocked(queue string, force bool) {
	list := h.waiting[queue]
	est := int(h.care.estimates[queue].Round(time.Second) / time.Second)
	for i, cv := range list {
		if !force && cv.position == i+1 {
			continue
		}
		cv.position = i + 1
		p := &wireQueuePosition{Type: "queue.position", ConversationID: cv.c.ID, Position: i + 1, Waiting: len(list),
			EstimatedWaitSeconds: est}
		b, err := json.Marshal(p)
		if err != nil {
			h.log.Error("frame not encoded", "err", err)
			return
		}
		// A newer place replaces one still queued for a slow socket.
		for cl := range cv.customers {
			cl.enqueue(outFrame{data: b, conv: cv.c.ID, key: "queue.position"})
		}
	}
}

// refreshEstimate reads queue's recent waits from the store and, when
// their median changed, tells its waiting customers.
func (h *hub) refreshEstimate(ctx context.Context, queue string) {
	waits, err := h.store.RecentWaits(ctx, queue, h.now().Add(-waitWindow), waitSamples)
	if err != nil {
		h.log.Warn("recent waits not read", "queue", queue, "err", err)
		return
	}
	m := median(waits)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.care.estimates[queue] == m {
		return
	}
	h.care.estimates[queue] = m
	h.positionsChangedLocked(queue, true)
}

// median of ds (0 for none); it sorts ds.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

// rateConversation answers POST /api/v1/conversations/{id}/rating: the
// customer of an ended conversation rates it once, 1 to 5 with an
// optional comment. The conversation's last agent sees it in the console.
func (s *Server) rateConversation(w http.ResponseWriter, r *http.Request) error {
	_, c, who, err := s.authorize(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if who.role != store.RoleCustomer {
		return errf(http.StatusForbidden, "forbidden", "only the customer rates a conversation")
	}
	var body struct {
		Score   int    `json:"score"`
		Comment string `json:"comment"`
	}
	if err := decodeJSON(r, 16<<10, &body); err != nil {
		return err
	}
	if body.Score < 1 || body.Score > 5 {
		return errf(http.StatusBadRequest, "bad_rating", "score must be from 1 to 5")
	}
	comment := strings.TrimSpace(body.Comment)
	if utf8.RuneCountInString(comment) > maxRatingComment {
		return errf(http.StatusRequestEntityTooLarge, "too_large", "comment over %d characters", maxRatingComment)
	}
	if c.State != store.StateEnded {
		return errf(http.StatusConflict, "not_ended", "a conversation is rated once it has ended")
	}
	rating := store.Rating{Score: body.Score, Comment: comment, At: time.Now().UTC()}
	switch err := s.store.RateConversation(r.Context(), c.ID, rating); {
	case errors.Is(err, store.ErrRated):
		return errf(http.StatusConflict, "already_rated", "this conversation has been rated already")
	case err != nil:
		return err
	}
	c.Rating = rating
	s.log.Info("conversation rated", "conv", c.ID, "score", rating.Score)
	s.hub.announceRating(c)
	return writeJSON(w, http.StatusCreated, map[string]any{"conversation": s.hub.wireStored(c)})
}

// announceRating tells the consoles of c's last agent about its rating.
func (h *hub) announceRating(c *store.Conversation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.agents[c.LastAgentID]; ok {
		h.sendToAgentLocked(a, map[string]any{"type": "conversation", "conversation": h.wireConvLocked(&conv{c: *c})})
	}
}

// leaveForNextAgent turns a message left while queue is closed or has no
// agent logged in into a waiting conversation, created like any chat, so
// the next agent gets it. It returns the conversation, or errQueueFull
// when the queue cannot take another.
func (s *Server) leaveForNextAgent(ctx context.Context, c *store.Conversation, text string) error {
	c.State, c.EndedAt, c.Origin = store.StateWaiting, time.Time{}, store.OriginMessage
	if err := s.hub.createConversation(ctx, c, ""); err != nil {
		return err
	}
	s.hub.mu.Lock()
	cv := s.hub.convs[c.ID]
	s.hub.mu.Unlock()
	if cv == nil {
		return nil // already ended
	}
	for _, m := range []*store.Message{
		{ConversationID: c.ID, ID: newID("m_"), Role: store.RoleCustomer, SenderName: c.Customer.Name, Kind: store.KindText, Text: text},
		{ConversationID: c.ID, ID: newID("e_"), Role: store.RoleSystem, Kind: store.KindEvent, Event: "conversation.message_left",
			Text: "Left a message while nobody could answer: answer by e-mail to " + c.Customer.Email, EventData: mustJSON(map[string]string{"email": c.Customer.Email})},
	} {
		stored, _, err := s.hub.post(ctx, cv, m)
		if err != nil {
			return err
		}
		c.LastSeq = stored.Seq
	}
	return nil
}
