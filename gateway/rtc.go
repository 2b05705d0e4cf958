package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/segue-rtc/segue/webrtc"
)

// errGlare answers a browser offer that crossed one of ours: the browser,
// the polite side, rolls back, answers ours and offers again.
var errGlare = errf(http.StatusConflict, "glare", "the gateway's own offer is pending: answer it, then offer again")

// What a customer's peer connection is used for; it closes when no use
// is left.
const (
	useVoice = 1 << iota
	useVideo
)

// customerRTC is the customer's one peer connection to the gateway,
// shared by the voice call and video (DESIGN.md: video tracks join the
// same peer connection). Guarded by hub.mu.
type customerRTC struct {
	peer  browserPeer
	toWeb *lockedWriter
	uses  int
}

// customerOffer answers the customer's offer: on the existing peer
// connection (renegotiation) or on a new one. use says what it is for.
// Our ICE candidates wait until the answer has gone out, since the browser
// cannot add them before it has our description.
func (s *Server) customerOffer(ctx context.Context, cv *conv, cl *client, offer string, use int) (*customerRTC, error) {
	h := s.hub
	h.mu.Lock()
	rtc := cv.rtc
	h.mu.Unlock()
	if rtc != nil {
		answer, err := rtc.peer.Answer(ctx, offer)
		if errors.Is(err, webrtc.ErrGlare) {
			return nil, errGlare
		}
		if err != nil {
			return nil, err
		}
		h.mu.Lock()
		rtc.uses |= use
		h.mu.Unlock()
		cl.send(map[string]any{"type": "rtc.answer", "conversation_id": cv.c.ID, "sdp": answer})
		return rtc, nil
	}
	convID := cv.c.ID
	var sigMu sync.Mutex
	var pending []json.RawMessage
	answered := false
	sendCand := func(cand json.RawMessage) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for c := range cv.customers {
			c.send(map[string]any{"type": "rtc.candidate", "conversation_id": convID, "candidate": cand})
		}
	}
	hooks := peerHooks{
		candidate: func(cand json.RawMessage) {
			sigMu.Lock()
			defer sigMu.Unlock()
			if !answered {
				pending = append(pending, cand)
				return
			}
			sendCand(cand)
		},
		dtmf:  func(d rune) { s.browserDigit(cv, d) },
		video: func(rv remoteVideo) { s.customerVideo(cv, rv) },
	}
	// The peer outlives the request and the call that made it.
	peer, err := s.peers.NewPeer(context.WithoutCancel(ctx), convID+"/customer", hooks)
	if err != nil {
		return nil, err
	}
	answer, err := peer.Answer(ctx, offer)
	if err != nil {
		peer.Close()
		return nil, err
	}
	rtc = &customerRTC{peer: peer, toWeb: &lockedWriter{dst: peer.AudioIn()}, uses: use}
	h.mu.Lock()
	if cv.rtc != nil { // another offer won the race
		h.mu.Unlock()
		peer.Close()
		return nil, errf(http.StatusConflict, "glare", "another negotiation is in progress; retry")
	}
	cv.rtc = rtc
	h.mu.Unlock()
	sigMu.Lock()
	cl.send(map[string]any{"type": "rtc.answer", "conversation_id": convID, "sdp": answer})
	for _, c := range pending {
		sendCand(c)
	}
	answered, pending = true, nil
	sigMu.Unlock()
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.watchCustomerRTC(cv, rtc) }()
	s.afterCustomerRTC(cv)
	return rtc, nil
}

// watchCustomerRTC clears the conversation's peer when it ends, however
// it ends (closed by us, ICE failed, the tab closed it), and releases it:
// a peer that ends on its own must still be closed to free its
// goroutines and ports. Users see the end through their own Done checks.
func (s *Server) watchCustomerRTC(cv *conv, rtc *customerRTC) {
	<-rtc.peer.Done()
	s.hub.mu.Lock()
	if cv.rtc == rtc {
		cv.rtc = nil
	}
	s.hub.mu.Unlock()
	_ = rtc.peer.Close()
	s.customerRTCGone(cv)
}

// closeConvMedia closes the conversation's peer connections: the
// customer's and the console's (the conversation ended, or the gateway
// stops).
func (s *Server) closeConvMedia(cv *conv) {
	h := s.hub
	h.mu.Lock()
	rtc, vs := cv.rtc, cv.video
	cv.rtc = nil
	h.mu.Unlock()
	if vs != nil {
		s.leaveVideo(cv, vs)
	}
	if rtc != nil {
		_ = rtc.peer.Close()
	}
}

// closeMedia closes the peer connections of every open conversation, so
// that shutdown does not wait for browsers to hang up.
func (s *Server) closeMedia() {
	h := s.hub
	h.mu.Lock()
	convs := make([]*conv, 0, len(h.convs))
	for _, cv := range h.convs {
		if cv.rtc != nil || cv.video != nil {
			convs = append(convs, cv)
		}
	}
	h.mu.Unlock()
	for _, cv := range convs {
		s.closeConvMedia(cv)
	}
}

// releaseCustomerRTC ends one use of the customer's peer connection and
// closes it when nothing uses it any more.
func (s *Server) releaseCustomerRTC(cv *conv, use int) error {
	h := s.hub
	h.mu.Lock()
	rtc := cv.rtc
	if rtc == nil {
		h.mu.Unlock()
		return nil
	}
	rtc.uses &^= use
	last := rtc.uses == 0
	if last {
		cv.rtc = nil
	}
	h.mu.Unlock()
	if last {
		return rtc.peer.Close()
	}
	s.routeAudio(cv)
	return nil
}

// peerOf returns the conversation's peer connection toward dst, the
// "customer" (shared by call and video) or the "agent" console, or nil.
func (s *Server) peerOf(cv *conv, dst string) browserPeer {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	switch {
	case dst == "customer" && cv.rtc != nil:
		return cv.rtc.peer
	case dst == "agent" && cv.video != nil:
		return cv.video.peer
	}
	return nil
}

// candidate passes a trickled ICE candidate to the peer toward dst; a
// malformed one is the client's error, answered with an error frame.
func (s *Server) candidate(cv *conv, dst string, cand json.RawMessage) error {
	p := s.peerOf(cv, dst)
	if p == nil {
		return errNoCall
	}
	if err := p.AddICECandidate(cand); err != nil {
		return errf(http.StatusBadRequest, "bad_frame", "ICE candidate refused")
	}
	return nil
}

// renegotiate answers a new offer from the customer's browser (ICE
// restart, a camera or screen added or removed).
func (s *Server) renegotiate(ctx context.Context, cl *client, cv *conv, offer string) error {
	s.hub.mu.Lock()
	rtc := cv.rtc
	s.hub.mu.Unlock()
	if rtc == nil {
		return errNoCall
	}
	if _, err := s.customerOffer(ctx, cv, cl, offer, 0); err != nil {
		if errors.As(err, new(*apiError)) {
			return err
		}
		return errf(http.StatusBadRequest, "bad_offer", "the new offer could not be used")
	}
	return nil
}
