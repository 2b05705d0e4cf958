package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/segue-rtc/segue/store"
	"github.com/segue-rtc/segue/webrtc"
)

// remoteVideo is a video track a browser sends: a camera or a screen.
type remoteVideo = *webrtc.RemoteVideo

// forwardingPeer is a browser peer whose video can be relayed; the pion
// adapter provides it.
type forwardingPeer interface {
	rtcPeer() *webrtc.Peer
}

// videoSession is the agent console's side of a conversation's video: the
// console's own peer connection, the relays between it and the customer's,
// and where the conversation's audio goes. Guarded by hub.mu unless noted.
type videoSession struct {
	agentID string
	// page is the console page that joined (hello "page"); cl is its
	// socket that joined or came back last.
	page  string
	cl    *client
	neg   negotiator
	grace graceTimer // armed while no socket of the page is connected
	peer  browserPeer
	toWeb *lockedWriter
	// videos the console sends (its camera, its screen), by the track id
	// the gateway gave them.
	videos map[string]remoteVideo
	// route is where the customer's audio goes while a phone call is up:
	// "phone" (the desk phone, the default) or "console".
	route string
}

// relays holds every Forwarder of a conversation, keyed by source track
// and destination peer: a source goes at most once to each peer, and the
// relays toward a peer that ended are found by that peer.
type relayKey struct {
	src remoteVideo
	to  browserPeer
}

type relays struct {
	mu  sync.Mutex
	fwd map[relayKey]*webrtc.Forwarder
}

// mediaState is per conversation and lives as long as the conversation.
type mediaState struct {
	relays
	// routeMu makes each routeAudio apply the state it read whole.
	routeMu sync.Mutex
	// custVideos are the customer's video tracks, by the track id the
	// gateway gave them (RemoteVideo.ForwardedID).
	custVideos map[string]remoteVideo
	// videoRec is the call record of the customer's video while it
	// runs (from its first track to the end of its last), so that a
	// restart after a crash finds it unfinished; hub.mu guards it.
	videoRec *store.CallRecord
}

func (cv *conv) media() *mediaState {
	cv.mediaOnce.Do(func() {
		cv.mstate = &mediaState{relays: relays{fwd: map[relayKey]*webrtc.Forwarder{}}, custVideos: map[string]remoteVideo{}}
	})
	return cv.mstate
}

var (
	errNoVideo        = errf(http.StatusConflict, "no_video", "there is no video session in this conversation")
	errVideoLimit     = errf(http.StatusServiceUnavailable, "busy", "too many video sessions right now; try again shortly")
	errNotForwardable = errf(http.StatusServiceUnavailable, "video_unavailable", "video is not available on this gateway")
	// errVideoBeforeAccept: the queue has video: after_accept and no
	// agent holds the conversation yet.
	errVideoBeforeAccept = errf(http.StatusConflict, "video_not_available", "video opens once an agent has joined the chat")
	// errVideoQueueOff: the queue has video: off.
	errVideoQueueOff = errf(http.StatusForbidden, "video_not_available", "video is not offered in this chat")
)

// videoCountedLocked reports whether cv holds one of the
// limits.max_video_sessions slots: the console joined, the customer's
// peer is used for video, or a video start is being set up; hub.mu held.
func videoCountedLocked(cv *conv) bool {
	return cv.video != nil || (cv.rtc != nil && cv.rtc.uses&useVideo != 0) || cv.videoStarting > 0
}

func (h *hub) videoSessionsLocked() int {
	n := 0
	for _, cv := range h.convs {
		if videoCountedLocked(cv) {
			n++
		}
	}
	return n
}

// videoPolicyLocked applies the queues[].video policy of cv's queue to
// video the customer starts; hub.mu held. Nil means allowed.
func (h *hub) videoPolicyLocked(cv *conv) error {
	switch h.queues[cv.c.Queue].Video {
	case VideoOff:
		return errVideoQueueOff
	case VideoAfterAccept:
		if cv.c.State != store.StateActive || cv.c.AgentID == "" {
			return errVideoBeforeAccept
		}
	}
	return nil
}

