package sip

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/segue-rtc/segue/transcode"
)

// InboundCall is an INVITE from an allowed peer waiting for the
// InviteHandler to answer or reject it.
type InboundCall struct {
	srv   *Server
	trunk *trunk
	req   *sipmsg.Request
	ds    *sipgo.DialogServerSession
	offer *mediaDesc
	codec Codec

	// authSrc is the source of a digest-authenticated INVITE (inbound_auth),
	// the only address besides the trunk's that may speak in its dialog.
	authSrc netip.Addr

	mu       sync.Mutex
	answered bool
	rejected bool
	release  func()
	unpin    func() // ends authSrc's pass through the read filter; the Call takes it on answer
	// transferCtx is what SetTransferContext set: the caller ID and
	// context headers of a transfer's INVITE.
	transferCtx DialOptions
}

// SetTransferContext sets the caller ID and context headers
// (DialOptions.DisplayName and Headers; other fields are ignored) that the
// INVITE of a transfer of this call carries, when the PBX transfers it
// (REFER) after it was answered. The PBX's own INVITE carries no context
// of the gateway's; without this, the phone the call is transferred to
// would learn nothing of who calls. Call it before Answer.
func (in *InboundCall) SetTransferContext(opts DialOptions) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.transferCtx = DialOptions{DisplayName: opts.DisplayName, Headers: opts.Headers}
}

// releasePin lets authSrc's pin go unless Answer handed it to the Call.
func (in *InboundCall) releasePin() {
	in.mu.Lock()
	unpin := in.unpin
	in.unpin = nil
	in.mu.Unlock()
	if unpin != nil {
		unpin()
	}
}

// User returns the user part of the Request-URI, e.g. "conv-42" for
// sip:conv-42@gateway.
func (in *InboundCall) User() string { return in.req.Recipient.User }

// RequestURI returns the full Request-URI.
func (in *InboundCall) RequestURI() string { return in.req.Recipient.String() }

// From returns the caller's URI.
func (in *InboundCall) From() string {
	if f := in.req.From(); f != nil {
		return f.Address.String()
	}
	return ""
}

// FromDisplay returns the caller's display name, its quoted-pairs
// (RFC 3261 §25.1) undone.
func (in *InboundCall) FromDisplay() string {
	if f := in.req.From(); f != nil {
		return unquoteDisplayName(f.DisplayName)
	}
	return ""
}

// Trunk returns the name of the trunk the INVITE came from.
func (in *InboundCall) Trunk() string { return in.trunk.cfg.Name }

// CallID returns the SIP Call-ID.
func (in *InboundCall) CallID() string { return in.req.CallID().Value() }

