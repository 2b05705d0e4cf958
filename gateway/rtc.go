package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	"github.com/segue-rtc/segue/store"
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
	// page is the page that made it (hello "page"): its sockets signal
	// for it, and its leaving ends it.
	page  string
	neg   negotiator
	grace graceTimer // armed while no socket of the page is connected
	// release gives back the peer's limits.max_peers_per_ip slot.
	release func()
}

// customerOffer answers the customer's offer: on the existing peer
// connection (renegotiation) or on a new one. use says what it is for;
// 0 (a renegotiation) needs an existing connection. A connection of
// another page is refused while that page is connected, and replaced once
// it is gone (a reload that did not say goodbye). Our ICE candidates wait
// until the answer has gone out, since the browser cannot add them before
// it has our description.
func (s *Server) customerOffer(ctx context.Context, cv *conv, cl *client, offer string, use int) (*customerRTC, error) {
	h := s.hub
	h.mu.Lock()
	rtc := cv.rtc
	var stale *customerRTC
	if rtc != nil && !rtc.ownedBy(cl) {
		if h.rtcOwnerConnectedLocked(cv, rtc) {
			h.mu.Unlock()
			return nil, errInUse
		}
		cv.rtc, stale, rtc = nil, rtc, nil
	}
	h.mu.Unlock()
	if stale != nil {
		s.log.Info("webrtc: a new page replaces the customer's connection of a page that left", "conv", cv.c.ID)
		_ = stale.peer.Close()
	}
	if rtc != nil {
		if use&useVoice != 0 {
			defer s.callOnPeer(cv, rtc)()
		}
		rtc.neg.startAnswer()
		defer s.answerSent(cv, "customer", rtc.peer, &rtc.neg)
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
	if use == 0 {
		return nil, errNoCall
	}
	convID := cv.c.ID
	var self *customerRTC // set as the gate opens
	gate := &candidateGate{send: func(cand json.RawMessage) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.rtcSocketsLocked(cv, self) {
			c.send(map[string]any{"type": "rtc.candidate", "conversation_id": convID, "candidate": cand})
		}
	}}
	hooks := peerHooks{
		candidate: gate.add,
		dtmf:      func(d rune) { s.browserDigit(cv, d) },
		video:     func(rv remoteVideo) { s.customerVideo(cv, rv) },
		// Narrowband for a call; wideband for video from the chat.
		wideband: use&useVoice == 0,
	}
	// A new peer takes one of its address's slots first, given back when
	// it ends (watchCustomerRTC) or fails to start.
	release, err := h.reservePeer(cl.ip)
	if err != nil {
		return nil, err
	}
	// The peer outlives the request and the call that made it.
	peer, err := s.peers.NewPeer(context.WithoutCancel(ctx), convID+"/customer", hooks)
	if err != nil {
		release()
		return nil, err
	}
	answer, err := peer.Answer(ctx, offer)
	if err != nil {
		peer.Close()
		release()
		return nil, err
	}
	rtc = &customerRTC{peer: peer, toWeb: &lockedWriter{dst: peer.AudioIn()}, uses: use, page: cl.page, release: release}
	// Offers of ours wait for the answer (negotiator): one made as soon as
	// the peer is the conversation's must not reach the browser first.
	rtc.neg.answering = 1
	h.mu.Lock()
	if h.convEndedLocked(cv) { // ended while the peer was being built: closeConvMedia has run
		h.mu.Unlock()
		peer.Close()
		return nil, ErrEnded
	}
	if cv.rtc != nil { // another offer won the race
		h.mu.Unlock()
		peer.Close()
		release()
		return nil, errf(http.StatusConflict, "glare", "another negotiation is in progress; retry")
	}
	cv.rtc = rtc
	h.mu.Unlock()
	// Counted before the answer goes out: whoever waits for s.wg after
	// seeing the answer waits for this too.
	s.wg.Add(1)
	peer.AfterDone(func() { defer s.wg.Done(); s.watchCustomerRTC(cv, rtc) })
	gate.open(func() {
		cl.send(map[string]any{"type": "rtc.answer", "conversation_id": convID, "sdp": answer})
		self = rtc
	})
	s.answerSent(cv, "customer", peer, &rtc.neg)
	s.afterCustomerRTC(cv)
	return rtc, nil
}

