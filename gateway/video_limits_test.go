package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// heldPeers is fakePeers whose NewPeer waits until released, so that a
// test can hold many peer set-ups open at once, where races live.
type heldPeers struct {
	*fakePeers
	entered chan struct{}
	release chan struct{}
}

func (p *heldPeers) NewPeer(ctx context.Context, conv string, hooks peerHooks) (browserPeer, error) {
	p.entered <- struct{}{}
	<-p.release
	return p.fakePeers.NewPeer(ctx, conv, hooks)
}

// customerFrom opens a customer socket for a new chat, from addr (through
// the trusted proxy's X-Forwarded-For) when not empty.
func (e *env2) customerFrom(addr string) *wsc {
	e.t.Helper()
	_, token := e.startChat("Ann")
	h := http.Header{"Origin": {"https://shop.example.com"}}
	if addr != "" {
		h.Set("X-Forwarded-For", addr)
	}
	conn, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(e.ts.URL, "http")+"/api/v1/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.CloseNow() })
	w := &wsc{t: e.t, conn: conn}
	w.send(map[string]any{"type": "hello", "token": token})
	w.expect("welcome")
	return w
}

// metricsText scrapes /metrics from the admin handler.
func (e *env2) metricsText() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// videoStart sends video.start and returns the error code, or "" for an
// answer.
func videoStart(t *testing.T, w *wsc) string {
	t.Helper()
	w.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	f := w.expectAny("rtc.answer", "error")
	if c, ok := f["code"]; ok {
		return decode[string](t, c)
	}
	return ""
}

// TestVideoSessionLimitHoldsUnderConcurrentStarts: twelve video.start at
// once against limits.max_video_sessions: 3. Slots are taken before the
// peers are built (which the test holds open), so exactly three peers
// are ever built and nine starts are refused with busy at once.
func TestVideoSessionLimitHoldsUnderConcurrentStarts(t *testing.T) {
	peers := &heldPeers{fakePeers: &fakePeers{}, entered: make(chan struct{}, 12), release: make(chan struct{})}
	e := newTestServerOpts(t, func(c *Config) {
		c.Limits.MaxVideoSessions = 3
		c.Limits.MaxPeersPerIP = 12
		c.Limits.NewChatsPerIPPerMinute = 100
	}, withPeers(peers))
	socks := make([]*wsc, 12)
	for i := range socks {
		socks[i] = e.customerFrom("")
	}
	codes := make([]string, len(socks))
	var wg sync.WaitGroup
	for i, w := range socks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = videoStart(t, w)
		}()
	}
	for range 3 {
		<-peers.entered
	}
	// The nine refusals come while the three peers are still being built.
	waitUntil(t, "nine refusals", func() bool {
		return strings.Contains(e.metricsText(), `segue_media_refused_total{reason="video_limit"} 9`+"\n")
	})
	close(peers.release)
	wg.Wait()
	if n := len(peers.entered); n != 0 {
		t.Errorf("%d more peers were built past the limit", n)
	}
	answered, busy := 0, 0
	for _, c := range codes {
		switch c {
		case "":
			answered++
		case "busy":
			busy++
		default:
			t.Errorf("unexpected refusal %q", c)
		}
	}
	if answered != 3 || busy != 9 {
		t.Fatalf("%d answered and %d busy, want 3 and 9", answered, busy)
	}
	if n := (&chat{e: e}).sessions(); n != 3 {
		t.Fatalf("%d video sessions counted, want 3", n)
	}
}

// TestPeersPerAddress: limits.max_peers_per_ip caps the customer peers of
// one address (an IPv6 /64), not those of others; a peer that ends gives
// its slot back; voice peers count too.
func TestPeersPerAddress(t *testing.T) {
	phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
	e := voiceServer(t, phones, &fakePeers{}, func(c *Config) {
		c.HTTP.TrustProxy = true
		c.Limits.MaxPeersPerIP = 2
		c.Limits.CallsPerIPPerHour = intp(0)
	})
	first := e.customerFrom("2001:db8:0:1::1")
	if got := videoStart(t, first); got != "" {
		t.Fatalf("first video: %q", got)
	}
	second := e.customerFrom("2001:db8:0:1::2")
	second.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, second, callConnected)
	// The same /64: its third peer is refused, whatever it is for.
	third := e.customerFrom("2001:db8:0:1:ffff::3")
	if got := videoStart(t, third); got != "busy" {
		t.Fatalf("third peer of the /64: %q, want busy", got)
	}
	if got := callOnce(t, third); got != "busy" {
		t.Fatalf("third peer of the /64 for a call: %q, want busy", got)
	}
	// Other addresses are not held back.
	if got := videoStart(t, e.customerFrom("2001:db8:0:2::1")); got != "" {
		t.Fatalf("another /64: %q", got)
	}
	if got := videoStart(t, e.customerFrom("192.0.2.7")); got != "" {
		t.Fatalf("an IPv4 address: %q", got)
	}
	// The first visitor stops its video: its slot comes back.
	first.send(map[string]any{"type": "video.stop"})
	waitUntil(t, "the slot to come back", e.hubHolds(func(h *hub) bool { return h.peersByAddr[addrKey("2001:db8:0:1::1")] == 1 }))
	if got := videoStart(t, third); got != "" {
		t.Fatalf("after a peer of the /64 ended: %q", got)
	}
	if m := e.metricsText(); !strings.Contains(m, `segue_media_refused_total{reason="peers_per_ip"} 2`+"\n") {
		t.Errorf("metrics lack the two refusals:\n%s", grepLines(m, "segue_media_refused"))
	}
}

