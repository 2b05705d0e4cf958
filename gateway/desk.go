package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/store"
)

// The agent's desk: searching past conversations, a customer's earlier
// conversations, canned replies, internal notes and wrap-up codes
// (docs/api.md, "The agent's desk").

// CannedReplyConfig is one of a queue's canned replies
// (queues[].canned_replies): the console inserts Text when the agent
// types "/" and Shortcut in the reply box.
type CannedReplyConfig struct {
	Shortcut string `yaml:"shortcut"`
	Text     string `yaml:"text"`
}

// Limits of the desk's inputs.
const (
	// maxReplyBytes bounds a canned reply's text.
	maxReplyBytes = 4096
	// maxCannedPerAgent bounds an agent's personal canned replies.
	maxCannedPerAgent = 200
	// maxWrapUpLen bounds a wrap-up code, in characters.
	maxWrapUpLen = 64
	// maxSearchBytes and maxSearchWords bound a search query.
	maxSearchBytes = 200
	maxSearchWords = 8
	// searchLimit is how many conversations a search or the list of a
	// customer's earlier conversations returns at most.
	searchLimit = 50
)

// shortcutRe is what a canned reply's shortcut may be: what follows "/"
// in the reply box.
var shortcutRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// Desk errors.
var (
	// errWrapUpRequired: the queue asks for a wrap-up code when ending.
	errWrapUpRequired = errf(http.StatusBadRequest, "wrap_up_required", "choose a wrap-up code to end this conversation")
	// errWrapUpUnknown: the code is not one of the queue's.
	errWrapUpUnknown = errf(http.StatusBadRequest, "bad_wrap_up", "not a wrap-up code of this conversation's queue")
	// errShortcutTaken: the agent has another reply with the shortcut.
	errShortcutTaken = errf(http.StatusConflict, "shortcut_taken", "you already have a canned reply with this shortcut")
)

// validateDeskQueue checks a queue's canned replies and wrap-up codes; p
// is the queue's YAML path.
func validateDeskQueue(p string, q QueueConfig) []error {
	var errs []error
	addf := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	seen := map[string]bool{}
	for i, r := range q.CannedReplies {
		rp := fmt.Sprintf("%s.canned_replies[%d]", p, i)
		switch {
		case !shortcutRe.MatchString(r.Shortcut):
			addf("%s.shortcut: %q must be 1 to 32 letters, digits, '_', '.', '-', starting with a letter or digit", rp, r.Shortcut)
		case seen[strings.ToLower(r.Shortcut)]:
			addf("%s.shortcut: duplicate shortcut %q", rp, r.Shortcut)
		}
		seen[strings.ToLower(r.Shortcut)] = true
		if strings.TrimSpace(r.Text) == "" {
			addf("%s.text: required", rp)
		} else if len(r.Text) > maxReplyBytes {
			addf("%s.text: must be at most %d bytes", rp, maxReplyBytes)
		}
	}
	codes := map[string]bool{}
	for i, c := range q.WrapUpCodes {
		switch {
		case strings.TrimSpace(c) == "" || utf8.RuneCountInString(c) > maxWrapUpLen:
			addf("%s.wrap_up_codes[%d]: must be 1 to %d characters", p, i, maxWrapUpLen)
		case codes[c]:
			addf("%s.wrap_up_codes[%d]: duplicate code %q", p, i, c)
		}
		codes[c] = true
	}
	if q.WrapUpRequired && len(q.WrapUpCodes) == 0 {
		addf("%s.wrap_up_required: needs wrap_up_codes to choose from", p)
	}
	return errs
}

// newWrapUpMetric registers segue_wrap_ups_total on reg.
func newWrapUpMetric(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "segue_wrap_ups_total", Help: "Conversations ended with a wrap-up code, by queue and code (queues[].wrap_up_codes).",
	}, []string{"queue", "code"})
	reg.MustRegister(c)
	return c
}

// deskRoutes registers the desk's HTTP routes with api.
func (s *Server) deskRoutes(api func(pattern string, h func(http.ResponseWriter, *http.Request) error)) {
	api("GET /api/v1/agent/desk", s.getDesk)
	api("GET /api/v1/agent/search", s.searchConversations)
	api("GET /api/v1/agent/conversations/{id}/earlier", s.earlierConversations)
	api("GET /api/v1/agent/conversations/{id}/notes", s.getNotes)
	api("POST /api/v1/agent/canned-replies", s.saveCannedReply)
	api("DELETE /api/v1/agent/canned-replies/{id}", s.deleteCannedReply)
}

