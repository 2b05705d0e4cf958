package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"github.com/segue-rtc/segue/transcode"
)

// Progress is a provisional response to an outbound INVITE.
type Progress struct {
	Code   int // 180, 183, ...
	Reason string
	// EarlyMedia is true when the response carried SDP: the far end's
	// audio (ringback, announcements) now flows to DialOptions.AudioOut.
	EarlyMedia bool
}

// DialOptions are per-call settings for Dial.
type DialOptions struct {
	// DisplayName is the From display name (e.g. the customer's name);
	// the trunk's from_display is used when empty. Any text is safe: it
	// is quoted per RFC 3261 §25.1 (control characters dropped, '"' and
	// '\' escaped, at most 64 characters).
	DisplayName string
	// Headers are added to the INVITE. Allowed: User-to-User (RFC 7433),
	// Call-Info, P-Asserted-Identity, Privacy, Subject, Alert-Info and X-*.
	// Others, names that are not tokens and values with control
	// characters (CR, LF, NUL...), invalid UTF-8 or over 1024 bytes are
	// refused with an error matching ErrHeader, so that callers cannot
	// break the dialog, add headers or spoof routing.
	Headers map[string]string
	// AudioOut receives the far end's 8 kHz PCM from the first packet on,
	// early media included. It can be replaced later with SwapAudioOut.
	AudioOut transcode.PCMWriter
	// OnProgress is called for each provisional response. It runs on the
	// dialling goroutine and must not block.
	OnProgress func(Progress)
	// RingTimeout ends an unanswered call with CANCEL; 0 leaves it to ctx.
	RingTimeout time.Duration
}

var allowedDialHeaders = map[string]bool{
	"user-to-user": true, "call-info": true, "p-asserted-identity": true,
	"privacy": true, "subject": true, "alert-info": true,
}

// checkDialHeaders refuses caller headers that are not allowed, whose
// name is not a token (RFC 3261 §25.1), or whose value could end the
// header line or hide from parsers (see checkHeaderValue): a caller
// cannot add a header of its own choosing through a name or a value.
func checkDialHeaders(h map[string]string) error {
	for k, v := range h {
		if !isToken(k) {
			return fmt.Errorf("%w: name %q is not a token", ErrHeader, k)
		}
		lk := strings.ToLower(k)
		if !allowedDialHeaders[lk] && !strings.HasPrefix(lk, "x-") {
			return fmt.Errorf("%w: %q may not be set by the caller", ErrHeader, k)
		}
		if err := checkHeaderValue(v); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrHeader, k, err)
		}
	}
	return nil
}

// Dial places a call to target through the named trunk and returns once
// it is answered. target is a sip: or tel: URI or a bare number; numbers
// are normalised with the trunk's rules and sent to the trunk. Digest
// challenges (401/407) are answered with the trunk credentials; 3xx is
// followed only to the same trunk. Cancelling ctx before the answer sends
// CANCEL and returns an error matching ErrCancelled. A final failure is a
// *StatusError (errors.Is with ErrBusy, ErrNoAnswer, ErrUnavailable,
// ErrRejected); past a call limit the error matches ErrLimit.
func (s *Server) Dial(ctx context.Context, trunkName, target string, opts DialOptions) (*Call, error) {
	tr, ok := s.trunkTable().byName[trunkName]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownTrunk, trunkName)
	}
	if err := checkDialHeaders(opts.Headers); err != nil {
		return nil, err
	}
	recipient, err := tr.targetURI(target)
	if err != nil {
		return nil, err
	}
	select {
	case <-s.ready:
	default:
		return nil, fmt.Errorf("sip: dial before Run: %w", ErrClosed)
	}
	release, err := s.acquire(tr)
	if err != nil {
		return nil, err
	}
	c, err := s.dial(ctx, tr, recipient, opts, release)
	if err != nil {
		release()
		return nil, err
	}
	return c, nil
}

