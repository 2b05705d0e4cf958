package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/segue-rtc/segue/sip"
)

// callOnce starts a call from cws and reports the error code the gateway
// answered with, or "" when the call connected (it is then hung up).
func callOnce(t *testing.T, cws *wsc) string {
	t.Helper()
	cws.send(map[string]any{"type": "voice.start", "id": "v", "sdp": "v=0 offer"})
	for {
		f := cws.expectAny("call", "error")
		if _, ok := f["code"]; ok {
			return decode[string](t, f["code"])
		}
		if c := decode[wireCall](t, f["call"]); c.State == callConnected {
			break
		}
	}
	cws.send(map[string]any{"type": "voice.hangup"})
	waitCall(t, cws, callEnded)
	return ""
}

// expectAny reads frames until one of the given types arrives.
// frameWait bounds the wait for an expected frame: generous, since the
// race detector on a busy machine slows everything several times over.
const frameWait = 20 * time.Second

func (w *wsc) expectAny(types ...string) map[string]json.RawMessage {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), frameWait)
	defer cancel()
	for {
		_, b, err := w.conn.Read(ctx)
		if err != nil {
			w.t.Fatalf("waiting for %v: %v", types, err)
		}
		var f map[string]json.RawMessage
		if err := json.Unmarshal(b, &f); err != nil {
			w.t.Fatal(err)
		}
		var got string
		_ = json.Unmarshal(f["type"], &got)
		if slices.Contains(types, got) {
			return f
		}
	}
}

func intp(n int) *int { return &n }

// TestCallStartLimits: limits.calls_per_conversation_per_hour and
// limits.calls_per_ip_per_hour refuse the call past them with
// rate_limited and a retry_after; refusals ring nothing, and the chat goes
// on.
func TestCallStartLimits(t *testing.T) {
	for _, tc := range []struct {
		name           string
		perIP, perConv int
		convs          int      // conversations, one socket each
		calls          []int    // conversation index of each call, in order
		want           []string // error code of each call, "" when it connected
	}{
		{"per conversation", 0, 2, 2, []int{0, 0, 0, 1}, []string{"", "", "rate_limited", ""}},
		{"per address across conversations", 2, 0, 3, []int{0, 1, 2, 2}, []string{"", "", "rate_limited", "rate_limited"}},
		{"both", 3, 2, 2, []int{0, 0, 0, 1, 1}, []string{"", "", "rate_limited", "", "rate_limited"}},
		{"unlimited", 0, 0, 1, []int{0, 0, 0, 0, 0, 0, 0, 0}, []string{"", "", "", "", "", "", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
			e := voiceServer(t, phones, &fakePeers{}, func(c *Config) {
				c.Limits.CallsPerIPPerHour, c.Limits.CallsPerConversationPerHour = intp(tc.perIP), intp(tc.perConv)
			})
			socks := make([]*wsc, tc.convs)
			for i := range socks {
				_, token := e.startChat("Ann")
				socks[i] = e.customerWS(token)
			}
			dialled := 0
			for i, conv := range tc.calls {
				got := callOnce(t, socks[conv])
				if got != tc.want[i] {
					t.Fatalf("call %d (conversation %d): %q, want %q", i, conv, got, tc.want[i])
				}
				if got == "" {
					dialled++
				}
			}
			phones.mu.Lock()
			n := len(phones.dials)
			phones.mu.Unlock()
			if n != dialled {
				t.Fatalf("%d INVITEs for %d calls allowed", n, dialled)
			}
			for _, cws := range socks {
				cws.send(map[string]any{"type": "message", "id": "after", "text": "still chatting"})
				cws.expect("ack")
			}
		})
	}
}

