package gateway

import (
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// API key failures are limited like sign-ins: past maxFailedAPIKeysPerAddr
// refused keys from one client address (an IPv6 /64) in apiKeyWindow,
// requests with a key are refused without checking it until the oldest
// failure leaves the window.
const (
	apiKeyWindow            = 15 * time.Minute
	maxFailedAPIKeysPerAddr = 30
	maxAPIKeyBytes          = 256
)

// apiKey is an integration's key as the gateway checks it.
type apiKey struct {
	name    string
	hash    []byte // SHA-256 of the key
	scopes  []string
	expires time.Time
}

func (k *apiKey) has(scope string) bool { return slices.Contains(k.scopes, scope) }

// apiKeys parses integrations.api_keys (validated already).
func apiKeys(cfg []APIKeyConfig) []apiKey {
	out := make([]apiKey, 0, len(cfg))
	for _, k := range cfg {
		h, err := hex.DecodeString(strings.TrimPrefix(k.KeyHash, "sha256:"))
		if err != nil {
			continue
		}
		out = append(out, apiKey{name: k.Name, hash: h, scopes: k.Scopes, expires: k.Expires})
	}
	return out
}

// apiKeyRefusals counts integration requests refused by reason.
func newAPIKeyRefusals(reg *prometheus.Registry) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "segue_api_key_refusals_total",
		Help: "Integration API requests refused, by reason (missing, bad_key, expired, scope, locked).",
	}, []string{"reason"})
	reg.MustRegister(c)
	return c
}

// authenticateKey checks r's bearer API key for scope. The key is
// compared, in constant time, with every configured one, so the time
// taken says nothing about which keys exist; the key itself is never
// logged.
func (s *Server) authenticateKey(w http.ResponseWriter, r *http.Request, scope string) (*apiKey, error) {
	// Keys belong to servers: a browser page of another site must not
	// use one through a visitor's browser.
	if origin := r.Header.Get("Origin"); origin != "" && !s.sameOrigin(r, origin) {
		s.metrics.rejectedOrigins.Inc()
		return nil, ErrOrigin
	}
	tok := bearer(r)
	if tok == "" {
		s.integ.refusals.WithLabelValues("missing").Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="segue"`)
		return nil, errf(http.StatusUnauthorized, "unauthorized", "an API key is required (Authorization: Bearer ...)")
	}
	now := time.Now()
	ip := s.clientIP(r)
	addr := addrKey(ip)
	if ok, wait := s.integ.failures.check(addr, now); !ok {
		s.integ.refusals.WithLabelValues("locked").Inc()
		secs := int(wait.Seconds()) + 1
		e := errf(http.StatusTooManyRequests, "api_key_locked", "too many refused API keys from your network; try again in %s", retryIn(wait))
		e.RetryAfter = secs
		return nil, e
	}
	var found *apiKey
	if len(tok) <= maxAPIKeyBytes {
		h := hashToken(tok)
		keys := *s.integ.keys.Load()
		for i := range keys {
			if subtle.ConstantTimeCompare(h, keys[i].hash) == 1 {
				found = &keys[i]
			}
		}
	}
	if found == nil {
		s.integ.failures.add(addr, now)
		s.integ.refusals.WithLabelValues("bad_key").Inc()
		s.log.Warn("api key refused", "remote", ip, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="segue", error="invalid_token"`)
		return nil, errf(http.StatusUnauthorized, "bad_api_key", "unknown API key")
	}
	if !found.expires.IsZero() && now.After(found.expires) {
		s.integ.refusals.WithLabelValues("expired").Inc()
		s.log.Warn("api key refused: expired", "key", found.name, "remote", ip, "expired_at", found.expires)
		w.Header().Set("WWW-Authenticate", `Bearer realm="segue", error="invalid_token"`)
		return nil, errf(http.StatusUnauthorized, "api_key_expired", "this API key has expired")
	}
	if !found.has(scope) {
		s.integ.refusals.WithLabelValues("scope").Inc()
		s.log.Warn("api key refused: scope", "key", found.name, "scope", scope, "remote", ip)
		// RFC 6750 section 3.1: insufficient_scope, with the scope needed.
		w.Header().Set("WWW-Authenticate", `Bearer realm="segue", error="insufficient_scope", scope="`+scope+`"`)
		return nil, errf(http.StatusForbidden, "insufficient_scope", "this API key lacks the %s scope", scope)
	}
	return found, nil
}
