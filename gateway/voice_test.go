package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/webrtc"
)

// recorder is a PCM sink that keeps what it was given.
type recorder struct {
	mu  sync.Mutex
	pcm transcode.PCM16
}

func (r *recorder) WriteSample(s transcode.PCM16) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pcm = append(r.pcm, s...)
	return nil
}
func (r *recorder) SampleRate() int { return 8000 }
func (r *recorder) String() string  { return "recorder" }
func (r *recorder) Close() error    { return nil }
func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pcm)
}

// fakeLeg is an audioLeg that records what it is sent and lets the test
// play audio out of it.
type fakeLeg struct {
	in      *recorder
	mu      sync.Mutex
	out     transcode.PCMWriter
	dtmf    []string
	done    chan struct{}
	once    sync.Once
	err     error
	events  chan sip.Event
	answers int
	cands   []string
	closes  int // how many times Close was called
	// offers counts Offer calls; localOffer is the one waiting for its answer.
	offers     int
	localOffer string
	// frozenStats keeps the received-packet count still (a silent line);
	// otherwise it grows on every read, like a live call.
	frozenStats bool
	rx          uint64
	// drops are frames the leg failed to carry, added to its stats.
	drops sip.MediaStats
	// closeDelay is how long Close takes: a phone that ignores BYE.
	closeDelay time.Duration
	// held, when set, makes Answer wait (holdAnswers).
	held *heldAnswers
}

// heldAnswers makes a leg's Answer calls wait: each sends on entered as
// it starts, then waits until release is closed.
type heldAnswers struct {
	entered chan struct{}
	release chan struct{}
}

// holdAnswers makes the leg's Answer calls from now on wait until the
// returned release is closed; entered gets a value as each one starts.
func (f *fakeLeg) holdAnswers() (entered <-chan struct{}, release chan<- struct{}) {
	h := &heldAnswers{entered: make(chan struct{}, 1), release: make(chan struct{})}
	f.mu.Lock()
	f.held = h
	f.mu.Unlock()
	return h.entered, h.release
}

func newFakeLeg() *fakeLeg {
	return &fakeLeg{in: &recorder{}, done: make(chan struct{}), events: make(chan sip.Event, 8)}
}

func (f *fakeLeg) AudioIn() transcode.PCMWriter { return f.in }
func (f *fakeLeg) SwapAudioOut(w transcode.PCMWriter) transcode.PCMWriter {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.out
	f.out = w
	return old
}
func (f *fakeLeg) play(s transcode.PCM16) {
	f.mu.Lock()
	w := f.out
	f.mu.Unlock()
	if w != nil {
		_ = w.WriteSample(s)
	}
}
func (f *fakeLeg) SendDTMF(_ context.Context, d string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dtmf = append(f.dtmf, d)
	return nil
}
func (f *fakeLeg) Done() <-chan struct{} { return f.done }
func (f *fakeLeg) AfterDone(fn func())   { go func() { <-f.done; fn() }() }
func (f *fakeLeg) hangup(err error) {
	f.once.Do(func() { f.err = err; close(f.done) })
}
func (f *fakeLeg) Close() error {
	f.mu.Lock()
	f.closes++
	delay := f.closeDelay
	f.mu.Unlock()
	time.Sleep(delay)
	f.hangup(sip.ErrClosed)
	return nil
}
func (f *fakeLeg) Err() error {
	select {
	case <-f.done:
		return f.err
	default:
		return nil
	}
}
func (f *fakeLeg) Events() <-chan sip.Event { return f.events }
func (f *fakeLeg) Codec() string            { return "PCMU" }
func (f *fakeLeg) Stats() sip.MediaStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozenStats {
		f.rx += 50
	}
	st := f.drops
	st.PacketsReceived, st.PacketsLost, st.JitterMs = 98+f.rx, 2, 3
	return st
}
func (f *fakeLeg) Answer(_ context.Context, offer string) (string, error) {
	if !strings.HasPrefix(offer, "v=0") {
		return "", errors.New("not sdp")
	}
	f.mu.Lock()
	f.answers++
	held := f.held
	f.mu.Unlock()
	if held != nil {
		held.entered <- struct{}{}
		<-held.release
	}
	return "v=0 answer", nil
}