// TestCallStartLimitRefusal: the refusal says how long to wait, in the
// error frame and the metrics.
func TestCallStartLimitRefusal(t *testing.T) {
	phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
	e := voiceServer(t, phones, &fakePeers{}, func(c *Config) { c.Limits.CallsPerConversationPerHour = intp(1) })
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	if got := callOnce(t, cws); got != "" {
		t.Fatalf("first call: %q", got)
	}
	cws.send(map[string]any{"type": "voice.start", "id": "v2", "sdp": "v=0 offer"})
	f := cws.expect("error")
	ra := decode[int](t, f["retry_after"])
	if decode[string](t, f["ref"]) != "v2" || ra < 3500 || ra > 3600 || !strings.Contains(decode[string](t, f["message"]), "60 minutes") {
		t.Fatalf("refusal: %v", f)
	}
	// Metrics are served by the admin listener.
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var b strings.Builder
	_, _ = io.Copy(&b, rec.Body)
	if !strings.Contains(b.String(), `segue_calls_refused_total{reason="conversation_limit"} 1`) {
		t.Fatalf("metrics lack the refusal:\n%s", grepLines(b.String(), "segue_calls_refused"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestCallStartCountsOnlyCallsThatRing: a start refused before any INVITE
// (a bad offer, no destination) and calls toward the customer (the
// agent's "call customer", the PBX calling the conversation) leave the
// customer's allowance untouched.
func TestCallStartCountsOnlyCallsThatRing(t *testing.T) {
	phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
	e := voiceServer(t, phones, &fakePeers{}, func(c *Config) {
		c.Limits.CallsPerConversationPerHour, c.Limits.CallsPerIPPerHour = intp(1), intp(1)
	})
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)

	cws.send(map[string]any{"type": "voice.start", "sdp": "not an offer"})
	if f := cws.expect("error"); decode[string](t, f["code"]) != "bad_offer" {
		t.Fatalf("bad offer: %v", f)
	}
	in := &fakeInvite{user: "conv-" + id, ringing: make(chan struct{}), phone: newFakeLeg()}
	errc := make(chan error, 1)
	go func() { errc <- e.srv.handleInvite(context.Background(), in) }()
	cws.expect("call.incoming")
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 accept"})
	if err := <-errc; err != nil {
		t.Fatalf("PBX call: %v", err)
	}
	waitCall(t, cws, callConnected)
	cws.send(map[string]any{"type": "voice.hangup"})
	waitCall(t, cws, callEnded)

	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	aws.send(map[string]any{"type": "voice.call", "conversation_id": id})
	cws.expect("call.incoming")
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 accept"})
	waitCall(t, cws, callConnected)
	aws.send(map[string]any{"type": "voice.hangup", "conversation_id": id})
	waitCall(t, cws, callEnded)

	if got := callOnce(t, cws); got != "" {
		t.Fatalf("the customer's own first call: %q", got)
	}
	if got := callOnce(t, cws); got != "rate_limited" {
		t.Fatalf("the customer's second call: %q", got)
	}
}

// TestCallStartLimitByIPv6Network: behind a trusted proxy, the client
// address comes from X-Forwarded-For, and IPv6 clients are counted by /64.
func TestCallStartLimitByIPv6Network(t *testing.T) {
	phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
	e := voiceServer(t, phones, &fakePeers{}, func(c *Config) {
		c.HTTP.TrustProxy = true
		c.Limits.CallsPerIPPerHour, c.Limits.CallsPerConversationPerHour = intp(1), intp(0)
	})
	from := func(addr string) *wsc {
		_, token := e.startChat("Ann")
		conn, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(e.ts.URL, "http")+"/api/v1/ws",
			&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://shop.example.com"}, "X-Forwarded-For": {addr}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.CloseNow() })
		w := &wsc{t: t, conn: conn}
		w.send(map[string]any{"type": "hello", "token": token})
		w.expect("welcome")
		return w
	}
	for _, tc := range []struct {
		addr, want string
	}{
		{"2001:db8:0:1::1", ""},
		{"2001:db8:0:1:ffff::2", "rate_limited"}, // the same /64
		{"2001:db8:0:2::1", ""},                  // another /64
		{"192.0.2.1", ""},
		{"192.0.2.2", ""},
	} {
		if got := callOnce(t, from(tc.addr)); got != tc.want {
			t.Errorf("call from %s: %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestVoicePolicy: queues[].voice decides whether the customer may start a
// call (the conversation's voice flag says so to the widget), and whether
// calls toward the customer may ring.
func TestVoicePolicy(t *testing.T) {
	for _, tc := range []struct {
		policy                 string
		before, after          string // voice.start error code before and after accept, "" when it rang
		flagBefore, flagAfter  bool
		agentCall, pbxCallCode string // the agent's voice.call error code; the PBX's INVITE final code ("" when it rang)
	}{
		{VoiceAlways, "", "", true, true, "", ""},
		{VoiceAfterAccept, "voice_not_available", "", false, true, "", ""},
		{VoiceOff, "voice_not_available", "voice_not_available", false, false, "voice_not_available", "480"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
			e := voiceServer(t, phones, &fakePeers{}, func(c *Config) { c.Queues[0].Voice = tc.policy })
			alice := e.login("alice")
			aws, _ := e.agentWS(alice)
			id, token := e.startChat("Ann")
			cw, _, err := e.dial(nil, "https://shop.example.com")
			if err != nil {
				t.Fatal(err)
			}
			cw.send(map[string]any{"type": "hello", "token": token})
			if c := decode[wireConversation](t, cw.expect("welcome")["conversation"]); c.Voice != tc.flagBefore {
				t.Fatalf("welcome: voice %v, want %v", c.Voice, tc.flagBefore)
			}
			if got := callOnce(t, cw); got != tc.before {
				t.Fatalf("call before accept: %q, want %q", got, tc.before)
			}
			phones.mu.Lock()
			rang := len(phones.dials)
			phones.mu.Unlock()
			if (tc.before == "") != (rang == 1) {
				t.Fatalf("%d INVITEs before accept", rang)
			}

			// The PBX calls the conversation.
			in := &fakeInvite{user: "conv-" + id, ringing: make(chan struct{}), phone: newFakeLeg()}
			errc := make(chan error, 1)
			go func() { errc <- e.srv.handleInvite(context.Background(), in) }()
			if tc.pbxCallCode == "" {
				cw.expect("call.incoming")
				cw.send(map[string]any{"type": "voice.hangup"})
				<-errc
			} else {
				var se *sip.StatusError
				if err := <-errc; !errors.As(err, &se) || strconv.Itoa(se.Code) != tc.pbxCallCode {
					t.Fatalf("PBX call: %v, want %s", err, tc.pbxCallCode)
				}
			}

			aws.send(map[string]any{"type": "accept", "conversation_id": id})
			aws.expect("history")
			for {
				c := decode[wireConversation](t, cw.expect("conversation")["conversation"])
				if c.Agent != nil {
					if c.Voice != tc.flagAfter {
						t.Fatalf("after accept: voice %v, want %v", c.Voice, tc.flagAfter)
					}
					break
				}
			}
			if got := callOnce(t, cw); got != tc.after {
				t.Fatalf("call after accept: %q, want %q", got, tc.after)
			}

			// The agent's "call customer".
			aws.send(map[string]any{"type": "voice.call", "conversation_id": id})
			if tc.agentCall != "" {
				if f := aws.expect("error"); decode[string](t, f["code"]) != tc.agentCall {
					t.Fatalf("agent's call: %v", f)
				}
			} else {
				cw.expect("call.incoming")
				cw.send(map[string]any{"type": "voice.start", "sdp": "v=0 accept"})
				waitCall(t, cw, callConnected)
				aws.send(map[string]any{"type": "voice.hangup", "conversation_id": id})
				waitCall(t, cw, callEnded)
			}

			// Back to the queue: after_accept closes voice again.
			aws.send(map[string]any{"type": "transfer", "conversation_id": id, "queue": "support"})
			for {
				c := decode[wireConversation](t, cw.expect("conversation")["conversation"])
				if c.Agent == nil {
					if c.Voice != tc.flagBefore {
						t.Fatalf("back in the queue: voice %v, want %v", c.Voice, tc.flagBefore)
					}
					break
				}
			}
			if got := callOnce(t, cw); got != tc.before {
				t.Fatalf("call back in the queue: %q, want %q", got, tc.before)
			}
		})
	}
}
