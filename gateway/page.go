package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/segue-rtc/segue/store"
)

// A peer connection belongs to the page that made it: the browser tab,
// from one load to the next, named by the "page" of its hello frames. The
// media path does not depend on the WebSocket, so a page whose socket
// drops and comes back (the same page id) keeps its media, and signalling
// resumes on the new socket. A page that is left or reloaded takes its
// peer connections with it: the browser closes them, and says so by
// closing the socket with 1001 (going away), so the gateway ends that
// page's media at once. A page that stays away longer than mediaGrace
// loses its video. docs/api.md, "Reconnecting and reloading".

// mediaGrace is how long the video of a page whose socket closed (other
// than by leaving the page) waits for the page to reconnect.
var mediaGrace = 30 * time.Second

// errInUse refuses signalling from a page that does not hold the media it
// is about.
var errInUse = errf(http.StatusConflict, "in_use", "the call or video of this conversation runs in another window")

// graceTimer ends a page's media when the page stays away. Guarded by
// hub.mu; gen tells a timer that fired after it was stopped or re-armed.
type graceTimer struct {
	t   *time.Timer
	gen uint64
}

// arm starts the timer unless it runs already; f gets the generation to
// check with fired.
func (g *graceTimer) arm(d time.Duration, f func(gen uint64)) {
	if g.t != nil {
		return
	}
	g.gen++
	gen := g.gen
	g.t = time.AfterFunc(d, func() { f(gen) })
}

func (g *graceTimer) stop() {
	if g.t != nil {
		g.t.Stop()
		g.t = nil
	}
	g.gen++
}

// fired reports whether the timer of generation gen is still the armed
// one, and disarms it.
func (g *graceTimer) fired(gen uint64) bool {
	if g.t == nil || g.gen != gen {
		return false
	}
	g.t = nil
	return true
}

// negotiator serialises the gateway's offers to one browser peer: one in
// flight, and one more once it is answered if something changed
// meanwhile. An offer that finds no socket of the peer's page is owed
// until the page says hello again; one whose answer may have been lost
// with a socket is sent again to the new socket. No offer goes out while
// the gateway answers an offer of the browser's (answering): it would
// reach the browser before that answer, while the browser still waits
// for it, and the browser would take it for glare. The change is owed
// until the answer has gone (answerSent). A new peer's negotiator starts
// answering: its first answer (to media.join, video.start, voice.start)
// is the first description its browser gets.
type negotiator struct {
	mu        sync.Mutex
	out       bool             // an offer waits for its answer
	owed      bool             // a change waits for an offer
	answering int              // our answers to the browser's offers being made and sent
	sentTo    map[*client]bool // the sockets the offer in flight went to
}

// startAnswer holds the gateway's offers to the browser while our answer
// to its offer is made and sent; answerSent ends it.
func (n *negotiator) startAnswer() {
	n.mu.Lock()
	n.answering++
	n.mu.Unlock()
}

// answerSent ends a startAnswer (or a new peer's first answer) once the
// answer has gone to the browser, or failed, and makes the offer owed
// meanwhile.
func (s *Server) answerSent(cv *conv, dst string, peer browserPeer, neg *negotiator) {
	neg.mu.Lock()
	defer neg.mu.Unlock()
	neg.answering--
	if neg.answering == 0 && !neg.out && neg.owed {
		s.makeOfferLocked(cv, dst, peer, neg)
	}
}

// ownedBy reports whether cl, a customer's socket, belongs to the page
// that made rtc. Sockets without a page id share one, as before page ids.
func (rtc *customerRTC) ownedBy(cl *client) bool {
	return cl.role == store.RoleCustomer && cl.page == rtc.page
}

// ownedBy reports whether cl, a console's socket, belongs to the page
// that joined vs; without a page id, only the socket that joined does.
func (vs *videoSession) ownedBy(cl *client) bool {
	if cl.role != store.RoleAgent || cl.agentID != vs.agentID {
		return false
	}
	if vs.page == "" {
		return cl == vs.cl
	}
	return cl.page == vs.page
}

// rtcSocketsLocked lists the welcomed sockets of the page that owns rtc;
// hub.mu held.
func (h *hub) rtcSocketsLocked(cv *conv, rtc *customerRTC) []*client {
	var out []*client
	for c := range cv.customers {
		if c.ready && rtc.ownedBy(c) {
			out = append(out, c)
		}
	}
	return out
}

// videoSocketsLocked lists the welcomed sockets of the console page that
// owns vs; hub.mu held.
func (h *hub) videoSocketsLocked(vs *videoSession) []*client {
	a, ok := h.agents[vs.agentID]
	if !ok {
		return nil
	}
	var out []*client
	for c := range a.clients {
		if c.ready && vs.ownedBy(c) {
			out = append(out, c)
		}
	}
	return out
}

