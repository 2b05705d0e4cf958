package sip

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/segue-rtc/segue/transcode"
)

// EventKind tells what a call Event reports.
type EventKind int

// Call event kinds.
const (
	// EventDTMF: a telephone-event (RFC 4733) or SIP INFO digit arrived; see Event.Digit.
	EventDTMF EventKind = iota + 1
	// EventHold: the far end put the call on hold (sendonly or inactive offer).
	EventHold
	// EventResume: the far end took the call off hold.
	EventResume
	// EventMediaChanged: a re-INVITE or UPDATE changed codec or media address.
	EventMediaChanged
	// EventHangup: the call ended; Event.Cause says why. It is the last event.
	EventHangup
	// EventTransfer: the far end asked to transfer the call (REFER) and
	// the gateway accepted (202); Event.Target is the new party, whose
	// INVITE is on its way. EventTransferred or EventTransferFailed follows.
	EventTransfer
	// EventTransferred: the new party answered the transfer's INVITE; the
	// call goes on with it. Event.Target is the new party.
	EventTransferred
	// EventTransferFailed: the transfer's INVITE failed; the call stays
	// with the transferor. Event.Target is the party that was tried and
	// Event.Cause why (a *StatusError for a final response).
	EventTransferFailed
)

// byeTimeout bounds how long hanging up waits for the far end to answer
// its BYE. Over UDP the transaction retransmits the BYE within it (RFC
// 3261 §17.1.2.2, Timer E: after 500 ms, then 1 s), and gives up before
// Timer F's 32 s: a peer that ignores BYE must not hold up the end of the
// call, whose dialog is over on our side either way (§15.1.1).
var byeTimeout = 2 * time.Second

func (k EventKind) String() string {
	switch k {
	case EventDTMF:
		return "dtmf"
	case EventHold:
		return "hold"
	case EventResume:
		return "resume"
	case EventMediaChanged:
		return "media_changed"
	case EventHangup:
		return "hangup"
	case EventTransfer:
		return "transfer"
	case EventTransferred:
		return "transferred"
	case EventTransferFailed:
		return "transfer_failed"
	}
	return "unknown"
}

// Event is something that happened on a call.
type Event struct {
	Kind   EventKind
	Digit  rune   // EventDTMF
	Cause  error  // EventHangup: ErrClosed, a *HangupError, ErrSessionExpired, ...; EventTransferFailed: a *StatusError, ...
	Codec  string // EventMediaChanged
	Target string // EventTransfer, EventTransferred, EventTransferFailed
}

// dialogSession is what a Call needs from sipgo's client and server dialogs.
type dialogSession interface {
	Do(ctx context.Context, req *sipmsg.Request) (*sipmsg.Response, error)
	Bye(ctx context.Context) error
	ReadBye(req *sipmsg.Request, tx sipmsg.ServerTransaction) error
	ReadRequest(req *sipmsg.Request, tx sipmsg.ServerTransaction) error
	Context() context.Context
}

// Call is an established SIP call with its RTP session. It offers 8 kHz
// PCM in and out, DTMF and events. All methods are safe for concurrent use.
type Call struct {
	srv     *Server
	trunk   *trunk
	log     *slog.Logger
	callID  string
	inbound bool
	dlg     dialogSession
	media   *rtpSession
	events  chan Event
	release func()

	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	wg     sync.WaitGroup // the watcher start runs
	err    error

	mu         sync.Mutex
	codecs     []Codec
	sessID     uint64
	sessVer    uint64
	localAddr  netip.Addr
	remote     *mediaDesc
	held       bool
	hungUp     bool // the far end ended the dialog; no BYE to send
	started    bool // start ran: Close waits for the watcher
	byeCause   *HangupError
	srtpKey    *sdesKey // our SDES key when media is SRTP
	cryptoTag  string
	remoteKey  string        // the far end's a=crypto key, to notice re-keying
	dlgChanged chan struct{} // closed and replaced when a transfer swaps dialogs
	oldDlg     dialogSession // the dialog a transfer replaced, until it ends
	oldCallID  string
	seTimer    *time.Timer
	seExpires  int
	droppedEv  int
	guard      dialogGuard // the current dialog's tags and remote CSeq
	oldGuard   dialogGuard // oldDlg's, while it lasts

	// dialCtx is the caller ID and context headers of the first INVITE
	// of an outbound call (DialOptions.DisplayName and Headers), or those
	// an inbound call was given with InboundCall.SetTransferContext, set
	// before the call starts and never changed: a transfer's INVITE carries
	// them, so that the phone the call goes to learns who calls and about
	// what as the first one did.
	dialCtx DialOptions

	// authSrc is set for a call that came in with digest credentials
	// (inbound_auth): the source of its INVITE, which may speak in the dialog.
	authSrc netip.Addr
	unpin   func() // ends authSrc's pass through the read filter, or nil
}

