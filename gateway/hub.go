package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/segue-rtc/segue/store"
)

// Presence states of an agent.
const (
	presenceAvailable = "available"
	presenceAway      = "away"
	presenceOffline   = "offline"
)

// hub holds the live state: open conversations, agents and connected
// clients. Lock order: conv.mu before hub.mu; store I/O never runs under
// hub.mu, so one slow write cannot stall every conversation.
type hub struct {
	cfg     *Config
	store   store.Store
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	// voice: the gateway can place calls (a SIP stack and WebRTC). Set
	// once before serving.
	voice bool
	// video: the gateway has WebRTC. Set once before serving.
	video bool
	// onBoard is told that what supervisors' boards show may have
	// changed (supervisor.go); it must not block. Set once before serving.
	onBoard func()

	mu     sync.Mutex
	convs  map[string]*conv // waiting and active conversations
	agents map[string]*agent
	queues map[string]QueueConfig
	// waiting holds each queue's waiting conversations, oldest first
	// (convBefore order): the agents' queue lists, their pages and the
	// per-queue cap read it without scanning every conversation.
	waiting map[string][]*conv
	// reserved counts conversations being created (stored, not yet in
	// convs), per queue and in all, so that concurrent starts cannot
	// overshoot limits.max_conversations or queues[].max_waiting.
	reserved      map[string]int
	reservedTotal int
	closing       bool
	// peersByAddr counts the customer peer connections open or being set
	// up, by addrKey of the client address (limits.max_peers_per_ip).
	peersByAddr map[string]int
	// peerStarts counts the set-ups of customer peer connections by
	// addrKey (limits.peer_starts_per_ip_per_minute); it locks itself.
	peerStarts *slidingLimiter
	// webhooks queues the events integrations receive; set once in New.
	webhooks *webhooks
	// care holds opening hours and wait estimates (customers.go).
	care *customerCare
	// node, in a cluster, announces the conversations held here. Set
	// once before serving.
	node *node
}

// conv is an open conversation. mu serializes appends and their delivery,
// so every participant receives a conversation's messages in seq order.
type conv struct {
	mu sync.Mutex

	// Guarded by hub.mu.
	c         store.Conversation
	customers map[*client]struct{}
	offeredTo string
	offer     *time.Timer
	declined  map[string]bool
	preferred string
	preview   string
	voice     *voiceCall
	rtc       *customerRTC
	video     *videoSession
	mediaOnce sync.Once
	mstate    *mediaState
	// lastActive is when the conversation last had a message, a customer
	// socket leaving or its start (limits.abandoned_after).
	lastActive time.Time

	// videoStarting counts the video starts being set up, which hold a
	// video session slot meanwhile (reserveVideoLocked). Guarded by
	// hub.mu.
	videoStarting int
	// busyNoted is when a call the customer asked for was last refused
	// for capacity with a voice.refused event; guarded by hub.mu.
	busyNoted time.Time
	// position is the queue place last sent to the customer; guarded by
	// hub.mu.
	position int
}

type agent struct {
	cfg      AgentConfig
	maxChats int
	presence string // available or away: the agent's choice
	// presenceVer orders the agent's presence choices across the nodes
	// of a cluster: a choice gets a version above every one this node
	// has seen, and the highest wins everywhere (ties: presenceBy, the
	// node that made it). Zero until a choice is made.
	presenceVer uint64
	presenceBy  string
	// idleSince is when the agent last got or finished a conversation,
	// became available or came online, on any node of a cluster (the
	// latest of what every node saw).
	idleSince time.Time
	// elsewhere is what the other nodes of a cluster hold of the agent
	// (their heartbeats): conversations and pending offers.
	elsewhere agentLoad
	clients   map[*client]struct{}
	convs     map[string]*conv
	// offered are the waiting conversations offered to this agent now.
	offered map[string]*conv
	// removed is set when a reload dropped the agent from the config: it
	// gets no new conversations and is signed out once its last one ends.
	removed bool
}

// agentLoad counts an agent's conversations and pending offers.
type agentLoad struct {
	convs, offered int
}

// held is how many conversations a holds, on every node.
func (a *agent) held() int { return len(a.convs) + a.elsewhere.convs }

// offers is how many offers a has pending, from every node.
func (a *agent) offers() int { return len(a.offered) + a.elsewhere.offered }

func newHub(cfg *Config, st store.Store, log *slog.Logger, m *metrics) *hub {
	h := &hub{cfg: cfg, store: st, log: log, metrics: m, now: time.Now,
		convs: map[string]*conv{}, agents: map[string]*agent{}, queues: map[string]QueueConfig{},
		waiting: map[string][]*conv{}, reserved: map[string]int{}, peersByAddr: map[string]int{},
		peerStarts: newSlidingLimiter(cfg.Limits.PeerStartsPerIPPerMinute, time.Minute), care: newCustomerCare(cfg)}
	for _, q := range cfg.Queues {
		h.queues[q.Name] = q
	}
	for _, a := range cfg.Agents {
		h.agents[a.ID] = &agent{cfg: a, maxChats: cfg.MaxChats(a), presence: presenceAvailable,
			clients: map[*client]struct{}{}, convs: map[string]*conv{}, offered: map[string]*conv{}}
	}
	return h
}

