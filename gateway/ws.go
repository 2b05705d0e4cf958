package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/segue-rtc/segue/store"
)

const (
	statusGoingAway = websocket.StatusGoingAway
	pingInterval    = 20 * time.Second
	helloTimeout    = 15 * time.Second
	sendBuffer      = 512
)

// client is one WebSocket connection: a customer's widget or an agent's
// console. Frames are queued by send and written by the connection's own
// writer goroutine, so callers holding hub.mu never block on the network.
type client struct {
	conn    *websocket.Conn
	log     *slog.Logger
	role    string
	agentID string
	cv      *conv
	// page names the browser page (hello "page"): its sockets, one after
	// the other, hold the peer connections the page made.
	page string
	// ip is the client's address as clientIP sees it, for per-address
	// limits.
	ip string
	// session is the hash of an agent's session token, so that signing
	// out closes the sockets the session opened.
	session []byte
	// ready: the welcome has been sent, so signalling may follow it.
	// Guarded by hub.mu.
	ready bool

	out       chan []byte
	quit      chan struct{}
	closeOnce sync.Once
	code      websocket.StatusCode
	reason    string
}

func newClient(conn *websocket.Conn, log *slog.Logger) *client {
	return &client{conn: conn, log: log, out: make(chan []byte, sendBuffer), quit: make(chan struct{})}
}

// send queues v for the client. It never blocks: a client too slow to keep
// up is disconnected and catches up from the store when it reconnects.
func (c *client) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("frame not encoded", "err", err)
		return
	}
	select {
	case c.out <- b:
	default:
		c.closeWith(websocket.StatusTryAgainLater, "too slow; reconnect")
	}
}

// closeWith asks the writer to close the socket with code and reason.
func (c *client) closeWith(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.code, c.reason = code, reason
		close(c.quit)
	})
}

// writeLoop writes queued frames and pings until quit or ctx ends.
func (c *client) writeLoop(ctx context.Context) {
	t := time.NewTicker(pingInterval)
	defer t.Stop()
	for {
		select {
		case b := <-c.out:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				c.closeWith(websocket.StatusInternalError, "write failed")
			}
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.conn.Ping(pctx)
			cancel()
			if err != nil {
				c.closeWith(websocket.StatusPolicyViolation, "ping timeout")
			}
		case <-c.quit:
			// Flush what is queued (the last frames often explain the close).
			for {
				select {
				case b := <-c.out:
					wctx, cancel := context.WithTimeout(ctx, time.Second)
					_ = c.conn.Write(wctx, websocket.MessageText, b)
					cancel()
					continue
				default:
				}
				break
			}
			_ = c.conn.Close(c.code, c.reason)
			return
		case <-ctx.Done():
			c.conn.CloseNow()
			return
		}
	}
}

func (c *client) sendError(err error, ref string, m *metrics) {
	ae := asAPIError(err)
	m.wsErrors.WithLabelValues(ae.Code).Inc()
	c.send(errorFrame{Type: "error", Code: ae.Code, Message: ae.Message, Ref: ref, RetryAfter: ae.RetryAfter})
}