// reserveVideoLocked takes a video session slot for cv, unless cv holds
// one already, while its peer connection is set up: a start counts from
// the moment it is allowed, so that concurrent starts cannot all pass the
// check before any of them counts. The caller calls the returned func,
// without hub.mu, once the set-up is over, whatever its outcome: by then
// the session counts by its peer, or not at all. hub.mu held.
func (h *hub) reserveVideoLocked(cv *conv) (done func(), err error) {
	if !videoCountedLocked(cv) && h.videoSessionsLocked() >= h.cfg.Limits.MaxVideoSessions {
		h.metrics.mediaRefused.WithLabelValues("video_limit").Inc()
		return nil, errVideoLimit
	}
	counted := videoCountedLocked(cv)
	cv.videoStarting++
	return func() {
		h.mu.Lock()
		cv.videoStarting--
		if !counted && videoCountedLocked(cv) {
			h.metrics.videoSessions.Inc()
		}
		h.mu.Unlock()
	}, nil
}

// startVideo takes the customer's offer with a camera (or screen) track:
// a renegotiation of the call's peer connection, or a new one when the
// video starts straight from the chat.
func (s *Server) startVideo(ctx context.Context, cl *client, cv *conv, offer string) error {
	if s.peers == nil {
		return errNotForwardable
	}
	if offer == "" || len(offer) > 64<<10 {
		return errf(http.StatusBadRequest, "bad_frame", "video.start needs the SDP offer in sdp")
	}
	h := s.hub
	h.mu.Lock()
	if cv.c.State == store.StateEnded {
		h.mu.Unlock()
		return ErrEnded
	}
	if err := h.videoPolicyLocked(cv); err != nil {
		h.mu.Unlock()
		s.metrics.mediaRefused.WithLabelValues("queue_policy").Inc()
		return err
	}
	started, err := h.reserveVideoLocked(cv)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = s.customerOffer(ctx, cv, cl, offer, useVideo)
	started()
	if err != nil {
		if ae, ok := err.(*apiError); ok {
			return ae
		}
		s.log.Error("video: customer offer", "conv", cv.c.ID, "err", err)
		return errf(http.StatusBadRequest, "bad_offer", "the browser's video offer could not be used")
	}
	s.routeAudio(cv)
	s.forwardCustomerVideos(cv)
	return nil
}

// forwardCustomerVideos relays the customer's video tracks that arrived
// before the peer counted as video (a renegotiation that added a camera
// before video.start) to the console, if it has joined.
func (s *Server) forwardCustomerVideos(cv *conv) {
	h := s.hub
	h.mu.Lock()
	var vids []remoteVideo
	if cv.video != nil && cv.rtc != nil && cv.rtc.uses&useVideo != 0 {
		for _, rv := range cv.media().custVideos {
			vids = append(vids, rv)
		}
	}
	h.mu.Unlock()
	for _, rv := range vids {
		s.forward(cv, rv, "agent")
	}
}

// stopVideo ends the customer's video use of the peer connection (the
// browser has removed its tracks by renegotiation already).
func (s *Server) stopVideo(cl *client, cv *conv) error {
	s.hub.mu.Lock()
	rtc := cv.rtc
	own := rtc != nil && rtc.ownedBy(cl)
	s.hub.mu.Unlock()
	if rtc == nil {
		return nil
	}
	if !own {
		return errInUse
	}
	return s.releaseCustomerRTC(cv, rtc.peer, useVideo)
}

