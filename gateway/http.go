package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/web"
)

const (
	sessionCookie = "segue_session"
	// pageCSP is sent with the demo page and the console: scripts and
	// styles from the gateway's own files only, no inline code of any
	// kind, no plugins, no framing.
	pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
		"media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; " +
		"object-src 'none'; form-action 'self'"
	// fileCSP keeps a downloaded file from running anything if opened inline.
	fileCSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, withDeadlines(s.apiHandler(h)))
	}
	api("POST /api/v1/conversations", s.createConversation)
	api("POST /api/v1/left-messages", s.leaveMessage)
	api("GET /api/v1/queue-status", s.getQueueStatus)
	api("POST /api/v1/conversations/{id}/rating", s.rateConversation)
	api("GET /api/v1/conversations/{id}", s.getConversation)
	api("GET /api/v1/conversations/{id}/messages", s.getMessages)
	api("GET /api/v1/conversations/{id}/calls", s.getCalls)
	api("GET /api/v1/ice-servers", s.getICEServers)
	api("POST /api/v1/agent/login", s.login)
	api("POST /api/v1/agent/logout", s.logout)
	api("POST /api/v1/agent/logout-all", s.logoutAll)
	api("GET /api/v1/agent/me", s.me)
	// Uploads and downloads set deadlines from their size; the WebSocket
	// has its own pings and write timeouts.
	mux.Handle("POST /api/v1/conversations/{id}/files", s.apiHandler(s.uploadFile))
	mux.Handle("GET /api/v1/files/{id}", s.apiHandler(s.downloadFile))
	mux.Handle("GET /api/v1/recordings/{id}", s.apiHandler(s.getRecording))
	mux.Handle("OPTIONS /api/v1/", withDeadlines(http.HandlerFunc(s.preflight)))
	mux.HandleFunc("GET /api/v1/ws", func(w http.ResponseWriter, r *http.Request) {
		setDeadlines(w, time.Time{}, time.Time{})
		s.handleWS(w, r)
	})
	s.integrationRoutes(mux)
	s.deskRoutes(api)
	mux.Handle("/api/", withDeadlines(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeError(w, ErrNotFound) })))

	// The public listener tells a load balancer only whether to send
	// traffic; the details, /metrics and pprof are on http.admin_listen.
	mux.Handle("GET /healthz", withDeadlines(http.HandlerFunc(healthz)))
	mux.Handle("GET /readyz", withDeadlines(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.readyz(w, r, false) })))

	files := web.Files()
	page := func(name string) http.Handler {
		return withDeadlines(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.servePage(w, r, files, name) }))
	}
	mux.Handle("GET /{$}", page("index.html"))
	mux.Handle("GET /console", page("console.html"))
	mux.Handle("GET /console/c/{id}", page("console.html"))
	mux.Handle("GET /{file}", withDeadlines(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveAsset(w, r, files) })))
	return s.instrument(mux)
}

// adminRoutes are the operational endpoints of http.admin_listen: the
// detailed readiness (trunk states), Prometheus metrics and pprof.
func (s *Server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { s.readyz(w, r, true) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /admin/reload", s.postReload)
	mux.HandleFunc("GET /admin/webhooks/dead", s.getDeadWebhooks)
	mux.HandleFunc("POST /admin/webhooks/replay", s.postReplayWebhooks)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

func healthz(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }

// statusRecorder keeps the status code for metrics.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the WebSocket upgrade reach the
// underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (s *Server) instrument(next *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(rec, r)
		_, pattern := next.Handler(r)
		if pattern == "" {
			pattern = "unmatched"
		}
		code := rec.code
		if code == 0 {
			code = http.StatusSwitchingProtocols
		}
		s.metrics.httpRequests.WithLabelValues(pattern, strconv.Itoa(code)).Inc()
	})
}

// apiHandler runs an API handler: origin check and CORS first, then one
// place that logs errors and writes the JSON error reply.
func (s *Server) apiHandler(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.checkOrigin(w, r) {
			return
		}
		if err := h(w, r); err != nil {
			logAPIError(s.log, r, err)
			writeError(w, err)
		}
	})
}