// ID returns the SIP Call-ID of the call's current dialog (it changes
// after a transfer).
func (c *Call) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.callID
}

// dialog returns the current dialog.
func (c *Call) dialog() dialogSession {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dlg
}

// Inbound reports whether the far end placed the call.
func (c *Call) Inbound() bool { return c.inbound }

// Trunk returns the name of the trunk the call runs on.
func (c *Call) Trunk() string { return c.trunk.cfg.Name }

// Codec returns the negotiated codec name (PCMU or PCMA).
func (c *Call) Codec() string { return c.media.stats().Codec }

// OnHold reports whether the far end has the call on hold (its last
// offer was sendonly or inactive).
func (c *Call) OnHold() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// Stats returns RTP counters for the call so far.
func (c *Call) Stats() MediaStats { return c.media.stats() }

// LocalRTPPort returns the local RTP port of the call.
func (c *Call) LocalRTPPort() int { return c.media.port }

// Events returns the call's events. The channel is buffered; events that
// find it full are dropped (and counted in the hangup log line). It is
// never closed: stop reading once Done is closed.
func (c *Call) Events() <-chan Event { return c.events }

// Done is closed when the call has ended, locally or remotely.
func (c *Call) Done() <-chan struct{} { return c.ctx.Done() }

// Err returns why the call ended (nil while it runs): ErrClosed after
// Close, a *HangupError after BYE from the far end.
func (c *Call) Err() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

// AudioIn returns the writer of 8 kHz PCM that is sent to the far end. Any
// frame size is accepted; audio is sent on a steady 20 ms clock and up to
// 400 ms is buffered ahead of it. WriteSample never blocks. Closing the
// returned writer does nothing: the call owns it.
func (c *Call) AudioIn() transcode.PCMWriter { return audioIn{c.media} }

// SwapAudioOut sets where the far end's decoded 8 kHz PCM goes and returns
// the previous writer, which the caller closes. w may be nil to discard
// audio. Writes happen on the shared media clock's goroutine (mediaclock),
// in turn with other calls' media, and must not block.
func (c *Call) SwapAudioOut(w transcode.PCMWriter) transcode.PCMWriter {
	return c.media.swapOut(w)
}

// SendDTMF sends digits (0-9, *, #, A-D) as RFC 4733 telephone-events and
// returns once they are sent, or when ctx or the call ends.
func (c *Call) SendDTMF(ctx context.Context, digits string) error {
	b := []byte(strings.ToUpper(digits))
	for _, d := range b {
		if _, err := transcode.DTMFCode(rune(d)); err != nil {
			return fmt.Errorf("%w: %q", ErrBadDTMF, d)
		}
	}
	if len(b) == 0 {
		return nil
	}
	done, err := c.media.queueDTMF(b)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return context.Cause(c.ctx)
	}
}

