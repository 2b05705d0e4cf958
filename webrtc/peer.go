package webrtc

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/mediaclock"
	"github.com/segue-rtc/segue/transcode"
)

// State is the connection state of a Peer, after the W3C
// RTCPeerConnectionState.
type State int

// Connection states, in the order a healthy connection goes through them.
const (
	StateNew State = iota
	StateConnecting
	StateConnected
	StateDisconnected
	StateFailed
	StateClosed
)

// String returns the state's name as browsers spell it.
func (s State) String() string {
	switch s {
	case StateNew:
		return "new"
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateFailed:
		return "failed"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

func stateFromPion(s pwebrtc.PeerConnectionState) State {
	switch s {
	case pwebrtc.PeerConnectionStateConnecting:
		return StateConnecting
	case pwebrtc.PeerConnectionStateConnected:
		return StateConnected
	case pwebrtc.PeerConnectionStateDisconnected:
		return StateDisconnected
	case pwebrtc.PeerConnectionStateFailed:
		return StateFailed
	case pwebrtc.PeerConnectionStateClosed:
		return StateClosed
	}
	return StateNew
}

// PeerOptions configures one Peer. Every callback is called from the
// peer's own event goroutine, one at a time and in order, never from
// pion's: a slow callback delays later events of the same peer but never
// the media or the network. Callbacks should still return quickly (hand
// the value to a channel or a writer queue), and must not call Close.
type PeerOptions struct {
	// Name identifies the peer in logs (attribute "peer"), for instance
	// "conv-42/customer".
	Name string
	// OnICECandidate receives each local ICE candidate to send to the
	// browser (trickle ICE), and finally one whose Candidate is empty
	// when gathering is complete (the browser's end-of-candidates).
	OnICECandidate func(ICECandidateInit)
	// OnStateChange receives each connection state change.
	OnStateChange func(State)
	// OnDTMF receives each digit the browser sends as an RFC 4733
	// telephone-event (RTCDTMFSender), once per key press.
	OnDTMF func(digit rune)
	// OnVideoTrack receives each video track the browser starts sending
	// (camera or screen share), to be forwarded with NewForwarder.
	OnVideoTrack func(*RemoteVideo)
	// OnNegotiationNeeded is called when the gateway changed the session
	// (NewForwarder or Forwarder.Close toward this peer): call Offer and
	// send it to the browser. Browser offers never trigger it.
	OnNegotiationNeeded func()
	// WaitForCandidates makes Answer and Offer wait until candidate
	// gathering completes, so that the returned SDP holds every candidate,
	// for clients that do not trickle.
	WaitForCandidates bool
	// NoAudio leaves out the local audio track, for a peer that only
	// receives or forwards video.
	NoAudio bool
}

// Peer is one browser's peer connection: the audio leg toward the
// customer's browser (PCM in and out at 8 kHz, see AudioIn and
// SwapAudioOut) and the video tracks it sends or receives. Its methods
// are safe for concurrent use.
//
// A Peer ends when it is closed, when it does not connect within the
// connect timeout, when ICE fails, when it stays disconnected for longer
// than the Engine's failed timeout, when the browser closes it, or when
// its audio path fails; Done is then closed and
// Err gives the cause. The owner must still call Close to release it.
type Peer struct {
	e    *Engine
	opts PeerOptions
	log  *slog.Logger
	pc   *pwebrtc.PeerConnection

	ctx    context.Context
	cancel context.CancelCauseFunc

	// sigMu serialises offer/answer exchanges and candidate handling,
	// and guards pending, gen and offers.
	sigMu   sync.Mutex
	pending []pendingCandidate
	// gen is the browser's current ICE generation and the addresses
	// taken in it; offers counts the browser's recent offers.
	gen    remoteGen
	offers offerGate

	// goMu guards wg.Add against Close.
	goMu    sync.Mutex
	closing bool
	wg      sync.WaitGroup

	once     sync.Once
	closeErr error

	// events is the queue from pion's callbacks to the event goroutine.
	evMu   sync.Mutex
	events []func()
	wake   chan struct{}

	state atomic.Int32
	// held keeps local candidates, on the event goroutine, while Answer
	// or Offer has not returned the description they belong to.
	hold bool
	held []*pwebrtc.ICECandidate

	// Audio toward the browser.
	track  *audioTrack
	sender *pwebrtc.RTPSender
	in     *audioIn
	tx     atomic.Pointer[txState]
	prompt promptQueue
	// effort is the Opus encoder's effort: fixed, or set by the RTCP
	// reader from the browser's loss reports (opus_effort.go), which
	// counts its changes of mode in effortSwitches.
	effort         *transcode.OpusEffortControl
	effortSwitches atomic.Uint64
	// leg is the peer's place on the shared media clock; tickBuf and
	// silence belong to its tick.
	leg     *mediaclock.Leg
	tickBuf transcode.PCM16
	silence transcode.PCM16

	// Audio from the browser.
	out     *transcode.PCMSwitch
	rx      atomic.Pointer[rxState]
	rxStats rxCounters
	txStats txCounters

	videoMu sync.Mutex
	videos  []*RemoteVideo
	// streamKey keys ForwardedStreamID.
	streamKey [32]byte
	// rembOnce starts rembLoop with the first video forwarded from here.
	rembOnce sync.Once

	// bwe estimates the bandwidth toward the browser; forwarded counts
	// the video tracks forwarded to it, which share that estimate.
	bwe       *lazyBWE
	forwarded atomic.Int32
	// nack budgets what the browser's NACKs make the gateway resend.
	nack *nackGuard

	// relayTo is the peer the browser's audio is relayed to untouched
	// (audio_relay.go); wideband leaves the narrowband Opus hints out of
	// the SDP sent to the browser (sdp.go).
	relayTo  atomic.Pointer[Peer]
	wideband atomic.Bool
}

// NewPeer creates a peer connection for one browser. It adds the local
// audio track (unless opts.NoAudio), so that the first answer or offer
// already carries audio both ways. Signalling then goes through Answer
// (the browser offers) or Offer and SetAnswer (the gateway offers), and
// AddICECandidate. ctx serves the set-up only (and its values): the peer
// lives until it ends or is closed, and must connect within the connect
// timeout counted from here.
func (e *Engine) NewPeer(ctx context.Context, opts PeerOptions) (*Peer, error) {
	pc, bwe, nack, err := e.newPeerConnection(ctx)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return nil, err
		}
		return nil, fmt.Errorf("webrtc: new peer connection: %w", err)
	}
	log := e.log.With("leg", "webrtc")
	if opts.Name != "" {
		log = log.With("peer", opts.Name)
	}
	pctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	p := &Peer{
		e:      e,
		opts:   opts,
		log:    log,
		pc:     pc,
		bwe:    bwe,
		nack:   nack,
		ctx:    pctx,
		cancel: cancel,
		wake:   make(chan struct{}, 1),
		in:     newAudioIn(),
		out:    transcode.NewSwitch[transcode.PCM16](8000, "webrtc-out"),
		effort: e.newOpusEffort(),
	}
	_, _ = rand.Read(p.streamKey[:])
	if !opts.NoAudio {
		p.track = &audioTrack{p: p, id: "audio", streamID: "segue"}
		sender, err := pc.AddTrack(p.track)
		if err != nil {
			cancel(err)
			_ = pc.Close()
			return nil, fmt.Errorf("webrtc: add audio track: %w", err)
		}
		p.sender = sender
	}

	pc.OnICECandidate(func(c *pwebrtc.ICECandidate) {
		p.post(func() { p.deliverCandidate(c) })
	})
	pc.OnConnectionStateChange(func(s pwebrtc.PeerConnectionState) {
		p.post(func() { p.handleState(stateFromPion(s)) })
	})
	pc.OnTrack(p.handleTrack)
	// The gateway uses no data channel. The descriptions it takes have no
	// m=application, so none can open; one that did is closed at once.
	pc.OnDataChannel(func(dc *pwebrtc.DataChannel) {
		p.log.Debug("webrtc data channel refused", "label", dc.Label())
		_ = dc.Close()
	})

	p.spawn(p.eventLoop)
	p.tickBuf = make(transcode.PCM16, frameSamples)
	p.silence = make(transcode.PCM16, frameSamples)
	p.leg = mediaclock.Shared().Register(p.mediaTick)
	if p.sender != nil {
		p.spawn(func() { p.readSenderRTCP(p.sender) })
	}
	log.Info("webrtc peer created", "transcode", e.cfg.Transcode)
	return p, nil
}