// Offer makes a numbered offer that waits for its answer, as pion's does.
func (f *fakeLeg) Offer(context.Context, bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.localOffer != "" {
		return "", errors.New("an offer waits for its answer")
	}
	f.offers++
	f.localOffer = fmt.Sprintf("v=0 server offer %d", f.offers)
	return f.localOffer, nil
}
func (f *fakeLeg) SetAnswer(_ context.Context, sdp string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.localOffer == "" {
		return errors.New("no offer to answer")
	}
	f.localOffer = ""
	return nil
}
func (f *fakeLeg) LocalOffer() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.localOffer
}
func (f *fakeLeg) AddICECandidate(c json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cands = append(f.cands, string(c))
	return nil
}

type fakePhones struct {
	mu      sync.Mutex
	dials   []string
	headers []map[string]string
	names   []string
	result  func() (*fakeLeg, error)
	// ringing, when set, keeps each dial ringing until its context ends,
	// then fails it as a SIP stack would, with a plain error.
	ringing bool
}

func (p *fakePhones) Dial(ctx context.Context, trunk, target string, opts sip.DialOptions) (phoneCall, error) {
	p.mu.Lock()
	p.dials = append(p.dials, trunk+" "+target)
	p.headers = append(p.headers, opts.Headers)
	p.names = append(p.names, opts.DisplayName)
	p.mu.Unlock()
	if opts.OnProgress != nil {
		opts.OnProgress(sip.Progress{Code: 180})
	}
	if p.ringing {
		<-ctx.Done()
		return nil, fmt.Errorf("sip: INVITE cancelled: %w", ctx.Err())
	}
	leg, err := p.result()
	if err != nil {
		return nil, err
	}
	return leg, nil
}

type fakePeers struct {
	mu   sync.Mutex
	legs []*fakeLeg
	// stats, when set, are what the peers report of their audio
	// (webrtc.Peer.Stats); without it a peer reports none.
	stats *webrtc.Stats
}

// fakeStatsPeer is a fake browser leg that reports stats.
type fakeStatsPeer struct {
	*fakeLeg
	stats webrtc.Stats
}

func (p *fakeStatsPeer) Stats() webrtc.Stats { return p.stats }

func (p *fakePeers) NewPeer(ctx context.Context, conv string, hooks peerHooks) (browserPeer, error) {
	signal := hooks.candidate
	leg := newFakeLeg()
	p.mu.Lock()
	p.legs = append(p.legs, leg)
	stats := p.stats
	p.mu.Unlock()
	signal(json.RawMessage(`{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0"}`))
	if stats != nil {
		return &fakeStatsPeer{leg, *stats}, nil
	}
	return leg, nil
}

func (p *fakePeers) last() *fakeLeg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.legs[len(p.legs)-1]
}

func voiceServer(t *testing.T, phones *fakePhones, peers *fakePeers, mutate func(*Config), opts ...Option) *env2 {
	return newTestServerOpts(t, func(c *Config) {
		c.Trunks = []sip.TrunkConfig{{Name: "pbx", URI: "sip:pbx.test", Transport: "udp", Codecs: []string{"PCMU"}, RegisterExpiry: 60}}
		c.Queues[0].Trunk = "pbx"
		c.Queues[0].Dial = "sip:600@pbx.test"
		c.Agents[0].Phone = "sip:1001@pbx.test"
		if mutate != nil {
			mutate(c)
		}
	}, append([]Option{withPhones(phones), withPeers(peers)}, opts...)...)
}

func waitCall(t *testing.T, w *wsc, state string) wireCall {
	t.Helper()
	for {
		c := decode[wireCall](t, w.expect("call")["call"])
		if c.State == state {
			return c
		}
	}
}