func (s *Server) dial(ctx context.Context, tr *trunk, recipient sipmsg.Uri, opts DialOptions, release func()) (*Call, error) {
	if opts.RingTimeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, opts.RingTimeout)
		defer stop()
	}
	log := s.log.With("leg", "sip", "trunk", tr.cfg.Name)
	media, err := s.newMedia(log, tr)
	if err != nil {
		return nil, err
	}
	media.swapOut(opts.AudioOut)
	codecs := codecList(tr.cfg.Codecs)
	sessID := s.newSessionID()
	var key *sdesKey
	crypto := ""
	if tr.cfg.SRTP {
		k, err := newSDESKey()
		if err != nil {
			media.close()
			return nil, err
		}
		key, crypto = &k, k.attr("1")
	}
	offer := buildSDP(sdpParams{Addr: s.mediaIP, Port: media.port, Codecs: codecs, DTMFPT: defaultDTMFPT, Direction: SendRecv, SessionID: sessID, Version: 1, Crypto: crypto})
	dc, md, err := s.invite(ctx, log, tr, recipient, offer, opts, media, key)
	if err != nil {
		media.close()
		return nil, err
	}
	c := newCall(s, tr, dc.InviteRequest.CallID().Value(), false, dc, media, release)
	c.codecs, c.sessID, c.sessVer, c.localAddr = codecs, sessID, 1, s.mediaIP
	c.srtpKey, c.cryptoTag = key, "1"
	c.guard = clientGuard(dc)
	c.dialCtx = DialOptions{DisplayName: opts.DisplayName, Headers: opts.Headers}
	if _, err := c.applyRemote(md, false); err != nil {
		bctx, stop := context.WithTimeout(context.WithoutCancel(ctx), byeTimeout)
		_ = dc.Bye(bctx)
		stop()
		media.close()
		return nil, fmt.Errorf("sip: answer from %s: %w", recipient.String(), err)
	}
	s.track(c)
	c.start()
	s.startRefresher(c, dc.InviteResponse)
	c.log.Info("call answered", "direction", "outbound", "codec", c.Codec(), "remote_media", md.remote().String())
	return c, nil
}

