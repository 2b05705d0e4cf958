package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// restartPhones is a phone system that can end recorded dialogs.
type restartPhones struct {
	*fakePhones
	ready chan struct{}
	mu    sync.Mutex
	ended []sip.Dialog
	got   chan struct{}
}

func (p *restartPhones) EndDialog(_ context.Context, d sip.Dialog) error {
	p.mu.Lock()
	p.ended = append(p.ended, d)
	p.mu.Unlock()
	p.got <- struct{}{}
	return nil
}
func (p *restartPhones) Ready() <-chan struct{} { return p.ready }

// metricLine returns the admin /metrics line that starts with prefix.
func metricLine(t *testing.T, e *env2, prefix string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestRestartEndsCallsLeftUp plays a gateway started again after a
// crash: the store holds an answered call with its dialog, a call that
// was still ringing and the customer's video. The answered call's dialog
// gets its BYE once the SIP side is ready, the three records are closed,
// and the transcript says the calls and the video ended because the
// gateway restarted.
func TestRestartEndsCallsLeftUp(t *testing.T) {
	phones := &restartPhones{fakePhones: &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }},
		ready: make(chan struct{}), got: make(chan struct{}, 4)}
	e := newTestServerOpts(t, func(c *Config) {
		c.Trunks = []sip.TrunkConfig{{Name: "pbx", URI: "sip:pbx.test", Transport: "udp", Codecs: []string{"PCMU"}, RegisterExpiry: 60}}
		c.Queues[0].Trunk = "pbx"
		c.Queues[0].Dial = "sip:600@pbx.test"
	}, withPhones(phones), withPeers(&fakePeers{}))
	id, token := e.startChat("Ann")
	ctx := context.Background()
	answered := time.Now().Add(-65 * time.Second)
	up := &store.CallRecord{ID: "k_up", ConversationID: id, Kind: "voice", Direction: "outbound", Target: "sip:1001@pbx.test",
		StartedAt: answered.Add(-3 * time.Second), AnsweredAt: answered}
	ringing := &store.CallRecord{ID: "k_ringing", ConversationID: id, Kind: "voice", Direction: "outbound", Target: "sip:600@pbx.test",
		StartedAt: time.Now()}
	dlg := sip.Dialog{Trunk: "pbx", Transport: "udp", CallID: "abc@segue", LocalURI: "sip:segue@pbx.test", LocalTag: "l1",
		RemoteURI: "sip:1001@pbx.test", RemoteTag: "r1", RemoteTarget: "sip:1001@192.0.2.10:5060", CSeq: 2}
	raw, _ := json.Marshal(dlg)
	video := &store.CallRecord{ID: "k_video", ConversationID: id, Kind: "video", Direction: "inbound",
		StartedAt: time.Now().Add(-42 * time.Second), AnsweredAt: time.Now().Add(-42 * time.Second), Codec: "video/VP8"}
	for _, r := range []*store.CallRecord{up, ringing, video} {
		if err := e.st.SaveCall(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.st.SaveCallDialog(ctx, up.ID, raw); err != nil {
		t.Fatal(err)
	}

	if err := e.srv.recoverCalls(ctx); err != nil {
		t.Fatal(err)
	}
	// Records and transcript are settled at once; the BYE waits for SIP.
	calls, err := e.st.Calls(ctx, id)
	if err != nil || len(calls) != 3 || calls[0].Cause != "The gateway restarted" {
		t.Fatalf("call records: %+v %v", calls, err)
	}
	for _, c := range calls {
		if c.EndedAt.IsZero() {
			t.Errorf("call record %s left open", c.ID)
		}
	}
	select {
	case <-phones.got:
		t.Fatal("BYE sent before the SIP side was ready")
	default:
	}
	close(phones.ready)
	select {
	case <-phones.got:
	case <-time.After(5 * time.Second):
		t.Fatal("no BYE for the answered call")
	}
	phones.mu.Lock()
	ended := phones.ended
	phones.mu.Unlock()
	if len(ended) != 1 || ended[0].CallID != "abc@segue" || ended[0].RemoteTag != "r1" || ended[0].RemoteTarget != dlg.RemoteTarget {
		t.Fatalf("dialogs ended: %+v", ended)
	}
	msgs, err := e.st.Messages(ctx, id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for _, m := range msgs {
		if m.Kind == store.KindEvent && (strings.HasPrefix(m.Event, "voice.") || strings.HasPrefix(m.Event, "video.")) {
			var d map[string]any
			_ = json.Unmarshal(m.EventData, &d)
			events = append(events, m.Event+" "+d["call"].(string)+" "+d["cause"].(string)+" "+m.Text)
		}
	}
	want := []string{
		"voice.ended k_up gateway_restart Call ended: The gateway restarted (1:05)",
		"video.ended k_video gateway_restart Video ended: The gateway restarted (0:42)",
		"voice.failed k_ringing gateway_restart Call failed: The gateway restarted",
	}
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Fatalf("transcript events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	// The customer, back after the restart, reads it in the history.
	w, _, err := e.dial(nil, "https://shop.example.com")
	if err != nil {
		t.Fatal(err)
	}
	w.send(map[string]any{"type": "hello", "token": token})
	if welcome := w.expect("welcome"); !strings.Contains(string(welcome["messages"]), "The gateway restarted") {
		t.Fatalf("welcome without the restart: %s", welcome["messages"])
	}
	if l := metricLine(t, e, `segue_calls_recovered_total{result="bye"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("metric: %q", l)
	}
	if l := metricLine(t, e, `segue_calls_ended_total{cause="gateway_restart"}`); !strings.HasSuffix(l, " 2") {
		t.Fatalf("metric: %q", l)
	}
	// A second start finds nothing left to do.
	if err := e.srv.recoverCalls(ctx); err != nil {
		t.Fatal(err)
	}
	if l := metricLine(t, e, `segue_calls_recovered_total{result="bye"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("metric after a second start: %q", l)
	}
}

// TestPanicInACallEndsThatCallOnly injects a panic into the goroutine
// that runs a connected call: that call ends (BYE to the phone, the
// customer told), the panic is counted, and the conversation and the
// server go on: chat works and the next call connects.
func TestPanicInACallEndsThatCallOnly(t *testing.T) {
	var armed atomic.Bool
	armed.Store(true)
	old := faultPoint
	t.Cleanup(func() { faultPoint = old })
	faultPoint = func(where string) {
		if where == "voice_bridge" && armed.CompareAndSwap(true, false) {
			panic("injected fault")
		}
	}
	phone := newFakeLeg()
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	e := voiceServer(t, phones, &fakePeers{}, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	c := waitCall(t, cws, callEnded)
	if c.Cause != "internal_error" || c.EndedBy != "system" {
		t.Fatalf("call after the panic: %+v", c)
	}
	select {
	case <-phone.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the phone leg was not hung up")
	}
	if l := metricLine(t, e, `segue_panics_recovered_total{where="voice_bridge"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("metric: %q", l)
	}
	if l := metricLine(t, e, `segue_calls_ended_total{cause="internal_error"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("metric: %q", l)
	}
	cws.send(map[string]any{"type": "message", "id": "m1", "text": "still there?"})
	cws.expect("ack")
	phone2 := newFakeLeg()
	phones.mu.Lock()
	phones.result = func() (*fakeLeg, error) { return phone2, nil }
	phones.mu.Unlock()
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 again"})
	waitCall(t, cws, callConnected)
	cws.send(map[string]any{"type": "voice.hangup"})
	waitCall(t, cws, callEnded)
}

// TestDrainRefusesNewAndEndsCallsWithANotice: once a stop begins, a new
// chat gets 503 with Retry-After, a new call the shutting_down error and
// a PBX's INVITE 503; the call in progress plays the stop notice (880 Hz
// beeps) to the desk phone and to the browser, then ends with BYE and
// the shutdown cause, which both sides are told.
func TestDrainRefusesNewAndEndsCallsWithANotice(t *testing.T) {
	phone := newFakeLeg()
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	peers := &fakePeers{}
	e := voiceServer(t, phones, peers, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	otherID, otherToken := e.startChat("Bo")
	ows := e.customerWS(otherToken)

	e.srv.hub.startDrain()
	resp, err := e.ts.Client().Post(e.ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{"name":"Cy"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("new chat while draining: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	ows.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	if code := decode[string](t, ows.expect("error")["code"]); code != "shutting_down" {
		t.Fatalf("new call while draining: %q", code)
	}
	err = e.srv.handleInvite(context.Background(), &fakeInvite{user: "conv-" + otherID, ringing: make(chan struct{}), phone: newFakeLeg()})
	var se *sip.StatusError
	if !errors.As(err, &se) || se.Code != 503 {
		t.Fatalf("INVITE while draining: %v", err)
	}

	browser := peers.last()
	before := browser.in.len()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.srv.drainCalls(ctx)
	if c := waitCall(t, cws, callEnded); c.Cause != "shutdown" || c.EndedBy != "system" {
		t.Fatalf("drained call: %+v", c)
	}
	select {
	case <-phone.done:
	default:
		t.Fatal("the phone leg was not hung up")
	}
	for who, got := range map[string]transcode.PCM16{"desk phone": phone.in.samples(), "browser": browser.in.samples()[before:]} {
		if len(got) < 8000*6/10 {
			t.Fatalf("%s heard %d samples of notice, want ~0.75 s", who, len(got))
		}
		if f := audiotest.PeakFrequency(got, 8000); math.Abs(f-noticeHz) > 15 {
			t.Errorf("%s heard %.0f Hz, want the %d Hz notice", who, f, noticeHz)
		}
		if db := audiotest.Level(got); db < -20 {
			t.Errorf("%s heard the notice at %.1f dBFS", who, db)
		}
	}
}

// samples returns a copy of what the recorder got.
func (r *recorder) samples() transcode.PCM16 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(transcode.PCM16(nil), r.pcm...)
}

// TestDrainTimeoutConfig: http.drain_timeout defaults to 10s and is
// checked, the error naming the key.
func TestDrainTimeoutConfig(t *testing.T) {
	cfg, err := ParseConfig([]byte(validYAML), testEnv)
	if err != nil || cfg.HTTP.DrainTimeout != 10*time.Second {
		t.Fatalf("default drain timeout: %v %v", cfg, err)
	}
	for _, v := range []string{"1s", "6m", "-3s"} {
		_, err := ParseConfig([]byte(withHTTP("HTTP  drain_timeout: "+v+"\n")), testEnv)
		if err == nil || !strings.Contains(err.Error(), "http.drain_timeout: ") || !strings.Contains(err.Error(), "from 2s to 5m") {
			t.Errorf("drain_timeout %s: %v", v, err)
		}
	}
	cfg, err = ParseConfig([]byte(withHTTP("HTTP  drain_timeout: 30s\n")), testEnv)
	if err != nil || cfg.HTTP.DrainTimeout != 30*time.Second {
		t.Fatalf("drain_timeout 30s: %v", err)
	}
}

// TestAPIRefusalsLogByMeaning: the drain's refusal of a new chat is
// expected and logs at info level, a capacity refusal at warning level,
// and only a fault at error level as "api request failed".
func TestAPIRefusalsLogByMeaning(t *testing.T) {
	cases := []struct {
		err   error
		level string
		msg   string
	}{
		{fmt.Errorf("new chat: %w", ErrShuttingDown), "level=INFO", "api request refused while draining"},
		{errAllBusy, "level=WARN", "api request refused"},
		{errQueueFull, "level=WARN", "api request refused"},
		{errors.New("disk on fire"), "level=ERROR", "api request failed"},
		{ErrNotFound, "", ""},
	}
	for _, c := range cases {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		logAPIError(log, httptest.NewRequest(http.MethodPost, "/api/v1/conversations", nil), c.err)
		out := buf.String()
		if c.level == "" {
			if out != "" {
				t.Errorf("%v logged %q, want nothing", c.err, out)
			}
			continue
		}
		if !strings.Contains(out, c.level) || !strings.Contains(out, `msg="`+c.msg+`"`) {
			t.Errorf("%v logged %q, want %s %q", c.err, out, c.level, c.msg)
		}
	}
}

// TestRTPTimeoutConfig: sip.rtp_timeout is checked with an error naming
// the key, and a call whose phone side goes silent ends after it (here
// the 2 s minimum) rather than after the 30 s default, with
// the silent-line reason.
func TestRTPTimeoutConfig(t *testing.T) {
	for _, v := range []string{"1s", "2h", "-3s"} {
		_, err := ParseConfig([]byte(withHTTP("sip:\n  rtp_timeout: "+v+"\n")), testEnv)
		if err == nil || !strings.Contains(err.Error(), "sip.rtp_timeout: ") || !strings.Contains(err.Error(), "from 2s to 1h") {
			t.Errorf("rtp_timeout %s: %v", v, err)
		}
	}
	cfg, err := ParseConfig([]byte(withHTTP("sip:\n  rtp_timeout: 3s\n")), testEnv)
	if err != nil || cfg.SIP.RTPTimeout != 3*time.Second {
		t.Fatalf("rtp_timeout 3s: %v", err)
	}

	phone := newFakeLeg()
	phone.frozenStats = true
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	e := voiceServer(t, phones, &fakePeers{}, func(c *Config) { c.SIP.RTPTimeout = 2 * time.Second })
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	if c := waitCall(t, cws, callEnded); c.Cause != "media_timeout" || !strings.Contains(c.Reason, "silent") {
		t.Fatalf("ended: %+v", c)
	}
	select {
	case <-phone.done:
	case <-time.After(5 * time.Second):
		t.Fatal("silent phone leg not hung up")
	}
}