func TestVoiceBridgesBrowserAndDeskPhone(t *testing.T) {
	phone := newFakeLeg()
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	peers := &fakePeers{}
	e := voiceServer(t, phones, peers, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann <Lee>\r\nX-Evil: 1")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	cws := e.customerWS(token)

	// The browser cannot choose where the call goes: extra fields are ignored.
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer", "target": "sip:+900@evil", "digits": "sip:x"})
	if sdp := decode[string](t, cws.expect("rtc.answer")["sdp"]); sdp != "v=0 answer" {
		t.Fatalf("answer: %q", sdp)
	}
	cws.expect("rtc.candidate")
	cws.send(map[string]any{"type": "rtc.candidate", "candidate": map[string]any{"candidate": "candidate:2 1 udp 2 127.0.0.1 6000 typ host", "sdpMid": "0"}})
	c := waitCall(t, cws, callConnected)
	if c.Codec != "PCMU" || c.Target != "1001" {
		t.Fatalf("connected call: %+v", c)
	}
	waitCall(t, aws, callConnected)
	phones.mu.Lock()
	dial, hdr, name := phones.dials[0], phones.headers[0], phones.names[0]
	phones.mu.Unlock()
	if dial != "pbx sip:1001@pbx.test" {
		t.Fatalf("dialled %q, want alice's phone through the queue's trunk", dial)
	}
	if name != "Ann <Lee>X-Evil: 1" {
		t.Fatalf("display name %q", name)
	}
	if hdr["X-Segue-Conversation"] != id || hdr["X-Segue-Queue"] != "support" || !strings.Contains(hdr["Call-Info"], "/console/c/"+id+">;purpose=info") ||
		hdr["User-to-User"] == "" || strings.ContainsAny(hdr["X-Segue-Customer"], "\r\n") {
		t.Fatalf("context headers: %v", hdr)
	}

	// Audio both ways through the bridge.
	// (A frame may come before the bridge has wired that direction, and
	// the bridge moves audio on the media clock's ticks: each side plays
	// a frame until the other hears.)
	peer := peers.last()
	waitUntil(t, "the phone to hear the browser", func() bool {
		peer.play(make(transcode.PCM16, 160))
		return phone.in.len() >= 160
	})
	before := peer.in.len()
	waitUntil(t, "the browser to hear the phone", func() bool {
		phone.play(make(transcode.PCM16, 160))
		return peer.in.len() >= before+160
	})

	// Keypad digits go to the phone; bad digits are refused.
	cws.send(map[string]any{"type": "voice.dtmf", "digits": "12#"})
	cws.send(map[string]any{"type": "voice.dtmf", "digits": "1; rm"})
	if f := cws.expect("error"); decode[string](t, f["code"]) != "bad_frame" {
		t.Fatalf("bad digits: %v", f)
	}
	// Digits are sent off the socket's goroutine, in order.
	deadline := time.Now().Add(5 * time.Second)
	for {
		phone.mu.Lock()
		dtmf := strings.Join(phone.dtmf, ",")
		phone.mu.Unlock()
		if dtmf == "12#" {
			break
		}
		if dtmf != "" || time.Now().After(deadline) {
			t.Fatalf("dtmf sent: %q", dtmf)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Hold from the PBX shows on both sides.
	phone.events <- sip.Event{Kind: sip.EventHold}
	waitCall(t, cws, callHeld)
	phone.events <- sip.Event{Kind: sip.EventResume}
	waitCall(t, cws, callConnected)

	// The desk phone hangs up: only the voice leg ends; chat goes on.
	phone.hangup(sip.ErrRemoteHangup)
	if c := waitCall(t, cws, callEnded); c.EndedBy != "agent" {
		t.Fatalf("ended: %+v", c)
	}
	cws.send(map[string]any{"type": "message", "id": "after", "text": "still chatting"})
	cws.expect("ack")
	calls, err := e.st.Calls(context.Background(), id)
	if err != nil || len(calls) != 1 || calls[0].EndedAt.IsZero() || calls[0].Codec != "PCMU" || len(calls[0].Stats) == 0 {
		t.Fatalf("call record: %+v %v", calls, err)
	}
	resp, err := alice.Get(e.ts.URL + "/api/v1/conversations/" + id + "/calls")
	if err != nil {
		t.Fatal(err)
	}
	var listed struct{ Calls []wireCallRecord }
	json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if len(listed.Calls) != 1 || listed.Calls[0].Target != "1001" || listed.Calls[0].Cause != "The agent hung up" ||
		!strings.Contains(string(listed.Calls[0].Quality), `"mos"`) {
		t.Fatalf("call records for the agent: %+v", listed)
	}
	// Voice can start again.
	phone2 := newFakeLeg()
	phones.mu.Lock()
	phones.result = func() (*fakeLeg, error) { return phone2, nil }
	phones.mu.Unlock()
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 again"})
	waitCall(t, cws, callConnected)
	cws.send(map[string]any{"type": "voice.hangup"})
	if c := waitCall(t, cws, callEnded); c.EndedBy != "customer" {
		t.Fatalf("customer hangup: %+v", c)
	}
	select {
	case <-phone2.done:
	case <-time.After(5 * time.Second):
		t.Fatal("phone leg not closed after the customer hung up")
	}
}

func TestVoiceFailuresReachTheCustomer(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
	}{
		{&sip.StatusError{Code: 486, Reason: "Busy Here"}, "busy"},
		{sip.ErrNoAnswer, "Nobody answered"},
		{&sip.StatusError{Code: 503, Reason: "Service Unavailable"}, "unavailable"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			phones := &fakePhones{result: func() (*fakeLeg, error) { return nil, tc.err }}
			peers := &fakePeers{}
			e := voiceServer(t, phones, peers, nil)
			_, token := e.startChat("Ann")
			cws := e.customerWS(token)
			cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
			c := waitCall(t, cws, callFailed)
			if !strings.Contains(c.Reason, tc.reason) {
				t.Fatalf("reason %q, want it to say %q", c.Reason, tc.reason)
			}
			phones.mu.Lock()
			dial := phones.dials[0]
			phones.mu.Unlock()
			if dial != "pbx sip:600@pbx.test" {
				t.Fatalf("with no agent the queue number is rung, got %q", dial)
			}
			select {
			case <-peers.last().done:
			case <-time.After(5 * time.Second):
				t.Fatal("browser peer not closed after the failure")
			}
		})
	}
}

// TestCustomerHangsUpWhileRinging: a call the customer abandons while
// the desk phone rings ends as the customer's hang-up, not as a line
// failure.
func TestCustomerHangsUpWhileRinging(t *testing.T) {
	phones := &fakePhones{ringing: true}
	peers := &fakePeers{}
	e := voiceServer(t, phones, peers, nil)
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callRinging)
	cws.send(map[string]any{"type": "voice.hangup"})
	c := waitCall(t, cws, callEnded)
	if c.Cause != "customer_hangup" || c.EndedBy != "customer" {
		t.Fatalf("call ended with cause %q by %q, want customer_hangup by customer", c.Cause, c.EndedBy)
	}
}

