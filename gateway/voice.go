package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/transcode"
	"github.com/segue-rtc/segue/webrtc"
)

// audioLeg is one side of a voice bridge: PCM in and out at 8 kHz.
type audioLeg interface {
	AudioIn() transcode.PCMWriter
	SwapAudioOut(w transcode.PCMWriter) (old transcode.PCMWriter)
	SendDTMF(ctx context.Context, digits string) error
	Done() <-chan struct{}
	Close() error
}

// phoneCall is an answered SIP call (sip.Call satisfies it).
type phoneCall interface {
	audioLeg
	Events() <-chan sip.Event
	Codec() string
	Stats() sip.MediaStats
	Err() error
}

// phoneSystem places SIP calls (the sip.Server, through sipPhones).
type phoneSystem interface {
	Dial(ctx context.Context, trunk, target string, opts sip.DialOptions) (phoneCall, error)
}

// browserPeer is the customer's WebRTC peer connection for a call.
type browserPeer interface {
	audioLeg
	// Answer takes the browser's SDP offer (first or renegotiated) and
	// returns our answer.
	Answer(ctx context.Context, offer string) (string, error)
	// AddICECandidate adds a trickled candidate, in the browser's
	// RTCIceCandidateInit JSON.
	AddICECandidate(candidate json.RawMessage) error
	// Offer and SetAnswer renegotiate from our side (tracks added or
	// removed toward the browser).
	Offer(ctx context.Context, iceRestart bool) (string, error)
	SetAnswer(ctx context.Context, answer string) error
	// LocalOffer returns our offer still waiting for its answer, or "".
	LocalOffer() string
	// AfterDone runs f in a goroutine of its own once the peer has ended,
	// with no goroutine waiting for that meanwhile.
	AfterDone(f func())
}

// peerFactory makes browser peers.
type peerFactory interface {
	NewPeer(ctx context.Context, name string, hooks peerHooks) (browserPeer, error)
}

// peerHooks are a peer's callbacks; none may block.
type peerHooks struct {
	// candidate receives our ICE candidates as RTCIceCandidateInit JSON.
	candidate func(json.RawMessage)
	// dtmf receives digits the browser sends as RFC 4733 events.
	dtmf func(digit rune)
	// video receives each video track the browser starts sending.
	video func(remoteVideo)
	// wideband leaves the narrowband Opus hints out of the peer's SDP:
	// its audio only goes to another browser (wideband.go).
	wideband bool
}

// sipPhones adapts *sip.Server to phoneSystem.
type sipPhones struct{ srv *sip.Server }