// deskAgent is the agent whose session cookie came with a request from
// the gateway's own pages.
func (s *Server) deskAgent(r *http.Request) (string, error) {
	if origin := r.Header.Get("Origin"); origin != "" && !s.sameOrigin(r, origin) {
		return "", ErrUnauthorized
	}
	id := s.agentFromCookie(r)
	if id == "" {
		return "", ErrUnauthorized
	}
	return id, nil
}

// scopeOf is what agent id may read (store.AgentScope), or nil for an
// agent no longer configured.
func (h *hub) scopeOf(agentID string) *store.AgentScope {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[agentID]
	if !ok {
		return nil
	}
	return &store.AgentScope{AgentID: agentID, Queues: slices.Clone(a.cfg.Queues)}
}

type wireCannedReply struct {
	ID       string `json:"id,omitempty"`
	Queue    string `json:"queue,omitempty"`
	Shortcut string `json:"shortcut"`
	Text     string `json:"text"`
}

type wireDeskQueue struct {
	Name           string            `json:"name"`
	CannedReplies  []wireCannedReply `json:"canned_replies"`
	WrapUpCodes    []string          `json:"wrap_up_codes"`
	WrapUpRequired bool              `json:"wrap_up_required"`
}

// getDesk answers GET /api/v1/agent/desk: the canned replies and wrap-up
// codes of the agent's queues, and its personal canned replies.
func (s *Server) getDesk(w http.ResponseWriter, r *http.Request) error {
	agentID, err := s.deskAgent(r)
	if err != nil {
		return err
	}
	var queues []wireDeskQueue
	s.hub.mu.Lock()
	if a, ok := s.hub.agents[agentID]; ok {
		for _, name := range a.cfg.Queues {
			q := s.hub.queues[name]
			wq := wireDeskQueue{Name: name, CannedReplies: []wireCannedReply{}, WrapUpCodes: slices.Clone(q.WrapUpCodes), WrapUpRequired: q.WrapUpRequired}
			if wq.WrapUpCodes == nil {
				wq.WrapUpCodes = []string{}
			}
			for _, c := range q.CannedReplies {
				wq.CannedReplies = append(wq.CannedReplies, wireCannedReply{Queue: name, Shortcut: c.Shortcut, Text: c.Text})
			}
			queues = append(queues, wq)
		}
	}
	s.hub.mu.Unlock()
	own, err := s.store.CannedReplies(r.Context(), agentID)
	if err != nil {
		return err
	}
	mine := make([]wireCannedReply, 0, len(own))
	for _, c := range own {
		mine = append(mine, wireCannedReply{ID: c.ID, Shortcut: c.Shortcut, Text: c.Text})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"queues": queues, "canned_replies": mine})
}

// saveCannedReply answers POST /api/v1/agent/canned-replies: a new
// personal reply, or a change to one of the agent's own (with its id).
func (s *Server) saveCannedReply(w http.ResponseWriter, r *http.Request) error {
	agentID, err := s.deskAgent(r)
	if err != nil {
		return err
	}
	var body struct {
		ID       string `json:"id"`
		Shortcut string `json:"shortcut"`
		Text     string `json:"text"`
	}
	if err := decodeJSON(r, 16<<10, &body); err != nil {
		return err
	}
	switch {
	case !shortcutRe.MatchString(body.Shortcut):
		return badParam("shortcut", "1 to 32 letters, digits, '_', '.', '-', starting with a letter or digit")
	case strings.TrimSpace(body.Text) == "" || len(body.Text) > maxReplyBytes:
		return badParam("text", "1 to %d bytes", maxReplyBytes)
	case len(body.ID) > 64:
		return badParam("id", "not a canned reply of yours")
	}
	status := http.StatusOK
	if body.ID == "" {
		own, err := s.store.CannedReplies(r.Context(), agentID)
		if err != nil {
			return err
		}
		if len(own) >= maxCannedPerAgent {
			return errf(http.StatusConflict, "too_many", "you have %d canned replies, the most allowed", maxCannedPerAgent)
		}
		body.ID, status = newID("r_"), http.StatusCreated
	}
	rep := &store.CannedReply{ID: body.ID, AgentID: agentID, Shortcut: body.Shortcut, Text: body.Text}
	switch err := s.store.SaveCannedReply(r.Context(), rep); {
	case errors.Is(err, store.ErrDuplicate):
		return errShortcutTaken
	case errors.Is(err, store.ErrNotFound):
		return ErrNotFound
	case err != nil:
		return err
	}
	return writeJSON(w, status, map[string]any{"canned_reply": wireCannedReply{ID: rep.ID, Shortcut: rep.Shortcut, Text: rep.Text}})
}