func (h *hub) rtcOwnerConnectedLocked(cv *conv, rtc *customerRTC) bool {
	for c := range cv.customers {
		if rtc.ownedBy(c) {
			return true
		}
	}
	return false
}

func (h *hub) videoOwnerConnectedLocked(vs *videoSession) bool {
	if a, ok := h.agents[vs.agentID]; ok {
		for c := range a.clients {
			if vs.ownedBy(c) {
				return true
			}
		}
	}
	return false
}

// peerLocked returns the conversation's peer toward dst ("customer" or
// "agent") and its negotiator, or nil; hub.mu held.
func (h *hub) peerLocked(cv *conv, dst string) (browserPeer, *negotiator) {
	switch {
	case dst == "customer" && cv.rtc != nil:
		return cv.rtc.peer, &cv.rtc.neg
	case dst == "agent" && cv.video != nil:
		return cv.video.peer, &cv.video.neg
	}
	return nil, nil
}

// socketsLocked lists the sockets that signal for the peer toward dst.
func (h *hub) socketsLocked(cv *conv, dst string) []*client {
	switch {
	case dst == "customer" && cv.rtc != nil:
		return h.rtcSocketsLocked(cv, cv.rtc)
	case dst == "agent" && cv.video != nil:
		return h.videoSocketsLocked(cv.video)
	}
	return nil
}

// ownsLocked reports whether cl belongs to the page holding the peer
// toward dst.
func (h *hub) ownsLocked(cv *conv, dst string, cl *client) bool {
	switch {
	case dst == "customer" && cv.rtc != nil:
		return cv.rtc.ownedBy(cl)
	case dst == "agent" && cv.video != nil:
		return cv.video.ownedBy(cl)
	}
	return false
}

// ownedPeer returns the conversation's peer toward dst and its
// negotiator if cl belongs to the page holding that peer, else nil.
func (h *hub) ownedPeer(cv *conv, dst string, cl *client) (browserPeer, *negotiator) {
	h.mu.Lock()
	defer h.mu.Unlock()
	peer, neg := h.peerLocked(cv, dst)
	if peer == nil || !h.ownsLocked(cv, dst, cl) {
		return nil, nil
	}
	return peer, neg
}

// offerTo sends a gateway offer to the browser holding the peer toward
// dst, one at a time (the browser answers with rtc.answer).
func (s *Server) offerTo(cv *conv, dst string) {
	s.hub.mu.Lock()
	peer, neg := s.hub.peerLocked(cv, dst)
	s.hub.mu.Unlock()
	if peer == nil {
		return
	}
	neg.mu.Lock()
	defer neg.mu.Unlock()
	if neg.out || neg.answering > 0 {
		neg.owed = true
		return
	}
	s.makeOfferLocked(cv, dst, peer, neg)
}