// invite sends an INVITE with offer on tr and waits for the answer:
// digest retries, progress and early media into media, redirects within
// the trunk. On success the 2xx is acknowledged and its description
// returned; on failure nothing is left to clean up but media.
// With key set (SRTP), early media with RTP/SAVP is decrypted too.
func (s *Server) invite(ctx context.Context, log *slog.Logger, tr *trunk, recipient sipmsg.Uri, offer []byte, opts DialOptions, media *rtpSession, key *sdesKey) (*sipgo.DialogClientSession, *mediaDesc, error) {
	var dc *sipgo.DialogClientSession
	var err error
	var early bool
	for hop := 0; ; hop++ {
		req := s.newInvite(tr, recipient, offer, opts)
		log.Info("dialling", "target", recipient.String(), "call_id", req.CallID().Value())
		// The INVITE gives up early when nothing at all answers it
		// (invite_timeout); any response, 100 Trying included, stops
		// that clock. With no provisional response there is nothing to
		// CANCEL (RFC 3261 §9.1): the transaction is dropped at once.
		ictx, giveUp := context.WithCancelCause(ctx)
		var gaveUp atomic.Bool
		silent := time.AfterFunc(tr.cfg.inviteTimeout(), func() {
			gaveUp.Store(true)
			giveUp(sipgo.WaitAnswerForceCancelErr)
		})
		stop := func() { silent.Stop(); giveUp(nil) }
		dc, err = s.dialogUA(tr).WriteInvite(ictx, req)
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("sip: invite %s: %w: %w", recipient.String(), ErrUnreachable, err)
		}
		err = dc.WaitAnswer(ictx, sipgo.AnswerOptions{
			Username: tr.authUser(), Password: tr.cfg.Password,
			OnResponse: func(res *sipmsg.Response) error {
				silent.Stop()
				if !res.IsProvisional() || res.StatusCode == 100 {
					return nil
				}
				p := Progress{Code: res.StatusCode, Reason: res.Reason}
				if md, err := parseSDP(res.Body()); err == nil {
					if codec, err := md.negotiate(tr.cfg.Codecs); err == nil {
						if key != nil && strings.Contains(md.Proto, "SAVP") {
							if _, rk, err := remoteCrypto(md); err == nil {
								if pair, err := newSRTPPair(*key, rk); err == nil {
									media.setSRTP(pair)
								}
							}
						}
						media.configure(codec, md.remote(), md.rtcpRemote(), md.dtmfPT(), md.Direction.mirror())
						if !early {
							early = true
							media.start()
						}
						p.EarlyMedia = true
					}
				}
				if opts.OnProgress != nil {
					opts.OnProgress(p)
				}
				return nil
			},
		})
		unreachable := gaveUp.Load()
		stop()
		if err == nil {
			break
		}
		if unreachable && ctx.Err() == nil {
			dc.Close()
			log.Warn("no response to the INVITE", "target", recipient.String(), "invite_timeout", tr.cfg.inviteTimeout())
			return nil, nil, fmt.Errorf("invite %s: %w after %v", recipient.String(), ErrUnreachable, tr.cfg.inviteTimeout())
		}
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) && de.Res.StatusCode >= 300 && de.Res.StatusCode < 400 && hop < 3 {
			if ct := de.Res.Contact(); ct != nil && tr.sameHost(ct.Address) {
				log.Info("following redirect", "code", de.Res.StatusCode, "contact", ct.Address.String())
				recipient = ct.Address
				dc.Close()
				continue
			}
			return nil, nil, fmt.Errorf("%w: %d to %v", ErrRedirectLoop, de.Res.StatusCode, de.Res.Contact())
		}
		dc.Close()
		return nil, nil, dialError(ctx, recipient, err)
	}

	md, err := parseSDP(dc.InviteResponse.Body())
	if err == nil {
		_, err = md.negotiate(tr.cfg.Codecs)
	}
	if err != nil {
		// RFC 3261 §13.2.2.4: ACK the 2xx, then end the call.
		actx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = dc.Ack(actx)
		_ = dc.Bye(actx)
		stop()
		return nil, nil, fmt.Errorf("sip: answer from %s: %w", recipient.String(), err)
	}
	if err := dc.Ack(ctx); err != nil {
		return nil, nil, fmt.Errorf("sip: ack %s: %w", recipient.String(), err)
	}
	return dc, md, nil
}

func dialError(ctx context.Context, recipient sipmsg.Uri, err error) error {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		se := &StatusError{Code: de.Res.StatusCode, Reason: de.Res.Reason}
		if h := de.Res.GetHeader("Retry-After"); h != nil {
			v, _, _ := strings.Cut(h.Value(), ";")
			se.RetryAfter, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		return fmt.Errorf("invite %s: %w", recipient.String(), se)
	}
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("invite %s: %w: %w", recipient.String(), ErrNoAnswer, ctx.Err())
		}
		return fmt.Errorf("invite %s: %w", recipient.String(), ErrCancelled)
	}
	return fmt.Errorf("sip: invite %s: %w", recipient.String(), err)
}

