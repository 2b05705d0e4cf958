package gateway

import (
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/store"
)

// The integrations API: what a CRM or helpdesk reads and does with an API
// key (docs/integrations.md, docs/openapi.yaml). Its routes live under
// /api/v1/integrations, apart from the widget's and the console's, so that
// a customer token or an agent cookie never works there and an API key
// never works elsewhere.

// Paging of the integrations API.
const (
	defaultPageSize   = 50
	maxPageSize       = 200
	maxTranscriptPage = 1000
	maxSearchText     = 256
)

// integrations is the state of the integrations API.
type integrations struct {
	// keys are integrations.api_keys, swapped whole by a reload.
	keys atomic.Pointer[[]apiKey]
	// failures counts refused API keys per client address.
	failures *slidingLimiter
	refusals *prometheus.CounterVec
}

func newIntegrations(cfg *Config, m *metrics) *integrations {
	in := &integrations{failures: newSlidingLimiter(maxFailedAPIKeysPerAddr, apiKeyWindow), refusals: newAPIKeyRefusals(m.reg)}
	in.setKeys(cfg.Integrations.APIKeys)
	return in
}

// setKeys puts keys in force for the next request; requests under way
// finish with the keys they were checked against.
func (in *integrations) setKeys(keys []APIKeyConfig) {
	k := apiKeys(keys)
	in.keys.Store(&k)
}

// keyHandler is an integrations API handler: it runs with a key that has
// the route's scope.
type keyHandler func(w http.ResponseWriter, r *http.Request, key *apiKey) error

// integrationRoutes registers the integrations API on mux: every route
// with the scope its key needs. Routes are added here, in one place.
func (s *Server) integrationRoutes(mux *http.ServeMux) {
	route := func(pattern, scope string, h keyHandler) {
		mux.Handle(pattern, withDeadlines(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key, err := s.authenticateKey(w, r, scope)
			if err == nil {
				err = h(w, r, key)
			}
			if err != nil {
				if asAPIError(err).Status >= 500 {
					s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
				}
				writeError(w, err)
			}
		})))
	}
	const p = "/api/v1/integrations"
	route("GET "+p+"/conversations", ScopeConversationsRead, s.listConversations)
	route("GET "+p+"/conversations/{id}", ScopeConversationsRead, s.integrationConversation)
	route("GET "+p+"/conversations/{id}/messages", ScopeConversationsRead, s.integrationMessages)
	route("GET "+p+"/files/{id}", ScopeConversationsRead, s.integrationFile)
	route("POST "+p+"/conversations/{id}/messages", ScopeConversationsWrite, s.integrationPost)
	route("POST "+p+"/conversations/{id}/end", ScopeConversationsWrite, s.integrationEnd)
	route("POST "+p+"/conversations/{id}/transfer", ScopeConversationsWrite, s.integrationTransfer)
	route("GET "+p+"/conversations/{id}/recordings", ScopeRecordingsRead, s.integrationRecordings)
	route("GET "+p+"/recordings/{id}", ScopeRecordingsRead, s.integrationRecordingFile)
	route("POST "+p+"/customers/erase", ScopeDataErase, s.integrationErase)
}