// spawn runs f on a goroutine that Close waits for, unless the peer is
// closing. It never blocks, so pion callbacks may call it.
func (p *Peer) spawn(f func()) bool {
	p.goMu.Lock()
	defer p.goMu.Unlock()
	if p.closing {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// post queues f for the event goroutine. It never blocks.
func (p *Peer) post(f func()) {
	p.evMu.Lock()
	p.events = append(p.events, f)
	p.evMu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// eventLoop runs the queued events and watches how long the connection
// stays disconnected.
func (p *Peer) eventLoop() {
	var disc *time.Timer
	var discC <-chan time.Time
	connect := time.NewTimer(p.e.opts.connectTimeout)
	connectC := connect.C
	defer func() {
		connect.Stop()
		if disc != nil {
			disc.Stop()
		}
	}()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-connectC:
			p.log.Info("webrtc peer did not connect in time")
			p.fail(ErrConnectTimeout)
		case <-discC:
			discC = nil
			if State(p.state.Load()) == StateDisconnected {
				p.log.Info("webrtc peer disconnected for too long")
				p.fail(ErrDisconnected)
			}
		case <-p.wake:
			p.evMu.Lock()
			evs := p.events
			p.events = nil
			p.evMu.Unlock()
			for _, f := range evs {
				if p.ctx.Err() != nil {
					return
				}
				f()
				// Arm or disarm the watchdogs after each state change.
				s := State(p.state.Load())
				if s == StateConnected && connectC != nil {
					connect.Stop()
					connectC = nil
				}
				switch {
				case s == StateDisconnected && discC == nil:
					// pion moves to failed after its failed timeout;
					// this watchdog is a bound in case it does not.
					d := p.e.opts.disconnectedTimeout + p.e.opts.failedTimeout + time.Second
					if disc == nil {
						disc = time.NewTimer(d)
					} else {
						disc.Reset(d)
					}
					discC = disc.C
				case s != StateDisconnected && discC != nil:
					disc.Stop()
					discC = nil
				}
			}
		}
	}
}

func (p *Peer) handleState(s State) {
	old := State(p.state.Swap(int32(s)))
	if old == s {
		return
	}
	p.log.Info("webrtc peer state", "state", s.String())
	if p.opts.OnStateChange != nil {
		p.opts.OnStateChange(s)
	}
	switch s {
	case StateFailed:
		p.fail(ErrICEFailed)
	case StateClosed:
		p.fail(ErrRemoteClosed)
	}
}

// negotiationNeeded tells the owner that a change of ours (a forwarded
// track added or removed) needs an offer. pion's own negotiationneeded is
// not used: it also fires after browser offers that need nothing from us
// (pion gives transceivers made from a remote offer a send direction).
func (p *Peer) negotiationNeeded() {
	p.post(func() {
		if p.opts.OnNegotiationNeeded != nil {
			p.opts.OnNegotiationNeeded()
		}
	})
}

// fail ends the peer with cause, unless it already ended.
func (p *Peer) fail(cause error) {
	if p.ctx.Err() == nil {
		p.cancel(cause)
		if !errors.Is(cause, ErrClosed) {
			p.log.Info("webrtc peer ended", "cause", cause.Error())
		}
	}
}

// State returns the current connection state.
func (p *Peer) State() State { return State(p.state.Load()) }

// Done is closed when the peer ends; Err then tells why.
func (p *Peer) Done() <-chan struct{} { return p.ctx.Done() }

// AfterDone runs f in a goroutine of its own once the peer has ended,
// with no goroutine waiting for that meanwhile (context.AfterFunc).
func (p *Peer) AfterDone(f func()) { context.AfterFunc(p.ctx, f) }

// Err returns nil while the peer runs, then the cause it ended with:
// ErrClosed, ErrICEFailed, ErrDisconnected, ErrConnectTimeout,
// ErrRemoteClosed or an error wrapping ErrMediaFailed.
func (p *Peer) Err() error {
	if p.ctx.Err() == nil {
		return nil
	}
	return context.Cause(p.ctx)
}

// Close ends the peer: it closes the peer connection (under a 5 s timeout
// that a cancelled parent does not shorten) and waits for every goroutine
// the peer started. It is idempotent and returns the same error each time.
// The writer set with SwapAudioOut is disconnected but not closed: it
// stays the caller's, and SwapAudioOut(nil) still hands it back.
func (p *Peer) Close() error {
	p.once.Do(func() {
		p.fail(ErrClosed)
		if p.leg != nil {
			p.leg.Stop()
		}
		p.goMu.Lock()
		p.closing = true
		p.goMu.Unlock()

		ctx, stop := context.WithTimeout(context.WithoutCancel(p.ctx), closeTimeout)
		defer stop()
		done := make(chan error, 1)
		go func() { done <- p.pc.GracefulClose() }()
		select {
		case err := <-done:
			if err != nil {
				p.closeErr = fmt.Errorf("webrtc: close peer connection: %w", err)
			}
		case <-ctx.Done():
			p.closeErr = ErrCloseTimeout
		}
		p.wg.Wait()
		p.prompt.abort()
		p.log.Info("webrtc peer closed", "cause", context.Cause(p.ctx).Error())
	})
	return p.closeErr
}

// Answer applies the browser's offer and returns the answer SDP: the first
// offer, a re-offer that adds or removes tracks, or an ICE restart after
// the browser's network changed (a new ice-ufrag; new local candidates
// then arrive through OnICECandidate). If the gateway's own offer is still
// waiting for its answer, it returns ErrGlare and changes nothing: the
// browser is the polite peer, rolls its offer back and answers ours.
func (p *Peer) Answer(ctx context.Context, offerSDP string) (string, error) {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.ctx.Err() != nil {
		return "", ErrClosed
	}
	if wait, ok := p.offers.allow(time.Now()); !ok {
		p.e.sdpRefused.add(SDPRate)
		return "", fmt.Errorf("%w (retry in %v)", ErrRenegotiationRate, wait.Round(time.Second))
	}
	p.holdCandidates()
	defer p.post(p.releaseCandidates)
	if p.pc.SignalingState() == pwebrtc.SignalingStateHaveLocalOffer {
		// JSEP §4.1.8.2 (perfect negotiation): the browser is the polite
		// peer, since pion cannot roll back a local offer.
		return "", ErrGlare
	}
	sc, err := p.screen(offerSDP)
	if err != nil {
		return "", err
	}
	if err := p.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: sc.sdp}); err != nil {
		return "", fmt.Errorf("%w: apply offer: %w", ErrBadSDP, err)
	}
	p.gen = sc.gen
	p.applyPending()
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: create answer: %w", ErrBadSDP, err)
	}
	return p.setLocal(ctx, answer)
}

