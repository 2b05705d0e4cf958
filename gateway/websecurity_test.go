package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/segue-rtc/segue/configs"
	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/webrtc"
)

// TestClientIP: X-Forwarded-For counts only from a trusted proxy, and then
// from its rightmost hop that is not a trusted proxy; what a client
// writes to the left of that is ignored.
func TestClientIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		legacy  bool
		remote  string
		xff     []string
		want    string
	}{
		{"no proxy configured", nil, false, "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7"},
		{"untrusted peer", []string{"10.0.0.0/8"}, false, "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7"},
		{"trusted peer, one hop", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"client-written hops are ignored", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", []string{"1.2.3.4, 5.6.7.8, 198.51.100.1"}, "198.51.100.1"},
		{"chain of trusted proxies", []string{"10.0.0.0/8", "192.0.2.10"}, false, "10.0.0.5:5000", []string{"1.2.3.4, 198.51.100.1, 192.0.2.10"}, "198.51.100.1"},
		{"several header lines", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", []string{"1.2.3.4", "198.51.100.9"}, "198.51.100.9"},
		{"hop with a port", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"ipv6 hop", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"garbage hop keeps the proxy", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", []string{"1.2.3.4, not-an-ip"}, "10.0.0.5"},
		{"all hops trusted: the leftmost", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", []string{"10.9.9.9, 10.0.0.6"}, "10.9.9.9"},
		{"no header from a proxy", []string{"10.0.0.0/8"}, false, "10.0.0.5:5000", nil, "10.0.0.5"},
		{"mapped ipv4 peer", []string{"10.0.0.0/8"}, false, "[::ffff:10.0.0.5]:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trust_proxy trusts private peers", nil, true, "192.168.1.2:5000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1"},
		{"trust_proxy does not trust public peers", nil, true, "203.0.113.7:5000", []string{"198.51.100.1"}, "203.0.113.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := HTTPConfig{TrustedProxies: tc.trusted, TrustProxy: tc.legacy}
			s := &Server{trusted: cfg.trustedPrefixes()}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := s.clientIP(r); got != tc.want {
				t.Errorf("clientIP = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSecurityConfigErrors: the new keys are checked, each error naming
// its key.
func TestSecurityConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, extra, want string
	}{
		{"trusted proxy not a cidr", "HTTP  trusted_proxies: [\"10.0.0.0/33\"]\n", `http.trusted_proxies[0]: "10.0.0.0/33" is not an address or a CIDR`},
		{"trusted proxy everyone", "HTTP  trusted_proxies: [\"0.0.0.0/0\"]\n", `http.trusted_proxies[0]: "0.0.0.0/0" trusts every address`},
		{"trust_proxy with trusted_proxies", "HTTP  trust_proxy: true\n  trusted_proxies: [\"10.0.0.1\"]\n", "http.trust_proxy: replaced by trusted_proxies"},
		{"admin listen", "HTTP  admin_listen: \"nowhere\"\n", `http.admin_listen: "nowhere": want host:port`},
		{"admin listen is listen", "HTTP  admin_listen: \"127.0.0.1:0\"\n", `http.admin_listen: "127.0.0.1:0" is also http.listen`},
		{"session ttl", "HTTP  session_ttl: 5s\n", "http.session_ttl: 5s is too short; write a duration of at least 1m"},
		{"connections per ip", "HTTP  max_connections_per_ip: -1\n", "http.max_connections_per_ip: must not be negative"},
		{"token retention", "limits:\n  token_retention: -1h\n", "limits.token_retention: -1h0m0s is negative"},
		{"turn secret short", "webrtc:\n  ice_servers:\n    - urls: [\"turn:t.example.com\"]\n      secret: short\n", "webrtc.ice_servers[0].secret: too short"},
		{"turn secret and static", "webrtc:\n  ice_servers:\n    - urls: [\"turn:t.example.com\"]\n      secret: 0123456789abcdef\n      username: u\n      credential: c\n",
			"webrtc.ice_servers[0].secret: give either a secret or a username and credential"},
		{"turn ttl without secret", "webrtc:\n  ice_servers:\n    - urls: [\"turn:t.example.com\"]\n      username: u\n      credential: c\n      ttl: 10m\n",
			"webrtc.ice_servers[0].ttl: only credentials made from a secret expire"},
		{"turn ttl short", "webrtc:\n  ice_servers:\n    - urls: [\"turn:t.example.com\"]\n      secret: 0123456789abcdef\n      ttl: 10s\n",
			"webrtc.ice_servers[0].ttl: 10s is too short"},
		{"port range under the limits", "webrtc:\n  udp_port_range: [40000, 40099]\n",
			"webrtc.udp_port_range: [40000, 40099] holds 100 ports, fewer than the 300 peer connections the limits allow (limits.max_calls 200 with trunks + 2 × limits.max_video_sessions 50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(withHTTP(tc.extra)), testEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%v\ndoes not contain %q", err, tc.want)
			}
		})
	}
	// The same range is enough with a mux port, or with the limits lowered.
	for _, extra := range []string{
		"webrtc:\n  udp_port_range: [40000, 40099]\n  udp_mux_port: 40000\n",
		"webrtc:\n  udp_port_range: [40000, 40099]\nlimits:\n  max_calls: 50\n  max_video_sessions: 25\n",
	} {
		if _, err := ParseConfig([]byte(validYAML+extra), testEnv); err != nil {
			t.Errorf("%q: %v", extra, err)
		}
	}
}

// withHTTP is validYAML plus extra; extra starting with "HTTP" goes into
// its http section instead.
func withHTTP(extra string) string {
	if rest, ok := strings.CutPrefix(extra, "HTTP"); ok {
		return strings.Replace(validYAML, "http:\n", "http:\n"+rest, 1)
	}
	return validYAML + extra
}

// TestSecurityDefaults: defaults of the new keys, and a secret expanded
// from the environment.
func TestSecurityDefaults(t *testing.T) {
	cfg, err := ParseConfig([]byte(validYAML+"webrtc:\n  ice_servers:\n    - urls: [\"turn:t.example.com\"]\n      secret: \"${SEGUE_TEST_SECRET}\"\n"), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	h := cfg.HTTP
	if h.AdminListen != "127.0.0.1:9090" || h.sessionTTL() != 12*time.Hour || h.maxConnsPerIP() != 256 || cfg.Limits.TokenRetention != 7*24*time.Hour {
		t.Errorf("defaults: admin %q ttl %v conns %d retention %d", h.AdminListen, h.sessionTTL(), h.maxConnsPerIP(), cfg.Limits.TokenRetention)
	}
	if got := cfg.WebRTC.ICEServers[0].Secret; got != "0123456789abcdef-secret" {
		t.Errorf("secret = %q, want the expanded value", got)
	}
	if cfg.WebRTC.UDPPortRange != [2]int{50000, 50999} {
		t.Errorf("udp_port_range default %v", cfg.WebRTC.UDPPortRange)
	}
}

// TestDemoPassword: the example configuration runs as it is (loopback
// only), and is refused once it can be reached from elsewhere.
func TestDemoPassword(t *testing.T) {
	if err := bcrypt.CompareHashAndPassword([]byte(configs.DemoHash), []byte("segue-demo")); err != nil {
		t.Fatalf("configs.DemoHash is not the hash of segue-demo: %v", err)
	}
	if demoHashes[configs.DemoHash] != "segue-demo" {
		t.Fatal("the gateway does not know the example's demo hash")
	}
	example := string(configs.Example)
	if _, err := ParseConfig(configs.Example, testEnv); err != nil {
		t.Fatalf("the example configuration: %v", err)
	}
	for _, tc := range []struct{ name, old, new string }{
		{"all interfaces", `listen: "127.0.0.1:8080"`, `listen: ":8080"`},
		{"public address", `listen: "127.0.0.1:8080"`, `listen: "192.0.2.1:8080"`},
		{"public url", `public_url: "http://localhost:8080"`, `public_url: "https://chat.example.com"`},
		{"behind a proxy", "trusted_proxies: []", `trusted_proxies: ["127.0.0.1"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(example, tc.old) {
				t.Fatalf("%q not in the example", tc.old)
			}
			_, err := ParseConfig([]byte(strings.Replace(example, tc.old, tc.new, 1)), testEnv)
			want := `agents[0].password_hash: agent "alice" has the demo password "segue-demo"`
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "segue agent passwd") {
				t.Fatalf("error\n%v\ndoes not contain %q and how to set a password", err, want)
			}
		})
	}
}

// TestDemoPasswordSignIn: a demo password hashed anew (not the shipped
// hash) passes the start-up check, but signing in with it is refused on a
// reachable gateway and allowed on a loopback-only one.
func TestDemoPasswordSignIn(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("segue-demo"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		listen string
		want   int
	}{
		{"reachable", ":8080", http.StatusForbidden},
		{"loopback", "127.0.0.1:8080", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestServer(t, func(c *Config) {
				c.Agents[0].PasswordHash = string(h)
				c.HTTP.Listen, c.HTTP.PublicURL = tc.listen, "http://localhost:8080"
			})
			resp, err := http.Post(e.ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(`{"id":"alice","password":"segue-demo"}`))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
			}
			if tc.want == http.StatusForbidden && !strings.Contains(string(b), "demo_password") {
				t.Fatalf("refusal: %s", b)
			}
		})
	}
}

// loginAs posts a sign-in from a client address (the test server trusts
// 127.0.0.1 as a proxy, so X-Forwarded-For picks the address).
func loginAs(t *testing.T, e *env2, from, id, pw string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/v1/agent/login", strings.NewReader(fmt.Sprintf(`{"id":%q,"password":%q}`, id, pw)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", from)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestLoginLockout: failed sign-ins lock an agent id (whatever the
// address) and an address (whatever the id), each with a clear message
// and Retry-After; the right password does not get through a lock; a
// success clears the id's count.
func TestLoginLockout(t *testing.T) {
	trust := func(c *Config) { c.HTTP.TrustedProxies = []string{"127.0.0.1"} }
	t.Run("per agent id", func(t *testing.T) {
		e := newTestServer(t, trust)
		for i := 0; i < maxFailedLoginsPerAgent; i++ {
			if code, b, _ := loginAs(t, e, fmt.Sprintf("198.51.100.%d", i+1), "alice", "guess"); code != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d %s", i, code, b)
			}
		}
		code, b, h := loginAs(t, e, "203.0.113.50", "alice", "password1")
		if code != http.StatusTooManyRequests || !strings.Contains(b, "login_locked") || !strings.Contains(b, "for this agent id") || h.Get("Retry-After") == "" {
			t.Fatalf("locked id: %d %s (Retry-After %q)", code, b, h.Get("Retry-After"))
		}
		if ra, _ := strconv.Atoi(h.Get("Retry-After")); ra < 1 || ra > int(loginWindow.Seconds()) {
			t.Fatalf("Retry-After %d", ra)
		}
		// Bob is not locked by Alice's failures.
		if code, b, _ := loginAs(t, e, "203.0.113.50", "bob", "password1"); code != http.StatusOK {
			t.Fatalf("bob: %d %s", code, b)
		}
	})
	t.Run("per address", func(t *testing.T) {
		// Unknown ids are checked against a dummy hash: a cheap one here.
		cheap, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
		saved := dummyHash
		dummyHash = func() []byte { return cheap }
		t.Cleanup(func() { dummyHash = saved })
		e := newTestServer(t, trust)
		for i := 0; i < maxFailedLoginsPerAddr; i++ {
			if code, b, _ := loginAs(t, e, "2001:db8:1:2::1", fmt.Sprintf("user%d", i), "guess"); code != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d %s", i, code, b)
			}
		}
		// Another address in the same /64 is the same network.
		code, b, _ := loginAs(t, e, "2001:db8:1:2::99", "alice", "password1")
		if code != http.StatusTooManyRequests || !strings.Contains(b, "from your network") {
			t.Fatalf("locked address: %d %s", code, b)
		}
		if code, b, _ := loginAs(t, e, "2001:db8:1:3::1", "alice", "password1"); code != http.StatusOK {
			t.Fatalf("another network: %d %s", code, b)
		}
	})
	t.Run("success clears the id", func(t *testing.T) {
		e := newTestServer(t, trust)
		for i := 0; i < maxFailedLoginsPerAgent-1; i++ {
			loginAs(t, e, "198.51.100.1", "alice", "guess")
		}
		if code, b, _ := loginAs(t, e, "198.51.100.1", "alice", "password1"); code != http.StatusOK {
			t.Fatalf("sign-in: %d %s", code, b)
		}
		for i := 0; i < maxFailedLoginsPerAgent-1; i++ {
			if code, _, _ := loginAs(t, e, "198.51.100.1", "alice", "guess"); code != http.StatusUnauthorized {
				t.Fatalf("failure %d after a success: %d", i, code)
			}
		}
	})
}

// readClose reads until the socket closes and returns the close error.
func readClose(t *testing.T, w *wsc, within time.Duration) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		if _, _, err := w.conn.Read(ctx); err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("socket ended without a close frame: %v", err)
			}
			return ce
		}
	}
}

func status(t *testing.T, c *http.Client, method, url string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestSignOutEverywhere: "sign out all sessions" ends every session of
// the agent and closes every console socket; a single sign-out closes
// only its own browser's sockets.
func TestSignOutEverywhere(t *testing.T) {
	e := newTestServer(t, nil)
	one, two, three := e.login("alice"), e.login("alice"), e.login("alice")
	bob := e.login("bob")
	ws1, _ := e.agentWS(one)
	ws2, _ := e.agentWS(two)
	ws3, _ := e.agentWS(three)
	wsBob, _ := e.agentWS(bob)

	if code := status(t, three, http.MethodPost, e.ts.URL+"/api/v1/agent/logout"); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	if ce := readClose(t, ws3, 5*time.Second); ce.Code != websocket.StatusPolicyViolation || ce.Reason != "signed out" {
		t.Fatalf("socket of the signed-out browser: %v", ce)
	}
	if code := status(t, one, http.MethodGet, e.ts.URL+"/api/v1/agent/me"); code != http.StatusOK {
		t.Fatalf("another browser after a single sign-out: %d", code)
	}

	if code := status(t, two, http.MethodPost, e.ts.URL+"/api/v1/agent/logout-all"); code != http.StatusNoContent {
		t.Fatalf("logout-all: %d", code)
	}
	for i, w := range []*wsc{ws1, ws2} {
		if ce := readClose(t, w, 5*time.Second); ce.Code != websocket.StatusPolicyViolation || ce.Reason != "signed out everywhere" {
			t.Fatalf("console %d: %v", i+1, ce)
		}
	}
	for i, c := range []*http.Client{one, two} {
		if code := status(t, c, http.MethodGet, e.ts.URL+"/api/v1/agent/me"); code != http.StatusUnauthorized {
			t.Fatalf("browser %d after logout-all: %d", i+1, code)
		}
	}
	n, err := e.st.DeleteAgentSessions(context.Background(), "alice")
	if err != nil || n != 0 {
		t.Fatalf("sessions of alice left: %d %v", n, err)
	}
	// Bob's session and socket are untouched.
	if code := status(t, bob, http.MethodGet, e.ts.URL+"/api/v1/agent/me"); code != http.StatusOK {
		t.Fatalf("bob: %d", code)
	}
	wsBob.send(map[string]any{"type": "ping"})
	wsBob.expect("pong")
}

// TestSessionExpiryClosesTheConsole: a console's socket closes when its
// session expires, and the session no longer opens anything.
func TestSessionExpiryClosesTheConsole(t *testing.T) {
	e := newTestServer(t, nil)
	token := randomToken()
	if err := e.st.CreateSession(context.Background(), &store.Session{TokenHash: hashToken(token), AgentID: "alice", ExpiresAt: time.Now().Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Cookie", sessionCookie+"="+token)
	conn, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(e.ts.URL, "http")+"/api/v1/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseNow() })
	w := &wsc{t: t, conn: conn}
	w.send(map[string]any{"type": "hello"})
	w.expect("welcome")
	if ce := readClose(t, w, 10*time.Second); ce.Code != websocket.StatusPolicyViolation || ce.Reason != "session expired" {
		t.Fatalf("close: %v", ce)
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/api/v1/agent/me", nil)
	req.Header.Set("Cookie", sessionCookie+"="+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired session: %d", resp.StatusCode)
	}
}

// TestSessionTTL: the cookie and the stored session last http.session_ttl.
func TestSessionTTL(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.HTTP.SessionTTL = time.Hour })
	resp, err := http.Post(e.ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(`{"id":"alice","password":"password1"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			ck = c
		}
	}
	if ck == nil || ck.MaxAge != 3600 {
		t.Fatalf("cookie: %+v", ck)
	}
	ss, err := e.st.Session(context.Background(), hashToken(ck.Value))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(ss.ExpiresAt); d < 3590*time.Second || d > 3600*time.Second {
		t.Fatalf("session expires in %v", d)
	}
}

// agentUpload posts a file into a conversation with an agent's cookie.
func agentUpload(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "note.txt")
	fw.Write([]byte("hello from an agent"))
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, url, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestUploadNeedsTheConversation: an agent who may read a conversation
// (waiting in its queue) may not post files into it; the agent holding
// it may; another agent may not.
func TestUploadNeedsTheConversation(t *testing.T) {
	e := newTestServer(t, nil)
	alice, bob := e.login("alice"), e.login("bob")
	id, _ := e.startChat("Ann")
	url := e.ts.URL + "/api/v1/conversations/" + id + "/files"
	if code := status(t, bob, http.MethodGet, e.ts.URL+"/api/v1/conversations/"+id); code != http.StatusOK {
		t.Fatalf("bob reads the waiting conversation: %d", code)
	}
	if code, b := agentUpload(t, bob, url); code != http.StatusForbidden || !strings.Contains(b, "not_holder") {
		t.Fatalf("upload into a waiting conversation: %d %s", code, b)
	}
	aws, _ := e.agentWS(alice)
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	if code, b := agentUpload(t, bob, url); code != http.StatusForbidden {
		t.Fatalf("upload into alice's conversation by bob: %d %s", code, b)
	}
	if code, b := agentUpload(t, alice, url); code != http.StatusCreated {
		t.Fatalf("upload by the holder: %d %s", code, b)
	}
	ms, err := e.st.Messages(context.Background(), id, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	for _, m := range ms {
		if m.Kind == store.KindFile {
			files++
			if m.SenderID != "alice" {
				t.Errorf("file from %q", m.SenderID)
			}
		}
	}
	if files != 1 {
		t.Fatalf("%d files in the transcript, want 1", files)
	}
}

// TestCustomerTokenExpires: a token opens its conversation while it is
// open and for limits.token_retention after it ended; then it is refused
// (the widget starts afresh) and no longer routes a new chat back.
func TestCustomerTokenExpires(t *testing.T) {
	e := newTestServer(t, nil)
	id, token := e.startChat("Ann")
	get := func() int {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/api/v1/conversations/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ctx := context.Background()
	end := func(ago time.Duration) {
		c, err := e.st.Conversation(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		c.State, c.EndedAt = store.StateEnded, time.Now().Add(-ago)
		if err := e.st.UpdateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		e.srv.hub.mu.Lock()
		delete(e.srv.hub.convs, id)
		e.srv.hub.mu.Unlock()
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("open conversation: %d", code)
	}
	end(6 * 24 * time.Hour)
	if code := get(); code != http.StatusOK {
		t.Fatalf("ended six days ago: %d", code)
	}
	end(8 * 24 * time.Hour)
	if code := get(); code != http.StatusUnauthorized {
		t.Fatalf("ended eight days ago: %d", code)
	}
	w, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": token})
	if f := w.expect("error"); decode[string](t, f["code"]) != "unauthorized" {
		t.Fatalf("hello with an expired token: %v", f)
	}
}

// TestDisplayTarget: a transcript shows a transfer's number, never the
// trunk's host, port or parameters.
func TestDisplayTarget(t *testing.T) {
	for in, want := range map[string]string{
		"sip:2002@pbx.example.com:5060;transport=udp": "2002",
		"sips:+4930123@carrier.example.net":           "+4930123",
		"sip:alice:secret@pbx.example.com":            "alice",
		"sip:2002;phone-context=x@pbx.example.com":    "2002",
		"tel:+4930123;ext=7":                          "+4930123",
		"sip:pbx.example.com":                         "another line",
		"garbage":                                     "another line",
	} {
		if got := displayTarget(in); got != want || strings.Contains(got, "example") {
			t.Errorf("displayTarget(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTURNCredentials: customers get a TURN REST credential of their
// conversation's own, agents one of their own; a static TURN credential
// goes to agents only; STUN goes to everyone.
func TestTURNCredentials(t *testing.T) {
	const secret = "0123456789abcdef-turn"
	e := newTestServer(t, func(c *Config) {
		c.WebRTC.ICEServers = []webrtc.ICEServer{
			{URLs: []string{"stun:stun.example.com"}},
			{URLs: []string{"turn:turn.example.com:3478"}, Secret: secret, TTL: 10 * time.Minute},
			{URLs: []string{"turn:static.example.com"}, Username: "segue", Credential: "static-pw"},
		}
	})
	now := time.Unix(1_700_000_000, 0)
	check := func(f map[string]any, wantUser string, wantStatic bool) {
		t.Helper()
		servers := f["ice_servers"].([]iceServer)
		var urls []string
		for _, s := range servers {
			urls = append(urls, s.URLs[0])
			switch s.URLs[0] {
			case "turn:turn.example.com:3478":
				if s.Username != strconv.FormatInt(now.Unix()+600, 10)+":"+wantUser {
					t.Errorf("username %q", s.Username)
				}
				m := hmac.New(sha1.New, []byte(secret))
				m.Write([]byte(s.Username))
				if s.Credential != base64.StdEncoding.EncodeToString(m.Sum(nil)) {
					t.Errorf("credential %q is not base64(HMAC-SHA1(secret, username))", s.Credential)
				}
			case "turn:static.example.com":
				if s.Credential != "static-pw" {
					t.Errorf("static credential %q", s.Credential)
				}
			}
		}
		if got, want := strings.Contains(strings.Join(urls, " "), "static.example.com"), wantStatic; got != want {
			t.Errorf("static TURN server given: %v, want %v (%v)", got, want, urls)
		}
		if !strings.Contains(strings.Join(urls, " "), "stun:stun.example.com") {
			t.Errorf("no STUN server: %v", urls)
		}
		if f["ice_expires_at"] != now.Unix()+600 {
			t.Errorf("ice_expires_at %v", f["ice_expires_at"])
		}
	}
	check(e.srv.iceFeatures(iceForCustomer("c_123"), now), "c_123", false)
	check(e.srv.iceFeatures(iceForAgent("alice"), now), "agent.alice", true)

	// The customer's welcome carries its conversation's credential, and
	// GET /api/v1/ice-servers makes a fresh one.
	id, token := e.startChat("Ann")
	w, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": token})
	welcome := decode[struct {
		ICEServers []iceServer `json:"ice_servers"`
	}](t, w.expect("welcome")["features"])
	if len(welcome.ICEServers) != 2 || !strings.HasSuffix(welcome.ICEServers[1].Username, ":"+id) || strings.Contains(fmt.Sprint(welcome), "static-pw") {
		t.Fatalf("welcome ice servers: %+v", welcome)
	}
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/api/v1/ice-servers", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		ICEServers []iceServer `json:"ice_servers"`
		Expires    int64       `json:"ice_expires_at"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(out.ICEServers) != 2 || !strings.HasSuffix(out.ICEServers[1].Username, ":"+id) || out.Expires < time.Now().Unix()+590 {
		t.Fatalf("ice-servers: %d %+v", resp.StatusCode, out)
	}
	if code := status(t, http.DefaultClient, http.MethodGet, e.ts.URL+"/api/v1/ice-servers"); code != http.StatusUnauthorized {
		t.Fatalf("ice-servers without credentials: %d", code)
	}
}

// TestAdminEndpoints: /metrics and the detailed /readyz are on the admin
// handler only; the public one answers /healthz and a bare /readyz.
func TestAdminEndpoints(t *testing.T) {
	e := newTestServer(t, nil)
	get := func(h http.Handler, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get(e.srv.Handler(), "/metrics"); code == http.StatusOK {
		t.Errorf("/metrics on the public listener: %d", code)
	}
	if code, b := get(e.srv.Handler(), "/readyz"); code != http.StatusOK || b != "ready\n" {
		t.Errorf("public /readyz: %d %q", code, b)
	}
	if code, b := get(e.srv.Handler(), "/healthz"); code != http.StatusOK || b != "ok\n" {
		t.Errorf("public /healthz: %d %q", code, b)
	}
	if code, b := get(e.srv.AdminHandler(), "/metrics"); code != http.StatusOK || !strings.Contains(b, "segue_conversations_total") {
		t.Errorf("admin /metrics: %d", code)
	}
	if code, _ := get(e.srv.AdminHandler(), "/debug/pprof/"); code != http.StatusOK {
		t.Errorf("admin pprof: %d", code)
	}
	e.srv.trunks = func() []sip.TrunkState {
		return []sip.TrunkState{{Name: "pbx", Register: true, RegisterError: "401 Unauthorized from sip:segue@pbx.internal.example.com"}}
	}
	if code, b := get(e.srv.Handler(), "/readyz"); code != http.StatusServiceUnavailable || strings.Contains(b, "pbx") {
		t.Errorf("public /readyz with a failed trunk: %d %q", code, b)
	}
	if code, b := get(e.srv.AdminHandler(), "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(b, "trunk pbx: not ready: 401") {
		t.Errorf("admin /readyz with a failed trunk: %d %q", code, b)
	}
}

// TestConnectionCap: past http.max_connections_per_ip a client's new
// connections are closed at once; a trusted proxy is exempt; a closed
// connection frees its slot.
func TestConnectionCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var refused atomic.Int32
	l := &connLimiter{max: 2, refused: func() { refused.Add(1) }, open: map[string]int{}}
	ll := l.limitListener(ln)
	defer ll.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	first := <-accepted
	<-accepted
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("third connection: %v, want it closed", err)
	}
	// The listener counts before it closes.
	if n := refused.Load(); n != 1 {
		t.Fatalf("refused %d", n)
	}
	first.Close()
	dial()
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("a freed slot was not reused")
	}
	// A trusted proxy is not counted.
	l.mu.Lock()
	l.trusted = func(a netip.Addr) bool { return a.IsLoopback() }
	l.mu.Unlock()
	for i := 0; i < 3; i++ {
		dial()
		<-accepted
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// TestRateReaderDeadline: an upload's read deadline moves with the bytes
// received, at minTransferRate after the grace.
func TestRateReaderDeadline(t *testing.T) {
	r := &rateReader{start: time.Unix(1000, 0)}
	if got := r.deadline(); !got.Equal(time.Unix(1000, 0).Add(transferGrace)) {
		t.Fatalf("empty: %v", got)
	}
	r.received = 10 * minTransferRate
	if got := r.deadline(); !got.Equal(time.Unix(1000, 0).Add(transferGrace + 10*time.Second)) {
		t.Fatalf("after 10 s worth: %v", got)
	}
	if got := transferWindow(80 * minTransferRate); got != transferGrace+80*time.Second {
		t.Fatalf("window: %v", got)
	}
}

// TestSecretsGetWarnings: a static TURN credential and trust_proxy are
// warned about; a world-readable file is the CLI's to check.
func TestSecretsGetWarnings(t *testing.T) {
	cfg, err := ParseConfig([]byte(withHTTP("HTTP  trust_proxy: true\n")+"webrtc:\n  ice_servers:\n    - urls: [\"turn:t.example.com\"]\n      username: u\n      credential: c\n"), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(cfg.Warnings(), "\n")
	for _, want := range []string{"http.trust_proxy is deprecated", "webrtc.ice_servers[0] has a static credential"} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if !cfg.HoldsSecrets() {
		t.Error("a config with a trunk password holds no secrets?")
	}
	demo, err := ParseConfig(configs.Example, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if demo.HoldsSecrets() {
		t.Error("the demo configuration counts as holding secrets")
	}
}
