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
	"github.com/segue-rtc/segue/webrtc"
)

const (
	statusGoingAway = websocket.StatusGoingAway
	pingInterval    = 20 * time.Second
	helloTimeout    = 15 * time.Second
	// sendBuffer and sendBufferBytes bound what waits to be written to one
	// socket. Past half of either, typing indicators are dropped; past
	// either, the socket is closed as too slow (it catches up from the
	// store when it reconnects).
	sendBuffer      = 512
	sendBufferBytes = 4 << 20
	// flushTimeout bounds the writing of the last frames of a closing
	// socket.
	flushTimeout = time.Second
	// writeTimeout bounds one write to a socket.
	writeTimeout = 10 * time.Second
)

// outFrame is one encoded frame waiting for a socket's writer.
type outFrame struct {
	data []byte
	// conv and key let a newer frame replace a queued one (coalescing): a
	// frame with the same key replaces the last queued frame of its
	// conversation if that one has the key too. "" never coalesces.
	conv, key string
	// droppable frames (typing indicators) may be left out when the
	// socket falls behind; every other frame is delivered or the socket
	// is closed.
	droppable bool
}

// client is one WebSocket connection: a customer's widget or an agent's
// console. Frames are queued by send and written by the connection's own
// writer goroutine, so callers holding hub.mu never block on the network,
// and one slow socket never holds up the others.
type client struct {
	conn    *websocket.Conn
	log     *slog.Logger
	metrics *metrics
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
	// sockID names a console socket in the cluster (cluster.go); set for
	// agents' sockets when the gateway is a cluster node.
	sockID string
	// forward, when set, takes every frame instead of the queue: the
	// client is a console socket of another node (node.remoteClient).
	forward func(outFrame)
	// ready: the welcome has been sent, so signalling may follow it.
	// Guarded by hub.mu.
	ready bool

	// out, when set, is the connection under conn: the writer holds
	// frames there while more are queued (wsbatch.go).
	out *batchConn

	qmu    sync.Mutex
	queue  []outFrame
	queued int // bytes in queue
	wake   chan struct{}

	// rtc is the socket's budget of signalling frames; only the read
	// loop uses it.
	rtc signalBudget

	quit      chan struct{}
	closeOnce sync.Once
	code      websocket.StatusCode
	reason    string
}

func newClient(conn *websocket.Conn, log *slog.Logger, m *metrics) *client {
	return &client{conn: conn, log: log, metrics: m, wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

// send queues v for the client. It never blocks.
func (c *client) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("frame not encoded", "err", err)
		return
	}
	c.enqueue(outFrame{data: b})
}

// sendTyping queues a typing indicator of conversation convID: it
// replaces one still queued and is the first thing dropped when the
// socket falls behind.
func (c *client) sendTyping(convID string, b []byte) {
	c.enqueue(outFrame{data: b, conv: convID, key: "typing", droppable: true})
}