// customerVideo is called for each video track the customer starts.
func (s *Server) customerVideo(cv *conv, rv remoteVideo) {
	m := cv.media()
	h := s.hub
	h.mu.Lock()
	first := len(m.custVideos) == 0
	m.custVideos[rv.ForwardedID()] = rv
	vs := cv.video
	// Only a peer that counts as video (video.start) relays: video added
	// by a plain renegotiation of a call's peer would bypass the queue's
	// policy and limits.max_video_sessions.
	relay := vs != nil && cv.rtc != nil && cv.rtc.uses&useVideo != 0
	var rec *store.CallRecord
	if first {
		now := time.Now().UTC()
		rec = &store.CallRecord{ID: newID("k_"), ConversationID: cv.c.ID, Kind: "video", Direction: "inbound",
			StartedAt: now, AnsweredAt: now, Codec: rv.MimeType()}
		m.videoRec = rec
	}
	h.mu.Unlock()
	if first {
		s.saveVideoRecord(rec)
		h.event(context.Background(), cv, "video.started", "Video started", map[string]string{"codec": rv.MimeType()})
	}
	if relay {
		s.forward(cv, rv, "agent")
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-rv.Done()
		h.mu.Lock()
		if m.custVideos[rv.ForwardedID()] == rv {
			delete(m.custVideos, rv.ForwardedID())
		}
		last := len(m.custVideos) == 0
		var rec *store.CallRecord
		if last && m.videoRec != nil {
			rec, m.videoRec = m.videoRec, nil
			rec.EndedAt, rec.Cause = time.Now().UTC(), "Video ended"
		}
		h.mu.Unlock()
		s.unforwardSource(cv, rv)
		if rec != nil {
			s.saveVideoRecord(rec)
		}
		if last {
			h.event(context.Background(), cv, "video.ended", "Video ended", nil)
		}
	}()
}

// agentVideo is called for each video track the console starts.
func (s *Server) agentVideo(cv *conv, vs *videoSession, rv remoteVideo) {
	h := s.hub
	h.mu.Lock()
	vs.videos[rv.ForwardedID()] = rv
	hasCustomer := cv.rtc != nil
	h.mu.Unlock()
	if hasCustomer {
		s.forward(cv, rv, "customer")
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-rv.Done()
		h.mu.Lock()
		if vs.videos[rv.ForwardedID()] == rv {
			delete(vs.videos, rv.ForwardedID())
		}
		h.mu.Unlock()
		s.unforwardSource(cv, rv)
	}()
}

// afterCustomerRTC relays the console's videos to a customer peer that
// has just been made.
func (s *Server) afterCustomerRTC(cv *conv) {
	h := s.hub
	h.mu.Lock()
	vs := cv.video
	var vids []remoteVideo
	if vs != nil {
		for _, rv := range vs.videos {
			vids = append(vids, rv)
		}
	}
	h.mu.Unlock()
	for _, rv := range vids {
		s.forward(cv, rv, "customer")
	}
}

// dropRelaysTo closes the relays toward a peer that ended.
func (s *Server) dropRelaysTo(cv *conv, to browserPeer) {
	m := cv.media()
	m.relays.mu.Lock()
	var gone []*webrtc.Forwarder
	for k, f := range m.fwd {
		if k.to == to {
			gone = append(gone, f)
			delete(m.fwd, k)
		}
	}
	m.relays.mu.Unlock()
	for _, f := range gone {
		f.Close()
	}
}

// forward relays rv to the conversation's other browser (dst "agent" or
// "customer") and renegotiates that browser. A track only ever goes to the
// other participant of its own conversation.
func (s *Server) forward(cv *conv, rv remoteVideo, dst string) {
	s.hub.mu.Lock()
	to, _ := s.hub.peerLocked(cv, dst)
	s.hub.mu.Unlock()
	fp, ok := to.(forwardingPeer)
	if !ok {
		return
	}
	m := cv.media()
	key := relayKey{src: rv, to: to}
	m.relays.mu.Lock()
	if _, dup := m.fwd[key]; dup {
		m.relays.mu.Unlock()
		return
	}
	f, err := webrtc.NewForwarder(rv, fp.rtcPeer())
	if err != nil {
		m.relays.mu.Unlock()
		s.log.Error("video: relay not started", "conv", cv.c.ID, "to", dst, "err", err)
		return
	}
	m.fwd[key] = f
	m.relays.mu.Unlock()
	s.log.Info("video: relaying", "conv", cv.c.ID, "to", dst, "codec", rv.MimeType())
	s.offerTo(cv, dst)
	_ = rv.RequestKeyFrame()
}