// handleWS upgrades, authenticates with the hello frame, then runs the
// read loop. Malformed frames get an error frame; the socket stays open.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	if s.hub.isClosing() {
		writeError(w, ErrShuttingDown)
		return
	}
	origin := r.Header.Get("Origin")
	if !s.originAllowed(r, origin) {
		s.metrics.rejectedOrigins.Inc()
		writeError(w, ErrOrigin)
		return
	}
	// The agent's cookie counts only for the gateway's own pages.
	agentID := ""
	var session *store.Session
	if origin == "" || s.sameOrigin(r, origin) {
		if session = s.agentSession(r); session != nil {
			agentID = session.AgentID
		}
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept has answered the client
	}
	conn.SetReadLimit(s.cfg.Limits.MaxFrameBytes)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ip := s.clientIP(r)
	cl := newClient(conn, s.log.With("remote", ip))
	cl.ip = ip
	if session != nil {
		// The console's socket ends with its session (expiry or sign-out).
		cl.session = session.TokenHash
		defer expireSocket(cl, session.ExpiresAt)()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); cl.writeLoop(ctx) }()
	defer wg.Wait()

	if err := s.hello(ctx, cl, agentID); err != nil {
		ae := asAPIError(err)
		if ae.Status == http.StatusInternalServerError {
			cl.log.Error("websocket hello", "err", err)
		}
		cl.sendError(err, "", s.metrics)
		cl.closeWith(websocket.StatusPolicyViolation, ae.Message)
		return
	}
	s.metrics.wsConns.WithLabelValues(cl.role).Inc()
	defer s.metrics.wsConns.WithLabelValues(cl.role).Dec()
	// A browser closes the socket with 1001 when it leaves or reloads the
	// page, taking the page's peer connections with it.
	goingAway := false
	defer func() { s.unregister(cl, goingAway) }()

	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
				cl.log.Debug("websocket read", "err", err)
			}
			// (Our own 1001, at shutdown, comes back too: media closes then anyway.)
			goingAway = websocket.CloseStatus(err) == websocket.StatusGoingAway
			cl.closeWith(websocket.StatusNormalClosure, "")
			return
		}
		select {
		case <-cl.quit:
			return
		default:
		}
		if typ != websocket.MessageText {
			cl.sendError(errf(http.StatusBadRequest, "bad_frame", "frames must be JSON text"), "", s.metrics)
			continue
		}
		var f inFrame
		if err := json.Unmarshal(data, &f); err != nil {
			cl.sendError(errf(http.StatusBadRequest, "bad_frame", "frame is not valid JSON"), "", s.metrics)
			continue
		}
		if err := s.dispatch(ctx, cl, &f); err != nil {
			if ae := asAPIError(err); ae.Status == http.StatusInternalServerError {
				cl.log.Error("websocket frame", "type", f.Type, "err", err)
			}
			cl.sendError(err, f.ID, s.metrics)
		}
	}
}

// hello reads the first frame and registers the client.
func (s *Server) hello(ctx context.Context, cl *client, agentID string) error {
	hctx, cancel := context.WithTimeout(ctx, helloTimeout)
	defer cancel()
	typ, data, err := cl.conn.Read(hctx)
	if err != nil {
		return errf(http.StatusBadRequest, "bad_frame", "no hello frame")
	}
	var f inFrame
	if typ != websocket.MessageText || json.Unmarshal(data, &f) != nil || f.Type != "hello" {
		return errf(http.StatusBadRequest, "bad_frame", `the first frame must be {"type":"hello"}`)
	}
	if len(f.Page) > 64 {
		return errf(http.StatusBadRequest, "bad_frame", "page must be at most 64 characters")
	}
	cl.page = f.Page
	if f.Token != "" {
		return s.helloCustomer(ctx, cl, &f)
	}
	if agentID == "" {
		return ErrUnauthorized
	}
	return s.helloAgent(ctx, cl, agentID, &f)
}