func TestVoiceRefusedWithoutDestinationOrPastLimit(t *testing.T) {
	phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
	e := voiceServer(t, phones, &fakePeers{}, func(c *Config) {
		c.Queues[0].Dial = ""
		c.Limits.MaxCalls = 1
	})
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	if f := cws.expect("error"); decode[string](t, f["code"]) != "no_destination" {
		t.Fatalf("no destination: %v", f)
	}
	e.srv.hub.mu.Lock()
	e.srv.hub.queues["support"] = QueueConfig{Name: "support", Trunk: "pbx", Dial: "sip:600@pbx.test", MaxWaiting: 10}
	e.srv.hub.mu.Unlock()
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	_, token2 := e.startChat("Bea")
	cws2 := e.customerWS(token2)
	cws2.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	if f := cws2.expect("error"); decode[string](t, f["code"]) != "busy" {
		t.Fatalf("past limits.max_calls: %v", f)
	}
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	if f := cws.expect("error"); decode[string](t, f["code"]) != "in_call" {
		t.Fatalf("second call in one conversation: %v", f)
	}
}

func TestVoiceOffWithoutSIP(t *testing.T) {
	e := newTestServer(t, nil)
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	if f := cws.expect("error"); decode[string](t, f["code"]) != "voice_unavailable" {
		t.Fatalf("voice without SIP: %v", f)
	}
}