// Offer makes an offer for the browser, for server-initiated
// renegotiation (after NewForwarder added a track toward this browser) or
// an ICE restart (iceRestart true). The browser's answer goes to
// SetAnswer.
func (p *Peer) Offer(ctx context.Context, iceRestart bool) (string, error) {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.ctx.Err() != nil {
		return "", ErrClosed
	}
	p.holdCandidates()
	defer p.post(p.releaseCandidates)
	offer, err := p.pc.CreateOffer(&pwebrtc.OfferOptions{ICERestart: iceRestart})
	if err != nil {
		return "", fmt.Errorf("%w: create offer: %w", ErrBadSDP, err)
	}
	return p.setLocal(ctx, offer)
}

// LocalOffer returns the offer made by the last Offer while it still
// waits for its answer, or "" when none waits. An owner that lost its way
// to the browser meanwhile (a WebSocket that reconnected) sends it again:
// the browser may not have seen it, and pion cannot make another offer
// before this one is answered.
func (p *Peer) LocalOffer() string {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.ctx.Err() != nil || p.pc.SignalingState() != pwebrtc.SignalingStateHaveLocalOffer {
		return ""
	}
	d := p.pc.PendingLocalDescription()
	if d == nil {
		return ""
	}
	return p.localSDP(d.SDP)
}