func (s *Server) helloCustomer(ctx context.Context, cl *client, f *inFrame) error {
	cv, c, err := s.customerConversation(ctx, f.Token)
	if err != nil {
		return err
	}
	var after int64
	if len(f.After) > 0 && json.Unmarshal(f.After, &after) != nil {
		return errf(http.StatusBadRequest, "bad_frame", "after must be a number")
	}
	cl.role, cl.cv = store.RoleCustomer, cv
	cl.log = cl.log.With("conv", c.ID, "role", cl.role)
	// Register before reading history: a message stored in between is
	// then both in the history and delivered live, and the client drops
	// the copy by id. A page coming back finds its peer connection as it
	// left it, and says whether it still has it.
	var media map[string]bool
	if cv != nil {
		s.hub.mu.Lock()
		cv.customers[cl] = struct{}{}
		if rtc := cv.rtc; rtc != nil && rtc.ownedBy(cl) {
			rtc.grace.stop()
			media = map[string]bool{"video": rtc.uses&useVideo != 0, "voice": rtc.uses&useVoice != 0}
		}
		s.hub.mu.Unlock()
	}
	ms, err := s.store.Messages(ctx, c.ID, after, maxHistory)
	if err != nil {
		return err
	}
	welcome := map[string]any{"type": "welcome", "role": cl.role, "conversation": s.hub.wireStored(c), "messages": toWireMessages(ms),
		"features": s.features(iceForCustomer(c.ID))}
	if cv != nil {
		s.hub.mu.Lock()
		v := cv.voice
		s.hub.mu.Unlock()
		if v != nil {
			welcome["call"] = v.wire() // a call in progress, e.g. after a reload
		}
	}
	if media != nil {
		welcome["media"] = media
	}
	cl.send(welcome)
	if cv != nil {
		s.customerWelcomed(cv, cl)
	}
	return nil
}

func (s *Server) helloAgent(ctx context.Context, cl *client, agentID string, f *inFrame) error {
	after := map[string]int64{}
	if len(f.After) > 0 && string(f.After) != "null" {
		if err := json.Unmarshal(f.After, &after); err != nil {
			return errf(http.StatusBadRequest, "bad_frame", "after must map conversation ids to numbers")
		}
	}
	h := s.hub
	h.mu.Lock()
	a, ok := h.agents[agentID]
	if !ok {
		h.mu.Unlock()
		return ErrUnauthorized
	}
	cl.role, cl.agentID = store.RoleAgent, agentID
	cl.log = cl.log.With("agent", agentID, "role", cl.role)
	wasOffline := len(a.clients) == 0
	a.clients[cl] = struct{}{}
	if wasOffline {
		a.idleSince = h.now()
	}
	// The video sessions this page held go on with this socket.
	var held []*conv
	for _, cv := range h.convs {
		if vs := cv.video; vs != nil && vs.page != "" && vs.ownedBy(cl) {
			vs.cl = cl
			vs.grace.stop()
			held = append(held, cv)
		}
	}
	media := map[string]map[string]bool{}
	for id, cv := range a.convs {
		custVideo := len(cv.media().custVideos) > 0
		joined := cv.video != nil && cv.video.ownedBy(cl)
		// Another console page that is still connected holds it (a page
		// that is gone is about to lose it).
		elsewhere := cv.video != nil && !joined && h.videoOwnerConnectedLocked(cv.video)
		if custVideo || joined || elsewhere {
			media[id] = map[string]bool{"customer_video": custVideo, "joined": joined, "elsewhere": elsewhere}
		}
	}
	mine := make([]wireConversation, 0, len(a.convs))
	ids := make([]string, 0, len(a.convs))
	for id, cv := range a.convs {
		mine = append(mine, h.wireConvLocked(cv))
		ids = append(ids, id)
	}
	welcome := map[string]any{"type": "welcome", "role": cl.role, "agent": h.wireAgentLocked(a),
		"conversations": mine, "queue": h.queueForLocked(a), "agents": h.agentListLocked(), "queues": h.queueNamesLocked(),
		"features": s.features(iceForAgent(agentID)), "media": media}
	h.updateGaugesLocked()
	h.mu.Unlock()

	var msgs []wireMessage
	for _, id := range ids {
		ms, err := s.store.Messages(ctx, id, after[id], maxHistory)
		if err != nil {
			return err
		}
		msgs = append(msgs, toWireMessages(ms)...)
	}
	welcome["messages"] = msgs
	cl.send(welcome)
	s.agentWelcomed(cl, held)
	h.mu.Lock()
	h.broadcastAgentsLocked()
	h.routeLocked()
	h.mu.Unlock()
	return nil
}

const maxHistory = 10000

