package sip

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

const (
	authRealm    = "segue"
	nonceLife    = 5 * time.Minute
	nonceMACSize = 16

	// authMaxFailures failed digest responses from one source within
	// authFailureWindow are allowed; past them the source gets no answer
	// at all for authLockout (not even a challenge), so that guessing
	// the password costs hours instead of seconds and learns nothing.
	authMaxFailures   = 5
	authFailureWindow = 10 * time.Minute
	authLockout       = 15 * time.Minute
	// authMaxSources bounds the failure table; authMaxNonces bounds the
	// table of nonces in use.
	authMaxSources = 4096
	authMaxNonces  = 4096
)

// nonceKey signs the nonces of inbound digest challenges.
type nonceKey []byte

func newNonceKey() nonceKey {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// nonce returns "<unix time hex>.<random hex>.<mac>": unique per
// challenge, and checkable later (who made it, when) without state.
func (k nonceKey) nonce(now time.Time) string {
	r := make([]byte, 8)
	_, _ = rand.Read(r)
	body := strconv.FormatInt(now.Unix(), 16) + "." + hex.EncodeToString(r)
	return body + "." + k.mac(body)
}

func (k nonceKey) mac(body string) string {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))[:2*nonceMACSize]
}

// issued returns when n was made, and false when we did not make it.
func (k nonceKey) issued(n string) (time.Time, bool) {
	i := strings.LastIndexByte(n, '.')
	if i < 0 || !hmac.Equal([]byte(n[i+1:]), []byte(k.mac(n[:i]))) {
		return time.Time{}, false
	}
	ts, _, ok := strings.Cut(n[:i], ".")
	if !ok {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// valid reports whether n is ours and not older than nonceLife.
func (k nonceKey) valid(n string, now time.Time) bool {
	at, ok := k.issued(n)
	if !ok {
		return false
	}
	age := now.Sub(at)
	return age >= -time.Minute && age <= nonceLife
}

// nonceUse is what a nonce has been used for so far.
type nonceUse struct {
	issued time.Time
	nc     int // highest nonce-count accepted; 0 after a use without qop
}

// nonceTracker remembers which nonces were used, with which nonce-count
// (RFC 7616 §3.4: the nc must grow with each request under one nonce), so
// that a captured Authorization header cannot be sent again. It holds at
// most max entries: when full, the oldest is forgotten and floor moves up
// to its issue time, and every nonce issued up to floor that it does not
// hold is treated as stale. Memory stays bounded and a forgotten nonce
// can never be replayed.
type nonceTracker struct {
	mu    sync.Mutex
	used  map[string]nonceUse
	floor time.Time
	max   int
}

func newNonceTracker(max int) *nonceTracker {
	return &nonceTracker{used: map[string]nonceUse{}, max: max}
}

// stale reports whether a nonce issued at issued is past use because the
// table forgot nonces that old.
func (t *nonceTracker) stale(n string, issued time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, held := t.used[n]
	return !held && !issued.After(t.floor)
}

// use records a request authenticated under nonce n with nonce-count nc
// (qop=auth), or without qop (withQOP false). It returns false for a
// replay: a nonce used without qop before, or an nc not above the last.
func (t *nonceTracker) use(n string, issued time.Time, withQOP bool, nc int, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !withQOP {
		nc = 0
	}
	u, held := t.used[n]
	switch {
	case !held && !issued.After(t.floor):
		return false
	case held && (!withQOP || u.nc == 0 || nc <= u.nc):
		return false
	}
	if !held && len(t.used) >= t.max {
		t.evict(now)
	}
	t.used[n] = nonceUse{issued: issued, nc: nc}
	return true
}

// evict drops expired nonces, then the oldest ones until there is room.
func (t *nonceTracker) evict(now time.Time) {
	for n, u := range t.used {
		if now.Sub(u.issued) > nonceLife {
			delete(t.used, n)
		}
	}
	for len(t.used) >= t.max {
		var oldest string
		var at time.Time
		for n, u := range t.used {
			if oldest == "" || u.issued.Before(at) {
				oldest, at = n, u.issued
			}
		}
		delete(t.used, oldest)
		if at.After(t.floor) {
			t.floor = at
		}
	}
}

// failures counts one source's failed digest responses.
type failures struct {
	n      int
	first  time.Time // start of the counting window
	silent time.Time // silenced until then
}

// failureLimiter silences sources that keep failing digest
// authentication. Sources are IPv4 addresses or IPv6 /64 networks (one
// host owns a whole /64). It holds at most max sources: when full,
// entries past their window go first, then see evictsBefore.
type failureLimiter struct {
	mu      sync.Mutex
	sources map[netip.Prefix]*failures
	max     int
}

func newFailureLimiter(max int) *failureLimiter {
	return &failureLimiter{sources: map[netip.Prefix]*failures{}, max: max}
}

// sourceKey is the unit failures are counted by.
func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// silenced reports whether src is silenced at now.
func (l *failureLimiter) silenced(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.sources[sourceKey(src)]
	return f != nil && now.Before(f.silent)
}

// fail counts a failure from src and reports whether src is silenced now
// (this failure went past authMaxFailures).
func (l *failureLimiter) fail(src netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := sourceKey(src)
	f := l.sources[k]
	if f != nil && now.Sub(f.first) > authFailureWindow && !now.Before(f.silent) {
		f = nil // the window passed: count afresh
	}
	if f == nil {
		if len(l.sources) >= l.max {
			l.evict(now)
		}
		f = &failures{first: now}
		l.sources[k] = f
	}
	f.n++
	if f.n > authMaxFailures && !now.Before(f.silent) {
		f.silent = now.Add(authLockout)
		return true
	}
	return false
}

// succeed forgets src's failures.
func (l *failureLimiter) succeed(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.sources, sourceKey(src))
}

func (l *failureLimiter) evict(now time.Time) {
	for k, f := range l.sources {
		if now.Sub(f.first) > authFailureWindow && !now.Before(f.silent) {
			delete(l.sources, k)
		}
	}
	for len(l.sources) >= l.max {
		var victim netip.Prefix
		var vf *failures
		for k, f := range l.sources {
			if vf == nil || evictsBefore(f, vf, now) {
				victim, vf = k, f
			}
		}
		delete(l.sources, victim)
	}
}

// evictsBefore orders sources for eviction: counting ones before
// silenced ones (a flood of new sources must not lift a silence), the
// oldest count first, then the silence that ends first.
func evictsBefore(a, b *failures, now time.Time) bool {
	as, bs := now.Before(a.silent), now.Before(b.silent)
	switch {
	case as != bs:
		return !as
	case !as:
		return a.first.Before(b.first)
	default:
		return a.silent.Before(b.silent)
	}
}

// inboundAuth is the state of inbound digest authentication (RFC 3261
// §22.4 with RFC 7616's algorithms): the nonce key, the nonces in use and
// the failures per source.
type inboundAuth struct {
	key    nonceKey
	nonces *nonceTracker
	fails  *failureLimiter
	now    func() time.Time
}

func newInboundAuth() *inboundAuth {
	return &inboundAuth{key: newNonceKey(), nonces: newNonceTracker(authMaxNonces),
		fails: newFailureLimiter(authMaxSources), now: time.Now}
}

// fresh reports whether nonce n can still be used: ours, young enough,
// and not forgotten by the tracker.
func (a *inboundAuth) fresh(n string, now time.Time) bool {
	at, ok := a.key.issued(n)
	return ok && a.key.valid(n, now) && !a.nonces.stale(n, at)
}

// requestSource returns the address a request came from.
func requestSource(req *sipmsg.Request) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(req.Source()); err == nil {
		return ap.Addr().Unmap(), true
	}
	host, _, err := sipmsg.ParseAddr(req.Source())
	if err != nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(host)
	return a.Unmap(), err == nil
}

