package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
)

// handleRefer accepts a blind transfer (RFC 3515) to a target the
// trunk's transfer rules allow: 202, then NOTIFYs with a message/sipfrag
// of the new INVITE's progress. The new INVITE carries the caller ID and
// context headers of the call's first one (for an inbound call, those set
// with InboundCall.SetTransferContext). EventTransfer reports the 202,
// then EventTransferred or EventTransferFailed the new INVITE's outcome.
// The new dialog reuses the call's RTP
// session, so the gateway keeps the same Call, with sequence numbers and
// timestamps running on. Other targets are refused with 403 (toll-fraud
// rule: destinations come only from configuration).
func (c *Call) handleRefer(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	h := req.GetHeader("Refer-To")
	if h == nil {
		respond(tx, req, 400, "Missing Refer-To")
		return
	}
	target, err := parseReferTo(h.Value())
	if err != nil {
		respond(tx, req, 400, "Bad Refer-To")
		return
	}
	recipient, err := c.trunk.referTarget(target)
	if err != nil {
		c.log.Info("transfer refused", "target", target, "error", err)
		respond(tx, req, 403, "Forbidden")
		return
	}
	c.mu.Lock()
	busy := c.oldDlg != nil
	c.mu.Unlock()
	if busy {
		respond(tx, req, 491, "Request Pending")
		return
	}
	respond(tx, req, 202, "Accepted")
	c.log.Info("transfer accepted", "target", recipient.String())
	c.emit(Event{Kind: EventTransfer, Target: recipient.String()})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.transfer(recipient)
	}()
}

// parseReferTo takes the URI out of a Refer-To value ("<sip:x@y>;p").
func parseReferTo(v string) (string, error) {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		j := strings.IndexByte(v[i:], '>')
		if j < 0 {
			return "", errors.New("sip: unterminated refer-to")
		}
		v = v[i+1 : i+j]
	}
	if i := strings.IndexByte(v, '?'); i >= 0 {
		v = v[:i] // embedded headers (e.g. Replaces) are not supported
	}
	if v == "" {
		return "", errors.New("sip: empty refer-to")
	}
	return v, nil
}

// referTarget checks a REFER's target against the trunk's transfer rules
// (allowsTransfer) and returns the Request-URI of the new INVITE, which
// goes to the trunk like every call.
func (t *trunk) referTarget(target string) (sipmsg.Uri, error) {
	if err := t.allowsTransfer(target); err != nil {
		return sipmsg.Uri{}, err
	}
	return t.targetURI(target)
}

func (c *Call) transfer(recipient sipmsg.Uri) {
	s := c.srv
	c.notifyFrag(100, "Trying", false)
	ctx, stop := context.WithTimeout(c.ctx, 2*time.Minute)
	defer stop()
	c.mu.Lock()
	codecs := c.codecs
	c.mu.Unlock()
	offer := c.localSDP(codecs, defaultDTMFPT, SendRecv)
	c.mu.Lock()
	key := c.srtpKey
	c.mu.Unlock()
	// The new INVITE carries the first one's caller ID and context
	// (User-to-User, Call-Info, X-*): the phone the call goes to learns
	// who calls and about what, as the first one did.
	dc, md, err := s.invite(ctx, c.log, c.trunk, recipient, offer, c.dialCtx, c.media, key)
	if err != nil {
		var se *StatusError
		code, reason := 503, "Service Unavailable"
		if errors.As(err, &se) {
			code, reason = se.Code, se.Reason
		}
		c.log.Info("transfer failed", "target", recipient.String(), "error", err)
		c.notifyFrag(code, reason, true)
		if c.ctx.Err() == nil { // after EventHangup, nothing more is reported
			c.emit(Event{Kind: EventTransferFailed, Target: recipient.String(), Cause: err})
		}
		return
	}
	newID := dc.InviteRequest.CallID().Value()
	c.mu.Lock()
	old := c.dlg
	c.oldDlg, c.oldCallID = old, c.callID
	c.dlg, c.callID = dc, newID
	c.oldGuard, c.guard = c.guard, clientGuard(dc)
	close(c.dlgChanged)
	c.dlgChanged = make(chan struct{})
	c.mu.Unlock()
	s.trackAs(c, newID)
	if _, err := c.applyRemote(md, false); err != nil {
		c.log.Warn("transfer answer unusable", "error", err)
	}
	c.log.Info("transfer completed", "target", recipient.String(), "call_id", newID)
	c.notifyFrag(200, "OK", true)
	c.emit(Event{Kind: EventTransferred, Target: recipient.String()})
	// RFC 5589 §6.1: the transferor normally hangs up its leg; make sure.
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-old.Context().Done():
	case <-c.ctx.Done():
	case <-t.C:
		bctx, bstop := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
		_ = old.Bye(bctx)
		bstop()
	}
	c.mu.Lock()
	oldID := c.oldCallID
	c.oldDlg, c.oldCallID = nil, ""
	c.mu.Unlock()
	s.forgetID(c, oldID)
}

// notifyFrag reports transfer progress in the old dialog (RFC 3515 §2.4.5).
func (c *Call) notifyFrag(code int, reason string, final bool) {
	c.mu.Lock()
	dlg := c.dlg
	if c.oldDlg != nil {
		dlg = c.oldDlg
	}
	c.mu.Unlock()
	req := sipmsg.NewRequest(sipmsg.NOTIFY, c.remoteTargetOf(dlg))
	req.AppendHeader(sipmsg.NewHeader("Event", "refer"))
	state := "active;expires=60"
	if final {
		state = "terminated;reason=noresource"
	}
	req.AppendHeader(sipmsg.NewHeader("Subscription-State", state))
	req.AppendHeader(sipmsg.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	req.SetBody([]byte(fmt.Sprintf("SIP/2.0 %d %s\r\n", code, reason)))
	ctx, stop := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	defer stop()
	if _, err := dlg.Do(ctx, req); err != nil {
		c.log.Debug("notify failed", "error", err)
	}
}