// unregister forgets a closed socket. goingAway says the browser left
// the page (close code 1001): the page's media ends with it.
func (s *Server) unregister(cl *client, goingAway bool) {
	h := s.hub
	h.mu.Lock()
	if cl.cv != nil {
		delete(cl.cv.customers, cl)
	}
	if a, ok := h.agents[cl.agentID]; ok {
		delete(a.clients, cl)
		if len(a.clients) == 0 {
			h.updateGaugesLocked()
			h.broadcastAgentsLocked()
			// Offers to an agent who went away move on.
			h.routeLocked()
		}
	}
	rtc, videos := s.pageLeftLocked(cl, goingAway)
	h.mu.Unlock()
	s.closePageMedia(cl, rtc, videos)
}

// dispatch runs one frame from an authenticated client.
func (s *Server) dispatch(ctx context.Context, cl *client, f *inFrame) error {
	switch f.Type {
	case "ping":
		cl.send(map[string]string{"type": "pong"})
		return nil
	case "hello":
		return errf(http.StatusBadRequest, "bad_frame", "already said hello")
	}
	if cl.role == store.RoleAgent {
		switch f.Type {
		case "presence":
			return s.hub.setPresence(cl.agentID, f.State)
		case "accept":
			return s.hub.accept(ctx, cl.agentID, f.ConversationID)
		case "voice.call":
			cv, err := s.agentConv(cl.agentID, f.ConversationID)
			if err != nil {
				return err
			}
			return s.callCustomer(ctx, cl.agentID, cv)
		case "transfer", "end":
			cv, err := s.agentConv(cl.agentID, f.ConversationID)
			if err != nil {
				return err
			}
			if f.Type == "end" {
				err := s.hub.end(ctx, cv, cl.agentID)
				s.hub.mu.Lock()
				ended := cv.c.State == store.StateEnded
				s.hub.mu.Unlock()
				if ended { // the media of an ended conversation goes with it
					s.closeConvMedia(cv)
				}
				return err
			}
			if err := s.hub.transfer(ctx, cl.agentID, cv, f.Agent, f.Queue); err != nil {
				return err
			}
			// The video goes with the conversation: the console that held
			// it leaves, and the next agent's console may join.
			s.hub.mu.Lock()
			vs := cv.video
			s.hub.mu.Unlock()
			if vs != nil {
				s.leaveVideo(cv, vs)
			}
			return nil
		}
	}
	switch f.Type {
	case "message", "typing", "read", "voice.start", "voice.hangup", "voice.dtmf", "rtc.offer", "rtc.answer",
		"rtc.candidate", "video.start", "video.stop", "media.join", "media.leave", "media.event", "voice.route":
	default:
		return errf(http.StatusBadRequest, "bad_frame", "unknown frame type %q", f.Type)
	}
	cv := cl.cv
	if cl.role == store.RoleAgent {
		var err error
		if cv, err = s.agentConv(cl.agentID, f.ConversationID); err != nil {
			if lateSignal(f.Type) && errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		}
	} else if cv == nil {
		if lateSignal(f.Type) {
			return nil
		}
		return ErrEnded
	}
	switch f.Type {
	case "message":
		return s.chatMessage(ctx, cl, cv, f)
	case "voice.hangup":
		if cl.role == store.RoleAgent {
			return s.hangup(cv, errAgentHangup)
		}
		return s.hangup(cv, errCustomerHangup)
	case "media.event":
		return s.mediaEvent(ctx, cl, cv, f.State, f.Stream)
	case "rtc.offer", "rtc.answer", "rtc.candidate":
		switch {
		case f.Type == "rtc.candidate" && cl.role == store.RoleAgent:
			return s.candidate(cl, cv, "agent", f.Candidate)
		case f.Type == "rtc.candidate":
			return s.candidate(cl, cv, "customer", f.Candidate)
		case f.Type == "rtc.answer" && cl.role == store.RoleAgent:
			return s.answered(ctx, cl, cv, "agent", f.SDP)
		case f.Type == "rtc.answer":
			return s.answered(ctx, cl, cv, "customer", f.SDP)
		case cl.role == store.RoleAgent:
			return s.joinVideo(ctx, cl, cv, f.SDP)
		default:
			return s.renegotiate(ctx, cl, cv, f.SDP)
		}
	case "media.join", "media.leave", "voice.route":
		if cl.role != store.RoleAgent {
			return errf(http.StatusBadRequest, "bad_frame", "%s is for the agent console", f.Type)
		}
		switch f.Type {
		case "media.join":
			return s.joinVideo(ctx, cl, cv, f.SDP)
		case "voice.route":
			return s.setAudioRoute(cv, f.State)
		default:
			s.hub.mu.Lock()
			vs := cv.video
			s.hub.mu.Unlock()
			if vs == nil || !vs.ownedBy(cl) {
				return errNoVideo
			}
			s.leaveVideo(cv, vs)
			return nil
		}
	case "voice.start", "voice.dtmf", "video.start", "video.stop":
		if cl.role != store.RoleCustomer {
			return errf(http.StatusBadRequest, "bad_frame", "%s is for the customer's widget", f.Type)
		}
		switch f.Type {
		case "voice.start":
			return s.startVoice(ctx, cl, cv, f.SDP)
		case "video.start":
			return s.startVideo(ctx, cl, cv, f.SDP)
		case "video.stop":
			return s.stopVideo(cl, cv)
		default:
			return s.sendDTMF(ctx, cv, f.Digits)
		}
	case "typing":
		if f.Typing == nil {
			return errf(http.StatusBadRequest, "bad_frame", "typing needs a boolean typing field")
		}
		s.hub.relay(cv, cl.role, map[string]any{"type": "typing", "conversation_id": cv.c.ID, "role": cl.role, "typing": *f.Typing})
		return nil
	default: // read
		return s.hub.markRead(ctx, cv, cl.role, f.Seq)
	}
}