// unforwardSource closes the relays of a source that ended, and
// renegotiates the browsers that still hold a peer it went to.
func (s *Server) unforwardSource(cv *conv, rv remoteVideo) {
	m := cv.media()
	m.relays.mu.Lock()
	var gone []*webrtc.Forwarder
	var tos []browserPeer
	for k, f := range m.fwd {
		if k.src == rv {
			gone = append(gone, f)
			tos = append(tos, k.to)
			delete(m.fwd, k)
		}
	}
	m.relays.mu.Unlock()
	for _, f := range gone {
		f.Close()
	}
	s.hub.mu.Lock()
	cust, _ := s.hub.peerLocked(cv, "customer")
	agent, _ := s.hub.peerLocked(cv, "agent")
	s.hub.mu.Unlock()
	for _, to := range tos {
		switch to {
		case cust:
			s.offerTo(cv, "customer")
		case agent:
			s.offerTo(cv, "agent")
		}
	}
}

// joinVideo is the console joining the conversation's media with its own
// peer connection (its offer carries its microphone and, if on, camera).
// A media.join from the page that holds the session renegotiates it; a
// session of another console page is refused while that page is
// connected, and taken over once it is gone.
func (s *Server) joinVideo(ctx context.Context, cl *client, cv *conv, offer string) error {
	if s.peers == nil {
		return errNotForwardable
	}
	if offer == "" || len(offer) > 64<<10 {
		return errf(http.StatusBadRequest, "bad_frame", "media.join needs the SDP offer in sdp")
	}
	h := s.hub
	h.mu.Lock()
	if vs := cv.video; vs != nil && !vs.ownedBy(cl) {
		if h.videoOwnerConnectedLocked(vs) {
			h.mu.Unlock()
			return errf(http.StatusConflict, "in_use", "another console tab holds this conversation's video")
		}
		h.mu.Unlock()
		s.log.Info("video: a new console page takes over the video of a page that left", "conv", cv.c.ID, "agent", cl.agentID)
		s.leaveVideo(cv, vs)
		h.mu.Lock()
	}
	if vs := cv.video; vs != nil {
		if !vs.ownedBy(cl) {
			h.mu.Unlock()
			return errf(http.StatusConflict, "in_use", "the conversation's video changed hands; retry")
		}
		vs.cl = cl
		h.mu.Unlock()
		vs.neg.startAnswer()
		defer s.answerSent(cv, "agent", vs.peer, &vs.neg)
		answer, err := vs.peer.Answer(ctx, offer)
		if errors.Is(err, webrtc.ErrGlare) {
			return errGlare
		}
		if err != nil {
			return offerRefused(err, "the console's offer could not be used")
		}
		cl.send(map[string]any{"type": "rtc.answer", "conversation_id": cv.c.ID, "sdp": answer})
		return nil
	}
	if h.queues[cv.c.Queue].Video == VideoOff {
		h.mu.Unlock()
		s.metrics.mediaRefused.WithLabelValues("queue_policy").Inc()
		return errVideoQueueOff
	}
	started, err := h.reserveVideoLocked(cv)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	defer started()
	vs := &videoSession{agentID: cl.agentID, page: cl.page, cl: cl, videos: map[string]remoteVideo{}, route: "phone"}
	// Offers of ours wait for the answer (negotiator): the customer's
	// camera, relayed as soon as the session is the conversation's, must
	// not reach the console before it.
	vs.neg.answering = 1
	convID := cv.c.ID
	gate := &candidateGate{send: func(cand json.RawMessage) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.videoSocketsLocked(vs) {
			c.send(map[string]any{"type": "rtc.candidate", "conversation_id": convID, "candidate": cand})
		}
	}}
	hooks := peerHooks{
		candidate: gate.add,
		dtmf:      func(rune) {},
		video:     func(rv remoteVideo) { s.agentVideo(cv, vs, rv) },
		// The console's audio only ever goes to the customer's browser.
		wideband: true,
	}
	peer, err := s.peers.NewPeer(context.WithoutCancel(ctx), convID+"/agent", hooks)
	if err != nil {
		return errNotForwardable
	}
	answer, err := peer.Answer(ctx, offer)
	if err != nil {
		peer.Close()
		return offerRefused(err, "the console's offer could not be used")
	}
	vs.peer, vs.toWeb = peer, &lockedWriter{dst: peer.AudioIn()}
	h.mu.Lock()
	if h.convEndedLocked(cv) {
		h.mu.Unlock()
		peer.Close()
		return ErrEnded
	}
	if cv.video != nil || cv.c.AgentID != cl.agentID {
		h.mu.Unlock()
		peer.Close()
		return errf(http.StatusConflict, "in_use", "the conversation's video changed hands; retry")
	}
	cv.video = vs
	var vids []remoteVideo
	for _, rv := range cv.media().custVideos {
		vids = append(vids, rv)
	}
	h.mu.Unlock()
	// Counted before the answer goes out, as for the customer's peer.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-peer.Done()
		s.leaveVideo(cv, vs)
	}()
	gate.open(func() {
		cl.send(map[string]any{"type": "rtc.answer", "conversation_id": convID, "sdp": answer})
	})
	s.answerSent(cv, "agent", peer, &vs.neg)
	s.log.Info("video: console joined", "conv", convID, "agent", cl.agentID)
	for _, rv := range vids {
		s.forward(cv, rv, "agent")
	}
	s.routeAudio(cv)
	return nil
}

