//go:build e2e

package test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// outsiderHTTP is an HTTP client whose connections come from outsiderIP,
// as an attacker's on another host would.
func outsiderHTTP() *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(outsiderIP)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// send makes one request with hc and returns the status, headers and body.
func send(t *testing.T, hc *http.Client, method, url, key string, hdr ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	return res.StatusCode, res.Header, string(b)
}

// An outsider at 127.0.0.2 attacks the integrations API: keys in the
// wrong places, a customer's token, a huge key, a key sent by another
// site's page, then guessing keys until locked out, which locks out
// only its own address. The admin endpoints (reload, dead webhook
// events, replay) do not exist on the public listener.
func TestAPIKeyAttacksFromOutsider(t *testing.T) {
	g := startGateway(t, withIntegrationsYAML(apiKeysYAML()))
	evil := outsiderHTTP()
	t.Cleanup(evil.CloseIdleConnections)
	list := g.URL + "/api/v1/integrations/conversations"
	customer, conv := g.newConversation(t, "Ann")

	for _, c := range []struct {
		what string
		url  string
		key  string
		hdr  []string
		want int
	}{
		{"the key in the query", list + "?access_token=" + e2eKeyCRM, "", nil, http.StatusUnauthorized},
		{"the key as a cookie", list, "", []string{"Cookie", "api_key=" + e2eKeyCRM}, http.StatusUnauthorized},
		{"the key without Bearer", list, "", []string{"Authorization", e2eKeyCRM}, http.StatusUnauthorized},
		{"a customer's token", list, customer.token, nil, http.StatusUnauthorized},
		{"a 100 kB key", list, "sgk_" + strings.Repeat("A", 100<<10), nil, http.StatusRequestHeaderFieldsTooLarge},
		{"a real key from another site's page", list, e2eKeyCRM, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"a real key on a customer's route", g.URL + "/api/v1/conversations/" + conv.ID + "/messages", e2eKeyCRM, nil, http.StatusUnauthorized},
	} {
		code, h, body := send(t, evil, http.MethodGet, c.url, c.key, c.hdr...)
		if code != c.want {
			t.Errorf("%s: %d, want %d: %s", c.what, code, c.want, body)
		}
		if h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: CORS header %q", c.what, h.Get("Access-Control-Allow-Origin"))
		}
	}
	for _, p := range []string{"/admin/reload", "/admin/webhooks/replay"} {
		if code, _, body := send(t, evil, http.MethodPost, g.URL+p, e2eKeyCRM); code != http.StatusNotFound {
			t.Errorf("POST %s on the public listener: %d %s", p, code, body)
		}
	}
	if code, _, body := send(t, evil, http.MethodGet, g.URL+"/admin/webhooks/dead", e2eKeyCRM); code != http.StatusNotFound {
		t.Errorf("GET /admin/webhooks/dead on the public listener: %d %s", code, body)
	}
	if !strings.Contains(g.Log(), "api key refused") {
		t.Error("no refusal logged")
	}

	// Guessing: refused keys lock the outsider's address out, and only it.
	locked := false
	for i := 0; i < 40 && !locked; i++ {
		code, h, body := send(t, evil, http.MethodGet, list, "sgk_guess-"+strings.Repeat("x", i+1))
		switch code {
		case http.StatusUnauthorized:
		case http.StatusTooManyRequests:
			locked = strings.Contains(body, "api_key_locked") && h.Get("Retry-After") != ""
			if !locked {
				t.Fatalf("guess %d: 429 %v %s", i, h, body)
			}
			// The customer's token above was the first refused key.
			if i != 29 {
				t.Errorf("locked out after %d guesses and the customer's token, want 30 refused keys", i)
			}
		default:
			t.Fatalf("guess %d: %d %s", i, code, body)
		}
	}
	if !locked {
		t.Fatal("40 wrong keys, no lockout")
	}
	if code, _, _ := send(t, evil, http.MethodGet, list, e2eKeyCRM); code != http.StatusTooManyRequests {
		t.Errorf("the right key from the locked-out address: %d", code)
	}
	if code, _, _ := send(t, http.DefaultClient, http.MethodGet, list, e2eKeyCRM); code != http.StatusOK {
		t.Errorf("the right key from 127.0.0.1 while 127.0.0.2 is locked out: %d", code)
	}
	m := metricsOf(t, g)
	if m[`segue_api_key_refusals_total{reason="locked"}`] < 2 || m[`segue_api_key_refusals_total{reason="bad_key"}`] < 30 {
		t.Errorf("refusal metrics: locked %v, bad_key %v", m[`segue_api_key_refusals_total{reason="locked"}`],
			m[`segue_api_key_refusals_total{reason="bad_key"}`])
	}
	for _, k := range []string{e2eKeyCRM, "sgk_guess-x"} {
		if strings.Contains(g.Log(), k) {
			t.Errorf("the log holds the key %s", k)
		}
	}
}