// Close hangs up (BYE) unless the far end already did, stops media and
// waits for the call's goroutines. The BYE has a timeout of its own
// (byeTimeout, 2 s), even when the call's context is already cancelled,
// so a far end that ignores it delays Close by no more. Close is
// idempotent.
func (c *Call) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		hungUp := c.hungUp
		c.mu.Unlock()
		var byeErr error
		c.cancel(ErrClosed)
		dlg := c.dialog()
		if !hungUp && dlg.Context().Err() == nil {
			ctx, stop := context.WithTimeout(context.WithoutCancel(c.ctx), byeTimeout)
			byeErr = dlg.Bye(ctx)
			stop()
			if byeErr != nil {
				byeErr = fmt.Errorf("sip: bye %s: %w", c.callID, byeErr)
			}
		}
		// A call answered while the server stops may start after this
		// Close: its watcher sees the call ended and tears it down on its
		// own, and there is nothing to wait for here (waiting on wg while
		// start adds to it would be a race).
		c.mu.Lock()
		started := c.started
		c.mu.Unlock()
		if started {
			c.wg.Wait()
		}
		c.err = byeErr
	})
	return c.err
}

func newCall(srv *Server, tr *trunk, callID string, inbound bool, dlg dialogSession, media *rtpSession, release func()) *Call {
	c := &Call{
		srv: srv, trunk: tr, callID: callID, inbound: inbound, dlg: dlg, media: media,
		events: make(chan Event, 64), release: release,
		log: srv.log.With("leg", "sip", "call_id", callID, "trunk", tr.cfg.Name),
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.dlgChanged = make(chan struct{})
	media.onDTMF = func(d rune) { c.emit(Event{Kind: EventDTMF, Digit: d}) }
	media.setLog(c.log)
	return c
}

// start runs the watcher that tears media down when the call ends.
func (c *Call) start() {
	c.media.start()
	c.mu.Lock()
	c.started = true
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		for c.ctx.Err() == nil {
			c.mu.Lock()
			dlg, changed := c.dlg, c.dlgChanged
			c.mu.Unlock()
			select {
			case <-c.ctx.Done():
			case <-changed: // a transfer replaced the dialog: watch the new one
			case <-dlg.Context().Done():
				c.mu.Lock()
				bye, replaced := c.byeCause, c.dlg != dlg
				c.mu.Unlock()
				switch {
				case replaced:
				case bye != nil:
					c.cancel(bye)
				default:
					// The dialog ended without a BYE reaching us (e.g. a timeout).
					c.cancel(fmt.Errorf("sip: dialog ended: %w", context.Cause(dlg.Context())))
				}
			}
		}
		cause := context.Cause(c.ctx)
		c.mu.Lock()
		if c.seTimer != nil {
			c.seTimer.Stop()
		}
		dropped := c.droppedEv
		c.mu.Unlock()
		st := c.media.stats()
		c.media.close()
		c.srv.forget(c)
		if c.release != nil {
			c.release()
		}
		if c.unpin != nil {
			c.unpin()
		}
		c.log.Info("call ended", "cause", cause, "codec", st.Codec,
			"packets_sent", st.PacketsSent, "packets_received", st.PacketsReceived,
			"packets_lost", st.PacketsLost, "jitter_ms", st.JitterMs, "events_dropped", dropped,
			"packets_foreign", st.PacketsForeign, "rtcp_foreign", st.RTCPForeign)
		c.emit(Event{Kind: EventHangup, Cause: cause})
	}()
}

func (c *Call) emit(e Event) {
	select {
	case c.events <- e:
	default:
		c.mu.Lock()
		c.droppedEv++
		c.mu.Unlock()
	}
}

// localSDP builds our description for the current state.
func (c *Call) localSDP(codecs []Codec, dtmfPT int, dir Direction) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sessVer++
	crypto := ""
	if c.srtpKey != nil {
		crypto = c.srtpKey.attr(c.cryptoTag)
	}
	return buildSDP(sdpParams{
		Addr: c.localAddr, Port: c.media.port, Codecs: codecs, DTMFPT: dtmfPT,
		Direction: dir, SessionID: c.sessID, Version: c.sessVer, Crypto: crypto,
	})
}