// Header returns the first value of a header of the INVITE, or "".
func (in *InboundCall) Header(name string) string {
	if h := in.req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// Ringing sends 180 Ringing.
func (in *InboundCall) Ringing() error {
	return in.ds.Respond(180, "Ringing", nil)
}

// Reject answers the INVITE with a final failure (e.g. 486, 603).
func (in *InboundCall) Reject(code int, reason string) error {
	return in.reject(code, reason)
}

// reject is Reject with extra headers on the response.
func (in *InboundCall) reject(code int, reason string, hdrs ...sipmsg.Header) error {
	in.mu.Lock()
	if in.answered || in.rejected {
		in.mu.Unlock()
		return nil
	}
	in.rejected = true
	in.mu.Unlock()
	return in.ds.Respond(code, reason, nil, hdrs...)
}

// Answer accepts the call with 200 OK and our SDP answer and returns the
// Call. audioOut, which may be nil, receives the caller's PCM from the
// first packet.
func (in *InboundCall) Answer(ctx context.Context, audioOut transcode.PCMWriter) (*Call, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.answered || in.rejected {
		return nil, errors.New("sip: inbound call already answered or rejected")
	}
	if err := in.ds.Context().Err(); err != nil {
		return nil, ErrCancelled
	}
	s := in.srv
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return nil, ErrClosed
	}
	media, err := s.newMedia(s.log, in.trunk)
	if err != nil {
		return nil, err
	}
	media.swapOut(audioOut)
	c := newCall(s, in.trunk, in.CallID(), true, in.ds, media, in.release)
	c.codecs, c.sessID, c.localAddr = codecList(in.trunk.cfg.Codecs), s.newSessionID(), s.mediaIP
	c.guard, c.authSrc = serverGuard(in.ds), in.authSrc
	c.dialCtx = in.transferCtx
	var answer []byte
	if in.offer != nil {
		answer, err = c.applyRemote(in.offer, true)
	} else {
		if in.trunk.cfg.SRTP {
			k, kerr := newSDESKey()
			if kerr != nil {
				media.close()
				return nil, kerr
			}
			c.srtpKey, c.cryptoTag = &k, "1"
		}
		answer = c.localSDP(c.codecs, defaultDTMFPT, SendRecv)
	}
	if err != nil {
		media.close()
		return nil, err
	}
	s.track(c)
	hdrs := []sipmsg.Header{sipmsg.NewHeader("Content-Type", "application/sdp"), s.contactOn(in.trunk, in.req.Transport()), allowHeader()}
	if se := c.sessionTimerResponse(in.req); se != nil {
		hdrs = append(hdrs, se, sipmsg.NewHeader("Require", "timer"))
	}
	if err := in.ds.Respond(200, "OK", answer, hdrs...); err != nil {
		s.forget(c)
		media.close()
		return nil, err
	}
	in.answered = true
	c.unpin, in.unpin = in.unpin, nil
	c.start()
	remote := "(in the ACK)"
	if in.offer != nil {
		remote = in.offer.remote().String()
	}
	c.log.Info("call answered", "direction", "inbound", "user", in.User(), "codec", c.Codec(), "remote_media", remote)
	return c, nil
}

// inboundRingLimit bounds how long an inbound call may ring before it is
// rejected with 480.
const inboundRingLimit = 3 * time.Minute

// LimitRetryAfter is the Retry-After, in seconds, of the 503 that answers
// an INVITE past a call limit: RFC 3261 §21.5.4 lets a server that is
// temporarily overloaded say when to try again (§20.33), and a minute lets
// the calls in progress end.
const LimitRetryAfter = 60

// retryAfter is a Retry-After header of secs seconds (RFC 3261 §20.33).
func retryAfter(secs int) sipmsg.Header {
	return sipmsg.NewHeader("Retry-After", strconv.Itoa(secs))
}