// sameURI reports whether the digest-uri of credentials names the
// Request-URI (RFC 3261 §22.4, RFC 7616 §3.4.6): scheme and host compare
// without case, the rest exactly.
func sameURI(digestURI string, ruri sipmsg.Uri) bool {
	var u sipmsg.Uri
	if err := sipmsg.ParseUri(digestURI, &u); err != nil {
		return false
	}
	norm := func(u sipmsg.Uri) string {
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		return u.String()
	}
	return norm(u) == norm(ruri)
}

// authTrunk returns the inbound_auth trunk whose inbound credentials the
// request's Authorization header proves (RFC 3261 §22.4), or nil. A
// response that does not prove them counts as a failure of the source:
// a bad response, an unknown user, a digest-uri other than the
// Request-URI, a nonce that is not ours, and a replay (a nonce-count not
// above the last one under that nonce, or a nonce without qop used
// twice). A stale nonce is no failure: the next challenge says stale. A
// silenced source is not even checked.
func (s *Server) authTrunk(req *sipmsg.Request) *trunk {
	a := s.auth
	src, ok := requestSource(req)
	h := req.GetHeader("Authorization")
	if !ok || h == nil {
		return nil
	}
	now := a.now()
	if a.fails.silenced(src, now) {
		return nil
	}
	tr, why := s.checkDigest(req, h.Value(), now)
	switch {
	case tr != nil:
		a.fails.succeed(src)
		return tr
	case why == reasonStale:
		s.log.Debug("inbound digest auth: stale nonce", "source", src)
		return nil
	}
	if a.fails.fail(src, now) {
		s.log.Warn("inbound digest auth: source silenced after repeated failures", "source", src,
			"failures", authMaxFailures+1, "silent_for", authLockout)
	} else {
		s.log.Debug("inbound digest auth failed", "source", src, "reason", why)
	}
	return nil
}