func (p sipPhones) Dial(ctx context.Context, trunk, target string, opts sip.DialOptions) (phoneCall, error) {
	c, err := p.srv.Dial(ctx, trunk, target, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Call states shown to both sides (docs/api.md).
const (
	callDialing   = "dialing"
	callRinging   = "ringing"
	callConnected = "connected"
	callHeld      = "held"
	callEnded     = "ended"
	callFailed    = "failed"
)

// voiceCall bridges the customer's browser to a desk phone.
type voiceCall struct {
	s      *Server
	id     string
	cv     *conv
	ctx    context.Context
	cancel context.CancelCauseFunc
	peer   browserPeer
	toWeb  *lockedWriter
	target string
	trunk  string
	done   chan struct{}
	// direction: "outbound" (the customer pressed the mic), "inbound" (the
	// PBX called the conversation), "agent" (the agent asked to call the
	// customer: desk phone first, then the browser).
	direction  string
	accepted   chan struct{}
	acceptOnce sync.Once
	keys       chan string // keypad digits waiting to be sent

	mu         sync.Mutex
	earlyMedia bool
	cause      string // machine-readable end cause (docs/api.md)
	phone      phoneCall
	state      string
	reason     string
	endedBy    string
	started    time.Time
	answered   time.Time
	ended      time.Time

	// recMode and recAnnounce are the queue's recording settings when
	// the call started (queues[].recording, recording_announcement).
	recMode, recAnnounce string
	// recMu guards rec, the recording in progress, and announceLeft, the
	// samples of the recording announcement still to mix into the audio
	// toward the phone [0] and toward the customer [1].
	recMu        sync.Mutex
	rec          *callRecording
	announceLeft [2]int
	// drops are the frame drops already added to the metrics.
	drops frameDrops
}

type wireCall struct {
	ID         string     `json:"id"`
	Direction  string     `json:"direction"`
	State      string     `json:"state"`
	Reason     string     `json:"reason,omitempty"`
	Cause      string     `json:"cause,omitempty"`
	EndedBy    string     `json:"ended_by,omitempty"`
	Target     string     `json:"target"`
	Codec      string     `json:"codec,omitempty"`
	StartedAt  time.Time  `json:"started_at"`
	AnsweredAt *time.Time `json:"answered_at,omitempty"`
	Quality    *quality   `json:"quality,omitempty"`
	// Demo is true when the call goes to the embedded demo phone
	// (demo_phone), not a real desk phone: the console says so.
	Demo bool `json:"demo,omitempty"`
	// Recording is true while the call is being recorded; RecordingMode
	// is the queue's recording setting (off, always, on_demand).
	Recording     bool   `json:"recording,omitempty"`
	RecordingMode string `json:"recording_mode,omitempty"`
}

type quality struct {
	PacketsSent     uint64  `json:"packets_sent"`
	PacketsReceived uint64  `json:"packets_received"`
	LossPercent     float64 `json:"loss_percent"`
	JitterMs        float64 `json:"jitter_ms"`
	MOS             float64 `json:"mos"`
	// Concealed counts the phone side's 20 ms frames that loss
	// concealment filled in.
	Concealed uint64 `json:"concealed"`
	// BrowserLossPercent is the share of the browser's audio packets lost
	// on their way to the gateway (RFC 3550 §6.4.1 expected minus
	// received), in percent; BrowserJitterMs their interarrival jitter and
	// BrowserConcealed the frames the gateway rebuilt for them (Opus
	// in-band FEC or loss concealment), of which BrowserFECRecovered
	// came from the in-band FEC of the packet after the lost one.
	BrowserLossPercent  float64 `json:"browser_loss_percent"`
	BrowserJitterMs     float64 `json:"browser_jitter_ms"`
	BrowserConcealed    uint64  `json:"browser_concealed"`
	BrowserFECRecovered uint64  `json:"browser_fec_recovered"`
	// FramesDroppedToPhone and FramesDroppedToCustomer count the 20 ms
	// frames the gateway itself failed to carry toward each side (its
	// media clock stalled, a queue overflowed), apart from what the
	// network lost.
	FramesDroppedToPhone    uint64 `json:"frames_dropped_to_phone"`
	FramesDroppedToCustomer uint64 `json:"frames_dropped_to_customer"`
	// GatewayLossPercent is the share of frames the gateway dropped in
	// the worse direction. MOS counts it as loss, with the network's.
	GatewayLossPercent float64 `json:"gateway_loss_percent"`
	// BrowserMediaGaps counts the silences of a quarter second or more in
	// the browser's audio toward the gateway that ended with the audio
	// coming back (a network change and its ICE restart, a path that
	// healed), and BrowserLongestGapMs is the longest, in milliseconds.
	BrowserMediaGaps    uint64  `json:"browser_media_gaps"`
	BrowserLongestGapMs float64 `json:"browser_longest_gap_ms"`
	// FECPercentToCustomer is the share of the frames the gateway's Opus
	// encoder coded toward the browser with in-band FEC on, and
	// FECSwitchesToCustomer how often it changed between that and its
	// cheap effort without FEC (webrtc.opus_complexity: auto turns FEC
	// on while the browser reports loss).
	FECPercentToCustomer  float64 `json:"fec_percent_to_customer"`
	FECSwitchesToCustomer uint64  `json:"fec_switches_to_customer"`
}

// Sentinel voice errors, as API errors.
var (
	errVoiceOff = errf(http.StatusServiceUnavailable, "voice_unavailable", "voice calls are not enabled on this gateway")
	errInCall   = errf(http.StatusConflict, "in_call", "a call is already in progress")
	errNoCall   = errf(http.StatusConflict, "no_call", "there is no call in progress")
	errNoPhone  = errf(http.StatusConflict, "no_destination", "no phone can be rung for this conversation yet")
	// errAllBusy: past limits.max_calls or while the gateway is
	// overloaded (admitCallLocked); the widget words it as all lines busy.
	errAllBusy = &apiError{Status: http.StatusServiceUnavailable, Code: "busy", RetryAfter: busyRetryAfter,
		Message: "all lines are busy; please try again in a minute"}
	// errVoiceBeforeAccept: the queue has voice: after_accept and no agent
	// holds the conversation yet.
	errVoiceBeforeAccept = errf(http.StatusConflict, "voice_not_available", "calls open once an agent has joined the chat")
	// errVoiceQueueOff: the queue has voice: off.
	errVoiceQueueOff = errf(http.StatusForbidden, "voice_not_available", "calls are not offered in this chat")
)

// voicePolicyLocked applies the queues[].voice policy of cv's queue to a
// call the customer starts; hub.mu held. Nil means allowed.
func (h *hub) voicePolicyLocked(cv *conv) error {
	switch h.queues[cv.c.Queue].Voice {
	case VoiceOff:
		return errVoiceQueueOff
	case VoiceAfterAccept:
		if cv.c.State != store.StateActive || cv.c.AgentID == "" {
			return errVoiceBeforeAccept
		}
	}
	return nil
}

// voiceOffLocked reports whether cv's queue has no voice at all, not even
// calls toward the customer; hub.mu held.
func (h *hub) voiceOffLocked(cv *conv) bool { return h.queues[cv.c.Queue].Voice == VoiceOff }

// checkCallStart applies the call-start limits to a call the customer of
// cv asks for from address ip; it counts nothing. The error says how long
// to wait.
func (s *Server) checkCallStart(ip string, cv *conv, now time.Time) error {
	okAddr, waitAddr := s.callsByAddr.check(addrKey(ip), now)
	okConv, waitConv := s.callsByConv.check(cv.c.ID, now)
	if okAddr && okConv {
		return nil
	}
	reason, wait, what := "ip_limit", waitAddr, "from this address"
	if !okConv && (okAddr || waitConv > waitAddr) {
		reason, wait, what = "conversation_limit", waitConv, "in this conversation"
	}
	s.metrics.callsRefused.WithLabelValues(reason).Inc()
	secs := int(math.Ceil(wait.Seconds()))
	return &apiError{Status: http.StatusTooManyRequests, Code: "rate_limited", RetryAfter: max(secs, 1),
		Message: fmt.Sprintf("too many calls %s; try again in %d minutes", what, (max(secs, 1)+59)/60)}
}

// countCallStart counts a call the customer started; the returned func
// takes it back (the call went no further than our side).
func (s *Server) countCallStart(ip string, cv *conv, now time.Time) (undo func()) {
	addr, id := addrKey(ip), cv.c.ID
	s.callsByAddr.add(addr, now)
	s.callsByConv.add(id, now)
	return func() {
		s.callsByAddr.remove(addr, now)
		s.callsByConv.remove(id, now)
	}
}

// lockedWriter serialises writers that share one destination (ringback
// and the phone's early media toward the browser).
type lockedWriter struct {
	mu  sync.Mutex
	dst transcode.PCMWriter
}

func (l *lockedWriter) WriteSample(s transcode.PCM16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dst.WriteSample(s)
}
func (l *lockedWriter) SampleRate() int { return l.dst.SampleRate() }
func (l *lockedWriter) String() string  { return "Locked -> " + l.dst.String() }
func (l *lockedWriter) Close() error    { return nil }

// noClose hands a leg's own input to another leg without letting the
// bridge close it: each leg owns its input.
type noClose struct{ transcode.PCMWriter }

func (noClose) Close() error { return nil }

// destination decides whom to ring: the assigned agent's desk phone, or
// the queue's number. It comes from the config only, never the browser.
func (h *hub) destinationLocked(cv *conv) (trunk, target, label string, err error) {
	q := h.queues[cv.c.Queue]
	trunk = q.Trunk
	if trunk == "" && len(h.cfg.Trunks) == 1 {
		trunk = h.cfg.Trunks[0].Name
	}
	if a, ok := h.agents[cv.c.AgentID]; ok && a.cfg.Phone != "" {
		target, label = a.cfg.Phone, a.cfg.Name+"'s phone"
	} else if q.Dial != "" {
		target, label = q.Dial, "the "+q.Name+" team"
	}
	if target == "" || trunk == "" {
		return "", "", "", errNoPhone
	}
	return trunk, target, label, nil
}

func (h *hub) activeCallsLocked() int {
	n := 0
	for _, cv := range h.convs {
		if cv.voice != nil {
			n++
		}
	}
	return n
}

// newVoiceLocked registers a call on cv; hub.mu held. It enforces one call
// per conversation and limits.max_calls.
func (s *Server) newVoiceLocked(ctx context.Context, cv *conv, direction, trunk, target string) (*voiceCall, error) {
	if cv.c.State == store.StateEnded {
		return nil, ErrEnded
	}
	if s.hub.closing {
		return nil, ErrShuttingDown
	}
	if cv.voice != nil {
		return nil, errInCall
	}
	if err := s.admitCallLocked(); err != nil {
		return nil, err
	}
	vctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	v := &voiceCall{s: s, id: newID("k_"), cv: cv, ctx: vctx, cancel: cancel, target: target, trunk: trunk,
		direction: direction, accepted: make(chan struct{}), done: make(chan struct{}), state: callDialing,
		keys:    make(chan string, 16),
		started: time.Now().UTC()}
	q := s.hub.queues[cv.c.Queue]
	v.recMode, v.recAnnounce = q.Recording, q.RecordingAnnouncement
	cv.voice = v
	s.metrics.callsActive.Inc()
	return v, nil
}

// dropVoice unregisters a call that never got going.
func (s *Server) dropVoice(v *voiceCall, cause error) {
	v.cancel(cause)
	s.hub.mu.Lock()
	if v.cv.voice == v {
		v.cv.voice = nil
	}
	s.hub.mu.Unlock()
	s.metrics.callsActive.Dec()
	close(v.done)
}

// startVoice takes the customer's offer: it starts a call to the desk
// phone, or accepts a call that is ringing the customer.
func (s *Server) startVoice(ctx context.Context, cl *client, cv *conv, offer string) error {
	if s.phones == nil || s.peers == nil {
		return errVoiceOff
	}
	if offer == "" || len(offer) > 64<<10 {
		return errf(http.StatusBadRequest, "bad_frame", "voice.start needs the SDP offer in sdp")
	}
	h := s.hub
	h.mu.Lock()
	if v := cv.voice; v != nil && v.awaitingCustomer() {
		h.mu.Unlock()
		if err := s.setupPeer(v, cl, offer); err != nil {
			v.cancel(errBadOffer)
			if errors.As(err, new(*apiError)) {
				return err
			}
			return errf(http.StatusBadRequest, "bad_offer", "the browser's call offer could not be used")
		}
		v.markAccepted()
		return nil
	}
	// A call the customer starts: the queue's policy, then whom to ring,
	// then the call-start limits. It counts once it is going to ring.
	if cv.c.State == store.StateEnded {
		h.mu.Unlock()
		return ErrEnded
	}
	if err := h.voicePolicyLocked(cv); err != nil {
		h.mu.Unlock()
		s.metrics.callsRefused.WithLabelValues("queue_policy").Inc()
		return err
	}
	trunk, target, label, err := h.destinationLocked(cv)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	now := h.now()
	if err := s.checkCallStart(cl.ip, cv, now); err != nil {
		h.mu.Unlock()
		s.log.Debug("voice: call start refused", "conv", cv.c.ID, "remote", cl.ip, "err", err)
		return err
	}
	v, err := s.newVoiceLocked(ctx, cv, "outbound", trunk, target)
	var uncount func()
	if err == nil {
		uncount = s.countCallStart(cl.ip, cv, now)
	}
	noteBusy := errors.Is(err, errAllBusy) && now.Sub(cv.busyNoted) >= busyNoteEvery
	if noteBusy {
		cv.busyNoted = now
	}
	h.mu.Unlock()
	if noteBusy {
		// The agent's console shows it too; the customer's retries within
		// busyNoteEvery add nothing to the transcript.
		h.event(ctx, cv, "voice.refused", "A call could not start: all lines are busy", map[string]string{"reason": "busy"})
	}
	if err != nil {
		return err
	}
	if err := s.setupPeer(v, cl, offer); err != nil {
		uncount()
		s.dropVoice(v, err)
		if errors.As(err, new(*apiError)) {
			return err
		}
		s.log.Error("voice: browser leg", "conv", cv.c.ID, "err", err)
		return errf(http.StatusBadRequest, "bad_offer", "the browser's call offer could not be used")
	}
	s.log.Info("voice: dialing", "conv", cv.c.ID, "call", v.id, "trunk", trunk, "target", target)
	v.publish()
	h.event(ctx, cv, "voice.dialing", "Calling "+label, map[string]string{"call": v.id})
	s.saveCallRecord(v)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); v.runOutbound() }()
	return nil
}

