package gateway

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzIdentityToken feeds the identity-token verifier arbitrary tokens
// (and, built from the fuzzer's claims, correctly signed ones). It must
// never panic; it may accept a token only if the token carries the MAC
// of its payload under the secret; the claims it returns are bounded; a
// token of at most 4 KiB signed for a time in the future is accepted with
// the claims it was signed with, and refused under another secret.
func FuzzIdentityToken(f *testing.F) {
	const secret = "0123456789abcdef-identity"
	now := time.Unix(1_700_000_000, 0)
	f.Add(SignIdentity(secret, "Ann Lee", "ann@example.com", "42", now.Add(time.Hour)), "Ann", "a@b.c", "1", int64(3600))
	f.Add(SignIdentity(secret, "Ann", "", "", now.Add(-time.Second)), "", "", "", int64(-1))
	f.Add("e30.", "<img src=x onerror=alert(1)>", "", "", int64(60))
	f.Add("not-a-token", strings.Repeat("x", 300), "", "", int64(0))
	f.Add("eyJleHAiOjF9.AAAA", "\xff\xfe", "", "", int64(1<<40))
	f.Fuzz(func(t *testing.T, token, name, email, extID string, ttl int64) {
		c, err := verifyIdentity(secret, token, now)
		if err == nil {
			payload, sig, _ := strings.Cut(token, ".")
			if sig != identityMAC(secret, payload) {
				t.Fatalf("accepted %q without its MAC", token)
			}
			if !c.Verified || utf8.RuneCountInString(c.Name) > 80 || utf8.RuneCountInString(c.Email) > 254 || utf8.RuneCountInString(c.ExternalID) > 128 {
				t.Fatalf("accepted claims out of bounds: %+v", c)
			}
		}
		if ttl <= 0 || ttl > 1<<32 {
			return
		}
		signed := SignIdentity(secret, name, email, extID, now.Add(time.Duration(ttl)*time.Second))
		c, err = verifyIdentity(secret, signed, now)
		if len(signed) > 4096 {
			if err == nil {
				t.Fatalf("a %d-byte token accepted", len(signed))
			}
			return // tokens are capped at 4 KiB
		}
		if err != nil {
			t.Fatalf("a token signed for %d s is refused: %v", ttl, err)
		}
		if utf8.ValidString(name) && c.Name != truncate(name, 80) {
			t.Fatalf("name %q came back as %q", name, c.Name)
		}
		if _, err := verifyIdentity("another-secret-0123456", signed, now); err == nil {
			t.Fatal("a token verified under another secret")
		}
	})
}