// reasonStale is checkDigest's reason for a nonce that is ours but aged:
// the one failure that is not counted against the source.
const reasonStale = "stale nonce"

// checkDigest verifies an Authorization header value against the
// inbound_auth trunks; on failure it says why.
func (s *Server) checkDigest(req *sipmsg.Request, value string, now time.Time) (*trunk, string) {
	a := s.auth
	creds, err := digest.ParseCredentials(value)
	if err != nil {
		return nil, "unparsable credentials"
	}
	issued, ours := a.key.issued(creds.Nonce)
	switch {
	case creds.Realm != authRealm:
		return nil, "wrong realm"
	case !ours:
		return nil, "unknown nonce"
	case !a.fresh(creds.Nonce, now):
		return nil, reasonStale
	case !sameURI(creds.URI, req.Recipient):
		return nil, "digest uri is not the request uri"
	}
	switch strings.ToUpper(creds.Algorithm) {
	case "", "MD5", "SHA-256":
	default:
		return nil, "algorithm not offered"
	}
	chal := &digest.Challenge{Realm: authRealm, Nonce: creds.Nonce, Algorithm: creds.Algorithm}
	switch creds.QOP {
	case "":
	case "auth":
		if creds.Nc < 1 || creds.Cnonce == "" {
			return nil, "qop=auth without nc or cnonce"
		}
		chal.QOP = []string{"auth"}
	default:
		return nil, "qop not offered"
	}
	for _, tr := range s.trunkTable().order {
		if !tr.cfg.InboundAuth || tr.inboundUser() != creds.Username {
			continue
		}
		want, err := digest.Digest(chal, digest.Options{Method: req.Method.String(), URI: creds.URI, Username: creds.Username,
			Password: tr.inboundPassword(), Cnonce: creds.Cnonce, Count: creds.Nc})
		if err != nil || !hmac.Equal([]byte(want.Response), []byte(strings.ToLower(creds.Response))) {
			continue
		}
		if !a.nonces.use(creds.Nonce, issued, creds.QOP != "", creds.Nc, now) {
			return nil, "replayed nonce"
		}
		return tr, ""
	}
	return nil, "wrong credentials"
}

// wantsAuth reports whether any trunk accepts digest-authenticated
// requests from outside its allow list.
func (s *Server) wantsAuth() bool {
	for _, tr := range s.trunkTable().order {
		if tr.cfg.InboundAuth {
			return true
		}
	}
	return false
}

// challenge answers 401 with a fresh nonce and qop=auth, marked stale
// when the request's nonce only aged (RFC 7616 §3.3). A silenced source
// gets no answer at all. MD5 is offered first and SHA-256 second (RFC
// 7616 §3.7 leaves the order to the server): many deployed UAs, SIPp 3.6
// among them, answer only the first challenge and know only MD5. Either
// is accepted. Both are fast unsalted hashes, so what protects the
// password is its length, the failure limit and TLS, not the algorithm.
func (s *Server) challenge(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	a := s.auth
	now := a.now()
	if src, ok := requestSource(req); !ok || a.fails.silenced(src, now) {
		s.log.Debug("inbound digest auth: silenced source", "source", req.Source())
		return
	}
	stale := false
	if h := req.GetHeader("Authorization"); h != nil {
		if creds, err := digest.ParseCredentials(h.Value()); err == nil {
			_, ours := a.key.issued(creds.Nonce)
			stale = ours && !a.fresh(creds.Nonce, now)
		}
	}
	n := a.key.nonce(now)
	hdrs := []sipmsg.Header{}
	for _, algo := range []string{"MD5", "SHA-256"} {
		c := &digest.Challenge{Realm: authRealm, Nonce: n, Algorithm: algo, QOP: []string{"auth"}, Stale: stale}
		hdrs = append(hdrs, sipmsg.NewHeader("WWW-Authenticate", c.String()))
	}
	respond(tx, req, 401, "Unauthorized", hdrs...)
}

// logAuthSharing warns about an inbound_auth trunk whose inbound
// credentials are its outbound ones: whoever learns the password the PBX
// checks for Segue's REGISTER can also call in, and the other way round.
func logAuthSharing(log *slog.Logger, tr *trunk) {
	if tr.cfg.InboundAuth && tr.cfg.InboundPassword == "" {
		log.Warn("inbound_auth checks the trunk's outbound password; set inbound_username and inbound_password to separate them",
			"key", "inbound_password")
	}
}