func TestEstimateMOS(t *testing.T) {
	if m := estimateMOS(0, 1); m < 4.2 || m > 4.5 {
		t.Errorf("clean call MOS %.2f", m)
	}
	if a, b := estimateMOS(1, 5), estimateMOS(10, 5); !(a > b) || b > 3.5 {
		t.Errorf("loss must lower MOS: 1%%=%.2f 10%%=%.2f", a, b)
	}
}

type fakeInvite struct {
	user     string
	ringing  chan struct{}
	phone    *fakeLeg
	transfer sip.DialOptions // what Accept was given for a later transfer
}

func (f *fakeInvite) User() string   { return f.user }
func (f *fakeInvite) Trunk() string  { return "pbx" }
func (f *fakeInvite) Ringing() error { close(f.ringing); return nil }
func (f *fakeInvite) Accept(_ context.Context, w transcode.PCMWriter, transfer sip.DialOptions) (phoneCall, error) {
	f.transfer = transfer
	f.phone.SwapAudioOut(w)
	return f.phone, nil
}

func TestPBXCallsIntoAConversation(t *testing.T) {
	phones := &fakePhones{result: func() (*fakeLeg, error) { return newFakeLeg(), nil }}
	e := voiceServer(t, phones, &fakePeers{}, nil)
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)

	// Unknown conversations and other users are refused.
	var se *sip.StatusError
	if err := e.srv.handleInvite(context.Background(), &fakeInvite{user: "conv-c_nope"}); !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("unknown conversation: %v", err)
	}
	if err := e.srv.handleInvite(context.Background(), &fakeInvite{user: "1001"}); !errors.As(err, &se) || se.Code != 404 {
		t.Fatalf("other user: %v", err)
	}

	in := &fakeInvite{user: "conv-" + id, ringing: make(chan struct{}), phone: newFakeLeg()}
	errc := make(chan error, 1)
	go func() { errc <- e.srv.handleInvite(context.Background(), in) }()
	if c := decode[wireCall](t, cws.expect("call.incoming")["call"]); c.Direction != "inbound" || c.State != callRinging {
		t.Fatalf("incoming call: %+v", c)
	}
	<-in.ringing
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 accept"})
	cws.expect("rtc.answer")
	if err := <-errc; err != nil {
		t.Fatalf("invite handler: %v", err)
	}
	waitCall(t, cws, callConnected)
	// A transfer by the desk phone carries the context a dialled call does.
	if in.transfer.DisplayName != "Ann" || in.transfer.Headers["X-Segue-Conversation"] != id ||
		in.transfer.Headers["User-to-User"] == "" || !strings.Contains(in.transfer.Headers["Call-Info"], "/console/c/"+id) {
		t.Errorf("transfer context %+v", in.transfer)
	}
	in.phone.play(make(transcode.PCM16, 160))
	in.phone.hangup(sip.ErrRemoteHangup)
	waitCall(t, cws, callEnded)

	// Declined: 603 to the PBX.
	in2 := &fakeInvite{user: "conv-" + id, ringing: make(chan struct{}), phone: newFakeLeg()}
	go func() { errc <- e.srv.handleInvite(context.Background(), in2) }()
	cws.expect("call.incoming")
	cws.send(map[string]any{"type": "voice.hangup"})
	if err := <-errc; !errors.As(err, &se) || se.Code != 603 {
		t.Fatalf("declined: %v", err)
	}
}