// enqueue adds fs to the send queue (see outFrame), in order and all at
// once (the writer takes them in one batch), then wakes the writer. A
// client too slow to keep up, even without its droppable frames, is
// disconnected and catches up from the store when it reconnects.
func (c *client) enqueue(fs ...outFrame) {
	select {
	case <-c.quit:
		return
	default:
	}
	if c.forward != nil {
		for _, f := range fs {
			c.forward(f)
		}
		return
	}
	c.qmu.Lock()
	typing, slow := 0, 0
	for _, f := range fs {
		var ok bool
		if typing, ok = c.queueLocked(f, typing); !ok {
			slow = len(c.queue) + 1
			break
		}
	}
	c.qmu.Unlock()
	if typing > 0 {
		c.dropped("typing", typing)
	}
	if slow > 0 {
		c.dropped("slow", slow)
		c.closeWith(websocket.StatusTryAgainLater, "too slow; reconnect")
		return
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// queueLocked adds f to the queue, adding the typing frames it dropped to
// typing; false when the queue is full even without them.
func (c *client) queueLocked(f outFrame, typing int) (int, bool) {
	if f.key != "" && c.coalesceLocked(f) {
		return typing, true
	}
	if f.droppable && (len(c.queue) >= sendBuffer/2 || c.queued+len(f.data) > sendBufferBytes/2) {
		return typing + 1, true
	}
	if len(c.queue) >= sendBuffer || c.queued+len(f.data) > sendBufferBytes {
		typing += c.shedLocked()
	}
	if len(c.queue) >= sendBuffer || c.queued+len(f.data) > sendBufferBytes {
		return typing, false
	}
	c.queue = append(c.queue, f)
	c.queued += len(f.data)
	return typing, true
}

// coalesceLocked replaces the last queued frame of f's conversation with
// f when that frame has f's key; it reports whether it did.
func (c *client) coalesceLocked(f outFrame) bool {
	for i := len(c.queue) - 1; i >= 0; i-- {
		q := &c.queue[i]
		if q.conv != f.conv {
			continue
		}
		if q.key != f.key {
			return false
		}
		c.queued += len(f.data) - len(q.data)
		*q = f
		return true
	}
	return false
}

// shedLocked removes the droppable frames from the queue and returns how
// many it removed.
func (c *client) shedLocked() int {
	kept := c.queue[:0]
	n := 0
	for _, q := range c.queue {
		if q.droppable {
			c.queued -= len(q.data)
			n++
			continue
		}
		kept = append(kept, q)
	}
	clear(c.queue[len(kept):])
	c.queue = kept
	return n
}

func (c *client) dropped(reason string, n int) {
	if c.metrics != nil {
		c.metrics.flow.dropped.WithLabelValues(reason).Add(float64(n))
	}
}

// next takes the oldest queued frame; more tells whether others remain.
func (c *client) next() (b []byte, more, ok bool) {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	if len(c.queue) == 0 {
		return nil, false, false
	}
	f := c.queue[0]
	c.queue[0] = outFrame{}
	c.queue = c.queue[1:]
	c.queued -= len(f.data)
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go
	}
	return f.data, len(c.queue) > 0, true
}

// pending is how many frames wait to be written.
func (c *client) pending() int {
	c.qmu.Lock()
	defer c.qmu.Unlock()
	return len(c.queue)
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
	if c.out != nil {
		// writeQueued's writes do not watch ctx (see there).
		defer context.AfterFunc(ctx, func() { c.conn.CloseNow() })()
	}
	for {
		select {
		case <-c.wake:
			c.writeQueued(ctx)
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := c.conn.Ping(pctx)
			cancel()
			if err != nil {
				c.closeWith(websocket.StatusPolicyViolation, "ping timeout")
			}
		case <-c.quit:
			// Flush what is queued (the last frames often explain the
			// close), within flushTimeout in all.
			fctx, cancel := context.WithTimeout(ctx, flushTimeout)
			for {
				b, _, ok := c.next()
				if !ok || c.conn.Write(fctx, websocket.MessageText, b) != nil {
					break
				}
			}
			cancel()
			_ = c.conn.Close(c.code, c.reason)
			return
		case <-ctx.Done():
			c.conn.CloseNow()
			return
		}
	}
}

// writeQueued writes the queued frames until none is left or the socket
// is closing. While more frames follow, the batchConn holds what is
// written, so that a burst leaves in few system calls; nothing stays held
// when it returns.
func (c *client) writeQueued(ctx context.Context) {
	for {
		b, more, ok := c.next()
		if !ok {
			break
		}
		var err error
		if c.out != nil {
			// The batchConn bounds each write by writeTimeout itself,
			// and writeLoop closes the socket when ctx ends: a context
			// that cannot end spares the library a timer per frame.
			c.out.setHold(more)
			err = c.conn.Write(context.WithoutCancel(ctx), websocket.MessageText, b)
		} else {
			wctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err = c.conn.Write(wctx, websocket.MessageText, b)
			cancel()
		}
		if err != nil {
			c.closeWith(websocket.StatusInternalError, "write failed")
			break
		}
		select {
		case <-c.quit:
		default:
			continue
		}
		break
	}
	// The queue may have emptied under a held write (typing indicators
	// shed meanwhile), or the socket be closing.
	if c.out != nil {
		if err := c.out.flush(); err != nil {
			c.closeWith(websocket.StatusInternalError, "write failed")
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
// Each socket has a token bucket (frames and bytes); sockets are capped
// per client address (agents' consoles apart), per agent and, at hello,
// per conversation.
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
	bw := &batchWriter{ResponseWriter: w}
	conn, err := websocket.Accept(bw, r, &websocket.AcceptOptions{InsecureSkipVerify: true, CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return // Accept has answered the client
	}
	conn.SetReadLimit(s.cfg.Limits.MaxFrameBytes)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ip := s.clientIP(r)
	cl := newClient(conn, s.log.With("remote", ip), s.metrics)
	cl.out = bw.conn
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

	// A call center's consoles share one address: an agent's sockets count
	// against the agent, everyone else's against the address.
	slot, limit, capName := "ip:"+addrKey(ip), s.cfg.Limits.MaxSocketsPerIP, "ip"
	if agentID != "" {
		slot, limit, capName = "agent:"+agentID, s.cfg.Limits.MaxSocketsPerAgent, "agent"
	}
	if !s.sockets.acquire(slot, limit) {
		s.refuseSocket(cl, capName)
		return
	}
	defer s.sockets.release(slot)

	if err := s.hello(ctx, cl, agentID); err != nil {
		ae := asAPIError(err)
		if ae.Status == http.StatusInternalServerError {
			cl.log.Error("websocket hello", "err", err)
		}
		if errors.Is(err, errTooManySockets) {
			s.refuseSocket(cl, "conversation")
			return
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

	lim := newSocketLimiter(s.cfg.Limits)
	// Nothing cancels ctx while the loop runs (the socket ends by being
	// closed), so the reads take a context that cannot end: the library
	// then sets no timer per frame read.
	rctx := context.WithoutCancel(ctx)
	for {
		typ, data, err := conn.Read(rctx)
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
		if ok, wait := lim.allow(len(data), time.Now()); !ok {
			if lim.floods() {
				cl.log.Warn("websocket closed for flooding", "role", cl.role)
				cl.closeWith(websocket.StatusPolicyViolation, "rate limit exceeded")
				return
			}
			s.metrics.flow.rateLimited.Inc()
			var ref struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(data, &ref)
			cl.sendError(&apiError{Status: http.StatusTooManyRequests, Code: "rate_limited",
				Message: "too many frames; slow down", RetryAfter: retrySeconds(wait)}, truncate(ref.ID, 64), s.metrics)
			continue
		}
		s.handleFrame(ctx, cl, typ, data)
	}
}

// refuseSocket tells a socket which cap it hit and closes it with 1013
// (try again later): clients retry with back-off.
func (s *Server) refuseSocket(cl *client, capName string) {
	s.metrics.flow.refusedSockets.WithLabelValues(capName).Inc()
	reason := map[string]string{
		"ip":           "too many connections from this address",
		"agent":        "too many console connections for this agent",
		"conversation": "too many connections to this conversation",
	}[capName]
	cl.sendError(errf(http.StatusTooManyRequests, errTooManySockets.Code, "%s", reason), "", s.metrics)
	cl.closeWith(websocket.StatusTryAgainLater, reason)
}

// handleFrame runs one frame read from an authenticated client: a frame
// that is not JSON text, or that dispatch refuses, gets an error frame.
func (s *Server) handleFrame(ctx context.Context, cl *client, typ websocket.MessageType, data []byte) {
	if typ != websocket.MessageText {
		cl.sendError(errf(http.StatusBadRequest, "bad_frame", "frames must be JSON text"), "", s.metrics)
		return
	}
	var f inFrame
	if err := json.Unmarshal(data, &f); err != nil {
		cl.sendError(errf(http.StatusBadRequest, "bad_frame", "frame is not valid JSON"), "", s.metrics)
		return
	}
	if signallingFrame(f.Type) {
		if ok, tell := cl.rtc.take(time.Now()); !ok {
			if tell {
				cl.sendError(errSignalRate, truncate(f.ID, 64), s.metrics)
			}
			return
		}
	}
	if err := s.dispatch(ctx, cl, &f); err != nil {
		if ae := asAPIError(err); ae.Status == http.StatusInternalServerError {
			cl.log.Error("websocket frame", "type", f.Type, "err", err)
		}
		cl.sendError(err, truncate(f.ID, 64), s.metrics)
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
		if len(cv.customers) >= s.cfg.Limits.MaxSocketsPerConversation {
			s.hub.mu.Unlock()
			cl.cv = nil
			return errTooManySockets
		}
		cv.customers[cl] = struct{}{}
		if rtc := cv.rtc; rtc != nil && rtc.ownedBy(cl) {
			rtc.grace.stop()
			media = map[string]bool{"video": rtc.uses&useVideo != 0, "voice": rtc.uses&useVoice != 0}
		}
		s.hub.mu.Unlock()
	}
	ms, older, err := s.hub.historyPage(ctx, c.ID, after, 0)
	if err != nil {
		return err
	}
	welcome := map[string]any{"type": "welcome", "role": cl.role, "conversation": s.hub.wireStored(c), "messages": toWireMessages(ms),
		"older": older, "features": s.features(iceForCustomer(c.ID))}
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
	if p := s.hub.positionOf(cv); p != nil {
		welcome["queue_position"] = p
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
	if s.node != nil {
		cl.sockID = newID("s_")
		s.node.addLocal(cl)
	}
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
	queue, total, more := h.queuePageLocked(a, nil, queuePageSize)
	agentQueues := a.cfg.Queues
	welcome := map[string]any{"type": "welcome", "role": cl.role, "agent": h.wireAgentLocked(a),
		"conversations": mine, "queue": queue, "queue_total": total, "queue_more": more,
		"agents": h.agentListLocked(), "queues": h.queueNamesLocked(), "features": s.features(iceForAgent(agentID)), "media": media}
	h.updateGaugesLocked()
	h.mu.Unlock()

	msgs := []wireMessage{}
	older := map[string]bool{}
	for _, id := range ids {
		ms, old, err := h.historyPage(ctx, id, after[id], 0)
		if err != nil {
			return err
		}
		msgs = append(msgs, toWireMessages(ms)...)
		if old {
			older[id] = true
		}
	}
	welcome["messages"] = msgs
	welcome["older"] = older
	left, err := h.leftFor(ctx, agentQueues)
	if err != nil {
		return err
	}
	welcome["left"] = left
	cl.send(welcome)
	s.agentWelcomed(cl, held)
	h.mu.Lock()
	h.broadcastAgentsLocked()
	h.routeLocked()
	h.mu.Unlock()
	return nil
}

// maxHistory caps the messages of one GET .../messages answer.
const maxHistory = 1000

// unregister forgets a closed socket. goingAway says the browser left
// the page (close code 1001): the page's media ends with it.
func (s *Server) unregister(cl *client, goingAway bool) {
	if s.node != nil && cl.sockID != "" {
		s.node.removeLocal(cl)
	}
	h := s.hub
	h.mu.Lock()
	if cl.cv != nil {
		if _, ok := cl.cv.customers[cl]; ok {
			delete(cl.cv.customers, cl)
			cl.cv.lastActive = h.now() // limits.abandoned_after counts from here
		}
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
	case "history":
		return s.sendHistory(ctx, cl, f)
	}
	if cl.role == store.RoleAgent && supervisorFrame(f.Type) {
		return s.dispatchSupervisor(ctx, cl, f)
	}
	if cl.role == store.RoleAgent && s.node != nil && cl.forward == nil && clusterCommand(f.Type) &&
		f.ConversationID != "" && !s.hub.holds(f.ConversationID) {
		// Another node may hold the conversation: the command goes there.
		if ok, err := s.node.forward(ctx, cl, f); ok {
			return err
		}
	}
	if cl.role == store.RoleAgent {
		switch f.Type {
		case "queue.page":
			return s.sendQueuePage(cl, f.After)
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
		case "recording.start", "recording.stop":
			// Only the agent holding the conversation (agentConv).
			cv, err := s.agentConv(cl.agentID, f.ConversationID)
			if err != nil {
				return err
			}
			return s.recordFrame(cv, f.Type == "recording.start", cl.agentID)
		case "note":
			return s.addNote(ctx, cl, f)
		case "transfer", "end":
			cv, err := s.agentConv(cl.agentID, f.ConversationID)
			if err != nil {
				return err
			}
			if f.Type == "end" {
				// The wrap-up is stored before the end, so whoever learns
				// of the end finds it.
				if err := s.saveWrapUp(ctx, cv, f.WrapUp); err != nil {
					return err
				}
				err := s.hub.end(ctx, cv, cl.agentID)
				s.hub.mu.Lock()
				ended := cv.c.State == store.StateEnded
				s.hub.mu.Unlock()
				if ended { // the media of an ended conversation goes with it
					s.closeConvMedia(cv)
					s.countWrapUp(cv, f.WrapUp)
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
		if f.Type != "rtc.candidate" && len(f.SDP) > webrtc.MaxSDPBytes {
			return errf(http.StatusRequestEntityTooLarge, "too_large", "sdp over %d bytes", webrtc.MaxSDPBytes)
		}
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
		s.hub.relayTyping(cv, cl.role, *f.Typing)
		return nil
	default: // read
		return s.hub.markRead(ctx, cv, cl.role, f.Seq)
	}
}

// clusterCommand reports the console frames about one conversation that
// run on the node holding it.
func clusterCommand(typ string) bool {
	switch typ {
	case "accept", "voice.call", "transfer", "end", "message", "typing", "read", "voice.hangup", "media.event",
		"rtc.offer", "rtc.answer", "rtc.candidate", "media.join", "media.leave", "voice.route":
		return true
	}
	return false
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
	stored, dup, err := s.hub.postFrom(ctx, cv, m, cl)
	if err != nil {
		return err
	}
	if dup {
		cl.send(ackOf(stored))
	}
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

// sendHistory answers a history request: one page of the transcript
// before f.Before (0: the latest page), for the customer's conversation or
// one the agent may read.
func (s *Server) sendHistory(ctx context.Context, cl *client, f *inFrame) error {
	if f.Before < 0 {
		return errf(http.StatusBadRequest, "bad_frame", "before must not be negative")
	}
	var c *store.Conversation
	if cl.role == store.RoleAgent {
		if f.ConversationID == "" {
			return errf(http.StatusBadRequest, "bad_frame", "conversation_id is required")
		}
		_, sc, err := s.hub.lookup(ctx, f.ConversationID)
		if err != nil {
			return err
		}
		if !s.hub.canAgentRead(cl.agentID, sc) {
			return ErrForbidden
		}
		c = sc
	} else {
		if cl.cv == nil {
			return ErrEnded
		}
		s.hub.mu.Lock()
		id := cl.cv.c.ID
		s.hub.mu.Unlock()
		c = &store.Conversation{ID: id}
	}
	ms, older, err := s.hub.historyPage(ctx, c.ID, 0, f.Before)
	if err != nil {
		return err
	}
	cl.send(map[string]any{"type": "history", "conversation_id": c.ID, "messages": toWireMessages(ms), "older": older, "before": f.Before})
	return nil
}

// sendQueuePage answers queue.page: the next page of the agent's queue
// list after the conversation the raw cursor names.
func (s *Server) sendQueuePage(cl *client, raw json.RawMessage) error {
	var cur queueCursor
	if len(raw) == 0 || json.Unmarshal(raw, &cur) != nil || cur.ID == "" {
		return errf(http.StatusBadRequest, "bad_frame", `queue.page needs "after": {"created_at", "id"} of the last conversation shown`)
	}
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[cl.agentID]
	if !ok {
		return ErrUnauthorized
	}
	page, total, more := h.queuePageLocked(a, &cur, queuePageSize)
	cl.send(map[string]any{"type": "queue.page", "queue": page, "total": total, "more": more})
	return nil
}

// Signalling frames a socket may send: a burst of signalBurst, then
// signalRate a second. A browser trickles a handful of candidates per
// ICE gathering and offers a few times a minute; a flood of candidates or
// offers is dropped before it costs a parse.
const (
	signalBurst = 40
	signalRate  = 10
)

var errSignalRate = &apiError{Status: http.StatusTooManyRequests, Code: "rate_limited",
	Message: "too many signalling frames; frames are dropped", RetryAfter: 1}

// signallingFrame reports the frame types that signalBudget meters: the
// rtc.* frames and those carrying an SDP offer to the video paths.
func signallingFrame(typ string) bool {
	switch typ {
	case "rtc.offer", "rtc.answer", "rtc.candidate", "video.start", "media.join", "monitor.start", "monitor.candidate":
		return true
	}
	return false
}

// signalBudget is a token bucket of signalling frames.
type signalBudget struct {
	tokens float64
	last   time.Time
	// told is when the client was last told that frames are dropped: at
	// most once a second, so that a flood gets no flood of errors back.
	told time.Time
}

// take spends a token at now. ok says whether the frame may go on; tell,
// for a dropped one, whether to send the client an error frame.
func (b *signalBudget) take(now time.Time) (ok, tell bool) {
	if b.last.IsZero() {
		b.tokens = signalBurst
	} else {
		b.tokens = min(signalBurst, b.tokens+now.Sub(b.last).Seconds()*signalRate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, false
	}
	if now.Sub(b.told) >= time.Second {
		b.told = now
		return false, true
	}
	return false, false
}