// SetAnswer applies the browser's answer to the last Offer.
func (p *Peer) SetAnswer(_ context.Context, answerSDP string) error {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.ctx.Err() != nil {
		return ErrClosed
	}
	if p.pc.SignalingState() != pwebrtc.SignalingStateHaveLocalOffer {
		return fmt.Errorf("%w: no offer of ours waits for an answer", ErrBadSDP)
	}
	sc, err := p.screen(answerSDP)
	if err != nil {
		return err
	}
	if err := p.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeAnswer, SDP: sc.sdp}); err != nil {
		return fmt.Errorf("%w: apply answer: %w", ErrBadSDP, err)
	}
	p.gen = sc.gen
	p.applyPending()
	return nil
}

// screen checks a description from the browser and filters its
// candidates (limits.go), counting what it refuses. sigMu is held.
func (p *Peer) screen(desc string) (screened, error) {
	sc, err := screenDescription(desc, p.e.policy, p.gen)
	if err != nil {
		var le *LimitError
		if errors.As(err, &le) {
			p.e.sdpRefused.add(le.Reason)
			p.log.Info("webrtc description refused", "reason", le.Reason, "detail", le.Detail)
		}
		return screened{}, err
	}
	for _, r := range sc.refused {
		p.e.candRefused.add(r)
	}
	if len(sc.refused) > 0 {
		p.log.Debug("webrtc remote candidates left out of a description", "count", len(sc.refused))
	}
	return sc, nil
}