// transcriptEvent reads frames until a transcript event arrives and
// returns its name and text.
func transcriptEvent(t *testing.T, w *wsc) (name, text string) {
	t.Helper()
	for {
		m := decode[struct {
			Text  string
			Event *struct{ Name string }
		}](t, w.expect("message")["message"])
		if m.Event != nil {
			return m.Event.Name, m.Text
		}
	}
}

// TestTranscriptSaysWhereATransferWent: the desk phone's REFER accepted
// (202) writes nothing yet; a failed transfer says so with the reason,
// and only an answered one says where the call went.
func TestTranscriptSaysWhereATransferWent(t *testing.T) {
	phone := newFakeLeg()
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	e := voiceServer(t, phones, &fakePeers{}, nil)
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	for name, _ := transcriptEvent(t, cws); name != "voice.connected"; name, _ = transcriptEvent(t, cws) {
	}

	target := "sip:1002@pbx.test:5060;transport=udp"
	phone.events <- sip.Event{Kind: sip.EventTransfer, Target: target}
	phone.events <- sip.Event{Kind: sip.EventTransferFailed, Target: target, Cause: &sip.StatusError{Code: 486, Reason: "Busy Here"}}
	if name, text := transcriptEvent(t, cws); name != "voice.transfer_failed" || text != "Transfer to 1002 failed: The line is busy" {
		t.Errorf("after a refused transfer: %s %q", name, text)
	}
	phone.events <- sip.Event{Kind: sip.EventTransfer, Target: target}
	phone.events <- sip.Event{Kind: sip.EventTransferred, Target: target}
	if name, text := transcriptEvent(t, cws); name != "voice.transferred" || text != "Call transferred to 1002" {
		t.Errorf("after an answered transfer: %s %q", name, text)
	}
	phone.hangup(sip.ErrRemoteHangup)
	waitCall(t, cws, callEnded)
}

func TestAgentCallsTheCustomer(t *testing.T) {
	deskPhone := newFakeLeg()
	phones := &fakePhones{result: func() (*fakeLeg, error) { return deskPhone, nil }}
	e := voiceServer(t, phones, &fakePeers{}, nil)
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	id, token := e.startChat("Ann")
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	cws := e.customerWS(token)
	aws.send(map[string]any{"type": "voice.call", "conversation_id": id})
	if c := decode[wireCall](t, cws.expect("call.incoming")["call"]); c.Direction != "agent" {
		t.Fatalf("incoming: %+v", c)
	}
	phones.mu.Lock()
	dial := phones.dials[0]
	phones.mu.Unlock()
	if dial != "pbx sip:1001@pbx.test" {
		t.Fatalf("the agent's phone rings first, got %q", dial)
	}
	// The agent hears ringing while the customer's widget rings.
	deadline := time.Now().Add(5 * time.Second)
	for deskPhone.in.len() < 800 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if deskPhone.in.len() < 800 {
		t.Fatalf("agent heard %d samples of ringback", deskPhone.in.len())
	}
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 accept"})
	waitCall(t, aws, callConnected)
	aws.send(map[string]any{"type": "voice.hangup", "conversation_id": id})
	if c := waitCall(t, cws, callEnded); c.EndedBy != "agent" {
		t.Fatalf("ended: %+v", c)
	}
}

func TestSilentPhoneLegEndsTheCall(t *testing.T) {
	statsInterval, rtpTimeout = 20*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { statsInterval, rtpTimeout = 5*time.Second, 30*time.Second })
	phone := newFakeLeg()
	phone.frozenStats = true
	phones := &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}
	e := voiceServer(t, phones, &fakePeers{}, nil)
	_, token := e.startChat("Ann")
	cws := e.customerWS(token)
	cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, cws, callConnected)
	if c := waitCall(t, cws, callEnded); !strings.Contains(c.Reason, "silent") {
		t.Fatalf("ended: %+v", c)
	}
	select {
	case <-phone.done:
	case <-time.After(5 * time.Second):
		t.Fatal("silent phone leg not hung up")
	}
}