// leaveVideo closes the console's side of the conversation's media: its
// peer connection, the relays toward it and those of its own videos.
func (s *Server) leaveVideo(cv *conv, vs *videoSession) {
	h := s.hub
	h.mu.Lock()
	if cv.video != vs {
		h.mu.Unlock()
		return
	}
	cv.video = nil
	vs.grace.stop()
	own := make(map[remoteVideo]bool, len(vs.videos))
	for _, rv := range vs.videos {
		own[rv] = true
	}
	h.mu.Unlock()
	m := cv.media()
	m.relays.mu.Lock()
	var gone []*webrtc.Forwarder
	for k, f := range m.fwd {
		if k.to == vs.peer || own[k.src] {
			gone = append(gone, f)
			delete(m.fwd, k)
		}
	}
	m.relays.mu.Unlock()
	for _, f := range gone {
		f.Close()
	}
	vs.peer.Close()
	s.offerTo(cv, "customer")
	s.routeAudio(cv)
}

// setAudioRoute moves the call's audio between the desk phone and the
// console (voice.route from the console).
func (s *Server) setAudioRoute(cv *conv, to string) error {
	if to != "phone" && to != "console" {
		return errf(http.StatusBadRequest, "bad_frame", `state must be "phone" or "console"`)
	}
	h := s.hub
	h.mu.Lock()
	vs := cv.video
	if vs == nil {
		h.mu.Unlock()
		return errNoVideo
	}
	vs.route = to
	h.mu.Unlock()
	s.routeAudio(cv)
	h.event(context.Background(), cv, "voice.routed", map[string]string{"phone": "Audio moved to the desk phone", "console": "Audio moved to the console"}[to], map[string]string{"to": to})
	return nil
}

