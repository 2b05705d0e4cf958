package gateway

import (
	"net/http"
	"strconv"
	"time"
)

// Dead webhook events on the admin listener: GET /admin/webhooks/dead
// lists them, POST /admin/webhooks/replay sends them again. Both take
// ?webhook=NAME (all webhooks when absent); replay also takes ?seq=N (all
// dead events when absent).

// maxDeadListed bounds one listing of dead events.
const maxDeadListed = 1000

// DeadEvent is a dead webhook event as the admin endpoints show it.
type DeadEvent struct {
	Seq          int64     `json:"seq"`
	Webhook      string    `json:"webhook"`
	Conversation string    `json:"conversation"`
	Type         string    `json:"type"`
	CreatedAt    time.Time `json:"created_at"`
	Attempts     int       `json:"attempts"`
	LastError    string    `json:"last_error"`
}

// ReplayResult is the answer of POST /admin/webhooks/replay.
type ReplayResult struct {
	Replayed int `json:"replayed"`
}

func (s *Server) getDeadWebhooks(w http.ResponseWriter, r *http.Request) {
	limit, err := pageSize(r.URL.Query(), maxDeadListed, maxDeadListed)
	if err != nil {
		writeError(w, err)
		return
	}
	evs, err := s.store.DeadWebhookEvents(r.Context(), r.URL.Query().Get("webhook"), limit)
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]DeadEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, DeadEvent{Seq: e.Seq, Webhook: e.Webhook, Conversation: e.ConversationID, Type: e.Type,
			CreatedAt: e.CreatedAt, Attempts: e.Attempts, LastError: e.LastError})
	}
	_ = writeJSON(w, http.StatusOK, map[string]any{"events": out})
}

// postReplayWebhooks makes dead events pending again, due now with a
// fresh count of attempts. A replayed event is delivered after the later
// events of its conversation that went through meanwhile: receivers
// order by created_at where it matters.
func (s *Server) postReplayWebhooks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var seq int64
	if v := q.Get("seq"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			writeError(w, badParam("seq", "%q is not an event seq", v))
			return
		}
		seq = n
	}
	n, err := s.store.ReplayWebhookEvents(r.Context(), q.Get("webhook"), seq, s.webhooks.now())
	if err != nil {
		writeError(w, err)
		return
	}
	s.log.Info("dead webhook events replayed", "webhook", q.Get("webhook"), "seq", seq, "replayed", n)
	s.webhooks.wakeAll()
	_ = writeJSON(w, http.StatusOK, ReplayResult{Replayed: n})
}