// TestVideoPolicy: queues[].video decides whether the customer may start
// video (the conversation's video flag tells the widget) and, with off,
// whether the console may join.
func TestVideoPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy                string
		before, after         string // video.start error code before and after accept, "" when answered
		flagBefore, flagAfter bool
		join                  string // the console's media.join error code, "" when answered
	}{
		{VideoAlways, "", "", true, true, ""},
		{VideoAfterAccept, "video_not_available", "", false, true, ""},
		{VideoOff, "video_not_available", "video_not_available", false, false, "video_not_available"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			e := videoServer(t, &fakePeers{}, func(c *Config) { c.Queues[0].Video = tc.policy })
			id, token := e.startChat("Ann")
			cw, welcome := e.pageWS(token, nil, "p1")
			if c := decode[wireConversation](t, welcome["conversation"]); c.Video != tc.flagBefore {
				t.Fatalf("welcome: video %v, want %v", c.Video, tc.flagBefore)
			}
			if got := videoStart(t, cw); got != tc.before {
				t.Fatalf("video before accept: %q, want %q", got, tc.before)
			}
			if tc.before == "" {
				cw.send(map[string]any{"type": "video.stop"})
			}
			aws, _ := e.pageWS("", e.login("alice"), "a1")
			aws.send(map[string]any{"type": "accept", "conversation_id": id})
			aws.expect("history")
			for {
				c := decode[wireConversation](t, cw.expect("conversation")["conversation"])
				if c.Agent != nil {
					if c.Video != tc.flagAfter {
						t.Fatalf("after accept: video %v, want %v", c.Video, tc.flagAfter)
					}
					break
				}
			}
			if got := videoStart(t, cw); got != tc.after {
				t.Fatalf("video after accept: %q, want %q", got, tc.after)
			}
			aws.send(map[string]any{"type": "media.join", "conversation_id": id, "sdp": "v=0 console"})
			f := aws.expectAny("rtc.answer", "error")
			got := ""
			if c, ok := f["code"]; ok {
				got = decode[string](t, c)
			}
			if got != tc.join {
				t.Fatalf("console join: %q, want %q", got, tc.join)
			}
		})
	}
}

// TestPeerStartsPerAddress: limits.peer_starts_per_ip_per_minute refuses
// the set-up of a peer past it, even when the earlier ones ended, with
// rate_limited and a retry_after; other addresses are not held back, and
// a minute later the address may start again.
func TestPeerStartsPerAddress(t *testing.T) {
	e := videoServer(t, &fakePeers{}, func(c *Config) {
		c.HTTP.TrustProxy = true
		c.Limits.PeerStartsPerIPPerMinute = 3
	})
	now := time.Now()
	e.srv.hub.mu.Lock()
	e.srv.hub.now = func() time.Time { return now }
	e.srv.hub.mu.Unlock()
	w := e.customerFrom("192.0.2.9")
	for i := range 3 {
		if got := videoStart(t, w); got != "" {
			t.Fatalf("start %d: %q", i+1, got)
		}
		w.send(map[string]any{"type": "video.stop"})
		waitUntil(t, "the peer to end", e.hubHolds(func(h *hub) bool { return h.peersByAddr[addrKey("192.0.2.9")] == 0 }))
	}
	w.send(map[string]any{"type": "video.start", "id": "s4", "sdp": "v=0 camera"})
	f := w.expect("error")
	if ra := decode[int](t, f["retry_after"]); decode[string](t, f["code"]) != "rate_limited" || ra < 1 || ra > 60 {
		t.Fatalf("fourth start: %v, want rate_limited with retry_after up to 60", f)
	}
	if got := videoStart(t, e.customerFrom("192.0.2.10")); got != "" {
		t.Fatalf("another address: %q", got)
	}
	e.srv.hub.mu.Lock()
	e.srv.hub.now = func() time.Time { return now.Add(time.Minute) }
	e.srv.hub.mu.Unlock()
	if got := videoStart(t, w); got != "" {
		t.Fatalf("a minute later: %q", got)
	}
}