// routeAudio points the conversation's audio where it belongs: between
// the customer and the desk phone during a call (unless the agent moved it
// to the console), else between the customer and the console when the
// console has joined, else nowhere. Between the two browsers the audio is
// relayed as Opus, wideband (wideband.go), with the 8 kHz PCM path under
// it as the fallback. The customer's peer asks for narrowband Opus while a
// call uses it, and is offered again when that changes.
func (s *Server) routeAudio(cv *conv) {
	m := cv.media()
	m.routeMu.Lock()
	h := s.hub
	h.mu.Lock()
	rtc, vs := cv.rtc, cv.video
	var phone phoneCall
	v := cv.voice
	if v != nil {
		v.mu.Lock()
		if v.state == callConnected || v.state == callHeld {
			phone = v.phone
		}
		v.mu.Unlock()
	}
	route := "phone"
	if vs != nil {
		route = vs.route
	}
	call := rtc != nil && rtc.uses&useVoice != 0
	h.mu.Unlock()
	switch {
	case rtc == nil:
		if vs != nil {
			s.relayAudio(cv, vs.peer, nil)
			closeQuietly(vs.peer.SwapAudioOut(nil))
		}
	case phone != nil && (route == "phone" || vs == nil):
		s.relayAudio(cv, rtc.peer, nil)
		// Both directions pass the call's recording taps, which copy
		// the audio to a recording while one runs (recording.go), and a
		// supervisor monitoring the call taps both (monitor.go).
		toWeb, toPhone := s.monitorTap(cv,
			recTap{PCMWriter: noClose{rtc.toWeb}, v: v, right: true},
			recTap{PCMWriter: noClose{phone.AudioIn()}, v: v})
		closeQuietly(phone.SwapAudioOut(toWeb))
		closeQuietly(rtc.peer.SwapAudioOut(toPhone))
		if vs != nil {
			s.relayAudio(cv, vs.peer, nil)
			closeQuietly(vs.peer.SwapAudioOut(nil))
		}
	case vs != nil:
		if phone != nil {
			closeQuietly(phone.SwapAudioOut(nil))
		}
		closeQuietly(rtc.peer.SwapAudioOut(noClose{vs.toWeb}))
		closeQuietly(vs.peer.SwapAudioOut(noClose{rtc.toWeb}))
		s.relayAudio(cv, rtc.peer, vs.peer)
		s.relayAudio(cv, vs.peer, rtc.peer)
	default:
		s.relayAudio(cv, rtc.peer, nil)
		closeQuietly(rtc.peer.SwapAudioOut(nil))
	}
	reoffer := rtc != nil && setWideband(rtc.peer, !call)
	m.routeMu.Unlock()
	s.boardChanged()
	if reoffer {
		s.log.Info("audio: customer's band changed", "conv", cv.c.ID, "wideband", !call)
		s.offerTo(cv, "customer")
	}
}

// mediaEvents are the transcript events a browser may declare: what only
// it knows (which track is a screen).
var mediaEvents = map[string]string{
	"screen.started": "Screen sharing started",
	"screen.ended":   "Screen sharing ended",
}

// mediaEvent records a browser-declared media event in the transcript.
// stream is the MediaStream id of the track concerned, as the sending
// browser knows it; the transcript gets the id the gateway forwards that
// stream under (webrtc.Peer.ForwardedStreamID), so that the other browser
// can tell the screen from the camera without the sender's own ids ever
// reaching it.
func (s *Server) mediaEvent(ctx context.Context, cl *client, cv *conv, name, stream string) error {
	text, ok := mediaEvents[name]
	if !ok {
		return errf(http.StatusBadRequest, "bad_frame", "unknown media event %q", name)
	}
	if len(stream) > 128 {
		return errf(http.StatusBadRequest, "bad_frame", "stream id over 128 characters")
	}
	who := "The customer: "
	dst := "customer"
	if cl.role == store.RoleAgent {
		who = s.hub.agentName(cl.agentID) + ": "
		dst = "agent"
	}
	stream = s.forwardedStream(cv, dst, stream)
	s.hub.event(ctx, cv, name, who+text, map[string]string{"by": cl.role, "stream": stream})
	return nil
}

// forwardedStream returns the id under which the peer toward dst
// forwards its browser's stream, or "" when there is no such peer.
func (s *Server) forwardedStream(cv *conv, dst, stream string) string {
	s.hub.mu.Lock()
	p, _ := s.hub.peerLocked(cv, dst)
	s.hub.mu.Unlock()
	fp, ok := p.(forwardingPeer)
	if !ok || stream == "" {
		return ""
	}
	return fp.rtcPeer().ForwardedStreamID(stream)
}

// offerRefused is the error frame for a browser offer that a peer could
// not use: the peer's own refusal when it gave one, else bad_offer with
// msg.
func offerRefused(err error, msg string) error {
	if errors.As(err, new(*apiError)) {
		return err
	}
	return errf(http.StatusBadRequest, "bad_offer", "%s", msg)
}

// saveVideoRecord writes the call record of a customer's video: open at
// its start, closed at its end.
func (s *Server) saveVideoRecord(r *store.CallRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.SaveCall(ctx, r); err != nil {
		s.log.Error("video: call record not saved", "conv", r.ConversationID, "call", r.ID, "err", err)
	}
}