// applyRemote configures media from a remote description and reports
// hold, resume and media changes. For an offer it returns our answer.
func (c *Call) applyRemote(md *mediaDesc, isOffer bool) ([]byte, error) {
	codec, err := md.negotiate(c.codecNames())
	if err != nil {
		return nil, err
	}
	if err := c.applyCrypto(md); err != nil {
		return nil, err
	}
	dir := md.Direction.mirror()
	dtmf := md.dtmfPT()
	c.mu.Lock()
	prev := c.remote
	wasHeld := c.held
	c.remote = md
	c.held = !md.Direction.receives() || md.Addr.IsUnspecified()
	held := c.held
	c.mu.Unlock()
	remote, rtcp := md.remote(), md.rtcpRemote()
	if md.Addr.IsUnspecified() {
		remote, rtcp = netip.AddrPort{}, netip.AddrPort{}
		if prev != nil {
			remote, rtcp = prev.remote(), prev.rtcpRemote()
		}
	}
	c.media.configure(codec, remote, rtcp, dtmf, dir)
	if dtmf >= 0 {
		c.media.mu.Lock()
		c.media.recvDTMF = dtmf
		c.media.mu.Unlock()
	}
	if prev != nil {
		switch {
		case held && !wasHeld:
			c.log.Info("call held", "direction", md.Direction)
			c.emit(Event{Kind: EventHold})
		case !held && wasHeld:
			c.log.Info("call resumed")
			c.emit(Event{Kind: EventResume})
		}
		if prev.remote() != md.remote() && !md.Addr.IsUnspecified() || c.codecChanged(prev, codec) {
			c.log.Info("call media changed", "codec", codec.Name, "remote", remote.String())
			c.emit(Event{Kind: EventMediaChanged, Codec: codec.Name})
		}
	}
	if !isOffer {
		return nil, nil
	}
	return c.localSDP([]Codec{codec}, dtmf, dir), nil
}

// applyCrypto sets up SRTP for a RTP/SAVP description (RFC 4568), keeps
// the contexts when the far end's key is unchanged (so the rollover
// counter and replay window carry on across re-INVITEs), and refuses
// plain RTP on a trunk that requires SRTP.
func (c *Call) applyCrypto(md *mediaDesc) error {
	if !strings.Contains(md.Proto, "SAVP") {
		if c.trunk.cfg.SRTP {
			return fmt.Errorf("%w: trunk %s requires RTP/SAVP, got %s", ErrSRTP, c.trunk.cfg.Name, md.Proto)
		}
		c.mu.Lock()
		c.srtpKey, c.remoteKey = nil, ""
		c.mu.Unlock()
		c.media.setSRTP(nil)
		return nil
	}
	tag, rk, err := remoteCrypto(md)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.srtpKey == nil {
		k, err := newSDESKey()
		if err != nil {
			return err
		}
		c.srtpKey = &k
	}
	c.cryptoTag = tag
	if attr := rk.attr(""); attr != c.remoteKey || c.media.srtpCtx() == nil {
		pair, err := newSRTPPair(*c.srtpKey, rk)
		if err != nil {
			return err
		}
		c.remoteKey = attr
		c.media.setSRTP(pair)
	}
	return nil
}

func (c *Call) codecChanged(prev *mediaDesc, now Codec) bool {
	old, err := prev.negotiate(c.codecNames())
	return err == nil && old.Name != now.Name
}

func (c *Call) codecNames() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.codecs))
	for i, k := range c.codecs {
		names[i] = k.Name
	}
	return names
}