// load rebuilds the in-memory state from the store after a start.
func (h *hub) load(ctx context.Context) error {
	open, err := h.store.OpenConversations(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	for _, c := range open {
		h.restoreLocked(c)
	}
	h.updateGaugesLocked()
	h.routeLocked()
	h.mu.Unlock()
	for _, q := range h.cfg.Queues {
		h.refreshEstimate(ctx, q.Name)
	}
	return nil
}

// restoreLocked makes stored open conversation c live on this node: after
// a start, or when its customer comes back to this node of a cluster.
func (h *hub) restoreLocked(c *store.Conversation) *conv {
	if _, ok := h.queues[c.Queue]; !ok {
		// The queue was removed from the config: send it to the first one.
		c.Queue = h.cfg.Queues[0].Name
	}
	// A restart gives every customer a full abandoned_after to come back.
	cv := &conv{c: *c, customers: map[*client]struct{}{}, declined: map[string]bool{}, lastActive: h.now()}
	if a, ok := h.agents[c.AgentID]; ok && c.State == store.StateActive {
		a.convs[c.ID] = cv
		h.node.changed()
	} else if c.State == store.StateActive {
		cv.c.State, cv.c.AgentID = store.StateWaiting, ""
	}
	h.convs[c.ID] = cv
	if h.node != nil {
		h.node.own(c.ID)
	}
	if cv.c.State == store.StateWaiting {
		h.enqueueLocked(cv)
	}
	return cv
}

// holds reports whether conversation id is live on this node.
func (h *hub) holds(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.convs[id]
	return ok
}

func newID(prefix string) string {
	var b [15]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ---- views ----

func (h *hub) wireConvLocked(cv *conv) wireConversation {
	c := &cv.c
	w := wireConversation{ID: c.ID, State: c.State, Queue: c.Queue, CreatedAt: c.CreatedAt, LastSeq: c.LastSeq,
		Customer: wireCustomer{Name: c.Customer.Name, Email: c.Customer.Email, ExternalID: c.Customer.ExternalID, Verified: c.Customer.Verified},
		Read:     wireRead{Customer: c.ReadByCust, Agent: c.ReadByAgt}, Preview: cv.preview, OfferedTo: cv.offeredTo,
		Voice: h.voice && c.State != store.StateEnded && c.State != store.StateLeft && h.voicePolicyLocked(cv) == nil,
		Video: h.video && c.State != store.StateEnded && c.State != store.StateLeft && h.videoPolicyLocked(cv) == nil}
	if a, ok := h.agents[c.AgentID]; ok && c.AgentID != "" {
		w.Agent = &wireAgentRef{ID: a.cfg.ID, Name: a.cfg.Name}
	}
	if c.Rating.Score > 0 {
		w.Rating = &wireRating{Score: c.Rating.Score, Comment: c.Rating.Comment, At: c.Rating.At}
	}
	w.Origin = c.Origin
	return w
}

// wireStored renders a conversation that may not be live (ended).
func (h *hub) wireStored(c *store.Conversation) wireConversation {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cv, ok := h.convs[c.ID]; ok {
		return h.wireConvLocked(cv)
	}
	return h.wireConvLocked(&conv{c: *c})
}

func (h *hub) wireAgentLocked(a *agent) wireAgent {
	w := wireAgent{ID: a.cfg.ID, Name: a.cfg.Name, Queues: a.cfg.Queues, Presence: h.presenceLocked(a), MaxChats: a.maxChats}
	if a.cfg.Supervisor() {
		w.Role = RoleSupervisor
	}
	return w
}

func (h *hub) presenceLocked(a *agent) string {
	if len(a.clients) == 0 {
		return presenceOffline
	}
	return a.presence
}

// convBefore orders waiting conversations: oldest first, then by id.
func convBefore(a, b *conv) int {
	if c := a.c.CreatedAt.Compare(b.c.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.c.ID, b.c.ID)
}

// queueCursor is a position in an agent's queue list: the created_at and
// id of the last conversation a console has (queue.page "after").
type queueCursor struct {
	CreatedAt time.Time `json:"created_at"`
	ID        string    `json:"id"`
}

// after reports whether cv sorts after the cursor.
func (q *queueCursor) after(cv *conv) bool {
	if q == nil {
		return true
	}
	if c := cv.c.CreatedAt.Compare(q.CreatedAt); c != 0 {
		return c > 0
	}
	return cv.c.ID > q.ID
}

// queuePageLocked returns up to limit waiting conversations of a's
// queues that sort after cur (nil: from the start), oldest first, with
// the number waiting in all of a's queues and whether more follow.
func (h *hub) queuePageLocked(a *agent, cur *queueCursor, limit int) (page []wireConversation, total int, more bool) {
	var picked []*conv
	for _, q := range a.cfg.Queues {
		list := h.waiting[q]
		total += len(list)
		i := sort.Search(len(list), func(i int) bool { return cur.after(list[i]) })
		picked = append(picked, list[i:min(len(list), i+limit+1)]...)
	}
	slices.SortFunc(picked, convBefore)
	more = len(picked) > limit
	picked = picked[:min(len(picked), limit)]
	page = make([]wireConversation, 0, len(picked))
	for _, cv := range picked {
		page = append(page, h.wireConvLocked(cv))
	}
	return page, total, more
}

// waitingForLocked is how many conversations wait in a's queues.
func (h *hub) waitingForLocked(a *agent) int {
	n := 0
	for _, q := range a.cfg.Queues {
		n += len(h.waiting[q])
	}
	return n
}

// enqueueLocked puts a waiting conversation in its queue's list and tells
// the queue's agents (queue.added).
func (h *hub) enqueueLocked(cv *conv) {
	list := h.waiting[cv.c.Queue]
	i, found := slices.BinarySearchFunc(list, cv, convBefore)
	if found {
		return
	}
	h.waiting[cv.c.Queue] = slices.Insert(list, i, cv)
	h.queueFrameLocked(cv, "queue.added", "")
	h.positionsChangedLocked(cv.c.Queue, false)
}

// dequeueLocked takes cv out of its queue's list (it was accepted, ended
// or moved) and tells the queue's agents (queue.removed).
func (h *hub) dequeueLocked(cv *conv) {
	list := h.waiting[cv.c.Queue]
	i, found := slices.BinarySearchFunc(list, cv, convBefore)
	if !found || list[i] != cv {
		return
	}
	list = slices.Delete(list, i, i+1)
	if len(list) == 0 {
		delete(h.waiting, cv.c.Queue)
	} else {
		h.waiting[cv.c.Queue] = list
	}
	h.queueFrameLocked(cv, "queue.removed", "")
	cv.position = 0
	h.positionsChangedLocked(cv.c.Queue, false)
}

// queueChangedLocked tells the queue's agents that a waiting conversation
// changed (its preview, its offer). A newer change replaces one still
// queued for a socket, so a chatty customer costs each console at most
// one pending frame.
func (h *hub) queueChangedLocked(cv *conv) {
	h.queueFrameLocked(cv, "queue.updated", "queue.updated")
}

// queueFrameLocked sends one queue diff about cv to the online agents of
// its queue, each with the number waiting in all of their queues. Agents
// with the same count share one encoded frame.
func (h *hub) queueFrameLocked(cv *conv, typ, key string) {
	frames := map[int][]byte{}
	var w *wireConversation
	for _, a := range h.agents {
		if len(a.clients) == 0 || !slices.Contains(a.cfg.Queues, cv.c.Queue) {
			continue
		}
		total := h.waitingForLocked(a)
		b, ok := frames[total]
		if !ok {
			frame := map[string]any{"type": typ, "total": total}
			if typ == "queue.removed" {
				frame["conversation_id"] = cv.c.ID
			} else {
				if w == nil {
					v := h.wireConvLocked(cv)
					w = &v
				}
				frame["conversation"] = w
			}
			var err error
			if b, err = json.Marshal(frame); err != nil {
				h.log.Error("frame not encoded", "err", err)
				return
			}
			frames[total] = b
		}
		for cl := range a.clients {
			cl.enqueue(outFrame{data: b, conv: cv.c.ID, key: key})
		}
	}
}

func (h *hub) updateGaugesLocked() {
	waiting := 0
	for _, list := range h.waiting {
		waiting += len(list)
	}
	h.metrics.convActive.WithLabelValues(store.StateWaiting).Set(float64(waiting))
	h.metrics.convActive.WithLabelValues(store.StateActive).Set(float64(len(h.convs) - waiting))
	counts := map[string]int{presenceAvailable: 0, presenceAway: 0, presenceOffline: 0}
	full := 0
	for _, a := range h.agents {
		counts[h.presenceLocked(a)]++
		if a.held() >= a.maxChats {
			full++
		}
	}
	h.metrics.agentsFull.Set(float64(full))
	for k, v := range counts {
		h.metrics.agents.WithLabelValues(k).Set(float64(v))
	}
	h.boardChanged()
}

// ---- delivery ----

// sendToConvLocked delivers v to everyone in the conversation: its
// customers and the assigned agent's consoles.
// The frame is encoded once.
func (h *hub) sendToConvLocked(cv *conv, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.log.Error("frame not encoded", "err", err)
		return
	}
	h.deliverLocked(cv, outFrame{data: b, conv: cv.c.ID}, nil, nil)
}

// deliverLocked queues f for everyone in cv, as sendToConvLocked does;
// from, when set, also gets ack right after f, in the same step.
func (h *hub) deliverLocked(cv *conv, f outFrame, from *client, ack []byte) {
	acked := false
	give := func(cl *client) {
		if cl == from {
			cl.enqueue(f, outFrame{data: ack})
			acked = true
			return
		}
		cl.enqueue(f)
	}
	for cl := range cv.customers {
		give(cl)
	}
	if a, ok := h.agents[cv.c.AgentID]; ok {
		for cl := range a.clients {
			give(cl)
		}
	}
	if from != nil && !acked {
		from.enqueue(outFrame{data: ack})
	}
}

func (h *hub) sendToAgentLocked(a *agent, v any) {
	if len(a.clients) == 0 {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		h.log.Error("frame not encoded", "err", err)
		return
	}
	for cl := range a.clients {
		cl.enqueue(outFrame{data: b})
	}
}

func (h *hub) broadcastConvLocked(cv *conv) {
	h.sendToConvLocked(cv, map[string]any{"type": "conversation", "conversation": h.wireConvLocked(cv)})
}

// ---- conversations ----

// createConversation stores a new waiting conversation and routes it.
func (h *hub) createConversation(ctx context.Context, c *store.Conversation, preferred string) error {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return ErrShuttingDown
	}
	if len(h.convs)+h.reservedTotal >= h.cfg.Limits.MaxConversations {
		h.mu.Unlock()
		return errf(http.StatusServiceUnavailable, "busy", "too many open conversations; try again later")
	}
	q, ok := h.queues[c.Queue]
	if !ok {
		h.mu.Unlock()
		return errf(http.StatusBadRequest, "bad_request", "unknown queue %q", c.Queue)
	}
	if len(h.waiting[c.Queue])+h.reserved[c.Queue] >= q.MaxWaiting {
		h.mu.Unlock()
		h.metrics.flow.queueFull.Inc()
		return errQueueFull
	}
	h.reserved[c.Queue]++
	h.reservedTotal++
	h.mu.Unlock()
	var err error
	if h.node != nil {
		// The lease first: from its creation on, no other node may take
		// the conversation while this one holds it.
		err = h.node.claimNew(ctx, c.ID)
	}
	if err == nil {
		// With its conversation.created events, which thus come before
		// any other event of it.
		if err = h.webhooks.createConversation(ctx, c); err != nil && h.node != nil {
			h.node.free(c.ID, h.node.disown(c.ID))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reserved[c.Queue]--
	if h.reserved[c.Queue] == 0 {
		delete(h.reserved, c.Queue)
	}
	h.reservedTotal--
	if err != nil {
		return err
	}
	h.metrics.convTotal.Inc()
	cv := &conv{c: *c, customers: map[*client]struct{}{}, declined: map[string]bool{}, preferred: preferred, lastActive: h.now()}
	h.convs[c.ID] = cv
	if h.node != nil {
		h.node.own(c.ID)
	}
	h.enqueueLocked(cv)
	h.updateGaugesLocked()
	h.routeLocked()
	return nil
}

// conversation returns the live conversation, or the stored one (ended).
func (h *hub) lookup(ctx context.Context, id string) (*conv, *store.Conversation, error) {
	h.mu.Lock()
	cv, ok := h.convs[id]
	if ok {
		c := cv.c
		h.mu.Unlock()
		return cv, &c, nil
	}
	h.mu.Unlock()
	c, err := h.store.Conversation(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	return nil, c, nil
}

// canAgentRead reports whether agent id may see conversation c: it holds
// it, held it last, or it is in one of the agent's queues and no agent
// holds it now (waiting, a message left, or ended). The same scope as
// store.AgentScope, which the agent's search uses.
func (h *hub) canAgentRead(agentID string, c *store.Conversation) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[agentID]
	if !ok {
		return false
	}
	if c.AgentID == agentID || (c.State != store.StateActive && c.LastAgentID == agentID) {
		return true
	}
	if supervises(a, c.Queue) {
		return true
	}
	// A live conversation is its holder's alone.
	return c.State != store.StateActive && slices.Contains(a.cfg.Queues, c.Queue)
}

// post stores m in its conversation and delivers it. It returns the stored
// message and whether it was a duplicate (already stored, not re-sent).
// Past limits.max_messages_per_conversation only the gateway's own events
// are stored.
func (h *hub) post(ctx context.Context, cv *conv, m *store.Message) (*store.Message, bool, error) {
	return h.postFrom(ctx, cv, m, nil)
}

// postFrom is post for a message that socket from sent (nil: none). When
// the message is new, from is queued its ack right after the message
// itself, in the same step, so that both usually leave in one write; a
// duplicate is acknowledged by the caller.
func (h *hub) postFrom(ctx context.Context, cv *conv, m *store.Message, from *client) (*store.Message, bool, error) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	h.mu.Lock()
	ended := cv.c.State == store.StateEnded
	full := m.Role != store.RoleSystem && cv.c.LastSeq >= int64(h.cfg.Limits.MaxMessagesPerConversation)
	h.mu.Unlock()
	if ended {
		return nil, false, ErrEnded
	}
	if full {
		return nil, false, errf(http.StatusConflict, "conversation_full",
			"this conversation has reached its limit of %d messages; please start a new one", h.cfg.Limits.MaxMessagesPerConversation)
	}
	// The message's webhook events are stored with it, in its
	// transaction; cv.mu, held, keeps them in the order of the
	// conversation's messages.
	h.mu.Lock()
	snap := cv.c
	h.mu.Unlock()
	events, wake := h.webhooks.messageEvents(snap)
	stored, dup, err := h.store.AppendMessageEvents(ctx, m, events)
	if err != nil {
		return nil, false, err
	}
	if dup {
		return stored, true, nil
	}
	if wake != nil {
		wake()
	}
	h.metrics.messages.WithLabelValues(stored.Role, stored.Kind).Inc()
	// The frames are encoded before taking hub.mu, which every socket of
	// every conversation contends for.
	frame, ferr := json.Marshal(messageFrame{Message: toWireMessage(stored), Type: "message"})
	if ferr != nil {
		h.log.Error("frame not encoded", "err", ferr)
	}
	var ack []byte
	if from != nil {
		ack, _ = json.Marshal(ackOf(stored)) // strings and a number
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cv.c.LastSeq = stored.Seq
	if stored.Role != store.RoleSystem {
		cv.lastActive = h.now()
	}
	switch {
	case ferr == nil:
		h.deliverLocked(cv, outFrame{data: frame, conv: cv.c.ID}, from, ack)
	case from != nil:
		from.enqueue(outFrame{data: ack})
	}
	if stored.Role == store.RoleCustomer && cv.c.State == store.StateWaiting {
		switch stored.Kind {
		case store.KindText:
			cv.preview = truncate(stored.Text, 140)
		case store.KindFile:
			cv.preview = "📎 " + stored.File.Name
		}
		h.queueChangedLocked(cv)
	}
	return stored, false, nil
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// event posts a system event to the transcript.
func (h *hub) event(ctx context.Context, cv *conv, name, text string, data any) {
	raw, _ := json.Marshal(data)
	m := &store.Message{ConversationID: cv.c.ID, ID: newID("e_"), Role: store.RoleSystem, Kind: store.KindEvent,
		Text: text, Event: name, EventData: raw}
	if _, _, err := h.post(ctx, cv, m); err != nil && !errors.Is(err, ErrEnded) {
		h.log.Error("transcript event not stored", "conv", cv.c.ID, "event", name, "err", err)
	}
}

// saveLocked persists cv's conversation fields; called with hub.mu held.
// The write is small and keeps assignment and persistence in step.
func (h *hub) saveLocked(ctx context.Context, cv *conv) error {
	cv.c.UpdatedAt = h.now().UTC()
	return h.store.UpdateConversation(ctx, &cv.c)
}

// accept assigns a waiting conversation to agent id.
func (h *hub) accept(ctx context.Context, agentID, convID string) error {
	h.mu.Lock()
	a, ok := h.agents[agentID]
	cv, found := h.convs[convID]
	switch {
	case !ok:
		h.mu.Unlock()
		return ErrUnauthorized
	case !found:
		h.mu.Unlock()
		return ErrNotFound
	case cv.c.State != store.StateWaiting:
		h.mu.Unlock()
		return errf(http.StatusConflict, "taken", "the conversation is no longer waiting")
	case !slices.Contains(a.cfg.Queues, cv.c.Queue):
		h.mu.Unlock()
		return ErrForbidden
	case a.held() >= a.maxChats:
		h.mu.Unlock()
		return errf(http.StatusConflict, "at_capacity", "you already hold %d conversations (the limit)", a.maxChats)
	}
	if err := h.storeAssignLocked(ctx, cv, a, cv.c.Queue); err != nil {
		h.mu.Unlock()
		if errors.Is(err, store.ErrAtCapacity) {
			return errf(http.StatusConflict, "at_capacity", "you already hold %d conversations (the limit)", a.maxChats)
		}
		return err
	}
	h.assignLocked(cv, a)
	queue := cv.c.Queue
	h.mu.Unlock()
	h.refreshEstimate(ctx, queue)
	h.event(ctx, cv, "conversation.accepted", a.cfg.Name+" joined the conversation", map[string]string{"agent": a.cfg.ID})
	h.pushHistory(ctx, a, cv)
	return nil
}

// storeAssignLocked writes the assignment of cv to a, in queue, to the
// store, which refuses it with store.ErrAtCapacity when a already holds
// a.maxChats conversations: the count every node of a cluster shares,
// so that two nodes never both hand out an agent's last slot. cv changes
// only once the write is done; assignLocked follows.
func (h *hub) storeAssignLocked(ctx context.Context, cv *conv, a *agent, queue string) error {
	next := cv.c
	now := h.now().UTC()
	next.State, next.AgentID, next.LastAgentID, next.Queue, next.UpdatedAt = store.StateActive, a.cfg.ID, a.cfg.ID, queue, now
	if next.AnsweredAt.IsZero() {
		next.AnsweredAt = now
	}
	if err := h.store.AssignConversation(ctx, &next, a.maxChats); err != nil {
		return err
	}
	cv.c.AnsweredAt, cv.c.UpdatedAt = next.AnsweredAt, next.UpdatedAt
	return nil
}

// assignLocked gives cv to a and tells everyone concerned.
func (h *hub) assignLocked(cv *conv, a *agent) {
	h.clearOfferLocked(cv)
	if cv.c.State == store.StateWaiting {
		h.dequeueLocked(cv)
	}
	cv.c.State, cv.c.AgentID, cv.c.LastAgentID = store.StateActive, a.cfg.ID, a.cfg.ID
	if cv.c.AnsweredAt.IsZero() {
		cv.c.AnsweredAt = h.now().UTC()
	}
	cv.preview = ""
	a.convs[cv.c.ID] = cv
	a.idleSince = h.now()
	h.node.changed()
	h.updateGaugesLocked()
	h.broadcastConvLocked(cv)
	// The agent may no longer take offers: its others move on.
	h.routeLocked()
}

// pushHistory sends an agent who just got a conversation the latest page
// of its transcript; the console asks for older pages with history.
func (h *hub) pushHistory(ctx context.Context, a *agent, cv *conv) {
	ms, older, err := h.historyPage(ctx, cv.c.ID, 0, 0)
	if err != nil {
		h.log.Error("history not loaded", "conv", cv.c.ID, "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sendToAgentLocked(a, map[string]any{"type": "history", "conversation_id": cv.c.ID, "messages": toWireMessages(ms), "older": older})
}

// historyPage reads the latest limits.history_page_messages messages with
// after < seq < before (before <= 0: no upper bound). older says that
// messages after `after` come before the first one returned.
func (h *hub) historyPage(ctx context.Context, convID string, after, before int64) ([]*store.Message, bool, error) {
	ms, err := h.store.MessagesBefore(ctx, convID, before, h.cfg.Limits.HistoryPageMessages)
	if err != nil {
		return nil, false, err
	}
	i := sort.Search(len(ms), func(i int) bool { return ms[i].Seq > after })
	ms = ms[i:]
	// Seqs are consecutive from 1, so a gap before the first is older messages.
	older := len(ms) > 0 && ms[0].Seq > after+1
	return ms, older, nil
}

// release takes cv away from its agent (end or transfer); hub.mu held.
func (h *hub) releaseLocked(cv *conv) *agent {
	a, ok := h.agents[cv.c.AgentID]
	if !ok {
		return nil
	}
	delete(a.convs, cv.c.ID)
	a.idleSince = h.now()
	h.node.changed()
	if a.removed && len(a.convs) == 0 {
		h.retireLocked(a)
	}
	return a
}

// end closes the conversation; by is the agent id or "" for the customer.
func (h *hub) end(ctx context.Context, cv *conv, byAgent string) error {
	h.mu.Lock()
	if cv.c.State == store.StateEnded {
		h.mu.Unlock()
		return nil
	}
	if byAgent != "" && cv.c.AgentID != byAgent {
		h.mu.Unlock()
		return ErrForbidden
	}
	h.mu.Unlock()
	who := "the customer"
	if a := h.agentName(byAgent); a != "" {
		who = a
	}
	return h.finish(ctx, cv, "Conversation ended by "+who, map[string]string{"by": byAgent})
}

// finish writes the conversation.ended event with text and data, then
// closes the conversation and tells everyone in it.
func (h *hub) finish(ctx context.Context, cv *conv, text string, data map[string]string) error {
	h.event(ctx, cv, "conversation.ended", text, data)
	h.mu.Lock()
	defer h.mu.Unlock()
	if cv.c.State == store.StateEnded {
		return nil
	}
	h.clearOfferLocked(cv)
	if cv.voice != nil {
		cv.voice.cancel(errConversationEnd)
	}
	if cv.c.State == store.StateWaiting {
		h.dequeueLocked(cv)
	}
	a := h.releaseLocked(cv)
	cv.c.State, cv.c.AgentID, cv.c.EndedAt = store.StateEnded, "", h.now().UTC()
	err := h.saveLocked(ctx, cv)
	w := h.wireConvLocked(cv)
	frame := map[string]any{"type": "conversation", "conversation": w}
	for cl := range cv.customers {
		cl.send(frame)
	}
	if a != nil {
		h.sendToAgentLocked(a, frame)
	}
	delete(h.convs, cv.c.ID)
	if h.node != nil {
		go h.node.free(cv.c.ID, h.node.disown(cv.c.ID))
	}
	h.updateGaugesLocked()
	h.routeLocked()
	return err
}

// abandonedLocked reports whether cv has waited with nobody in it, no
// customer socket, no media and no message, for limits.abandoned_after.
func (h *hub) abandonedLocked(cv *conv, now time.Time) bool {
	// A message left for the next agent has no customer to come back.
	return cv.c.State == store.StateWaiting && cv.c.Origin != store.OriginMessage && len(cv.customers) == 0 && cv.voice == nil && cv.rtc == nil &&
		cv.video == nil && now.Sub(cv.lastActive) >= h.cfg.Limits.AbandonedAfter
}

// expireAbandoned ends every abandoned conversation (abandonedLocked) with
// a conversation.ended event whose data has reason "abandoned", and
// returns how many it ended.
func (h *hub) expireAbandoned(ctx context.Context) int {
	h.mu.Lock()
	now := h.now()
	var old []*conv
	for _, list := range h.waiting {
		for _, cv := range list {
			if h.abandonedLocked(cv, now) {
				old = append(old, cv)
			}
		}
	}
	h.mu.Unlock()
	n := 0
	after := h.cfg.Limits.AbandonedAfter.String()
	for _, cv := range old {
		h.mu.Lock()
		still := h.abandonedLocked(cv, h.now())
		h.mu.Unlock()
		if !still {
			continue // the customer came back
		}
		if err := h.finish(ctx, cv, "Conversation closed: the customer left before an agent answered",
			map[string]string{"by": "", "reason": "abandoned", "after": after}); err != nil {
			h.log.Error("abandoned conversation not closed", "conv", cv.c.ID, "err", err)
			continue
		}
		h.metrics.flow.abandoned.Inc()
		h.log.Info("abandoned conversation closed", "conv", cv.c.ID, "queue", cv.c.Queue, "after", after)
		n++
	}
	return n
}

// runExpiry ends abandoned conversations until ctx ends, checking a few
// times per limits.abandoned_after.
func (h *hub) runExpiry(ctx context.Context) {
	every := min(max(h.cfg.Limits.AbandonedAfter/4, 250*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.expireAbandoned(ctx)
		}
	}
}

func (h *hub) agentName(id string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a, ok := h.agents[id]; ok {
		return a.cfg.Name
	}
	return ""
}

// transfer hands cv from its agent to another agent or back to a queue.
// byAgent is the agent holding it, or a supervisor of its queue
// (mayTransferLocked).
func (h *hub) transfer(ctx context.Context, byAgent string, cv *conv, toAgent, toQueue string) error {
	h.mu.Lock()
	if !h.mayTransferLocked(cv, byAgent) {
		h.mu.Unlock()
		return ErrForbidden
	}
	var text string
	from := cv.c.AgentID
	data := map[string]string{"from": from}
	switch {
	case toAgent != "":
		b, ok := h.agents[toAgent]
		if !ok || toAgent == from {
			h.mu.Unlock()
			return errf(http.StatusBadRequest, "bad_request", "unknown agent %q", toAgent)
		}
		if h.presenceLocked(b) == presenceOffline {
			h.mu.Unlock()
			return errf(http.StatusConflict, "unavailable", "%s is offline", b.cfg.Name)
		}
		queue := cv.c.Queue
		if !slices.Contains(b.cfg.Queues, queue) {
			queue = b.cfg.Queues[0]
		}
		err := store.ErrAtCapacity
		if b.held() < b.maxChats {
			err = h.storeAssignLocked(ctx, cv, b, queue)
		}
		if errors.Is(err, store.ErrAtCapacity) {
			h.mu.Unlock()
			return errf(http.StatusConflict, "at_capacity", "%s holds the most conversations allowed", b.cfg.Name)
		}
		if err != nil {
			h.mu.Unlock()
			return err
		}
		old := h.releaseLocked(cv)
		cv.c.Queue = queue
		h.assignLocked(cv, b)
		if old != nil {
			h.sendToAgentLocked(old, map[string]any{"type": "conversation", "conversation": h.wireConvLocked(cv)})
		}
		text, data["agent"] = "Transferred to "+b.cfg.Name, toAgent
		defer h.pushHistory(ctx, b, cv)
	case toQueue != "":
		if _, ok := h.queues[toQueue]; !ok {
			h.mu.Unlock()
			return errf(http.StatusBadRequest, "bad_request", "unknown queue %q", toQueue)
		}
		old := h.releaseLocked(cv)
		if cv.c.State == store.StateWaiting {
			h.dequeueLocked(cv) // a supervisor moves a waiting conversation
		}
		cv.c.State, cv.c.AgentID, cv.c.Queue = store.StateWaiting, "", toQueue
		cv.declined = map[string]bool{from: true}
		cv.lastActive = h.now()
		h.enqueueLocked(cv)
		h.updateGaugesLocked()
		h.broadcastConvLocked(cv)
		if old != nil {
			h.sendToAgentLocked(old, map[string]any{"type": "conversation", "conversation": h.wireConvLocked(cv)})
		}
		h.routeLocked()
		text, data["queue"] = "Transferred to the "+toQueue+" queue", toQueue
	default:
		h.mu.Unlock()
		return errf(http.StatusBadRequest, "bad_request", "transfer needs agent or queue")
	}
	err := h.saveLocked(ctx, cv)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	h.event(ctx, cv, "conversation.transferred", text, data)
	return nil
}

// ---- routing ----

func (h *hub) eligibleLocked(a *agent, queue string) bool {
	return h.availableLocked(a) && slices.Contains(a.cfg.Queues, queue)
}

// availableLocked: a may take offers (of its queues).
func (h *hub) availableLocked(a *agent) bool {
	return !a.removed && h.presenceLocked(a) == presenceAvailable && a.held() < a.maxChats
}

// routeLocked offers every waiting conversation without a live offer to
// the best agent: the customer's previous agent when available, otherwise
// the agent of its queue idle the longest (fewest pending offers first).
// Offers to agents who can no longer take them are withdrawn first. The
// cost is one pass over the agents and over the waiting lists of queues
// that have an available agent.
func (h *hub) routeLocked() {
	if h.closing {
		return
	}
	staffed := map[string]bool{}
	for _, a := range h.agents {
		if !h.availableLocked(a) {
			for _, cv := range a.offered {
				h.clearOfferLocked(cv)
			}
			continue
		}
		for _, q := range a.cfg.Queues {
			staffed[q] = true
		}
	}
	var todo []*conv
	for q := range staffed {
		for _, cv := range h.waiting[q] {
			if cv.offeredTo == "" {
				todo = append(todo, cv)
			}
		}
	}
	slices.SortFunc(todo, convBefore)
	for _, cv := range todo {
		if a := h.pickLocked(cv); a != nil {
			h.offerLocked(cv, a)
		}
	}
}

func (h *hub) pickLocked(cv *conv) *agent {
	if p, ok := h.agents[cv.preferred]; ok && !cv.declined[p.cfg.ID] && h.eligibleLocked(p, cv.c.Queue) {
		return p
	}
	var cands []*agent
	for _, a := range h.agents {
		if h.eligibleLocked(a, cv.c.Queue) {
			cands = append(cands, a)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	fresh := cands[:0:0]
	for _, a := range cands {
		if !cv.declined[a.cfg.ID] {
			fresh = append(fresh, a)
		}
	}
	if len(fresh) == 0 {
		// Everyone let the offer pass: start another round.
		cv.declined = map[string]bool{}
		fresh = cands
	}
	return slices.MinFunc(fresh, func(x, y *agent) int {
		if c := x.offers() - y.offers(); c != 0 {
			return c
		}
		if c := x.idleSince.Compare(y.idleSince); c != 0 {
			return c
		}
		return strings.Compare(x.cfg.ID, y.cfg.ID)
	})
}

func (h *hub) offerLocked(cv *conv, a *agent) {
	cv.offeredTo = a.cfg.ID
	a.offered[cv.c.ID] = cv
	h.node.changed()
	timeout := time.Duration(h.queues[cv.c.Queue].OfferTimeout) * time.Second
	id, agentID := cv.c.ID, a.cfg.ID
	cv.offer = time.AfterFunc(timeout, func() { h.offerExpired(id, agentID) })
	h.sendToAgentLocked(a, map[string]any{"type": "offer", "conversation": h.wireConvLocked(cv)})
	h.queueChangedLocked(cv)
	h.log.Debug("conversation offered", "conv", id, "agent", agentID)
}

func (h *hub) clearOfferLocked(cv *conv) {
	if cv.offer != nil {
		cv.offer.Stop()
		cv.offer = nil
	}
	if a, ok := h.agents[cv.offeredTo]; ok {
		delete(a.offered, cv.c.ID)
		h.node.changed()
	}
	had := cv.offeredTo != ""
	cv.offeredTo = ""
	if had && cv.c.State == store.StateWaiting {
		// The consoles learn that the offer is over (expired, withdrawn,
		// or moving to another agent), as they learnt of it.
		h.queueChangedLocked(cv)
	}
}

func (h *hub) offerExpired(convID, agentID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cv, ok := h.convs[convID]
	if !ok || cv.offeredTo != agentID || cv.c.State != store.StateWaiting {
		return
	}
	cv.declined[agentID] = true
	h.clearOfferLocked(cv)
	h.routeLocked()
}

// ---- agents ----

func (h *hub) setPresence(agentID, state string) error {
	if state != presenceAvailable && state != presenceAway {
		return errf(http.StatusBadRequest, "bad_request", "presence must be available or away")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[agentID]
	if !ok {
		return ErrUnauthorized
	}
	if a.presence != state && state == presenceAvailable {
		a.idleSince = h.now()
	}
	a.presence = state
	a.presenceVer++
	if h.node != nil {
		// The choice outranks every one heard of, on any node.
		a.presenceBy = h.node.id
		h.node.changed()
	}
	h.sendToAgentLocked(a, map[string]any{"type": "presence", "state": state})
	h.updateGaugesLocked()
	h.broadcastAgentsLocked()
	h.routeLocked()
	return nil
}

// ---- shutdown ----

// shutdown stops routing and closes every client with reason.
func (h *hub) shutdown(reason string) {
	h.mu.Lock()
	h.closing = true
	var all []*client
	for _, cv := range h.convs {
		h.clearOfferLocked(cv)
		for cl := range cv.customers {
			all = append(all, cl)
		}
	}
	for _, a := range h.agents {
		for cl := range a.clients {
			all = append(all, cl)
		}
	}
	h.mu.Unlock()
	for _, cl := range all {
		cl.closeWith(statusGoingAway, reason)
	}
}

func (h *hub) isClosing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

// ---- small relays ----

// relayTyping sends a typing indicator to the other side of the
// conversation from role. Indicators coalesce and are dropped first when
// a socket falls behind (client.sendTyping).
func (h *hub) relayTyping(cv *conv, fromRole string, typing bool) {
	b, err := json.Marshal(map[string]any{"type": "typing", "conversation_id": cv.c.ID, "role": fromRole, "typing": typing})
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if fromRole == store.RoleAgent {
		for cl := range cv.customers {
			cl.sendTyping(cv.c.ID, b)
		}
		return
	}
	if a, ok := h.agents[cv.c.AgentID]; ok {
		for cl := range a.clients {
			cl.sendTyping(cv.c.ID, b)
		}
	}
}

// markRead records a read receipt up to seq and tells the other side.
// The write touches the read mark only and runs outside hub.mu, so read
// receipts, the most frequent write, never hold up other conversations.
func (h *hub) markRead(ctx context.Context, cv *conv, role string, seq int64) error {
	h.mu.Lock()
	seq = min(seq, cv.c.LastSeq)
	mark := &cv.c.ReadByCust
	if role == store.RoleAgent {
		mark = &cv.c.ReadByAgt
	}
	if seq <= *mark {
		h.mu.Unlock()
		return nil
	}
	*mark = seq
	id := cv.c.ID
	h.mu.Unlock()
	if err := h.store.MarkRead(ctx, id, role, seq); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sendToConvLocked(cv, map[string]any{"type": "read", "conversation_id": id, "role": role, "seq": seq})
	return nil
}

type wireAgentPresence struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Presence string `json:"presence"`
}

func (h *hub) agentListLocked() []wireAgentPresence {
	out := make([]wireAgentPresence, 0, len(h.agents))
	for _, a := range h.agents {
		out = append(out, wireAgentPresence{ID: a.cfg.ID, Name: a.cfg.Name, Presence: h.presenceLocked(a)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (h *hub) queueNamesLocked() []string {
	out := make([]string, 0, len(h.cfg.Queues))
	for _, q := range h.cfg.Queues {
		out = append(out, q.Name)
	}
	return out
}

// broadcastAgentsLocked tells every console who is online (transfer lists).
func (h *hub) broadcastAgentsLocked() {
	list := h.agentListLocked()
	for _, a := range h.agents {
		h.sendToAgentLocked(a, map[string]any{"type": "agents", "agents": list})
	}
}