// watchCustomerRTC clears the conversation's peer once it has ended, however
// it ends (closed by us, ICE failed, the tab closed it), and releases it:
// a peer that ends on its own must still be closed to free its
// goroutines and ports. A call on it ends as the browser's loss; video
// users see the end through their own Done checks.
func (s *Server) watchCustomerRTC(cv *conv, rtc *customerRTC) {
	<-rtc.peer.Done()
	h := s.hub
	h.mu.Lock()
	if cv.rtc == rtc {
		cv.rtc = nil
	}
	rtc.grace.stop()
	v := cv.voice
	h.mu.Unlock()
	if v != nil && v.onPeer(rtc.peer) {
		v.cancel(errBrowserGone)
	}
	_ = rtc.peer.Close()
	if rtc.release != nil {
		rtc.release()
	}
	s.dropRelaysTo(cv, rtc.peer)
	s.routeAudio(cv)
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

// releaseCustomerRTC ends one use of the customer's peer connection peer
// and closes it when nothing uses it any more. A peer that is no longer
// the conversation's (replaced, ended) is left alone.
func (s *Server) releaseCustomerRTC(cv *conv, peer browserPeer, use int) error {
	h := s.hub
	h.mu.Lock()
	rtc := cv.rtc
	if rtc == nil || rtc.peer != peer {
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

// candidate passes a trickled ICE candidate from cl to the peer toward
// dst, if cl's page holds it; a malformed one is the client's error,
// answered with an error frame.
func (s *Server) candidate(cl *client, cv *conv, dst string, cand json.RawMessage) error {
	p, _ := s.hub.ownedPeer(cv, dst, cl)
	if p == nil {
		return errNoCall
	}
	if err := p.AddICECandidate(cand); err != nil {
		if errors.As(err, new(*apiError)) {
			return err
		}
		return errf(http.StatusBadRequest, "bad_frame", "ICE candidate refused")
	}
	return nil
}

// convEndedLocked reports whether cv has ended, or is no longer the live
// conversation of its id; hub.mu held. A peer built for cv meanwhile must
// not be kept: the conversation's media were closed at its end.
func (h *hub) convEndedLocked(cv *conv) bool {
	return cv.c.State == store.StateEnded || h.convs[cv.c.ID] != cv
}

// renegotiate answers a new offer from the customer's browser (ICE
// restart, a camera or screen added or removed).
func (s *Server) renegotiate(ctx context.Context, cl *client, cv *conv, offer string) error {
	s.hub.mu.Lock()
	rtc := cv.rtc
	own := rtc != nil && rtc.ownedBy(cl)
	s.hub.mu.Unlock()
	if rtc == nil {
		return errNoCall
	}
	if !own {
		return errInUse
	}
	if _, err := s.customerOffer(ctx, cv, cl, offer, 0); err != nil {
		if errors.As(err, new(*apiError)) {
			return err
		}
		return errf(http.StatusBadRequest, "bad_offer", "the new offer could not be used")
	}
	return nil
}

// candidateGate holds a new peer's ICE candidates until its answer has
// gone to the browser (a candidate before the description would be
// refused there), then passes them on as they come.
type candidateGate struct {
	send func(json.RawMessage)

	mu      sync.Mutex
	opened  bool
	pending []json.RawMessage
}

// add sends cand, or keeps it until open.
func (g *candidateGate) add(cand json.RawMessage) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		g.pending = append(g.pending, cand)
		return
	}
	g.send(cand)
}

// open runs first (sending the answer), then the kept candidates, with no
// candidate slipping in between.
func (g *candidateGate) open(first func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	first()
	for _, c := range g.pending {
		g.send(c)
	}
	g.opened, g.pending = true, nil
}