// makeOfferLocked makes an offer on peer and sends it to the sockets of
// its page; with none connected, the offer is owed until the page is
// back. neg.mu held.
func (s *Server) makeOfferLocked(cv *conv, dst string, peer browserPeer, neg *negotiator) {
	s.hub.mu.Lock()
	cur, _ := s.hub.peerLocked(cv, dst)
	targets := s.hub.socketsLocked(cv, dst)
	s.hub.mu.Unlock()
	neg.owed = false
	if cur != peer {
		return // replaced meanwhile: the new peer negotiates for itself
	}
	if len(targets) == 0 {
		neg.owed = true
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sdp, err := peer.Offer(ctx, false)
	if err != nil {
		s.log.Warn("video: offer not made", "conv", cv.c.ID, "to", dst, "err", err)
		return
	}
	neg.out, neg.sentTo = true, map[*client]bool{}
	for _, c := range targets {
		c.send(map[string]any{"type": "rtc.offer", "conversation_id": cv.c.ID, "sdp": sdp})
		neg.sentTo[c] = true
	}
}

// answered applies a browser's answer to our offer and sends the next
// offer if something changed meanwhile.
func (s *Server) answered(ctx context.Context, cl *client, cv *conv, dst, sdp string) error {
	peer, neg := s.hub.ownedPeer(cv, dst, cl)
	if peer == nil {
		return errNoVideo
	}
	neg.mu.Lock()
	defer neg.mu.Unlock()
	if err := peer.SetAnswer(ctx, sdp); err != nil {
		if errors.As(err, new(*apiError)) {
			return err
		}
		return errf(http.StatusBadRequest, "bad_answer", "the answer could not be used")
	}
	neg.out, neg.sentTo = false, nil
	if neg.owed && neg.answering == 0 {
		s.makeOfferLocked(cv, dst, peer, neg)
	}
	return nil
}

// resendOffer brings a socket of the page holding the peer toward dst up
// to date once it is welcomed: the offer in flight went to a socket that
// has closed, so its answer may never come; an owed offer is made now.
func (s *Server) resendOffer(cv *conv, dst string, cl *client) {
	peer, neg := s.hub.ownedPeer(cv, dst, cl)
	if peer == nil {
		return
	}
	neg.mu.Lock()
	defer neg.mu.Unlock()
	switch {
	case neg.out && !neg.sentTo[cl]:
		// pion cannot offer again before this offer is answered: the same
		// offer goes out again (a browser that answered it already
		// answers it once more).
		if sdp := peer.LocalOffer(); sdp != "" {
			cl.send(map[string]any{"type": "rtc.offer", "conversation_id": cv.c.ID, "sdp": sdp})
			neg.sentTo[cl] = true
		}
	case !neg.out && neg.owed && neg.answering == 0:
		s.makeOfferLocked(cv, dst, peer, neg)
	}
}

// customerWelcomed is called once a customer's socket has its welcome: it
// may now signal for its page's peer connection.
func (s *Server) customerWelcomed(cv *conv, cl *client) {
	h := s.hub
	h.mu.Lock()
	cl.ready = true
	own := cv.rtc != nil && cv.rtc.ownedBy(cl)
	h.mu.Unlock()
	if own {
		s.resendOffer(cv, "customer", cl)
	}
}

// agentWelcomed is called once a console's socket has its welcome; convs
// are the conversations whose video its page holds.
func (s *Server) agentWelcomed(cl *client, convs []*conv) {
	s.hub.mu.Lock()
	cl.ready = true
	s.hub.mu.Unlock()
	for _, cv := range convs {
		s.resendOffer(cv, "agent", cl)
	}
}

// pageLeftLocked handles the socket cl closing, hub.mu held: when no other
// socket of its page is left, the media of the page ends now if the page
// is gone (goingAway: the socket closed with 1001), or after mediaGrace
// otherwise. It returns what to close once hub.mu is released.
func (s *Server) pageLeftLocked(cl *client, goingAway bool) (rtc *customerRTC, videos []heldVideo) {
	h := s.hub
	if cv := cl.cv; cv != nil && cv.rtc != nil && cv.rtc.ownedBy(cl) && !h.rtcOwnerConnectedLocked(cv, cv.rtc) {
		r := cv.rtc
		switch {
		case goingAway:
			cv.rtc, rtc = nil, r
		case r.uses&useVideo != 0:
			// A call alone is left to its media: it ends when the media does.
			r.grace.arm(mediaGrace, func(gen uint64) { s.customerAway(cv, r, gen) })
		}
	}
	if cl.role != store.RoleAgent {
		return rtc, nil
	}
	for _, cv := range h.convs {
		vs := cv.video
		if vs == nil || !vs.ownedBy(cl) || h.videoOwnerConnectedLocked(vs) {
			continue
		}
		if goingAway {
			videos = append(videos, heldVideo{cv, vs})
			continue
		}
		vs.grace.arm(mediaGrace, func(gen uint64) { s.videoAway(cv, vs, gen) })
	}
	return rtc, videos
}

// heldVideo is a console's video session with its conversation.
type heldVideo struct {
	cv *conv
	vs *videoSession
}

// closePageMedia closes what pageLeftLocked returned.
func (s *Server) closePageMedia(cl *client, rtc *customerRTC, videos []heldVideo) {
	if rtc != nil {
		s.log.Info("webrtc: the customer's page left; its connection closes", "conv", cl.cv.c.ID)
		_ = rtc.peer.Close()
	}
	for _, v := range videos {
		s.log.Info("video: the console's page left; its video session closes", "conv", v.cv.c.ID, "agent", v.vs.agentID)
		s.leaveVideo(v.cv, v.vs)
	}
}

// customerAway ends the video of a customer page that did not come back
// within mediaGrace: its peer connection closes (with a call on it, the
// call too: it can no longer be renegotiated).
func (s *Server) customerAway(cv *conv, rtc *customerRTC, gen uint64) {
	h := s.hub
	h.mu.Lock()
	if !rtc.grace.fired(gen) || cv.rtc != rtc || h.rtcOwnerConnectedLocked(cv, rtc) {
		h.mu.Unlock()
		return
	}
	cv.rtc = nil
	s.wg.Add(1)
	h.mu.Unlock()
	defer s.wg.Done()
	s.log.Info("webrtc: the customer's page did not come back; its connection closes", "conv", cv.c.ID, "grace", mediaGrace)
	_ = rtc.peer.Close()
}

// videoAway closes the video session of a console page that did not come
// back within mediaGrace.
func (s *Server) videoAway(cv *conv, vs *videoSession, gen uint64) {
	h := s.hub
	h.mu.Lock()
	if !vs.grace.fired(gen) || cv.video != vs || h.videoOwnerConnectedLocked(vs) {
		h.mu.Unlock()
		return
	}
	s.wg.Add(1)
	h.mu.Unlock()
	defer s.wg.Done()
	s.log.Info("video: the console's page did not come back; its video session closes", "conv", cv.c.ID, "agent", vs.agentID, "grace", mediaGrace)
	s.leaveVideo(cv, vs)
}