// newInvite builds the INVITE: caller ID from the trunk, context headers
// from the caller, session timer support (RFC 4028).
func (s *Server) newInvite(tr *trunk, recipient sipmsg.Uri, offer []byte, opts DialOptions) *sipmsg.Request {
	req := sipmsg.NewRequest(sipmsg.INVITE, recipient)
	req.SetTransport(strings.ToUpper(tr.transport))
	req.SetDestination(tr.hostport())
	display := quoteDisplayName(opts.DisplayName)
	if display == "" {
		display = quoteDisplayName(tr.cfg.FromDisplay)
	}
	from := &sipmsg.FromHeader{DisplayName: display, Address: sipmsg.Uri{Scheme: "sip", User: tr.fromUser(), Host: uriHost(tr.host)}}
	from.Params = sipmsg.NewParams()
	from.Params.Add("tag", sipmsg.GenerateTagN(16))
	req.AppendHeader(from)
	req.AppendHeader(&sipmsg.ToHeader{Address: recipient})
	cid := sipmsg.CallIDHeader(newCallID())
	req.AppendHeader(&cid)
	req.AppendHeader(s.contactFor(tr))
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "application/sdp"))
	req.AppendHeader(sipmsg.NewHeader("Supported", "timer"))
	req.AppendHeader(sipmsg.NewHeader("Session-Expires", "1800"))
	req.AppendHeader(sipmsg.NewHeader("Min-SE", "90"))
	req.AppendHeader(allowHeader())
	req.AppendHeader(sipmsg.NewHeader("User-Agent", s.cfg.UserAgent))
	hasPAI := false
	for k, v := range opts.Headers {
		if strings.EqualFold(k, "P-Asserted-Identity") {
			hasPAI = true
		}
		req.AppendHeader(sipmsg.NewHeader(k, v))
	}
	if !hasPAI && tr.cfg.AssertedIdentity != "" {
		req.AppendHeader(sipmsg.NewHeader("P-Asserted-Identity", "<"+tr.cfg.AssertedIdentity+">"))
	}
	if tr.cfg.Privacy != "" && opts.Headers["Privacy"] == "" {
		req.AppendHeader(sipmsg.NewHeader("Privacy", tr.cfg.Privacy))
	}
	req.SetBody(offer)
	return req
}

// startRefresher honours RFC 4028 for an outbound call: when the answer
// makes us the refresher (refresher=uac), an UPDATE refreshes the
// session at half the interval; otherwise we expect refreshes and end
// the call when none arrives.
func (s *Server) startRefresher(c *Call, res *sipmsg.Response) {
	h := res.GetHeader("Session-Expires")
	if h == nil {
		return
	}
	v, params, _ := strings.Cut(h.Value(), ";")
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs <= 0 {
		return
	}
	if !strings.Contains(strings.ReplaceAll(params, " ", ""), "refresher=uac") {
		c.armSessionTimer(secs)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(time.Duration(secs) * time.Second / 2)
		defer t.Stop()
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-t.C:
			}
			req := sipmsg.NewRequest(sipmsg.UPDATE, c.remoteTarget())
			req.AppendHeader(sipmsg.NewHeader("Session-Expires", strconv.Itoa(secs)+";refresher=uac"))
			req.AppendHeader(sipmsg.NewHeader("Supported", "timer"))
			ctx, stop := context.WithTimeout(c.ctx, 10*time.Second)
			res, err := c.dialog().Do(ctx, req)
			stop()
			if err == nil && res.StatusCode == 481 || err == nil && res.StatusCode == 408 {
				c.log.Warn("session refresh refused, ending call", "code", res.StatusCode)
				c.mu.Lock()
				c.hungUp = true
				c.mu.Unlock()
				cause := ErrSessionExpired
				if res.StatusCode == 481 {
					cause = ErrDialogLost
				}
				c.cancel(cause)
				return
			}
		}
	}()
}

// remoteTarget is the far end's Contact, where in-dialog requests go.
func (c *Call) remoteTarget() sipmsg.Uri { return c.remoteTargetOf(c.dialog()) }

func (c *Call) remoteTargetOf(dlg dialogSession) sipmsg.Uri {
	if dc, ok := dlg.(*sipgo.DialogClientSession); ok && dc.InviteResponse != nil {
		if ct := dc.InviteResponse.Contact(); ct != nil {
			return ct.Address
		}
		return dc.InviteRequest.Recipient
	}
	if ds, ok := dlg.(*sipgo.DialogServerSession); ok {
		if ct := ds.InviteRequest.Contact(); ct != nil {
			return ct.Address
		}
	}
	return sipmsg.Uri{}
}
