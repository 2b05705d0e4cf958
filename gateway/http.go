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
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/web"
)

const (
	sessionCookie = "segue_session"
	sessionTTL    = 12 * time.Hour
	// pageCSP is sent with the demo page and the console.
	pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " +
		"media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; " +
		"object-src 'none'; form-action 'self'"
	// fileCSP keeps a downloaded file from running anything if opened inline.
	fileCSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		mux.Handle(pattern, s.apiHandler(h))
	}
	api("POST /api/v1/conversations", s.createConversation)
	api("POST /api/v1/left-messages", s.leaveMessage)
	api("GET /api/v1/conversations/{id}", s.getConversation)
	api("GET /api/v1/conversations/{id}/messages", s.getMessages)
	api("POST /api/v1/conversations/{id}/files", s.uploadFile)
	api("GET /api/v1/conversations/{id}/calls", s.getCalls)
	api("GET /api/v1/files/{id}", s.downloadFile)
	api("POST /api/v1/agent/login", s.login)
	api("POST /api/v1/agent/logout", s.logout)
	api("GET /api/v1/agent/me", s.me)
	mux.HandleFunc("OPTIONS /api/v1/", s.preflight)
	mux.HandleFunc("GET /api/v1/ws", s.handleWS)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) { writeError(w, ErrNotFound) })

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))

	files := web.Files()
	page := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { s.servePage(w, r, files, name) }
	}
	mux.HandleFunc("GET /{$}", page("index.html"))
	mux.HandleFunc("GET /console", page("console.html"))
	mux.HandleFunc("GET /console/c/{id}", page("console.html"))
	mux.HandleFunc("GET /{file}", func(w http.ResponseWriter, r *http.Request) { s.serveAsset(w, r, files) })
	return s.instrument(mux)
}

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
			ae := asAPIError(err)
			if ae.Status >= 500 {
				s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, err)
		}
	})
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

// clientIP is the peer address, or the first X-Forwarded-For hop when
// http.trust_proxy is set and the peer is a local proxy.
func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if s.cfg.HTTP.TrustProxy {
		if a, err := netip.ParseAddr(host); err == nil && (a.IsLoopback() || a.IsPrivate()) {
			if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
				first, _, _ := strings.Cut(xff, ",")
				if fa, err := netip.ParseAddr(strings.TrimSpace(first)); err == nil {
					return fa.String()
				}
			}
		}
	}
	return host
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

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.hub.isClosing() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
		return
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
		}
		lines = append(lines, "trunk "+t.Name+": "+st)
	}
	if len(states) > 0 && readyTrunks == 0 {
		http.Error(w, strings.Join(lines, "\n"), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
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
	return cv, c, nil
}

func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func (s *Server) agentFromCookie(r *http.Request) string {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 256 {
		return ""
	}
	ss, err := s.store.Session(r.Context(), hashToken(ck.Value))
	if err != nil {
		return ""
	}
	s.hub.mu.Lock()
	_, ok := s.hub.agents[ss.AgentID]
	s.hub.mu.Unlock()
	if !ok {
		return "" // removed from the config since
	}
	return ss.AgentID
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
	queue := body.Queue
	if queue == "" {
		queue = s.cfg.Queues[0].Name
	}
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

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if origin := r.Header.Get("Origin"); origin != "" && !s.sameOrigin(r, origin) {
		return ErrOrigin
	}
	var body struct {
		ID       string `json:"id"`
		Password string `json:"password"`
	}
	if err := decodeJSON(r, 4<<10, &body); err != nil {
		return err
	}
	ip := s.clientIP(r)
	if blocked, wait := s.logins.blocked(ip, time.Now()); blocked {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		return errf(http.StatusTooManyRequests, "rate_limited", "too many failed logins; try again later")
	}
	var cfg *AgentConfig
	for i := range s.cfg.Agents {
		if s.cfg.Agents[i].ID == body.ID {
			cfg = &s.cfg.Agents[i]
		}
	}
	hash := dummyHash()
	if cfg != nil {
		hash = []byte(cfg.PasswordHash)
	}
	// Compare even for unknown ids, so timing does not tell which exist.
	if bcrypt.CompareHashAndPassword(hash, []byte(body.Password)) != nil || cfg == nil {
		s.logins.allow(ip, time.Now())
		s.log.Warn("agent login refused", "agent", truncate(body.ID, 64), "remote", ip)
		return errf(http.StatusUnauthorized, "bad_credentials", "wrong id or password")
	}
	token := randomToken()
	if err := s.store.CreateSession(r.Context(), &store.Session{TokenHash: hashToken(token), AgentID: cfg.ID, ExpiresAt: time.Now().Add(sessionTTL)}); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: strings.HasPrefix(s.cfg.HTTP.PublicURL, "https:"), MaxAge: int(sessionTTL.Seconds())})
	s.log.Info("agent logged in", "agent", cfg.ID)
	return s.writeMe(w, cfg.ID)
}

// dummyHash is a bcrypt hash of a random string, compared for unknown ids.
var dummyHash = sync.OnceValue(func() []byte {
	h, err := bcrypt.GenerateFromPassword([]byte(randomToken()), bcrypt.DefaultCost)
	if err != nil {
		panic(err) // only for a password over 72 bytes
	}
	return h
})

func (s *Server) writeMe(w http.ResponseWriter, agentID string) error {
	s.hub.mu.Lock()
	a := s.hub.wireAgentLocked(s.hub.agents[agentID])
	s.hub.mu.Unlock()
	return writeJSON(w, http.StatusOK, map[string]any{"agent": a})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		if err := s.store.DeleteSession(r.Context(), hashToken(ck.Value)); err != nil {
			return err
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	id := s.agentFromCookie(r)
	if id == "" {
		return ErrUnauthorized
	}
	return s.writeMe(w, id)
}
