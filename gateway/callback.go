package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/segue-rtc/segue/sip"
	"github.com/segue-rtc/segue/transcode"
)

// inboundInvite is an INVITE from a configured PBX peer for a
// conversation; sipInbound adapts *sip.InboundCall. Accept's transfer
// options are the caller ID and context headers that the INVITE of a
// later transfer (REFER from the desk phone) carries.
type inboundInvite interface {
	User() string
	Trunk() string
	Ringing() error
	Accept(ctx context.Context, audioOut transcode.PCMWriter, transfer sip.DialOptions) (phoneCall, error)
}

type sipInbound struct{ *sip.InboundCall }

func (in sipInbound) Accept(ctx context.Context, w transcode.PCMWriter, transfer sip.DialOptions) (phoneCall, error) {
	in.SetTransferContext(transfer)
	c, err := in.Answer(ctx, w)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// handleInvite lets a PBX call into a conversation
// (sip:<inbound_prefix><conversation id>@gateway): the customer's widget
// rings and, on accept, the call is bridged like an outbound one. Only
// configured peers reach this handler (the sip package refuses others).
func (s *Server) handleInvite(ctx context.Context, in inboundInvite) error {
	user := in.User()
	prefix := s.cfg.SIP.InboundPrefix
	if !strings.HasPrefix(user, prefix) {
		return &sip.StatusError{Code: 404, Reason: "Not Found"}
	}
	h := s.hub
	h.mu.Lock()
	id := strings.TrimPrefix(user, prefix)
	cv, ok := h.convs[id]
	if !ok {
		h.mu.Unlock()
		if s.node != nil {
			// Another node of the cluster holds the customer's
			// connection: send the caller there (RFC 3261 §21.3.3), so
			// that the call's media stays on the node of its peer
			// connection.
			if uri, ok := s.node.redirectFor(ctx, id, user); ok {
				s.log.Info("voice: inbound call redirected to the conversation's node", "conv", id, "contact", uri)
				return &sip.StatusError{Code: 302, Reason: "Moved Temporarily", Contact: uri}
			}
		}
		return &sip.StatusError{Code: 404, Reason: "Not Found"}
	}
	// A queue with voice: off takes no call, and a customer who is not
	// connected cannot answer one.
	if len(cv.customers) == 0 || h.voiceOffLocked(cv) {
		h.mu.Unlock()
		return &sip.StatusError{Code: 480, Reason: "Temporarily Unavailable"}
	}
	v, err := s.newVoiceLocked(ctx, cv, "inbound", in.Trunk(), user)
	h.mu.Unlock()
	if errors.Is(err, errInCall) {
		return &sip.StatusError{Code: 486, Reason: "Busy Here"}
	}
	if errors.Is(err, errAllBusy) {
		// RFC 3261 §21.5.4: overloaded for now, try again later.
		return &sip.StatusError{Code: 503, Reason: "Service Unavailable", RetryAfter: busyRetryAfter}
	}
	if errors.Is(err, ErrShuttingDown) {
		return &sip.StatusError{Code: 503, Reason: "Service Unavailable", RetryAfter: ErrShuttingDown.RetryAfter}
	}
	if err != nil {
		return &sip.StatusError{Code: 480, Reason: "Temporarily Unavailable"}
	}
	// The caller hanging up before the customer answers ends the wait.
	stop := context.AfterFunc(ctx, func() { v.cancel(errCallerGone) })
	defer stop()
	s.log.Info("voice: inbound call for the conversation", "conv", cv.c.ID, "call", v.id, "trunk", in.Trunk())
	_ = in.Ringing()
	h.event(v.ctx, cv, "voice.incoming", "Incoming call from the contact center", map[string]string{"call": v.id})
	s.saveCallRecord(v)
	if err := v.ringCustomer("the contact center"); err != nil {
		v.finishUnanswered(err)
		if errors.Is(err, errCustomerDeclined) {
			return &sip.StatusError{Code: 603, Reason: "Decline"}
		}
		return &sip.StatusError{Code: 480, Reason: "Temporarily Unavailable"}
	}
	// A transfer of this call by the desk phone carries the same context
	// as a call the gateway dials: the phone it goes to learns who calls.
	phone, err := in.Accept(v.ctx, noClose{v.toWeb}, v.dialOptions(headerSafe(v.customerName())))
	if err != nil {
		v.finishUnanswered(err)
		return err
	}
	stop()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(v.done)
		defer s.recoverPanic("voice_call", v.id, v.endAfterPanic)
		v.bridgeAndWait(phone)
	}()
	return nil
}

// finishUnanswered ends a call that never reached the bridge.
func (v *voiceCall) finishUnanswered(cause error) {
	v.finish(nil, cause)
	close(v.done)
}

// callCustomer is the console's "call customer": the agent's desk phone
// rings first; once the agent answers, the customer's widget rings, and on
// accept the two are bridged.
func (s *Server) callCustomer(ctx context.Context, agentID string, cv *conv) error {
	if s.phones == nil || s.peers == nil {
		return errVoiceOff
	}
	h := s.hub
	h.mu.Lock()
	if cv.c.AgentID != agentID {
		h.mu.Unlock()
		return ErrForbidden
	}
	if h.voiceOffLocked(cv) {
		h.mu.Unlock()
		return errVoiceQueueOff
	}
	a := h.agents[agentID]
	if a.cfg.Phone == "" {
		h.mu.Unlock()
		return errf(http.StatusConflict, "no_destination", "you have no desk phone in the configuration")
	}
	if len(cv.customers) == 0 {
		h.mu.Unlock()
		return errf(http.StatusConflict, "customer_offline", "the customer is not connected")
	}
	trunk, _, _, err := h.destinationLocked(cv)
	if err != nil {
		h.mu.Unlock()
		return err
	}
	v, err := s.newVoiceLocked(ctx, cv, "agent", trunk, a.cfg.Phone)
	name := a.cfg.Name
	h.mu.Unlock()
	if err != nil {
		return err
	}
	s.log.Info("voice: calling the customer for the agent", "conv", cv.c.ID, "call", v.id, "agent", agentID)
	v.publish()
	h.event(ctx, cv, "voice.dialing", name+" is calling you", map[string]string{"call": v.id})
	s.saveCallRecord(v)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); v.runAgentCall(name) }()
	return nil
}

func (v *voiceCall) runAgentCall(agentName string) {
	defer close(v.done)
	s := v.s
	defer s.recoverPanic("voice_call", v.id, v.endAfterPanic)
	opts := v.dialOptions("Call to " + headerSafe(v.customerName()))
	phone, err := s.phones.Dial(v.ctx, v.trunk, v.target, opts)
	if err != nil {
		v.finish(nil, err)
		return
	}
	// The agent hears ringing while the customer's widget rings.
	ringCtx, stopRing := context.WithCancel(v.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer s.recoverPanic("voice_ringback", v.id, v.cancel)
		v.ringback(ringCtx, phone.AudioIn(), false)
	}()
	waitErr := make(chan error, 1)
	go func() { waitErr <- v.ringCustomer(agentName) }()
	var rerr error
	select {
	case rerr = <-waitErr:
	case <-phone.Done():
		v.cancel(errCallerGone)
		rerr = <-waitErr
	}
	stopRing()
	wg.Wait()
	if rerr != nil {
		v.finish(phone, rerr)
		return
	}
	v.bridgeAndWait(phone)
}
