package sip

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

const (
	authRealm    = "segue"
	nonceLife    = 5 * time.Minute
	nonceMACSize = 16
)

// nonceKey signs the stateless nonces of inbound digest challenges.
type nonceKey []byte

func newNonceKey() nonceKey {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// nonce returns "<unix time hex>.<mac>": checkable later without state.
func (k nonceKey) nonce(now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 16)
	return ts + "." + k.mac(ts)
}

func (k nonceKey) mac(ts string) string {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(ts))
	return hex.EncodeToString(m.Sum(nil))[:2*nonceMACSize]
}

func (k nonceKey) valid(n string, now time.Time) bool {
	ts, mac, ok := strings.Cut(n, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(k.mac(ts))) {
		return false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false
	}
	age := now.Sub(time.Unix(sec, 0))
	return age >= -time.Minute && age <= nonceLife
}

// authTrunk returns the inbound_auth trunk whose credentials the
// request's Authorization header proves (RFC 3261 §22.4), or nil.
func (s *Server) authTrunk(req *sipmsg.Request) *trunk {
	h := req.GetHeader("Authorization")
	if h == nil {
		return nil
	}
	creds, err := digest.ParseCredentials(h.Value())
	if err != nil || !s.nonces.valid(creds.Nonce, time.Now()) || creds.Realm != authRealm {
		return nil
	}
	for _, tr := range s.order {
		if !tr.cfg.InboundAuth || tr.authUser() != creds.Username {
			continue
		}
		chal := &digest.Challenge{Realm: authRealm, Nonce: creds.Nonce, Algorithm: creds.Algorithm, QOP: []string{"auth"}}
		want, err := digest.Digest(chal, digest.Options{Method: req.Method.String(), URI: creds.URI, Username: creds.Username,
			Password: tr.cfg.Password, Cnonce: creds.Cnonce, Count: creds.Nc})
		if err == nil && hmac.Equal([]byte(want.Response), []byte(creds.Response)) {
			return tr
		}
	}
	return nil
}

// wantsAuth reports whether any trunk accepts digest-authenticated
// requests from outside its allow list.
func (s *Server) wantsAuth() bool {
	for _, tr := range s.order {
		if tr.cfg.InboundAuth {
			return true
		}
	}
	return false
}

// challenge answers 401 with a fresh stateless nonce (SHA-256 and MD5
// offered, qop=auth).
func (s *Server) challenge(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	n := s.nonces.nonce(time.Now())
	hdrs := []sipmsg.Header{}
	for _, algo := range []string{"SHA-256", "MD5"} {
		c := &digest.Challenge{Realm: authRealm, Nonce: n, Algorithm: algo, QOP: []string{"auth"}}
		hdrs = append(hdrs, sipmsg.NewHeader("WWW-Authenticate", c.String()))
	}
	respond(tx, req, 401, "Unauthorized", hdrs...)
}