// handleInDialog answers a request that matched this call's Call-ID and
// came from one of its sources. It first checks the request against the
// dialog (tags and CSeq, RFC 3261 §12.2.2), then runs on sipgo's request
// goroutine and only does local work before responding.
func (c *Call) handleInDialog(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c.mu.Lock()
	old := c.oldDlg
	isOld := old != nil && req.CallID().Value() == c.oldCallID
	g := &c.guard
	if isOld {
		g = &c.oldGuard
	}
	verdict := g.admit(req)
	c.mu.Unlock()
	switch verdict {
	case admitOK:
	case admitDrop:
		return
	default:
		c.log.Debug("in-dialog request refused", "method", req.Method.String(), "code", verdict, "source", req.Source())
		reason := "Call/Transaction Does Not Exist"
		if verdict == 500 {
			reason = "Server Internal Error" // RFC 3261 §12.2.2: out of order
		}
		respond(tx, req, verdict, reason)
		return
	}
	if isOld {
		// The transferor's leg after a REFER: let it hang up quietly.
		switch req.Method {
		case sipmsg.BYE:
			if err := old.ReadBye(req, tx); err != nil {
				respond(tx, req, 481, "Call/Transaction Does Not Exist")
			}
		case sipmsg.ACK:
		default:
			respond(tx, req, 200, "OK")
		}
		return
	}
	switch req.Method {
	case sipmsg.BYE:
		reason := ""
		if h := req.GetHeader("Reason"); h != nil {
			reason = h.Value()
		}
		he := &HangupError{Method: "BYE", Reason: reason}
		// Set before ReadBye ends the dialog, so the watcher reports it.
		c.mu.Lock()
		c.byeCause = he
		c.mu.Unlock()
		if err := c.dialog().ReadBye(req, tx); err != nil {
			c.mu.Lock()
			c.byeCause = nil
			c.mu.Unlock()
			respond(tx, req, 481, "Call/Transaction Does Not Exist")
			return
		}
		c.mu.Lock()
		c.hungUp = true
		c.mu.Unlock()
		c.log.Info("remote hangup", "reason", reason)
		c.cancel(he)
	case sipmsg.INVITE, sipmsg.UPDATE:
		c.handleReoffer(req, tx)
	case sipmsg.ACK:
		if ds, ok := c.dialog().(*sipgo.DialogServerSession); ok {
			_ = ds.ReadAck(req, tx)
		}
		// Late offer: our re-INVITE answer was an offer; the answer is here.
		if len(req.Body()) > 0 {
			if md, err := parseSDP(req.Body()); err == nil {
				_, _ = c.applyRemote(md, false)
			}
		}
	case sipmsg.INFO:
		c.handleInfo(req, tx)
	case sipmsg.REFER:
		c.handleRefer(req, tx)
	case sipmsg.OPTIONS:
		respond(tx, req, 200, "OK", allowHeader())
	case sipmsg.NOTIFY:
		respond(tx, req, 200, "OK")
	default:
		respond(tx, req, 405, "Method Not Allowed", allowHeader())
	}
}

// handleReoffer answers a re-INVITE or UPDATE (RFC 3311): hold with the
// mirrored direction, codec or address changes, and session refreshes.
// An INVITE without SDP (late offer) is answered with a full offer, and the
// answer arrives in the ACK.
func (c *Call) handleReoffer(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	// The CSeq was checked by the dialog guard; sipgo's own count matters
	// only for a dialog we answered (it matches the re-INVITE's ACK), and
	// for one we placed it would wrongly start from our INVITE's CSeq.
	if ds, ok := c.dialog().(*sipgo.DialogServerSession); ok {
		if err := ds.ReadRequest(req, tx); err != nil {
			respond(tx, req, 500, "Server Internal Error", sipmsg.NewHeader("Retry-After", "1"))
			return
		}
	}
	var answer []byte
	if len(req.Body()) == 0 {
		c.mu.Lock()
		codecs := c.codecs
		c.mu.Unlock()
		answer = c.localSDP(codecs, defaultDTMFPT, c.media.direction())
	} else {
		md, err := parseSDP(req.Body())
		if err != nil {
			respond(tx, req, 488, "Not Acceptable Here")
			return
		}
		answer, err = c.applyRemote(md, true)
		if err != nil {
			respond(tx, req, 488, "Not Acceptable Here")
			return
		}
	}
	res := sipmsg.NewResponseFromRequest(req, 200, "OK", answer)
	res.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	res.AppendHeader(c.srv.contactFor(c.trunk))
	if se := c.sessionTimerResponse(req); se != nil {
		res.AppendHeader(se)
		res.AppendHeader(sipmsg.NewHeader("Require", "timer"))
	}
	if err := tx.Respond(res); err != nil {
		c.log.Warn("re-invite answer failed", "error", err)
	}
}

