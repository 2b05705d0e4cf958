package sip

import (
	"context"
	"errors"
	"net/netip"
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

	mu       sync.Mutex
	answered bool
	rejected bool
	release  func()
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
	in.mu.Lock()
	if in.answered || in.rejected {
		in.mu.Unlock()
		return nil
	}
	in.rejected = true
	in.mu.Unlock()
	return in.ds.Respond(code, reason, nil)
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
	media, err := s.newMedia(s.log)
	if err != nil {
		return nil, err
	}
	media.swapOut(audioOut)
	c := newCall(s, in.trunk, in.CallID(), true, in.ds, media, in.release)
	c.codecs, c.sessID, c.localAddr = codecList(in.trunk.cfg.Codecs), s.newSessionID(), s.mediaIP
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

// handleInvite serves a new INVITE, or routes a re-INVITE to its call.
func (s *Server) handleInvite(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.handleInDialog(req, tx)
		return
	}
	tr := s.trunkForSource(req)
	if tr == nil {
		tr = s.authTrunk(req)
	}
	if tr == nil {
		if s.wantsAuth() {
			s.challenge(req, tx)
			return
		}
		s.refuse(req, tx)
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
		respond(tx, req, 503, "Service Unavailable", sipmsg.NewHeader("Retry-After", "5"))
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
	in := &InboundCall{srv: s, trunk: tr, req: req, ds: ds, offer: offer, codec: codec, release: release}
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
	var se *StatusError
	switch {
	case errors.As(herr, &se):
		code, reason = se.Code, se.Reason
	case errors.Is(herr, ErrBusy):
		code, reason = 486, "Busy Here"
	case errors.Is(herr, ErrLimit):
		code, reason = 503, "Service Unavailable"
	}
	if ds.Context().Err() != nil {
		return // cancelled: the transaction layer answered 487
	}
	_ = in.Reject(code, reason)
}

func (s *Server) runContext() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx == nil {
		return context.Background()
	}
	return s.ctx
}

// trunkForSource returns the trunk whose allow_inbound_from holds the
// request's source address, or nil.
func (s *Server) trunkForSource(req *sipmsg.Request) *trunk {
	ap, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		host, _, err2 := sipmsg.ParseAddr(req.Source())
		if err2 != nil {
			return nil
		}
		a, err3 := netip.ParseAddr(host)
		if err3 != nil {
			return nil
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	for _, tr := range s.order {
		if tr.allows(ap.Addr()) {
			return tr
		}
	}
	return nil
}

// refuse answers a request from an unknown source with 403, or not at
// all when scanner_silence is set. No state is kept either way.
func (s *Server) refuse(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	s.mu.Lock()
	s.dropped++
	s.mu.Unlock()
	s.log.Debug("request from unknown source refused", "method", req.Method.String(), "source", req.Source())
	if s.cfg.ScannerSilence {
		return
	}
	respond(tx, req, 403, "Forbidden")
}

// handleInDialog routes a request inside a dialog to its call by Call-ID.
func (s *Server) handleInDialog(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	cid := req.CallID()
	var c *Call
	if cid != nil {
		c = s.lookup(cid.Value())
	}
	if c == nil {
		if req.IsAck() {
			return
		}
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	c.handleInDialog(req, tx)
}

// handleOptions answers OPTIONS from allowed peers (RFC 3261 §11.2).
func (s *Server) handleOptions(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.handleInDialog(req, tx)
		return
	}
	if s.trunkForSource(req) == nil && !s.fromTrunkHost(req) {
		s.refuse(req, tx)
		return
	}
	respond(tx, req, 200, "OK", allowHeader(),
		sipmsg.NewHeader("Accept", "application/sdp"),
		sipmsg.NewHeader("Supported", "timer"))
}

// fromTrunkHost accepts keepalives from a trunk's own address even
// without an inbound allow list.
func (s *Server) fromTrunkHost(req *sipmsg.Request) bool {
	host, _, err := sipmsg.ParseAddr(req.Source())
	if err != nil {
		return false
	}
	for _, tr := range s.order {
		if strings.EqualFold(tr.host, host) {
			return true
		}
	}
	return false
}

func (s *Server) registerHandlers(srv *sipgo.Server) {
	srv.OnInvite(s.guard(s.handleInvite))
	srv.OnOptions(s.guard(s.handleOptions))
	for _, m := range []sipmsg.RequestMethod{sipmsg.BYE, sipmsg.ACK, sipmsg.UPDATE, sipmsg.INFO, sipmsg.REFER, sipmsg.NOTIFY, sipmsg.PRACK} {
		srv.OnRequest(m, s.guard(s.handleInDialog))
	}
	srv.OnCancel(s.guard(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
	}))
	notHere := s.guard(func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		if s.trunkForSource(req) == nil {
			s.refuse(req, tx)
			return
		}
		respond(tx, req, 405, "Method Not Allowed", allowHeader())
	})
	for _, m := range []sipmsg.RequestMethod{sipmsg.REGISTER, sipmsg.SUBSCRIBE, sipmsg.MESSAGE, sipmsg.PUBLISH} {
		srv.OnRequest(m, notHere)
	}
	srv.OnNoRoute(notHere)
}

// guard keeps a malformed request from taking the server down: requests
// without the headers every handler relies on get 400, and a panic in a
// handler is logged instead of crashing the process.
func (s *Server) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("sip handler panic", "method", req.Method.String(), "panic", r)
			}
		}()
		if req.CallID() == nil || req.CSeq() == nil || req.From() == nil || req.To() == nil || req.Via() == nil {
			if !req.IsAck() {
				respond(tx, req, 400, "Bad Request")
			}
			return
		}
		h(req, tx)
	}
}