// setupPeer answers the customer's offer on the conversation's peer
// connection (made now if there is none yet) for a call.
func (s *Server) setupPeer(v *voiceCall, cl *client, offer string) error {
	rtc, err := s.customerOffer(v.ctx, v.cv, cl, offer, useVoice)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.peer, v.toWeb = rtc.peer, rtc.toWeb
	v.mu.Unlock()
	return nil
}

// runOutbound dials the desk phone for a customer who pressed the mic.
func (v *voiceCall) runOutbound() {
	defer close(v.done)
	s := v.s
	defer s.recoverPanic("voice_call", v.id, v.endAfterPanic)
	opts := v.dialOptions(headerSafe(v.customerName()))
	opts.AudioOut = noClose{v.toWeb}
	opts.OnProgress = func(p sip.Progress) {
		if p.EarlyMedia {
			v.mu.Lock()
			v.earlyMedia = true
			v.mu.Unlock()
		}
		if p.Code == 180 || p.Code == 183 {
			v.setState(callRinging, "")
		}
	}
	// Ringback to the browser until the answer (or the phone's early media).
	ringCtx, stopRing := context.WithCancel(v.ctx)
	var ringWG sync.WaitGroup
	ringWG.Add(1)
	go func() {
		defer ringWG.Done()
		defer s.recoverPanic("voice_ringback", v.id, v.cancel)
		v.ringback(ringCtx, v.toWeb, true)
	}()
	setupStart := time.Now()
	phone, err := s.phones.Dial(v.ctx, v.trunk, v.target, opts)
	stopRing()
	ringWG.Wait()
	if err != nil {
		// A dial cut short by the call's own end (the customer hung up
		// or left while it rang) ends for that reason, not as a failure
		// of the line.
		if cause := context.Cause(v.ctx); cause != nil {
			err = cause
		}
		v.finish(nil, err)
		return
	}
	s.metrics.callSetup.Observe(time.Since(setupStart).Seconds())
	v.bridgeAndWait(phone)
}

