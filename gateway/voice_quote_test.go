package gateway

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
)

// TestContextHeadersHostileCustomer: whatever a customer types as name or
// a site passes as external id, the context headers toward the PBX carry
// no control character and stay UTF-8, so the sip package accepts them
// (it refuses anything that could add a header) and the call is placed.
func TestContextHeadersHostileCustomer(t *testing.T) {
	cfg := &Config{HTTP: HTTPConfig{PublicURL: "https://chat.example.com"}}
	sipCfg := sip.Config{Listen: []string{"udp:127.0.0.1:0"}}
	sipCfg.ApplyDefaults()
	tr := sip.TrunkConfig{Name: "pbx", URI: "sip:pbx.example.com"}
	tr.ApplyDefaults()
	phones, err := sip.New(sipCfg, []sip.TrunkConfig{tr})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		`Evil" <sip:+19005551234@attacker.example>;x="`,
		`Ann\`,
		"Ann\r\nRecord-Route: <sip:attacker.example;lr>",
		"Ann\x00Lee\x7f\u0085\u009b",
		"Ann\xff\xfeLee",
		strings.Repeat("李", 500),
		"\r\n",
	} {
		c := store.Conversation{ID: "c_1", Queue: "support",
			Customer: store.Customer{Name: name, ExternalID: name, Verified: true}}
		h := contextHeaders(cfg, &c)
		for k, v := range h {
			if !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 || len(v) > 1024 {
				t.Errorf("name %q: %s: %q", name, k, v)
			}
		}
		if h["X-Segue-Customer"] == "" || h["X-Segue-Customer-Id"] == "" {
			t.Errorf("name %q: customer headers %q", name, h)
		}
		display := headerSafe(name)
		// Before Run, Dial checks its options and then refuses with
		// ErrClosed: headers it would refuse fail with ErrHeader first.
		_, err := phones.Dial(context.Background(), "pbx", "sip:1001@pbx.example.com", sip.DialOptions{DisplayName: display, Headers: h})
		if errors.Is(err, sip.ErrHeader) || !errors.Is(err, sip.ErrClosed) {
			t.Errorf("name %q: dial: %v", name, err)
		}
	}
}
