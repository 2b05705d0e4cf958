package gateway

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/segue-rtc/segue/store"
)

// Sign-in limits. Failures are counted in a sliding window per client
// address (an IPv6 /64) and per agent id; past either limit, sign-ins
// are refused without checking the password until the oldest failure
// leaves the window. Counting per id stops a password guesser that
// spreads over many addresses; counting per address stops one address
// trying many ids. The per-id count is kept for ids that do not exist
// too, so a lockout does not reveal which ids do.
const (
	loginWindow             = 15 * time.Minute
	maxFailedLoginsPerAddr  = 30
	maxFailedLoginsPerAgent = 10
	maxLoginIDBytes         = 64
)

// agentSession returns the live session of r's cookie and its agent, who
// must still be in the config.
func (s *Server) agentSession(r *http.Request) *store.Session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 256 {
		return nil
	}
	ss, err := s.store.Session(r.Context(), hashToken(ck.Value))
	if err != nil {
		return nil
	}
	s.hub.mu.Lock()
	_, ok := s.hub.agents[ss.AgentID]
	s.hub.mu.Unlock()
	if !ok {
		return nil // removed from the config since
	}
	return ss
}

// agentFromCookie is the agent signed in with r's cookie, or "".
func (s *Server) agentFromCookie(r *http.Request) string {
	if ss := s.agentSession(r); ss != nil {
		return ss.AgentID
	}
	return ""
}

// retryIn words a wait for people: "3 minutes", "1 minute", "20 seconds".
func retryIn(d time.Duration) string {
	if d >= time.Minute {
		m := int(math.Ceil(d.Minutes()))
		if m == 1 {
			return "1 minute"
		}
		return fmt.Sprintf("%d minutes", m)
	}
	return fmt.Sprintf("%d seconds", int(math.Ceil(d.Seconds())))
}

// loginRefused is the 429 of a locked sign-in.
func loginRefused(w http.ResponseWriter, wait time.Duration, format string, a ...any) error {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	e := errf(http.StatusTooManyRequests, "login_locked", format+"; try again in %s", append(a, retryIn(wait))...)
	e.RetryAfter = secs
	return e
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
	now := time.Now()
	ip := s.clientIP(r)
	addr := addrKey(ip)
	id := truncate(body.ID, maxLoginIDBytes)
	if ok, wait := s.loginsByAddr.check(addr, now); !ok {
		s.metrics.loginsRefused.WithLabelValues("address_locked").Inc()
		return loginRefused(w, wait, "too many failed sign-ins from your network")
	}
	if ok, wait := s.loginsByAgent.check(id, now); !ok {
		s.metrics.loginsRefused.WithLabelValues("agent_locked").Inc()
		s.log.Warn("agent login refused: locked", "agent", id, "remote", ip)
		return loginRefused(w, wait, "too many failed sign-ins for this agent id; it is locked for a while")
	}
	var cfg *AgentConfig
	if ac, ok := s.hub.agentConfig(body.ID); ok {
		cfg = &ac
	}
	hash := dummyHash()
	if cfg != nil {
		hash = []byte(cfg.PasswordHash)
	}
	// Compare even for unknown ids, so timing does not tell which exist.
	if bcrypt.CompareHashAndPassword(hash, []byte(body.Password)) != nil || cfg == nil {
		s.loginsByAddr.add(addr, now)
		s.loginsByAgent.add(id, now)
		s.metrics.loginsRefused.WithLabelValues("bad_credentials").Inc()
		s.log.Warn("agent login refused", "agent", id, "remote", ip)
		return errf(http.StatusUnauthorized, "bad_credentials", "wrong id or password")
	}
	if isDemoPassword(body.Password) && !s.cfg.loopbackOnly() {
		s.metrics.loginsRefused.WithLabelValues("demo_password").Inc()
		s.log.Error("agent login refused: demo password on a reachable gateway", "agent", cfg.ID, "remote", ip)
		return errf(http.StatusForbidden, "demo_password",
			"this agent still has the demo password, which works only on a gateway reachable from its own machine; "+
				"the administrator sets a password with `segue agent passwd`")
	}
	s.loginsByAgent.reset(id)
	token := randomToken()
	ttl := s.cfg.HTTP.sessionTTL()
	if err := s.store.CreateSession(r.Context(), &store.Session{TokenHash: hashToken(token), AgentID: cfg.ID, ExpiresAt: now.Add(ttl)}); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: strings.HasPrefix(s.cfg.HTTP.PublicURL, "https:"), MaxAge: int(ttl.Seconds())})
	s.log.Info("agent logged in", "agent", cfg.ID, "remote", ip)
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

func clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// logout ends this browser's session and closes the sockets it opened.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		h := hashToken(ck.Value)
		if err := s.store.DeleteSession(r.Context(), h); err != nil {
			return err
		}
		s.closeAgentSockets(func(cl *client) bool { return string(cl.session) == string(h) }, "signed out")
	}
	clearSessionCookie(w)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// logoutAll ends every session of the signed-in agent, on every browser,
// and closes their consoles' sockets ("sign out all sessions").
func (s *Server) logoutAll(w http.ResponseWriter, r *http.Request) error {
	if origin := r.Header.Get("Origin"); origin != "" && !s.sameOrigin(r, origin) {
		return ErrOrigin
	}
	id := s.agentFromCookie(r)
	if id == "" {
		return ErrUnauthorized
	}
	n, err := s.store.DeleteAgentSessions(r.Context(), id)
	if err != nil {
		return err
	}
	s.closeAgentSockets(func(cl *client) bool { return cl.agentID == id }, "signed out everywhere")
	s.log.Info("agent signed out everywhere", "agent", id, "sessions", n, "remote", s.clientIP(r))
	clearSessionCookie(w)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// closeAgentSockets closes the console sockets match picks; the consoles
// reconnect, find no session and show the sign-in form.
func (s *Server) closeAgentSockets(match func(*client) bool, reason string) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.agents {
		for cl := range a.clients {
			if match(cl) {
				cl.closeWith(websocket.StatusPolicyViolation, reason)
			}
		}
	}
}

// expireSocket closes an agent's socket when its session ends; the
// returned stop cancels that.
func expireSocket(cl *client, expires time.Time) (stop func() bool) {
	t := time.AfterFunc(time.Until(expires), func() { cl.closeWith(websocket.StatusPolicyViolation, "session expired") })
	return t.Stop
}

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	id := s.agentFromCookie(r)
	if id == "" {
		return ErrUnauthorized
	}
	return s.writeMe(w, id)
}

// getICEServers gives a customer (bearer token) or an agent (session
// cookie) fresh ICE servers before a peer connection: TURN credentials
// made from a secret expire, and a chat may go on long before its call.
func (s *Server) getICEServers(w http.ResponseWriter, r *http.Request) error {
	if tok := bearer(r); tok != "" {
		_, c, err := s.customerConversation(r.Context(), tok)
		if err != nil {
			return err
		}
		if c.State == store.StateEnded {
			return ErrEnded
		}
		return writeJSON(w, http.StatusOK, s.iceFeatures(iceForCustomer(c.ID), time.Now()))
	}
	if origin := r.Header.Get("Origin"); origin != "" && !s.sameOrigin(r, origin) {
		return ErrUnauthorized
	}
	id := s.agentFromCookie(r)
	if id == "" {
		return ErrUnauthorized
	}
	return writeJSON(w, http.StatusOK, s.iceFeatures(iceForAgent(id), time.Now()))
}