func (v *voiceCall) customerName() string {
	v.s.hub.mu.Lock()
	defer v.s.hub.mu.Unlock()
	return v.cv.c.Customer.Name
}

func (v *voiceCall) dialOptions(display string) sip.DialOptions {
	v.s.hub.mu.Lock()
	c := v.cv.c
	v.s.hub.mu.Unlock()
	return sip.DialOptions{DisplayName: display, Headers: contextHeaders(v.s.cfg, &c), RingTimeout: ringTimeout}
}

// statsInterval is how often a connected call's quality is published;
// rtpTimeout, when sip.rtp_timeout is unset, ends a call whose phone side
// sent no RTP for that long while not on hold.
var (
	statsInterval = 5 * time.Second
	rtpTimeout    = 30 * time.Second
)

func (v *voiceCall) held() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state == callHeld
}

// ringTimeout bounds how long a phone or the customer's browser rings.
const ringTimeout = 45 * time.Second

// bridgeAndWait connects the answered phone to the browser and runs the
// call until either side ends it.
func (v *voiceCall) bridgeAndWait(phone phoneCall) {
	s, h := v.s, v.s.hub
	v.mu.Lock()
	v.phone = phone
	v.answered = time.Now().UTC()
	peer := v.peer
	v.mu.Unlock()
	// Stored before anyone is told the call is up: a gateway killed from
	// then on finds the call and its dialog at its next start.
	s.saveCallRecord(v)
	s.saveDialog(v, phone)
	v.setState(callConnected, "")
	// Both legs speak 8 kHz PCM, so no resampler is needed.
	s.routeAudio(v.cv)
	var keys sync.WaitGroup
	keys.Add(1)
	go func() {
		defer keys.Done()
		defer s.recoverPanic("voice_keypad", v.id, v.cancel)
		v.keypad(phone)
	}()
	defer keys.Wait()
	// Runs before keys.Wait: the call must end for the keypad to stop.
	defer s.recoverPanic("voice_bridge", v.id, v.endAfterPanic)
	s.log.Info("voice: connected", "conv", v.cv.c.ID, "call", v.id, "direction", v.direction, "codec", phone.Codec())
	h.event(v.ctx, v.cv, "voice.connected", "Call connected", map[string]string{"call": v.id, "codec": phone.Codec()})
	if v.recMode == RecordingAlways {
		if err := s.startRecording(v, ""); err != nil {
			s.log.Error("recording: not started", "conv", v.cv.c.ID, "call", v.id, "err", err)
		}
	}
	faultPoint("voice_bridge")

	timeout := s.cfg.SIP.RTPTimeout
	if timeout == 0 {
		timeout = rtpTimeout
	}
	// The media is checked at least four times per timeout, so a short
	// sip.rtp_timeout ends a silent call close to when it says.
	stats := time.NewTicker(min(statsInterval, timeout/4))
	defer stats.Stop()
	lastRx, lastRxAt := phone.Stats().PacketsReceived, time.Now()
	lastPublish := lastRxAt
	for {
		select {
		case ev := <-phone.Events():
			v.phoneEvent(ev)
		case <-phone.Done():
			v.finish(phone, phone.Err())
			return
		case <-peer.Done():
			v.finish(phone, errBrowserGone)
			return
		case <-v.ctx.Done():
			if cause := context.Cause(v.ctx); errors.Is(cause, errShutdown) {
				nctx, stop := context.WithTimeout(context.WithoutCancel(v.ctx), 2*time.Second)
				v.playStopNotice(nctx, phone)
				stop()
			}
			v.finish(phone, context.Cause(v.ctx))
			return
		case now := <-stats.C:
			// A phone leg that went silent (no RTP, not on hold) is dead:
			// the PBX lost the call or the network did.
			if rx := phone.Stats().PacketsReceived; rx != lastRx || v.held() {
				lastRx, lastRxAt = rx, now
			} else if now.Sub(lastRxAt) >= timeout {
				s.log.Warn("voice: no RTP from the phone side", "conv", v.cv.c.ID, "call", v.id, "rtp_timeout", timeout)
				v.finish(phone, errRTPTimeout)
				return
			}
			if now.Sub(lastPublish) >= statsInterval {
				lastPublish = now
				v.reportDrops(phone)
				v.publish()
			}
		}
	}
}

// awaitingCustomer reports whether the call waits for the customer to
// accept it (a callback ringing the widget).
func (v *voiceCall) awaitingCustomer() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.direction != "outbound" && v.peer == nil && v.state == callRinging
}

// onPeer reports whether the call's browser leg is the peer connection p.
func (v *voiceCall) onPeer(p browserPeer) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.peer == p
}

func (v *voiceCall) markAccepted() {
	v.acceptOnce.Do(func() { close(v.accepted) })
}

// ringCustomer rings the widget and waits for the customer to accept
// (voice.start with an offer), decline, or let it ring out.
func (v *voiceCall) ringCustomer(caller string) error {
	v.setState(callRinging, "")
	w := v.wire()
	h := v.s.hub
	h.mu.Lock()
	for c := range v.cv.customers {
		c.send(map[string]any{"type": "call.incoming", "conversation_id": v.cv.c.ID, "call": w, "caller": caller})
	}
	h.mu.Unlock()
	t := time.NewTimer(ringTimeout)
	defer t.Stop()
	select {
	case <-v.accepted:
		return nil
	case <-t.C:
		return errCustomerNoAnswer
	case <-v.ctx.Done():
		if errors.Is(context.Cause(v.ctx), errCustomerHangup) {
			return errCustomerDeclined
		}
		return context.Cause(v.ctx)
	}
}