// deleteCannedReply answers DELETE /api/v1/agent/canned-replies/{id}.
func (s *Server) deleteCannedReply(w http.ResponseWriter, r *http.Request) error {
	agentID, err := s.deskAgent(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteCannedReply(r.Context(), agentID, r.PathValue("id")); errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	} else if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// wireDeskConversation is a conversation as the agent's search and the
// list of earlier conversations show it.
type wireDeskConversation struct {
	wireConversation
	EndedAt *time.Time `json:"ended_at,omitempty"`
	WrapUp  string     `json:"wrap_up,omitempty"`
}

func (s *Server) deskList(cs []*store.Conversation) []wireDeskConversation {
	out := make([]wireDeskConversation, 0, len(cs))
	for _, c := range cs {
		out = append(out, wireDeskConversation{wireConversation: s.hub.wireStored(c), EndedAt: optTime(c.EndedAt), WrapUp: c.WrapUp})
	}
	return out
}

// searchConversations answers GET /api/v1/agent/search?q=: the
// conversations the agent may read whose customer's name or e-mail, or
// whose transcript, holds every word of q; newest first.
func (s *Server) searchConversations(w http.ResponseWriter, r *http.Request) error {
	agentID, err := s.deskAgent(r)
	if err != nil {
		return err
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	words := strings.Fields(q)
	switch {
	case len(words) == 0:
		return badParam("q", "give a name, an e-mail or words of the conversation")
	case len(q) > maxSearchBytes || len(words) > maxSearchWords || !utf8.ValidString(q):
		return badParam("q", "at most %d words and %d bytes", maxSearchWords, maxSearchBytes)
	}
	scope := s.hub.scopeOf(agentID)
	if scope == nil {
		return ErrUnauthorized
	}
	cs, err := s.store.SearchConversations(r.Context(), store.ConversationQuery{Keywords: words, Scope: scope, Limit: searchLimit})
	if errors.Is(err, store.ErrBadQuery) {
		return badParam("q", "these words cannot be searched")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"conversations": s.deskList(cs)})
}

// deskConversation is a conversation agentID may read, or an error.
func (s *Server) deskConversation(ctx context.Context, agentID, id string) (*store.Conversation, error) {
	_, c, err := s.hub.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	if !s.hub.canAgentRead(agentID, c) {
		return nil, ErrForbidden
	}
	return c, nil
}

// earlierConversations answers GET .../conversations/{id}/earlier: for a
// verified customer, the other conversations the agent may read of a
// verified customer with the same customer id or e-mail, newest first. An
// unverified name or e-mail is anyone's to type, so it matches nothing.
func (s *Server) earlierConversations(w http.ResponseWriter, r *http.Request) error {
	agentID, err := s.deskAgent(r)
	if err != nil {
		return err
	}
	c, err := s.deskConversation(r.Context(), agentID, r.PathValue("id"))
	if err != nil {
		return err
	}
	scope := s.hub.scopeOf(agentID)
	found := map[string]*store.Conversation{}
	if c.Customer.Verified && scope != nil {
		var queries []store.ConversationQuery
		if c.Customer.ExternalID != "" {
			queries = append(queries, store.ConversationQuery{ExternalID: c.Customer.ExternalID, Scope: scope, Limit: searchLimit})
		}
		if c.Customer.Email != "" {
			queries = append(queries, store.ConversationQuery{Email: c.Customer.Email, Scope: scope, Limit: searchLimit})
		}
		for _, q := range queries {
			cs, err := s.store.SearchConversations(r.Context(), q)
			if err != nil {
				return err
			}
			for _, o := range cs {
				if o.ID != c.ID && o.Customer.Verified {
					found[o.ID] = o
				}
			}
		}
	}
	list := make([]*store.Conversation, 0, len(found))
	for _, o := range found {
		list = append(list, o)
	}
	slices.SortFunc(list, func(a, b *store.Conversation) int {
		if d := b.CreatedAt.Compare(a.CreatedAt); d != 0 {
			return d
		}
		return strings.Compare(b.ID, a.ID)
	})
	list = list[:min(len(list), searchLimit)]
	return writeJSON(w, http.StatusOK, map[string]any{"conversations": s.deskList(list)})
}

type wireNote struct {
	ID             string       `json:"id"`
	ConversationID string       `json:"conversation_id"`
	Agent          wireAgentRef `json:"agent"`
	Text           string       `json:"text"`
	CreatedAt      time.Time    `json:"created_at"`
}

func toWireNote(n *store.Note) wireNote {
	return wireNote{ID: n.ID, ConversationID: n.ConversationID, Agent: wireAgentRef{ID: n.AgentID, Name: n.AgentName},
		Text: n.Text, CreatedAt: n.CreatedAt}
}

// getNotes answers GET .../conversations/{id}/notes: the internal notes
// and the wrap-up code of a conversation the agent may read.
func (s *Server) getNotes(w http.ResponseWriter, r *http.Request) error {
	agentID, err := s.deskAgent(r)
	if err != nil {
		return err
	}
	c, err := s.deskConversation(r.Context(), agentID, r.PathValue("id"))
	if err != nil {
		return err
	}
	notes, err := s.store.Notes(r.Context(), c.ID)
	if err != nil {
		return err
	}
	out := make([]wireNote, 0, len(notes))
	for _, n := range notes {
		out = append(out, toWireNote(n))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"notes": out, "wrap_up": c.WrapUp})
}