// setLocal applies a local description and returns it, after gathering
// completes when the options ask for it. sigMu is held.
func (p *Peer) setLocal(ctx context.Context, desc pwebrtc.SessionDescription) (string, error) {
	var gathered <-chan struct{}
	if p.opts.WaitForCandidates {
		gathered = pwebrtc.GatheringCompletePromise(p.pc)
	}
	if err := p.pc.SetLocalDescription(desc); err != nil {
		return "", fmt.Errorf("%w: apply local %s: %w", ErrBadSDP, desc.Type, err)
	}
	if gathered != nil {
		select {
		case <-gathered:
		case <-ctx.Done():
			return "", fmt.Errorf("webrtc: wait for candidates: %w", context.Cause(ctx))
		case <-p.ctx.Done():
			return "", ErrClosed
		}
	}
	return p.localSDP(p.pc.LocalDescription().SDP), nil
}

// AddICECandidate adds a candidate the browser trickled. A candidate that
// arrives before the description it belongs to is kept and applied with
// it. An empty Candidate is the browser's end-of-candidates.
//
// A candidate is screened first: one the address policy refuses
// (loopback, private, link-local and other special addresses; see
// Config.AllowedRemoteNetworks), one that is not UDP, an mDNS name, a
// second candidate for an address (ip:port) of the same ICE generation,
// or one of an older generation is dropped without an error, and
// counted. Past MaxRemoteCandidates addresses in a generation it returns
// ErrTooManyCandidates; a malformed one, ErrBadCandidate.
func (p *Peer) AddICECandidate(c ICECandidateInit) error {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.ctx.Err() != nil {
		return ErrClosed
	}
	if c.UsernameFragment != nil && *c.UsernameFragment != "" && !ValidUfrag(*c.UsernameFragment) {
		p.e.candRefused.add(ReasonMalformed)
		return fmt.Errorf("%w: usernameFragment must be 4 to 256 characters of A-Z, a-z, 0-9, + and /", ErrBadCandidate)
	}
	pend := pendingCandidate{init: c.toPion()}
	if c.Candidate != "" {
		ap, reason := p.e.policy.parseRemoteCandidate(c.Candidate)
		switch reason {
		case "":
		case ReasonMalformed:
			p.e.candRefused.add(reason)
			return fmt.Errorf("%w: %.64q", ErrBadCandidate, c.Candidate)
		default:
			p.e.candRefused.add(reason)
			return nil
		}
		pend.addr = ap
	}
	if p.pc.RemoteDescription() == nil {
		if len(p.pending) >= MaxRemoteCandidates {
			p.e.candRefused.add(ReasonLimit)
			return ErrTooManyCandidates
		}
		p.pending = append(p.pending, pend)
		return nil
	}
	if err := p.addCandidate(pend); err != nil {
		if errors.Is(err, ErrTooManyCandidates) {
			return err
		}
		return fmt.Errorf("%w: %.64q: %w", ErrBadCandidate, c.Candidate, err)
	}
	return nil
}