// lateSignal reports frames that may cross a conversation's end without
// being an error: read receipts and typing indicators sent just before the
// client learnt of the end are dropped silently.
func lateSignal(typ string) bool { return typ == "read" || typ == "typing" }

// agentConv returns the live conversation agentID holds.
func (s *Server) agentConv(agentID, convID string) (*conv, error) {
	if convID == "" {
		return nil, errf(http.StatusBadRequest, "bad_frame", "conversation_id is required")
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	cv, ok := h.convs[convID]
	if !ok {
		return nil, ErrNotFound
	}
	if cv.c.AgentID != agentID {
		return nil, ErrForbidden
	}
	return cv, nil
}

func (s *Server) chatMessage(ctx context.Context, cl *client, cv *conv, f *inFrame) error {
	if f.ID == "" || len(f.ID) > 64 {
		return errf(http.StatusBadRequest, "bad_frame", "message needs an id of 1 to 64 characters")
	}
	text := strings.TrimSpace(f.Text)
	if text == "" {
		return errf(http.StatusBadRequest, "bad_frame", "message text is empty")
	}
	if len(f.Text) > s.cfg.Limits.MaxMessageBytes {
		return errf(http.StatusRequestEntityTooLarge, "too_large", "message over %d bytes", s.cfg.Limits.MaxMessageBytes)
	}
	m := &store.Message{ConversationID: cv.c.ID, ID: f.ID, Role: cl.role, Kind: store.KindText, Text: f.Text}
	s.senderOf(cl, cv, m)
	stored, _, err := s.hub.post(ctx, cv, m)
	if err != nil {
		return err
	}
	cl.send(map[string]any{"type": "ack", "id": stored.ID, "seq": stored.Seq, "conversation_id": cv.c.ID})
	return nil
}

// senderOf fills the sender fields of m for cl.
func (s *Server) senderOf(cl *client, cv *conv, m *store.Message) {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if cl.role == store.RoleAgent {
		m.SenderID = cl.agentID
		if a, ok := h.agents[cl.agentID]; ok {
			m.SenderName = a.cfg.Name
		}
		return
	}
	m.SenderName = cv.c.Customer.Name
}
