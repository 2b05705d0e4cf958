package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/segue-rtc/segue/store"
)

// identityClaims is what a website's backend vouches for (docs/api.md).
type identityClaims struct {
	Name       string `json:"name"`
	Email      string `json:"email"`
	ExternalID string `json:"external_id"`
	Exp        int64  `json:"exp"`
}

// SignIdentity makes a customer identity token as a website backend would;
// the CLI and tests use it.
func SignIdentity(secret, name, email, externalID string, exp time.Time) string {
	b, _ := json.Marshal(identityClaims{Name: name, Email: email, ExternalID: externalID, Exp: exp.Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + identityMAC(secret, payload)
}

func identityMAC(secret, payload string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verifyIdentity checks an identity token's signature and expiry.
func verifyIdentity(secret, token string, now time.Time) (store.Customer, error) {
	if secret == "" {
		return store.Customer{}, errors.New("identity tokens are not enabled (identity.secret is not set)")
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok || len(token) > 4096 {
		return store.Customer{}, errors.New("malformed identity token")
	}
	if !hmac.Equal([]byte(sig), []byte(identityMAC(secret, payload))) {
		return store.Customer{}, errors.New("identity token signature does not match")
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return store.Customer{}, errors.New("malformed identity token")
	}
	var c identityClaims
	if err := json.Unmarshal(raw, &c); err != nil {
		return store.Customer{}, errors.New("malformed identity token")
	}
	if c.Exp == 0 || now.After(time.Unix(c.Exp, 0)) {
		return store.Customer{}, errors.New("identity token expired")
	}
	return store.Customer{Name: truncate(c.Name, 80), Email: truncate(c.Email, 254), ExternalID: truncate(c.ExternalID, 128), Verified: true}, nil
}