// pendingCandidate is a screened trickled candidate, with its transport
// address (invalid for an end-of-candidates).
type pendingCandidate struct {
	init pwebrtc.ICECandidateInit
	addr netip.AddrPort
}

// addCandidate takes a screened candidate into the current generation
// and gives it to pion. sigMu is held and a remote description is set.
func (p *Peer) addCandidate(c pendingCandidate) error {
	if u := c.init.UsernameFragment; u != nil && *u != "" && *u != p.gen.ufrag {
		p.e.candRefused.add(ReasonStale)
		return nil
	}
	if c.addr.IsValid() {
		switch reason := p.gen.admit(c.addr, c.init.Candidate); reason {
		case "":
		case ReasonLimit:
			p.e.candRefused.add(reason)
			return ErrTooManyCandidates
		default:
			p.e.candRefused.add(reason)
			return nil
		}
	}
	return p.pc.AddICECandidate(c.init)
}

// applyPending adds the candidates that arrived early. sigMu is held.
func (p *Peer) applyPending() {
	for _, c := range p.pending {
		if err := p.addCandidate(c); err != nil {
			p.log.Debug("webrtc early candidate rejected", "candidate", c.init.Candidate, "err", err.Error())
		}
	}
	p.pending = nil
}

// holdCandidates makes the candidates gathered from now on wait until
// the description they belong to (an answer, or an offer, possibly with
// new ICE credentials) has been returned, so that the browser never gets
// a candidate for an ICE generation it does not know yet. The caller
// posts releaseCandidates when it returns.
func (p *Peer) holdCandidates() {
	p.post(func() { p.hold = true })
}

func (p *Peer) releaseCandidates() {
	p.hold = false
	held := p.held
	p.held = nil
	for _, c := range held {
		p.deliverCandidate(c)
	}
}

func (p *Peer) deliverCandidate(c *pwebrtc.ICECandidate) {
	if p.opts.OnICECandidate == nil {
		return
	}
	if p.hold {
		p.held = append(p.held, c)
		return
	}
	if c == nil {
		var idx uint16
		p.opts.OnICECandidate(ICECandidateInit{SDPMLineIndex: &idx})
		return
	}
	p.opts.OnICECandidate(candidateFromPion(c.ToJSON()))
}

// handleTrack is pion's OnTrack callback: it starts the reader of the new
// track and returns.
func (p *Peer) handleTrack(track *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
	switch track.Kind() {
	case pwebrtc.RTPCodecTypeAudio:
		p.startAudioReceive(track, recv)
	case pwebrtc.RTPCodecTypeVideo:
		p.startVideoReceive(track, recv)
	}
}