// handleInfo accepts application/dtmf-relay and application/dtmf INFO
// bodies as digits (some phones send DTMF this way instead of RFC 4733).
func (c *Call) handleInfo(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	c.handleInfoBody(req)
	respond(tx, req, 200, "OK")
}

func (c *Call) handleInfoBody(req *sipmsg.Request) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(h.Value())
	}
	digit := func(v string) {
		v = strings.TrimSpace(v)
		if len(v) == 1 {
			d := rune(strings.ToUpper(v)[0])
			if _, err := transcode.DTMFCode(d); err == nil {
				c.emit(Event{Kind: EventDTMF, Digit: d})
			}
		}
	}
	switch {
	case strings.HasPrefix(ct, "application/dtmf-relay"):
		for _, line := range strings.Split(string(req.Body()), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "signal") {
				digit(v)
			}
		}
	case strings.HasPrefix(ct, "application/dtmf"):
		digit(string(req.Body()))
	}
}

// sessionExpires reads the delta-seconds of a Session-Expires value
// (RFC 4028 §4), or 0.
func sessionExpires(v string) int {
	v, _, _ = strings.Cut(v, ";")
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs <= 0 {
		return 0
	}
	return secs
}

// sessionTimerResponse applies an RFC 4028 Session-Expires from a request
// we answer: the far end refreshes (refresher=uac), and we end the call
// if no refresh arrives before the interval runs out.
func (c *Call) sessionTimerResponse(req *sipmsg.Request) sipmsg.Header {
	h := req.GetHeader("Session-Expires")
	if h == nil {
		return nil
	}
	secs := sessionExpires(h.Value())
	if secs == 0 {
		return nil
	}
	secs = max(secs, 90)
	c.armSessionTimer(secs)
	return sipmsg.NewHeader("Session-Expires", strconv.Itoa(secs)+";refresher=uac")
}

// armSessionTimer (re)starts the RFC 4028 §10 expiry: without a refresh
// within the interval (less 32 s, or a third), the call ends with BYE.
func (c *Call) armSessionTimer(secs int) {
	d := time.Duration(secs) * time.Second
	d -= min(32*time.Second, d/3)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seExpires = secs
	if c.seTimer != nil {
		c.seTimer.Reset(d)
		return
	}
	c.seTimer = time.AfterFunc(d, func() {
		c.log.Info("session timer expired")
		c.srv.goBackground(func() {
			c.mu.Lock()
			c.hungUp = true
			c.mu.Unlock()
			c.cancel(ErrSessionExpired)
			ctx, stop := context.WithTimeout(context.WithoutCancel(c.ctx), byeTimeout)
			defer stop()
			_ = c.dialog().Bye(ctx)
		})
	})
}

// audioIn is the PCM writer returned by Call.AudioIn.
type audioIn struct{ s *rtpSession }

func (a audioIn) WriteSample(p transcode.PCM16) error {
	if a.s.ctx.Err() != nil {
		return transcode.ErrClosed
	}
	a.s.push(p)
	return nil
}
func (a audioIn) SampleRate() int { return 8000 }
func (a audioIn) String() string  { return "RTP(20 ms clock)" }
func (a audioIn) Close() error    { return nil }

func respond(tx sipmsg.ServerTransaction, req *sipmsg.Request, code int, reason string, hdrs ...sipmsg.Header) {
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

func allowHeader() sipmsg.Header {
	return sipmsg.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY")
}