// handleInvite serves a new INVITE (one without a To tag) from src: from
// a trunk's allow_inbound_from, or with digest credentials of an
// inbound_auth trunk. Others are challenged (inbound_auth) or refused,
// statelessly either way.
func (s *Server) handleInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction, src netip.Addr) {
	tr := s.trunkFor(src)
	var authSrc netip.Addr
	if tr == nil {
		if tr = s.authTrunk(req); tr != nil {
			authSrc = src
		}
	}
	if tr == nil {
		if s.wantsAuth() {
			s.dropped.Add(1)
			s.challenge(req, statelessTx{ServerTransaction: tx, s: s})
			return
		}
		s.refuse(req)
		return
	}
	s.mu.Lock()
	h := s.onInvite
	s.mu.Unlock()
	if req.Contact() == nil {
		respond(tx, req, 400, "Missing Contact")
		return
	}
	release, err := s.acquire(tr)
	if err != nil {
		respond(tx, req, 503, "Service Unavailable", retryAfter(LimitRetryAfter))
		return
	}
	// An INVITE without a body is a delayed offer (RFC 3261 §13.2.1): we
	// offer in the 200 and the answer comes in the ACK.
	var offer *mediaDesc
	var codec Codec
	if len(req.Body()) > 0 {
		offer, err = parseSDP(req.Body())
		if err == nil {
			codec, err = offer.negotiate(tr.cfg.Codecs)
		}
	}
	if err == nil && offer != nil {
		if strings.Contains(offer.Proto, "SAVP") {
			_, _, err = remoteCrypto(offer)
		} else if tr.cfg.SRTP {
			err = ErrSRTP
		}
	}
	if err != nil {
		release()
		respond(tx, req, 488, "Not Acceptable Here")
		return
	}
	ds, err := s.dialogUAOn(tr, req.Transport()).ReadInvite(req, tx)
	if err != nil {
		release()
		respond(tx, req, 400, "Bad Request")
		return
	}
	in := &InboundCall{srv: s, trunk: tr, req: req, ds: ds, offer: offer, codec: codec, release: release, authSrc: authSrc}
	if authSrc.IsValid() {
		// The caller's CANCEL, ACK and in-dialog requests come from here.
		in.unpin = s.pin(authSrc)
	}
	defer in.releasePin()
	_ = ds.Respond(100, "Trying", nil)
	if h == nil {
		_ = in.Reject(480, "Temporarily Unavailable")
		release()
		return
	}
	s.log.Info("inbound call", "trunk", tr.cfg.Name, "user", in.User(), "call_id", in.CallID(), "from", in.From())
	// The handler must answer within inboundRingLimit; an INVITE is never
	// left ringing forever on a handler that does not return.
	ctx, stop := context.WithTimeout(s.runContext(), inboundRingLimit)
	defer stop()
	cancelOnDialog := context.AfterFunc(ds.Context(), stop)
	defer cancelOnDialog()
	herr := h(ctx, in)
	in.mu.Lock()
	answered := in.answered
	in.mu.Unlock()
	if answered {
		return
	}
	release()
	code, reason := 480, "Temporarily Unavailable"
	var hdrs []sipmsg.Header
	var se *StatusError
	switch {
	case errors.As(herr, &se):
		code, reason = se.Code, se.Reason
		if se.RetryAfter > 0 {
			hdrs = append(hdrs, retryAfter(se.RetryAfter))
		}
		if se.Contact != "" && code >= 300 && code < 400 {
			hdrs = append(hdrs, sipmsg.NewHeader("Contact", "<"+se.Contact+">"))
		}
	case errors.Is(herr, ErrBusy):
		code, reason = 486, "Busy Here"
	case errors.Is(herr, ErrLimit):
		code, reason = 503, "Service Unavailable"
		hdrs = append(hdrs, retryAfter(LimitRetryAfter))
	}
	if ds.Context().Err() != nil {
		return // cancelled: the transaction layer answered 487
	}
	_ = in.reject(code, reason, hdrs...)
}

func (s *Server) runContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

// trunkFor returns the trunk whose allow_inbound_from holds src, or nil.
func (s *Server) trunkFor(src netip.Addr) *trunk {
	if !src.IsValid() {
		return nil
	}
	for _, tr := range s.trunkTable().order {
		if tr.allows(src) {
			return tr
		}
	}
	return nil
}

// refuse answers a request from an outsider with one stateless 403, or
// not at all with scanner_silence. No state is kept either way, so the
// answer is never retransmitted.
func (s *Server) refuse(req *sipmsg.Request) {
	s.dropped.Add(1)
	s.log.Debug("request from unknown source refused", "method", req.Method.String(), "source", req.Source())
	if s.cfg.Silent() || req.IsAck() {
		return
	}
	s.respondStateless(req, 403, "Forbidden")
}

// ignore drops a request from an outsider without an answer, whatever
// scanner_silence says: requests inside a dialog and CANCELs, whose
// answer would tell whether the dialog exists.
func (s *Server) ignore(req *sipmsg.Request) {
	s.dropped.Add(1)
	s.log.Debug("in-dialog request from unknown source dropped", "method", req.Method.String(), "source", req.Source())
}

// respondStateless sends one response through the transport alone (RFC
// 3261 §8.2.7): no transaction keeps it, so it is never retransmitted.
func (s *Server) respondStateless(req *sipmsg.Request, code int, reason string, hdrs ...sipmsg.Header) {
	res := sipmsg.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	_ = s.writeStateless(res)
}

func (s *Server) writeStateless(res *sipmsg.Response) error {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return ErrClosed
	}
	return srv.WriteResponse(res)
}

// statelessTx answers through the transport alone (see respondStateless);
// the server transaction underneath ends without a final response, so
// sipgo terminates it at once instead of retransmitting.
type statelessTx struct {
	sipmsg.ServerTransaction
	s *Server
}

func (t statelessTx) Respond(res *sipmsg.Response) error { return t.s.writeStateless(res) }