// addNote handles the console's note frame: an internal note on a
// conversation the agent may read. It goes to the store and to the
// consoles of the writer and of the agent holding the conversation, never
// to a customer's socket.
func (s *Server) addNote(ctx context.Context, cl *client, f *inFrame) error {
	if f.ConversationID == "" {
		return errf(http.StatusBadRequest, "bad_frame", "conversation_id is required")
	}
	text := strings.TrimSpace(f.Text)
	if text == "" {
		return errf(http.StatusBadRequest, "bad_frame", "note text is empty")
	}
	if len(f.Text) > s.cfg.Limits.MaxMessageBytes {
		return errf(http.StatusRequestEntityTooLarge, "too_large", "note over %d bytes", s.cfg.Limits.MaxMessageBytes)
	}
	c, err := s.deskConversation(ctx, cl.agentID, f.ConversationID)
	if err != nil {
		return err
	}
	n := &store.Note{ID: newID("n_"), ConversationID: c.ID, AgentID: cl.agentID, AgentName: s.hub.agentName(cl.agentID), Text: text,
		CreatedAt: time.Now().UTC()}
	if err := s.store.AddNote(ctx, n); err != nil {
		return err
	}
	frame := map[string]any{"type": "note", "note": toWireNote(n), "ref": truncate(f.ID, 64)}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if writer, ok := h.agents[cl.agentID]; ok {
		h.sendToAgentLocked(writer, frame)
	}
	if cv, ok := h.convs[c.ID]; ok && cv.c.AgentID != "" && cv.c.AgentID != cl.agentID {
		if holder, ok := h.agents[cv.c.AgentID]; ok {
			h.sendToAgentLocked(holder, frame)
		}
	}
	return nil
}

// saveWrapUp checks the wrap-up code an agent gave to end cv against
// its queue's codes, and stores it.
func (s *Server) saveWrapUp(ctx context.Context, cv *conv, code string) error {
	h := s.hub
	h.mu.Lock()
	q := h.queues[cv.c.Queue]
	id := cv.c.ID
	h.mu.Unlock()
	switch {
	case code == "" && q.WrapUpRequired:
		return errWrapUpRequired
	case code != "" && !slices.Contains(q.WrapUpCodes, code):
		return errWrapUpUnknown
	case code == "":
		return nil
	}
	if err := s.store.SetWrapUp(ctx, id, code); err != nil {
		return err
	}
	h.mu.Lock()
	cv.c.WrapUp = code
	h.mu.Unlock()
	return nil
}

// countWrapUp counts the wrap-up code of a conversation that ended
// (segue_wrap_ups_total).
func (s *Server) countWrapUp(cv *conv, code string) {
	if code == "" {
		return
	}
	s.hub.mu.Lock()
	queue := cv.c.Queue
	s.hub.mu.Unlock()
	s.metrics.wrapUps.WithLabelValues(queue, code).Inc()
}