var (
	errRTPTimeout       = errors.New("gateway: no audio from the phone side")
	errBadOffer         = errors.New("gateway: the browser's offer could not be used")
	errCustomerNoAnswer = errors.New("gateway: the customer did not answer")
	errCustomerDeclined = errors.New("gateway: the customer declined the call")
	errCallerGone       = errors.New("gateway: the caller hung up before the customer answered")
	errBrowserGone      = errors.New("gateway: the customer's browser left the call")
	errCustomerHangup   = errors.New("gateway: the customer hung up")
	errAgentHangup      = errors.New("gateway: the agent hung up from the console")
	errConversationEnd  = errors.New("gateway: the conversation ended")
	errShutdown         = errors.New("gateway: shutting down")
	// errInternal is the cause of a call ended by a panic in its own
	// goroutines (recoverPanic).
	errInternal = errors.New("gateway: internal error")
)

func closeQuietly(w transcode.PCMWriter) {
	if w != nil {
		_ = w.Close()
	}
}

// ringback plays a ringing tone into w every 20 ms until ctx ends; with
// onlyRinging it stays silent until the far end rings and stops for early
// media (which then reaches the browser through the same writer).
func (v *voiceCall) ringback(ctx context.Context, w transcode.PCMWriter, onlyRinging bool) {
	rb := transcode.NewRingback(w.SampleRate(), 0.25)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			v.mu.Lock()
			ringing := v.state == callRinging && !v.earlyMedia
			v.mu.Unlock()
			if ringing || !onlyRinging {
				_ = w.WriteSample(rb.Next())
			}
		}
	}
}

func (v *voiceCall) phoneEvent(ev sip.Event) {
	h := v.s.hub
	switch ev.Kind {
	case sip.EventHold:
		v.setState(callHeld, "The agent put you on hold")
		h.event(v.ctx, v.cv, "voice.held", "Call on hold", map[string]string{"call": v.id})
	case sip.EventResume:
		v.setState(callConnected, "")
		h.event(v.ctx, v.cv, "voice.resumed", "Call resumed", map[string]string{"call": v.id})
	case sip.EventDTMF:
		h.mu.Lock()
		h.sendToConvLocked(v.cv, map[string]any{"type": "call.dtmf", "conversation_id": v.cv.c.ID, "digit": string(ev.Digit)})
		h.mu.Unlock()
	case sip.EventMediaChanged:
		v.publish()
	case sip.EventTransfer:
		// Accepted (202) only: the transcript waits for the new party's
		// answer, which may never come.
		v.s.log.Info("voice: transfer requested", "conv", v.cv.c.ID, "call", v.id, "target", ev.Target)
	case sip.EventTransferred:
		// The customer reads the transcript too: it shows the number the
		// call went to, never the trunk's URI (host, port, parameters).
		v.s.log.Info("voice: call transferred", "conv", v.cv.c.ID, "call", v.id, "target", ev.Target)
		to := displayTarget(ev.Target)
		h.event(v.ctx, v.cv, "voice.transferred", "Call transferred to "+to, map[string]string{"call": v.id, "to": to})
	case sip.EventTransferFailed:
		// The call stays with the desk phone that tried to transfer it.
		v.s.log.Info("voice: transfer failed", "conv", v.cv.c.ID, "call", v.id, "target", ev.Target, "error", ev.Cause)
		to := displayTarget(ev.Target)
		_, _, code, reason := endOf(false, ev.Cause)
		h.event(v.ctx, v.cv, "voice.transfer_failed", "Transfer to "+to+" failed: "+reason,
			map[string]string{"call": v.id, "to": to, "code": code, "reason": reason})
	}
}

// endOf says how a call ended: its state, who ended it, a stable cause
// code for clients to word for their side, and neutral words for logs,
// records and clients that show them as they are.
func endOf(answered bool, cause error) (state, by, code, reason string) {
	ended := func(by, code, reason string) (string, string, string, string) { return callEnded, by, code, reason }
	failed := func(by, code, reason string) (string, string, string, string) { return callFailed, by, code, reason }
	switch {
	case errors.Is(cause, errCustomerHangup):
		return ended("customer", "customer_hangup", "The customer hung up")
	case errors.Is(cause, errAgentHangup), errors.Is(cause, sip.ErrRemoteHangup), errors.As(cause, new(*sip.HangupError)):
		return ended("agent", "agent_hangup", "The agent hung up")
	case errors.Is(cause, errBrowserGone):
		return ended("customer", "browser_lost", "The connection to the customer's browser was lost")
	case errors.Is(cause, errCustomerNoAnswer):
		return failed("customer", "not_answered", "The call was not answered")
	case errors.Is(cause, errCustomerDeclined):
		return failed("customer", "declined", "The call was declined")
	case errors.Is(cause, errCallerGone):
		return failed("agent", "caller_gone", "The caller hung up")
	case errors.Is(cause, errRTPTimeout):
		return ended("system", "media_timeout", "The phone line went silent")
	case errors.Is(cause, errBadOffer):
		return failed("customer", "bad_offer", "The browser could not join the call")
	case errors.Is(cause, errConversationEnd):
		return ended("system", "conversation_ended", "The conversation ended")
	case errors.Is(cause, errShutdown):
		return ended("system", "shutdown", "The service is restarting")
	case errors.Is(cause, errInternal):
		return ended("system", "internal_error", "The call was cut off by a fault in the gateway")
	case errors.Is(cause, sip.ErrDialogLost):
		return ended("system", "dialog_lost", "The phone system lost the call")
	case answered:
		return ended("system", "ended", "The call ended")
	case errors.Is(cause, sip.ErrBusy):
		return failed("", "busy", "The line is busy")
	case errors.Is(cause, sip.ErrNoAnswer):
		return failed("", "no_answer", "Nobody answered")
	case errors.Is(cause, sip.ErrUnavailable):
		return failed("", "unavailable", "The phone is unavailable right now")
	case errors.Is(cause, sip.ErrUnreachable):
		return failed("", "unreachable", "The phone line did not answer")
	case errors.Is(cause, sip.ErrLimit):
		return failed("", "lines_busy", "All lines are busy; please try again shortly")
	case errors.Is(cause, sip.ErrRejected):
		return failed("", "rejected", "The call was declined")
	default:
		return failed("", "failed", "The call could not be connected")
	}
}

// eventTimeout bounds the store write of a call's last transcript event.
var eventTimeout = 5 * time.Second