// logAPIError logs a failed API request by what it means to the admin:
// a fault (500) at error level; a refusal the gateway chose (503: busy,
// queue full, voice or video off) at warning level, since it shows that a
// limit was reached; the refusals of a drain (shutting_down), which a
// restart always brings, at info level. Client errors (4xx) are not logged.
func logAPIError(log *slog.Logger, r *http.Request, err error) {
	ae := asAPIError(err)
	switch {
	case ae.Status < 500:
	case ae.Code == ErrShuttingDown.Code:
		log.Info("api request refused while draining", "method", r.Method, "path", r.URL.Path, "code", ae.Code)
	case ae.Status == http.StatusServiceUnavailable:
		log.Warn("api request refused", "method", r.Method, "path", r.URL.Path, "code", ae.Code, "err", err)
	default:
		log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
}

func writeError(w http.ResponseWriter, err error) {
	ae := asAPIError(err)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	w.WriteHeader(ae.Status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": ae.Code, "message": ae.Message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// ---- origins ----

func (s *Server) sameOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if u.Host == r.Host {
		return true
	}
	pub, err := url.Parse(s.cfg.HTTP.PublicURL)
	return err == nil && pub.Scheme == u.Scheme && pub.Host == u.Host
}

// originAllowed: no Origin (not a browser, or a same-origin GET), the
// gateway's own origin, or one of http.allowed_origins.
func (s *Server) originAllowed(r *http.Request, origin string) bool {
	if origin == "" || s.sameOrigin(r, origin) {
		return true
	}
	for _, o := range s.cfg.HTTP.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}

func (s *Server) cors(w http.ResponseWriter, r *http.Request, origin string) {
	if origin == "" || s.sameOrigin(r, origin) {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Retry-After")
}

// checkOrigin refuses a request from a foreign origin (403) or sets the
// CORS headers for an allowed one; it reports whether to go on.
func (s *Server) checkOrigin(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if !s.originAllowed(r, origin) {
		s.metrics.rejectedOrigins.Inc()
		writeError(w, ErrOrigin)
		return false
	}
	s.cors(w, r, origin)
	return true
}

func (s *Server) preflight(w http.ResponseWriter, r *http.Request) {
	if !s.checkOrigin(w, r) {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, POST")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// ---- pages ----

func (s *Server) servePage(w http.ResponseWriter, r *http.Request, files fs.FS, name string) {
	b, err := fs.ReadFile(files, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

func (s *Server) serveAsset(w http.ResponseWriter, r *http.Request, files fs.FS) {
	name := r.PathValue("file")
	if strings.HasSuffix(name, ".html") || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(files, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("Cache-Control", "no-cache")
	// The widget and its stylesheet load into other sites' pages.
	if origin := r.Header.Get("Origin"); origin != "" && s.originAllowed(r, origin) {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	}
	http.ServeContent(w, r, name, time.Time{}, strings.NewReader(string(b)))
}

// readyz answers 200 when the gateway takes work and 503 when not. With
// details (the admin listener) it says why, trunk by trunk; the public
// listener says only "ready" or "not ready", since trunk errors name
// hosts and accounts.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, details bool) {
	ok, lines := s.readiness(r.Context())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
	} else {
		fmt.Fprintln(w, "ready")
	}
	if details {
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	}
}

// readiness checks the store and the trunks.
func (s *Server) readiness(ctx context.Context) (bool, []string) {
	if s.hub.isClosing() {
		return false, []string{"shutting down"}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		return false, []string{"store: " + err.Error()}
	}
	// Chat works without any trunk; the gateway is not ready for calls when
	// trunks are configured and none of them can carry one.
	var lines []string
	readyTrunks := 0
	var states []sip.TrunkState
	if s.trunks != nil {
		states = s.trunks()
	}
	for _, t := range states {
		st := "ready"
		if !t.Ready() {
			st = "not ready"
			if t.RegisterError != "" {
				st += ": " + t.RegisterError
			} else if t.OptionsError != "" {
				st += ": " + t.OptionsError
			}
		} else {
			readyTrunks++
			if t.Register && !t.Registered && t.RegisteredElsewhere {
				st += ", registered by another node"
			}
		}
		lines = append(lines, "trunk "+t.Name+": "+st)
	}
	return len(states) == 0 || readyTrunks > 0, lines
}

// ---- credentials ----

func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashToken(t string) []byte {
	h := sha256.Sum256([]byte(t))
	return h[:]
}

// customerConversation resolves a customer token "<conversation id>.<secret>".
func (s *Server) customerConversation(ctx context.Context, token string) (*conv, *store.Conversation, error) {
	id, _, ok := strings.Cut(token, ".")
	if !ok || id == "" || len(token) > 256 {
		return nil, nil, ErrUnauthorized
	}
	cv, c, err := s.hub.lookup(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, ErrUnauthorized
	}
	if err != nil {
		return nil, nil, err
	}
	if subtle.ConstantTimeCompare(hashToken(token), c.TokenHash) != 1 {
		return nil, nil, ErrUnauthorized
	}
	if cv == nil && s.node != nil && (c.State == store.StateWaiting || c.State == store.StateActive) {
		// The customer came to this node of the cluster: it holds the
		// conversation from now on.
		if cv, c, err = s.adopt(ctx, id); err != nil {
			return nil, nil, err
		}
	}
	// A customer token lasts as long as its conversation, plus
	// limits.token_retention once it has ended.
	if c.State == store.StateEnded && !c.EndedAt.IsZero() &&
		time.Now().After(c.EndedAt.Add(s.cfg.Limits.TokenRetention)) {
		return nil, nil, ErrUnauthorized
	}
	return cv, c, nil
}

func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// participant is who is asking about a conversation.
type participant struct {
	role    string
	agentID string
}

// authorize checks that the request's bearer token or agent session gives
// access to conversation id.
func (s *Server) authorize(r *http.Request, id string) (*conv, *store.Conversation, participant, error) {
	if tok := bearer(r); tok != "" {
		cv, c, err := s.customerConversation(r.Context(), tok)
		if err != nil {
			return nil, nil, participant{}, err
		}
		if c.ID != id {
			return nil, nil, participant{}, ErrForbidden
		}
		return cv, c, participant{role: store.RoleCustomer}, nil
	}
	origin := r.Header.Get("Origin")
	if origin != "" && !s.sameOrigin(r, origin) {
		return nil, nil, participant{}, ErrUnauthorized
	}
	agentID := s.agentFromCookie(r)
	if agentID == "" {
		return nil, nil, participant{}, ErrUnauthorized
	}
	cv, c, err := s.hub.lookup(r.Context(), id)
	if err != nil {
		return nil, nil, participant{}, err
	}
	if !s.hub.canAgentRead(agentID, c) {
		return nil, nil, participant{}, ErrForbidden
	}
	return cv, c, participant{role: store.RoleAgent, agentID: agentID}, nil
}

// ---- handlers ----

func decodeJSON(r *http.Request, max int64, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return errf(http.StatusBadRequest, "bad_request", "body: %v", err)
	}
	return nil
}

func (s *Server) createConversation(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name     string `json:"name"`
		Identity string `json:"identity"`
		Queue    string `json:"queue"`
		Previous string `json:"previous_token"`
	}
	if err := decodeJSON(r, 16<<10, &body); err != nil {
		return err
	}
	if ok, wait := s.limiter.allow(addrKey(s.clientIP(r)), time.Now()); !ok {
		s.metrics.rateLimitedChats.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		return errf(http.StatusTooManyRequests, "rate_limited", "too many new conversations from this address; try again later")
	}
	cust := store.Customer{Name: truncate(strings.TrimSpace(body.Name), 80)}
	if body.Identity != "" {
		id, err := verifyIdentity(s.cfg.Identity.Secret, body.Identity, time.Now())
		if err != nil {
			return errf(http.StatusUnauthorized, "bad_identity", "%v", err)
		}
		cust = id
	}
	queue, _ := s.hub.queueFor(body.Queue)
	preferred := ""
	if body.Previous != "" {
		if _, prev, err := s.customerConversation(r.Context(), body.Previous); err == nil {
			preferred = prev.LastAgentID
			if cust.Name == "" && !cust.Verified {
				cust.Name = prev.Customer.Name
			}
		}
	}
	now := time.Now().UTC()
	c := &store.Conversation{ID: newID("c_"), State: store.StateWaiting, Queue: queue, Customer: cust,
		CreatedAt: now, UpdatedAt: now, ClientIP: s.clientIP(r)}
	token := c.ID + "." + randomToken()
	c.TokenHash = hashToken(token)
	if err := s.hub.createConversation(r.Context(), c, preferred); err != nil {
		return err
	}
	s.log.Info("conversation started", "conv", c.ID, "queue", queue, "verified", cust.Verified)
	return writeJSON(w, http.StatusCreated, map[string]any{"conversation": s.hub.wireStored(c), "token": token})
}

func (s *Server) getConversation(w http.ResponseWriter, r *http.Request) error {
	_, c, _, err := s.authorize(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"conversation": s.hub.wireStored(c)})
}

func (s *Server) getMessages(w http.ResponseWriter, r *http.Request) error {
	_, c, _, err := s.authorize(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	ms, err := s.messagePage(r.Context(), c.ID, r.URL.Query())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"messages": toWireMessages(ms)})
}