// dialogMethods are the methods that only make sense inside a dialog:
// without a To tag they still go through the dialog checks (and get 481).
var dialogMethods = map[sipmsg.RequestMethod]bool{
	sipmsg.ACK: true, sipmsg.BYE: true, sipmsg.UPDATE: true, sipmsg.INFO: true,
	sipmsg.REFER: true, sipmsg.NOTIFY: true, sipmsg.PRACK: true,
}

// route is the entry point of every request. The source is checked
// before anything else, in a dialog or not: outsiders never learn
// whether a Call-ID, a dialog or an extension exists, since every
// request of theirs inside a dialog (and every CANCEL) goes unanswered
// and every other one gets the same refusal, or nothing.
func (s *Server) route(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	src := sourceOf(req)
	to := req.To()
	switch {
	case req.IsCancel():
		// A CANCEL reaching a handler matched no ringing INVITE: the
		// transaction layer answers those (RFC 3261 §9.2).
		if !s.known(src) {
			s.ignore(req)
			return
		}
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
	case dialogMethods[req.Method] || to != nil && to.Params.Has("tag"):
		s.handleInDialog(req, tx, src)
	case req.IsInvite():
		s.handleInvite(req, tx, src)
	case req.Method == sipmsg.OPTIONS:
		s.handleOptions(req, tx, src)
	default:
		if !s.known(src) {
			s.refuse(req)
			return
		}
		respond(tx, req, 405, "Method Not Allowed", allowHeader())
	}
}

// handleInDialog routes a request inside a dialog to its call by Call-ID,
// if it comes from a source of that call's trunk (or, for an
// inbound_auth call, from where the call came from). A known peer asking
// for a dialog that is not its own gets 481, as for one that does not
// exist; an outsider gets nothing.
func (s *Server) handleInDialog(req *sipmsg.Request, tx sipmsg.ServerTransaction, src netip.Addr) {
	c := s.lookup(req.CallID().Value())
	if c == nil || !c.acceptsFrom(src) {
		if !s.known(src) {
			s.ignore(req)
			return
		}
		if c != nil {
			s.log.Debug("in-dialog request from another trunk's source", "method", req.Method.String(), "source", req.Source(), "trunk", c.Trunk())
		}
		if !req.IsAck() {
			respond(tx, req, 481, "Call/Transaction Does Not Exist")
		}
		return
	}
	c.handleInDialog(req, tx)
}

// handleOptions answers OPTIONS from known peers (RFC 3261 §11.2): a
// trunk's allow_inbound_from or its host, keepalives included.
func (s *Server) handleOptions(req *sipmsg.Request, tx sipmsg.ServerTransaction, src netip.Addr) {
	if !s.known(src) {
		s.refuse(req)
		return
	}
	respond(tx, req, 200, "OK", allowHeader(),
		sipmsg.NewHeader("Accept", "application/sdp"),
		sipmsg.NewHeader("Supported", "timer"))
}

func (s *Server) registerHandlers(srv *sipgo.Server) {
	h := s.guard(s.route)
	for _, m := range []sipmsg.RequestMethod{
		sipmsg.INVITE, sipmsg.ACK, sipmsg.CANCEL, sipmsg.BYE, sipmsg.OPTIONS, sipmsg.UPDATE, sipmsg.INFO,
		sipmsg.REFER, sipmsg.NOTIFY, sipmsg.PRACK, sipmsg.REGISTER, sipmsg.SUBSCRIBE, sipmsg.MESSAGE, sipmsg.PUBLISH,
	} {
		srv.OnRequest(m, h)
	}
	srv.OnNoRoute(h)
}

// guard keeps a malformed request from taking the server down: requests
// without the headers every handler relies on get 400 (known peers) or
// nothing (outsiders), and a panic in a handler is logged instead of
// crashing the process.
func (s *Server) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("sip handler panic", "method", req.Method.String(), "panic", r)
			}
		}()
		if req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil || req.Via() == nil {
			if !s.known(sourceOf(req)) {
				s.ignore(req)
				return
			}
			if !req.IsAck() {
				respond(tx, req, 400, "Bad Request")
			}
			return
		}
		h(req, tx)
	}
}