// finish tears the call down once and records how it ended. The legs are
// unplugged from each other before either closes, so that neither writes
// into the other's closed audio path (an ordinary hang-up logs no
// warning). Closing the phone leg may wait for its BYE (sip's own
// timeout); the transcript's event is written afterwards, under a
// timeout of its own, so a phone that ignores BYE cannot cost the
// transcript its voice.ended.
func (v *voiceCall) finish(phone phoneCall, cause error) {
	s, h := v.s, v.s.hub
	state, by, code, reason := endOf(phone != nil, cause)
	v.mu.Lock()
	peer := v.peer
	v.mu.Unlock()
	if phone != nil {
		closeQuietly(phone.SwapAudioOut(nil))
		if peer != nil {
			closeQuietly(peer.SwapAudioOut(nil))
		}
	}
	var errs []error
	if phone != nil {
		errs = append(errs, phone.Close())
	}
	if peer != nil {
		errs = append(errs, s.releaseCustomerRTC(v.cv, peer, useVoice))
	}
	if v.recording() {
		_ = s.stopRecording(v)
	}
	v.cancel(cause)
	v.mu.Lock()
	v.state, v.reason, v.cause, v.endedBy, v.ended = state, reason, code, by, time.Now().UTC()
	v.mu.Unlock()
	outcome := state
	if state == callEnded && by != "" {
		outcome = "ended_by_" + by
	}
	s.metrics.callsTotal.WithLabelValues(outcome).Inc()
	s.metrics.faults.ended.WithLabelValues(code).Inc()
	s.metrics.callsActive.Dec()
	if phone != nil {
		v.reportDrops(phone)
		q := v.quality(phone)
		s.metrics.callLoss.Observe(q.LossPercent)
		s.metrics.callJitter.Observe(q.JitterMs)
		s.metrics.callGatewayLoss.Observe(q.GatewayLossPercent)
	}
	s.log.Info("voice: ended", "conv", v.cv.c.ID, "call", v.id, "state", state, "by", by, "cause", cause, "close_err", errors.Join(errs...))
	// The conversation is free for another call before anyone hears of
	// this one's end, and its audio goes where it goes without a call
	// (between the customer and the console, if video goes on).
	h.mu.Lock()
	if v.cv.voice == v {
		v.cv.voice = nil
	}
	h.mu.Unlock()
	s.routeAudio(v.cv)
	s.saveCallRecord(v)
	v.publish()
	name, text := "voice.ended", "Call ended: "+reason
	if state == callFailed {
		name, text = "voice.failed", "Call failed: "+reason
	}
	// The transcript keeps the call record's summary beside the words.
	data := map[string]any{"call": v.id, "by": by, "cause": code}
	v.mu.Lock()
	if !v.answered.IsZero() {
		d := v.ended.Sub(v.answered).Round(time.Second)
		text += fmt.Sprintf(" (%d:%02d)", int(d.Minutes()), int(d.Seconds())%60)
		data["duration_s"] = int(d.Seconds())
	}
	v.mu.Unlock()
	if phone != nil {
		q := v.quality(phone)
		data["codec"], data["mos"], data["loss_percent"], data["jitter_ms"] = phone.Codec(), q.MOS, q.LossPercent, q.JitterMs
		data["gateway_loss_percent"] = q.GatewayLossPercent
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(v.ctx), eventTimeout)
	defer cancel()
	h.event(ctx, v.cv, name, text, data)
}

func (v *voiceCall) setState(state, reason string) {
	v.mu.Lock()
	changed := v.state != state
	v.state, v.reason = state, reason
	v.mu.Unlock()
	if changed {
		v.publish()
	}
	if changed && state == callRinging {
		h := v.s.hub
		h.mu.Lock()
		c := v.cv.c
		h.mu.Unlock()
		h.webhooks.emit(v.ctx, &c, "call.ringing", map[string]string{"call": v.id, "direction": v.direction, "target": displayTarget(v.target)})
	}
}

func (v *voiceCall) wire() wireCall {
	recording := v.recording()
	v.mu.Lock()
	defer v.mu.Unlock()
	w := wireCall{ID: v.id, Direction: v.direction, State: v.state, Reason: v.reason, Cause: v.cause, EndedBy: v.endedBy, Target: displayTarget(v.target), StartedAt: v.started,
		Recording: recording}
	w.Demo = v.trunk != "" && v.trunk == v.s.cfg.DemoTrunk()
	w.RecordingMode = v.recMode
	if !v.answered.IsZero() {
		a := v.answered
		w.AnsweredAt = &a
	}
	if v.phone != nil {
		w.Codec = v.phone.Codec()
		q := qualityOf(v.phone.Stats(), webStatsOf(v.peer))
		w.Quality = &q
	}
	return w
}

// publish sends the call's state to both sides.
func (v *voiceCall) publish() {
	w := v.wire()
	h := v.s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sendToConvLocked(v.cv, map[string]any{"type": "call", "conversation_id": v.cv.c.ID, "call": w})
	v.s.boardChanged()
}

// browserStats is what the browser leg tells of its audio (webrtc.Peer
// through pionPeer); test fakes may leave it out.
type browserStats interface{ Stats() webrtc.Stats }

// frameDrops are the frames the gateway failed to carry on one call, by
// leg, direction and reason, as segue_media_frames_dropped_total counts
// them.
type frameDrops [6]uint64

// frameDropLabels are the labels of each entry of frameDrops: leg,
// direction (the leg's own: send is toward its peer) and reason.
// A stalled clock skips frames on the way out of a leg only: what a leg
// receives waits in its jitter buffer, which counts what it must shed.
var frameDropLabels = [6][3]string{
	{"sip", "send", "clock_stall"},
	{"sip", "send", "queue_overflow"},
	{"sip", "receive", "jitter_drop"},
	{"webrtc", "send", "clock_stall"},
	{"webrtc", "send", "queue_overflow"},
	{"webrtc", "receive", "jitter_drop"},
}

func frameDropsOf(st sip.MediaStats, web *webrtc.Stats) frameDrops {
	d := frameDrops{st.FramesSkippedSend, st.FramesDroppedSend, st.FramesDroppedReceive}
	if web != nil {
		d[3], d[4], d[5] = web.Outbound.Skipped, web.Outbound.Dropped, web.Inbound.Dropped
	}
	return d
}

// toPhone and toCustomer sum the drops on the way to each side.
func (d frameDrops) toPhone() uint64    { return d[0] + d[1] + d[5] }
func (d frameDrops) toCustomer() uint64 { return d[2] + d[3] + d[4] }