// integrationConv is a conversation as the integrations API and webhooks
// show it.
type integrationConv struct {
	ID          string       `json:"id"`
	State       string       `json:"state"`
	Queue       string       `json:"queue"`
	Customer    wireCustomer `json:"customer"`
	AgentID     string       `json:"agent_id,omitempty"`
	LastAgentID string       `json:"last_agent_id,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	UpdatedAt   time.Time    `json:"updated_at"`
	EndedAt     *time.Time   `json:"ended_at,omitempty"`
	LastSeq     int64        `json:"last_seq"`
}

func toIntegrationConv(c *store.Conversation) integrationConv {
	return integrationConv{ID: c.ID, State: c.State, Queue: c.Queue,
		Customer: wireCustomer{Name: c.Customer.Name, Email: c.Customer.Email, ExternalID: c.Customer.ExternalID, Verified: c.Customer.Verified},
		AgentID:  c.AgentID, LastAgentID: c.LastAgentID, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		EndedAt: optTime(c.EndedAt), LastSeq: c.LastSeq}
}

// integrationFileInfo is a file's metadata.
type integrationFileInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

func badParam(name, format string, a ...any) error {
	return errf(http.StatusBadRequest, "bad_request", "%s: %s", name, fmt.Sprintf(format, a...))
}

// pageSize reads ?limit=, capped at max: a larger one is not an error,
// the page is just not larger.
func pageSize(q url.Values, def, max int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 31)
	if errors.Is(err, strconv.ErrRange) {
		return max, nil
	}
	if err != nil || n == 0 {
		return 0, badParam("limit", "%q is not a positive number", v)
	}
	return min(int(n), max), nil
}

func encodeCursor(c *store.Conversation) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.CreatedAt.UnixMilli(), 10) + "." + c.ID))
}

func decodeCursor(s string) (*store.ConversationCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(s) > 200 {
		return nil, badParam("cursor", "not a cursor this API returned")
	}
	ms, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || id == "" {
		return nil, badParam("cursor", "not a cursor this API returned")
	}
	return &store.ConversationCursor{CreatedAt: time.UnixMilli(n), ID: id}, nil
}

func parseTimeParam(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, badParam(name, "%q is not an RFC 3339 time such as 2026-03-01T00:00:00Z", v)
	}
	return t, nil
}

// listConversations lists and searches conversations, newest first.
func (s *Server) listConversations(w http.ResponseWriter, r *http.Request, _ *apiKey) error {
	q := r.URL.Query()
	var sq store.ConversationQuery
	var err error
	if sq.Limit, err = pageSize(q, defaultPageSize, maxPageSize); err != nil {
		return err
	}
	if sq.From, err = parseTimeParam(q, "from"); err != nil {
		return err
	}
	if sq.To, err = parseTimeParam(q, "to"); err != nil {
		return err
	}
	sq.Queue, sq.AgentID, sq.ExternalID, sq.Email = q.Get("queue"), q.Get("agent"), q.Get("customer_id"), q.Get("email")
	switch st := q.Get("state"); st {
	case "", store.StateWaiting, store.StateActive, store.StateEnded, store.StateLeft:
		sq.State = st
	default:
		return badParam("state", "%q is not one of waiting, active, ended, left", st)
	}
	if sq.Text = q.Get("q"); len(sq.Text) > maxSearchText {
		return badParam("q", "longer than %d bytes", maxSearchText)
	}
	if c := q.Get("cursor"); c != "" {
		if sq.After, err = decodeCursor(c); err != nil {
			return err
		}
	}
	cs, err := s.store.SearchConversations(r.Context(), sq)
	if errors.Is(err, store.ErrBadQuery) {
		return errf(http.StatusBadRequest, "bad_query", "q: %s (FTS5 query syntax: words, \"phrases\", prefix*, AND, OR, NOT)",
			strings.TrimPrefix(err.Error(), store.ErrBadQuery.Error()+": "))
	}
	if err != nil {
		return err
	}
	out := make([]integrationConv, 0, len(cs))
	for _, c := range cs {
		out = append(out, toIntegrationConv(c))
	}
	body := map[string]any{"conversations": out}
	if len(cs) == sq.Limit {
		body["next_cursor"] = encodeCursor(cs[len(cs)-1])
	}
	return writeJSON(w, http.StatusOK, body)
}

// storedConversation is the conversation with id as it is now: live if
// open, else as stored.
func (s *Server) storedConversation(r *http.Request, id string) (*conv, *store.Conversation, error) {
	if id == "" || len(id) > 64 {
		return nil, nil, ErrNotFound
	}
	return s.hub.lookup(r.Context(), id)
}

// transcriptPage reads up to limit messages after seq and says where the
// next page starts (0: none).
func (s *Server) transcriptPage(r *http.Request, c *store.Conversation, after int64, limit int) ([]wireMessage, int64, error) {
	ms, err := s.store.Messages(r.Context(), c.ID, after, limit)
	if err != nil {
		return nil, 0, err
	}
	var next int64
	if len(ms) == limit && ms[len(ms)-1].Seq < c.LastSeq {
		next = ms[len(ms)-1].Seq
	}
	return toWireMessages(ms), next, nil
}

// integrationConversation is one conversation with its transcript (the
// first page), calls with their quality, and files.
func (s *Server) integrationConversation(w http.ResponseWriter, r *http.Request, _ *apiKey) error {
	_, c, err := s.storedConversation(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	ms, next, err := s.transcriptPage(r, c, 0, maxTranscriptPage)
	if err != nil {
		return err
	}
	recs, err := s.store.Calls(r.Context(), c.ID)
	if err != nil {
		return err
	}
	calls := make([]wireCallRecord, 0, len(recs))
	for _, rec := range recs {
		calls = append(calls, wireCallRecord{ID: rec.ID, Kind: rec.Kind, Direction: rec.Direction, Target: displayTarget(rec.Target),
			StartedAt: rec.StartedAt, AnsweredAt: optTime(rec.AnsweredAt), EndedAt: optTime(rec.EndedAt),
			Cause: rec.Cause, Codec: rec.Codec, Quality: rec.Stats})
	}
	fs, err := s.store.Files(r.Context(), c.ID)
	if err != nil {
		return err
	}
	files := make([]integrationFileInfo, 0, len(fs))
	for _, f := range fs {
		files = append(files, integrationFileInfo{ID: f.ID, Name: f.Name, Type: f.Type, Size: f.Size, CreatedAt: f.CreatedAt})
	}
	body := map[string]any{"conversation": toIntegrationConv(c), "messages": ms, "calls": calls, "files": files}
	if next > 0 {
		body["messages_next_after"] = next
	}
	return writeJSON(w, http.StatusOK, body)
}

// integrationMessages pages through a transcript: ?after=SEQ&limit=N.
func (s *Server) integrationMessages(w http.ResponseWriter, r *http.Request, _ *apiKey) error {
	_, c, err := s.storedConversation(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, err := pageSize(q, maxTranscriptPage, maxTranscriptPage)
	if err != nil {
		return err
	}
	var after int64
	if v := q.Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			return badParam("after", "%q is not a message seq", v)
		}
	}
	ms, next, err := s.transcriptPage(r, c, after, limit)
	if err != nil {
		return err
	}
	body := map[string]any{"messages": ms}
	if next > 0 {
		body["next_after"] = next
	}
	return writeJSON(w, http.StatusOK, body)
}

// integrationFile sends a file's bytes, as downloads to participants do.
func (s *Server) integrationFile(w http.ResponseWriter, r *http.Request, _ *apiKey) error {
	f, err := s.store.File(r.Context(), r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	rc, err := s.store.OpenFile(f)
	if err != nil {
		return err
	}
	defer rc.Close()
	now := time.Now()
	setDeadlines(w, now.Add(requestReadTimeout), now.Add(transferWindow(f.Size)+requestWriteTimeout))
	h := w.Header()
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": f.Name}))
	h.Set("Content-Type", f.Type)
	h.Set("Content-Security-Policy", fileCSP)
	h.Set("Cache-Control", "private, no-store")
	http.ServeContent(w, r, "", f.CreatedAt, rc)
	return nil
}

// Who an integration posts as.
const (
	senderBot    = "bot"
	senderSystem = "system"
)

// integrationPost posts a message into an open conversation as a named
// bot (shown as a participant's message) or as the system (shown as a
// notice); both sides receive it at once.
func (s *Server) integrationPost(w http.ResponseWriter, r *http.Request, key *apiKey) error {
	var body struct {
		ID     string `json:"id"`
		Text   string `json:"text"`
		Sender struct {
			Role string `json:"role"`
			Name string `json:"name"`
		} `json:"sender"`
	}
	if err := decodeJSON(r, int64(s.cfg.Limits.MaxMessageBytes)+4<<10, &body); err != nil {
		return err
	}
	text := strings.TrimSpace(body.Text)
	switch {
	case text == "":
		return badParam("text", "required")
	case len(body.Text) > s.cfg.Limits.MaxMessageBytes:
		return errf(http.StatusRequestEntityTooLarge, "too_large", "text: longer than limits.max_message_bytes (%d)", s.cfg.Limits.MaxMessageBytes)
	case len(body.ID) > 64:
		return badParam("id", "longer than 64 characters")
	}
	role := store.RoleBot
	switch body.Sender.Role {
	case senderBot:
	case senderSystem:
		role = store.RoleSystem
	default:
		return badParam("sender.role", "%q is not one of bot, system", body.Sender.Role)
	}
	name := truncate(strings.TrimSpace(body.Sender.Name), 80)
	if name == "" {
		if role == store.RoleBot {
			return badParam("sender.name", "required for a bot")
		}
		name = "System"
	}
	cv, c, err := s.storedConversation(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if cv == nil || c.State == store.StateEnded || c.State == store.StateLeft {
		return ErrEnded
	}
	id := body.ID
	if id == "" {
		id = newID("m_")
	}
	m := &store.Message{ConversationID: c.ID, ID: "api:" + key.name + ":" + id, Role: role, SenderID: "api:" + key.name,
		SenderName: name, Kind: store.KindText, Text: text}
	stored, dup, err := s.hub.post(r.Context(), cv, m)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if dup {
		status = http.StatusOK
	}
	s.log.Info("integration posted a message", "conv", c.ID, "key", key.name, "role", role, "seq", stored.Seq)
	return writeJSON(w, status, map[string]any{"message": toWireMessage(stored)})
}

// integrationEnd ends an open conversation.
func (s *Server) integrationEnd(w http.ResponseWriter, r *http.Request, key *apiKey) error {
	if err := decodeJSON(r, 1<<10, &struct{}{}); err != nil {
		return err
	}
	cv, c, err := s.storedConversation(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if cv == nil || c.State == store.StateEnded || c.State == store.StateLeft {
		return ErrEnded
	}
	if err := s.hub.finish(r.Context(), cv, "Conversation ended", map[string]string{"by": "api:" + key.name}); err != nil {
		return err
	}
	s.log.Info("integration ended a conversation", "conv", c.ID, "key", key.name)
	_, c, err = s.hub.lookup(r.Context(), c.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"conversation": toIntegrationConv(c)})
}

// integrationTransfer hands a conversation an agent holds to another
// agent or to a queue, as its agent could.
func (s *Server) integrationTransfer(w http.ResponseWriter, r *http.Request, key *apiKey) error {
	var body struct {
		Agent string `json:"agent"`
		Queue string `json:"queue"`
	}
	if err := decodeJSON(r, 1<<10, &body); err != nil {
		return err
	}
	if (body.Agent == "") == (body.Queue == "") {
		return badParam("agent", "give either agent or queue")
	}
	cv, c, err := s.storedConversation(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if cv == nil || c.State == store.StateEnded || c.State == store.StateLeft {
		return ErrEnded
	}
	if c.State != store.StateActive {
		return errf(http.StatusConflict, "not_active", "only a conversation an agent holds can be transferred; this one is %s", c.State)
	}
	if err := s.hub.transfer(r.Context(), c.AgentID, cv, body.Agent, body.Queue); err != nil {
		if errors.Is(err, ErrForbidden) {
			return errf(http.StatusConflict, "not_active", "the conversation changed hands meanwhile; try again")
		}
		return err
	}
	s.log.Info("integration transferred a conversation", "conv", c.ID, "key", key.name, "agent", body.Agent, "queue", body.Queue)
	_, c, err = s.hub.lookup(r.Context(), c.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"conversation": toIntegrationConv(c)})
}