// qualityOf estimates call quality from RTP counters of the phone leg and,
// when known, the browser leg, with an E-model style MOS (ITU-T G.107,
// simplified for G.711 with loss and jitter). The loss it counts in each
// direction is the network's plus the frames the gateway dropped (clock
// stalls, overflowing queues), and MOS is that of the worse direction:
// a gateway short of CPU must not report a clean call.
func qualityOf(st sip.MediaStats, web *webrtc.Stats) quality {
	q := quality{PacketsSent: st.PacketsSent, PacketsReceived: st.PacketsReceived, JitterMs: st.JitterMs, Concealed: st.Concealed}
	expFromPhone := st.PacketsReceived + st.PacketsLost
	if expFromPhone > 0 {
		q.LossPercent = 100 * float64(st.PacketsLost) / float64(expFromPhone)
	}
	d := frameDropsOf(st, web)
	q.FramesDroppedToPhone, q.FramesDroppedToCustomer = d.toPhone(), d.toCustomer()
	// Frames due toward the phone: one per clock tick, sent or skipped.
	// Toward the customer: what the phone sent us, or what the browser
	// leg sent and skipped, whichever is more.
	toPhone := st.PacketsSent + st.FramesSkippedSend
	toCustomer := expFromPhone
	var webLoss float64
	if web != nil {
		toCustomer = max(toCustomer, web.Outbound.Packets+web.Outbound.Skipped)
		webLoss = 100 * web.Inbound.FractionLost
		q.BrowserLossPercent = webLoss
		q.BrowserJitterMs = float64(web.Inbound.Jitter) / float64(time.Millisecond)
		q.BrowserConcealed = web.Inbound.Concealed
		q.BrowserFECRecovered = web.Inbound.Recovered
		q.BrowserMediaGaps = web.Inbound.Gaps
		q.BrowserLongestGapMs = float64(web.Inbound.LongestGap.Milliseconds())
		if web.Outbound.Encoded > 0 {
			q.FECPercentToCustomer = roundTo(100*float64(web.Outbound.FEC)/float64(web.Outbound.Encoded), 10)
		}
		q.FECSwitchesToCustomer = web.Outbound.EffortSwitches
	}
	share := func(n, of uint64) float64 {
		if n == 0 {
			return 0
		}
		return min(100, 100*float64(n)/float64(max(of, n)))
	}
	gwPhone, gwCustomer := share(q.FramesDroppedToPhone, toPhone), share(q.FramesDroppedToCustomer, toCustomer)
	q.GatewayLossPercent = roundTo(max(gwPhone, gwCustomer), 100)
	worst := max(q.LossPercent+gwCustomer, webLoss+gwPhone)
	q.MOS = estimateMOS(min(worst, 100), q.JitterMs)
	return q
}

// roundTo rounds v to 1/per.
func roundTo(v, per float64) float64 { return math.Round(v*per) / per }

// quality returns the call's quality now, from both legs.
func (v *voiceCall) quality(phone phoneCall) quality {
	st := phone.Stats()
	return qualityOf(st, v.webStats())
}

// webStats returns the browser leg's stats, or nil without one.
func (v *voiceCall) webStats() *webrtc.Stats {
	v.mu.Lock()
	peer := v.peer
	v.mu.Unlock()
	return webStatsOf(peer)
}

// webStatsOf returns a browser leg's stats, or nil if it has none.
func webStatsOf(peer browserPeer) *webrtc.Stats {
	if bs, ok := peer.(browserStats); ok {
		st := bs.Stats()
		return &st
	}
	return nil
}

// reportDrops adds the frames dropped since the last report to
// segue_media_frames_dropped_total.
func (v *voiceCall) reportDrops(phone phoneCall) {
	d := frameDropsOf(phone.Stats(), v.webStats())
	v.mu.Lock()
	prev := v.drops
	v.drops = d
	v.mu.Unlock()
	for i, n := range d {
		if n > prev[i] {
			l := frameDropLabels[i]
			v.s.metrics.framesDropped.WithLabelValues(l[0], l[1], l[2]).Add(float64(n - prev[i]))
		}
	}
}

func estimateMOS(lossPct, jitterMs float64) float64 {
	// Effective latency: a nominal 40 ms path plus twice the jitter
	// (the jitter buffer's cost) plus codec delay.
	d := 40 + 2*jitterMs + 10
	r := 93.2
	if d < 160 {
		r -= d / 40
	} else {
		r -= (d - 120) / 10
	}
	// G.711 with packet loss concealment: Ie-eff = 0 + (95-0)*Ppl/(Ppl+Bpl), Bpl = 25.1.
	r -= 95 * lossPct / (lossPct + 25.1)
	if r < 0 {
		r = 0
	}
	mos := 1 + 0.035*r + 7e-6*r*(r-60)*(100-r)
	if mos > 4.5 {
		mos = 4.5
	}
	if mos < 1 {
		mos = 1
	}
	return float64(int(mos*100+0.5)) / 100
}

// contextHeaders are what the desk phone and the PBX learn about the
// conversation (DESIGN.md "Context toward the PBX").
func contextHeaders(cfg *Config, c *store.Conversation) map[string]string {
	// RFC 7433: the User-to-User data is hex-encoded, with the encoding
	// parameter; the conversation id is plain ASCII.
	uui := fmt.Sprintf("%x;encoding=hex", c.ID)
	h := map[string]string{
		"User-to-User":         uui,
		"Call-Info":            "<" + cfg.HTTP.PublicURL + "/console/c/" + c.ID + ">;purpose=info",
		"X-Segue-Conversation": c.ID,
		"X-Segue-Queue":        c.Queue,
		"X-Segue-Customer":     headerSafe(c.Customer.Name),
	}
	if c.Customer.Verified {
		h["X-Segue-Customer-Verified"] = "true"
		if c.Customer.ExternalID != "" {
			h["X-Segue-Customer-Id"] = headerSafe(c.Customer.ExternalID)
		}
	}
	return h
}

// headerSafe keeps a customer-typed value from breaking a SIP header: no
// control characters (C0, DEL and C1, which the sip package refuses in
// header values), invalid UTF-8 replaced; non-ASCII is kept as UTF-8
// (RFC 3261 allows it in header values) but bounded. Quotes and
// backslashes stay: the sip package quotes the From display name itself.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, s)
	if strings.TrimSpace(s) == "" {
		return "Website visitor"
	}
	return truncate(s, 64)
}

// hangup ends the conversation's call on request of a participant.
func (s *Server) hangup(cv *conv, cause error) error {
	s.hub.mu.Lock()
	v := cv.voice
	s.hub.mu.Unlock()
	if v == nil {
		return errNoCall
	}
	v.cancel(cause)
	return nil
}

// sendDTMF sends keypad digits from the customer to the phone.
func (s *Server) sendDTMF(ctx context.Context, cv *conv, digits string) error {
	s.hub.mu.Lock()
	v := cv.voice
	s.hub.mu.Unlock()
	if v == nil {
		return errNoCall
	}
	v.mu.Lock()
	phone := v.phone
	v.mu.Unlock()
	if phone == nil {
		return errf(http.StatusConflict, "not_connected", "the call is not connected yet")
	}
	if len(digits) == 0 || len(digits) > 32 || strings.Trim(digits, "0123456789*#ABCD") != "" {
		return errf(http.StatusBadRequest, "bad_frame", "digits must be 1 to 32 of 0-9 * # A-D")
	}
	return v.pressKeys(digits)
}

// pressKeys queues digits for the call's keypad goroutine, so that the
// sender's socket never waits for the tones to be played.
func (v *voiceCall) pressKeys(digits string) error {
	select {
	case v.keys <- digits:
		return nil
	default:
		return errf(http.StatusTooManyRequests, "busy", "too many keys pressed at once; wait a moment")
	}
}

// keypad sends queued digits to the phone in order until the call ends.
func (v *voiceCall) keypad(phone phoneCall) {
	for {
		select {
		case <-v.ctx.Done():
			return
		case digits := <-v.keys:
			ctx, cancel := context.WithTimeout(v.ctx, 10*time.Second)
			if err := phone.SendDTMF(ctx, digits); err != nil {
				v.s.log.Warn("voice: digits not sent", "call", v.id, "err", err)
			}
			cancel()
		}
	}
}

// saveCallRecord writes the call's record with the transcript.
func (s *Server) saveCallRecord(v *voiceCall) {
	v.mu.Lock()
	r := &store.CallRecord{ID: v.id, ConversationID: v.cv.c.ID, Kind: "voice", Direction: v.direction, Target: v.target,
		StartedAt: v.started, AnsweredAt: v.answered, EndedAt: v.ended, Cause: v.reason}
	if v.phone != nil {
		r.Codec = v.phone.Codec()
		r.Stats, _ = json.Marshal(qualityOf(v.phone.Stats(), webStatsOf(v.peer)))
	}
	v.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.SaveCall(ctx, r); err != nil {
		s.log.Error("voice: call record not saved", "call", v.id, "err", err)
	}
}

// browserDigit forwards a keypad digit the browser sent in-band to the
// phone of the conversation's call.
func (s *Server) browserDigit(cv *conv, d rune) {
	s.hub.mu.Lock()
	v := cv.voice
	s.hub.mu.Unlock()
	if v == nil || v.pressKeys(string(d)) != nil {
		s.log.Debug("voice: browser digit dropped", "conv", cv.c.ID)
	}
}

// hangupAll ends every call (shutdown) and lets their goroutines finish.
func (s *Server) hangupAll(cause error) {
	s.hub.mu.Lock()
	var calls []*voiceCall
	for _, cv := range s.hub.convs {
		if cv.voice != nil {
			calls = append(calls, cv.voice)
		}
	}
	s.hub.mu.Unlock()
	for _, v := range calls {
		v.cancel(cause)
	}
}

type wireCallRecord struct {
	ID         string          `json:"id"`
	Kind       string          `json:"kind"`
	Direction  string          `json:"direction"`
	Target     string          `json:"target"`
	StartedAt  time.Time       `json:"started_at"`
	AnsweredAt *time.Time      `json:"answered_at,omitempty"`
	EndedAt    *time.Time      `json:"ended_at,omitempty"`
	Cause      string          `json:"cause,omitempty"`
	Codec      string          `json:"codec,omitempty"`
	Quality    json.RawMessage `json:"quality,omitempty"`
	// Recordings are the call's recordings, for agents only.
	Recordings []wireRecording `json:"recordings,omitempty"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// getCalls lists a conversation's call records for its participants.
func (s *Server) getCalls(w http.ResponseWriter, r *http.Request) error {
	_, c, who, err := s.authorize(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	recs, err := s.store.Calls(r.Context(), c.ID)
	if err != nil {
		return err
	}
	byCall := map[string][]wireRecording{}
	if who.role == store.RoleAgent {
		rs, err := s.store.Recordings(r.Context(), c.ID)
		if err != nil {
			return err
		}
		for _, rr := range rs {
			byCall[rr.CallID] = append(byCall[rr.CallID], toWireRecording(rr))
		}
	}
	out := make([]wireCallRecord, 0, len(recs))
	for _, rec := range recs {
		out = append(out, wireCallRecord{ID: rec.ID, Kind: rec.Kind, Direction: rec.Direction, Target: displayTarget(rec.Target),
			StartedAt: rec.StartedAt, AnsweredAt: optTime(rec.AnsweredAt), EndedAt: optTime(rec.EndedAt),
			Cause: rec.Cause, Codec: rec.Codec, Quality: rec.Stats, Recordings: byCall[rec.ID]})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"calls": out})
}

// displayTarget is what a transcript shows of a transfer target: the
// user part of a SIP URI ("sip:2002@pbx.example.com:5060;transport=udp"
// shows "2002") or a tel: number, and nothing of the host behind it.
func displayTarget(target string) string {
	if target == "" {
		return "" // a video record: the customer's camera has no line
	}
	scheme, rest, ok := strings.Cut(target, ":")
	if !ok {
		return "another line"
	}
	switch strings.ToLower(scheme) {
	case "tel":
		num, _, _ := strings.Cut(rest, ";")
		return num
	case "sip", "sips":
		user, _, hasUser := strings.Cut(rest, "@")
		user, _, _ = strings.Cut(user, ";")
		user, _, _ = strings.Cut(user, ":") // user:password
		if hasUser && user != "" {
			return user
		}
	}
	return "another line"
}
