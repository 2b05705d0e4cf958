package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/segue-rtc/segue/store"
)

// Cluster timing: a node says which console sockets it holds every
// heartbeatEvery and at once when they change; a node not heard from for
// nodeExpiry is taken for dead and its sockets leave the other nodes.
const (
	heartbeatEvery = time.Second
	nodeExpiry     = 4 * time.Second
	// commandTimeout bounds a console's command forwarded to the node
	// that holds the conversation.
	commandTimeout = 10 * time.Second
)

// Bus subjects (docs/scaling.md, "What goes over NATS").
const (
	subjHeartbeat = "segue.node.heartbeat"
	// subjSocket + node + "." + socket: frames for one console socket.
	subjSocket = "segue.sock."
	// subjConv + id + ".cmd": commands for the node holding a conversation.
	subjConv = "segue.conv."
	// subjBoard: each node's share of the supervisors' boards (boardshare.go).
	subjBoard = "segue.node.board"
)

// node is this gateway's part in a cluster. Each conversation lives on
// the node that holds its customer's socket (its owner); an agent's
// console may be connected to any node. Every node mirrors the consoles
// of the others as remote clients in hub.agents, so routing, presence and
// delivery stay what they are on one node: a frame for a remote client
// is published to the socket's node, and a console's command for a
// conversation held elsewhere is a request to the owner's subject.
type node struct {
	id  string
	bus bus
	s   *Server
	log *slog.Logger

	mu sync.Mutex
	// local are this node's console sockets, by socket id.
	local map[string]*client
	// remotes are the other nodes' console sockets as remote clients.
	remotes map[string]*remoteNode
	// owned are the command responders of the conversations held here.
	owned map[string]func()

	// leases say which node holds each conversation and trunk; inc is
	// this start of the node there (clusterlease.go).
	leases leases
	inc    string
	// ready is closed once this incarnation is alive in leases.
	ready     chan struct{}
	readyOnce sync.Once
	// lastLife is when this node last renewed its life; revs are the
	// revisions of the conversation leases it holds, trunks its trunk
	// registrations. Guarded by mu.
	lastLife time.Time
	revs     map[string]uint64
	trunks   map[string]*trunkHold

	beats chan heartbeat
	kick  chan struct{}
	// shareKick asks for this node's share of the boards to be published;
	// shares are the other nodes' latest (guarded by mu).
	shareKick chan struct{}
	shares    map[string]heldShare

	// life is run's context, set before ready is closed: background work
	// (endLeftUp) runs under it. bg counts that work, which run waits for
	// once stopped is set (guarded by mu), so none starts after.
	life    context.Context
	bg      sync.WaitGroup
	stopped bool
}

type remoteNode struct {
	seen  time.Time
	socks map[string]*client
	sip   string
	http  string
	// agents is what the node holds of each agent, by agent id.
	agents map[string]beatAgent
}

// heartbeat lists a node's console sockets.
type heartbeat struct {
	Node    string       `json:"node"`
	Sockets []beatSocket `json:"sockets"`
	// Leaving says the node is stopping: its sockets go at once.
	Leaving bool `json:"leaving,omitempty"`
	// SIP is the node's cluster.advertise.sip, where a PBX's INVITE for a
	// conversation it holds is redirected.
	SIP string `json:"sip,omitempty"`
	// HTTP is the node's cluster.advertise.http, where another node
	// forwards a request for a conversation it holds.
	HTTP string `json:"http,omitempty"`
	// Agents is the node's part of each agent's state, for the agents
	// it has anything of (agentsBeat).
	Agents []beatAgent `json:"agents,omitempty"`
}

// beatAgent is one node's part of an agent's state: what routing on
// every node needs to keep max_chats, presence and "longest idle" for
// the whole cluster (hub.go, foldAgents).
type beatAgent struct {
	ID string `json:"id"`
	// Convs and Offered are the conversations the node holds for the
	// agent and the offers it has pending to the agent.
	Convs   int `json:"convs,omitempty"`
	Offered int `json:"offered,omitempty"`
	// IdleSince is the latest start of the agent's idle time the node
	// knows of.
	IdleSince time.Time `json:"idle_since,omitzero"`
	// Presence is the agent's latest choice the node knows of, with its
	// version and the node that made it (agent.presenceVer).
	Presence    string `json:"presence,omitempty"`
	PresenceVer uint64 `json:"presence_ver,omitempty"`
	PresenceBy  string `json:"presence_by,omitempty"`
}

// maxBeatCount bounds the counts a heartbeat may claim for one agent.
const maxBeatCount = 1 << 16

type beatSocket struct {
	ID    string `json:"id"`
	Agent string `json:"agent"`
}

// socketFrame is a frame for a remote socket, with what enqueue needs to
// coalesce and shed it there.
type socketFrame struct {
	Data      json.RawMessage `json:"data"`
	Conv      string          `json:"conv,omitempty"`
	Key       string          `json:"key,omitempty"`
	Droppable bool            `json:"droppable,omitempty"`
}

// command is a console's frame for a conversation held by another node,
// or a node's request to take a conversation over (Op "release").
type command struct {
	Op     string          `json:"op,omitempty"`
	Node   string          `json:"node,omitempty"`
	Socket string          `json:"socket,omitempty"`
	Agent  string          `json:"agent,omitempty"`
	Frame  json.RawMessage `json:"frame,omitempty"`
}

// commandReply is the owner's answer: empty, or the error to show.
type commandReply struct {
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

func newNode(id string, b bus, l leases, s *Server) *node {
	return &node{id: id, bus: b, s: s, log: s.log.With("node", id), local: map[string]*client{},
		remotes: map[string]*remoteNode{}, owned: map[string]func(){},
		leases: l, inc: newIncarnation(id), ready: make(chan struct{}), revs: map[string]uint64{},
		trunks: map[string]*trunkHold{}, beats: make(chan heartbeat, 64), kick: make(chan struct{}, 1),
		shareKick: make(chan struct{}, 1), shares: map[string]heldShare{}}
}

// ClusterConn is a node's connection to the cluster's NATS server.
type ClusterConn struct {
	bus    *natsBus
	leases *natsLeases
}

// DialCluster connects to cluster.nats_url as cluster.node_id; the
// caller closes the connection after the server's Run returns.
func DialCluster(cfg *ClusterConfig) (*ClusterConn, error) {
	b, err := dialNATS(cfg.NATSURL, cfg.NodeID, cfg.NATSToken, cfg.NATSCredentials)
	if err != nil {
		return nil, fmt.Errorf("gateway: cluster.nats_url: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := openNATSLeases(ctx, b.nc)
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("gateway: cluster.nats_url: leases: %w", err)
	}
	return &ClusterConn{bus: b, leases: l}, nil
}

// Close flushes what is being sent and disconnects.
func (c *ClusterConn) Close() error { return c.bus.Close() }

// WithCluster joins the server to a cluster over c (cluster section).
func WithCluster(c *ClusterConn) Option {
	return func(s *Server) { s.node = newNode(s.cfg.Cluster.NodeID, c.bus, c.leases, s) }
}

// withBus joins the server to a cluster on b and l as node id (tests).
func withBus(id string, b bus, l leases) Option {
	return func(s *Server) { s.node = newNode(id, b, l, s) }
}

// run keeps the node's view of the others until ctx ends: it sends this
// node's heartbeat and applies the others', and keeps its leases
// (leaseLoop). It fails if the lease store cannot be reached before ctx
// ends.
func (n *node) run(ctx context.Context) error {
	n.mu.Lock()
	n.life = ctx
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.stopped = true
		n.mu.Unlock()
		n.bg.Wait()
	}()
	if err := n.live(ctx); err != nil {
		return err
	}
	leaseCtx, stopLeases := context.WithCancel(ctx)
	leaseDone := make(chan struct{})
	go func() { defer close(leaseDone); n.leaseLoop(leaseCtx) }()
	defer func() { stopLeases(); <-leaseDone }()
	unsub, err := n.bus.Subscribe(subjHeartbeat, func(_ string, data []byte) {
		var hb heartbeat
		if json.Unmarshal(data, &hb) != nil || hb.Node == n.id || !nodeIDRe.MatchString(hb.Node) {
			return
		}
		select {
		case n.beats <- hb:
		default: // the next heartbeat brings the same list
		}
	})
	if err != nil {
		return fmt.Errorf("gateway: cluster heartbeat: %w", err)
	}
	defer unsub()
	unsock, err := n.bus.Subscribe(subjSocket+n.id+".*", n.toSocket)
	if err != nil {
		return fmt.Errorf("gateway: cluster sockets: %w", err)
	}
	defer unsock()
	unboard, err := n.bus.Subscribe(subjBoard, n.takeShare)
	if err != nil {
		return fmt.Errorf("gateway: cluster boards: %w", err)
	}
	defer unboard()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	n.beat(false)
	n.publishShare()
	var shareDue <-chan time.Time
	lastShare := time.Now()
	for {
		select {
		case <-ctx.Done():
			n.beat(true)
			n.mu.Lock()
			for id, stop := range n.owned {
				stop()
				delete(n.owned, id)
			}
			revs := n.revs
			n.revs = map[string]uint64{}
			n.mu.Unlock()
			// A clean stop gives the conversations up at once: the node
			// their customers come back on takes them without waiting
			// for this node's life to run out.
			for id, rev := range revs {
				n.free(id, rev)
			}
			return nil
		case <-n.kick:
			n.beat(false)
		case hb := <-n.beats:
			n.apply(hb)
		case <-n.shareKick:
			if shareDue == nil {
				shareDue = time.After(boardDelay)
			}
		case <-shareDue:
			shareDue = nil
			n.publishShare()
			lastShare = time.Now()
		case now := <-t.C:
			n.beat(false)
			n.expire(now)
			if shareDue == nil && now.Sub(lastShare) >= shareRefresh {
				n.publishShare()
				lastShare = now
			}
		}
	}
}

// changed asks for a heartbeat now: a console socket came or went, or
// an agent's conversations, offers, idle time or presence changed. It
// never blocks, so it may be called with hub.mu held; a nil node (no
// cluster) does nothing.
func (n *node) changed() {
	if n == nil {
		return
	}
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

func (n *node) beat(leaving bool) {
	hb := heartbeat{Node: n.id, Leaving: leaving, Sockets: []beatSocket{}, SIP: n.s.cfg.Cluster.Advertise.SIP,
		HTTP: n.s.cfg.Cluster.Advertise.HTTP}
	if !leaving {
		hb.Agents = n.agentsBeat()
	}
	n.mu.Lock()
	if !leaving {
		for id, cl := range n.local {
			hb.Sockets = append(hb.Sockets, beatSocket{ID: id, Agent: cl.agentID})
		}
	}
	n.mu.Unlock()
	b, _ := json.Marshal(hb)
	if err := n.bus.Publish(subjHeartbeat, b); err != nil {
		n.log.Debug("cluster heartbeat not sent", "err", err)
	}
}

// addLocal registers a console socket of this node.
func (n *node) addLocal(cl *client) {
	n.mu.Lock()
	n.local[cl.sockID] = cl
	n.mu.Unlock()
	n.changed()
}

// removeLocal forgets a console socket of this node.
func (n *node) removeLocal(cl *client) {
	n.mu.Lock()
	_, ok := n.local[cl.sockID]
	delete(n.local, cl.sockID)
	n.mu.Unlock()
	if ok {
		n.changed()
	}
}

// toSocket delivers a frame another node sent to one of our sockets.
func (n *node) toSocket(subject string, data []byte) {
	id := subject[len(subjSocket)+len(n.id)+1:]
	n.mu.Lock()
	cl := n.local[id]
	n.mu.Unlock()
	var f socketFrame
	if cl == nil || json.Unmarshal(data, &f) != nil || len(f.Data) == 0 {
		return
	}
	cl.enqueue(outFrame{data: f.Data, conv: f.Conv, key: f.Key, droppable: f.Droppable})
}

// remoteClient is a console socket of node on this node: what is queued
// for it is published to that node.
func (n *node) remoteClient(node, sock, agentID string) *client {
	cl := newClient(nil, n.log.With("agent", agentID, "remote_node", node), n.s.metrics)
	cl.role, cl.agentID, cl.sockID, cl.ready = store.RoleAgent, agentID, sock, true
	subject := subjSocket + node + "." + sock
	cl.forward = func(f outFrame) {
		b, err := json.Marshal(socketFrame{Data: f.data, Conv: f.conv, Key: f.key, Droppable: f.droppable})
		if err == nil {
			err = n.bus.Publish(subject, b)
		}
		if err != nil {
			n.log.Debug("frame for a remote console not sent", "err", err)
		}
	}
	return cl
}

// apply brings the remote clients of hb's node in line with its list.
func (n *node) apply(hb heartbeat) {
	n.mu.Lock()
	r := n.remotes[hb.Node]
	if r == nil {
		r = &remoteNode{socks: map[string]*client{}}
		n.remotes[hb.Node] = r
		n.log.Info("cluster node joined", "peer", hb.Node)
		// The newcomer has not heard this node's share of the boards.
		n.shareChanged()
	}
	r.seen = time.Now()
	r.sip, r.http = hb.SIP, hb.HTTP
	r.agents = map[string]beatAgent{}
	if !hb.Leaving {
		for _, ba := range hb.Agents {
			if ba.ID == "" || ba.Convs < 0 || ba.Offered < 0 || ba.Convs > maxBeatCount || ba.Offered > maxBeatCount {
				continue
			}
			if ba.Presence != presenceAvailable && ba.Presence != presenceAway {
				ba.Presence, ba.PresenceVer, ba.PresenceBy = "", 0, ""
			}
			if ba.IdleSince.After(r.seen) {
				// A node whose clock runs ahead cannot push an agent's
				// idle time past now here.
				ba.IdleSince = r.seen
			}
			r.agents[ba.ID] = ba
		}
	}
	want := map[string]string{}
	if !hb.Leaving {
		for _, s := range hb.Sockets {
			if sockIDRe.MatchString(s.ID) {
				want[s.ID] = s.Agent
			}
		}
	}
	var added, gone []*client
	for id, agentID := range want {
		if _, ok := r.socks[id]; !ok && id != "" {
			cl := n.remoteClient(hb.Node, id, agentID)
			r.socks[id] = cl
			added = append(added, cl)
		}
	}
	for id, cl := range r.socks {
		if _, ok := want[id]; !ok {
			delete(r.socks, id)
			gone = append(gone, cl)
		}
	}
	dropped := false
	if hb.Leaving {
		delete(n.remotes, hb.Node)
		dropped = n.dropSharesLocked(time.Now(), hb.Node)
		n.log.Info("cluster node left", "peer", hb.Node)
	}
	n.mu.Unlock()
	n.attach(added)
	n.detach(gone)
	n.foldAgents()
	if dropped {
		n.s.boardsStale()
	}
}

// expire drops the nodes not heard from for nodeExpiry.
func (n *node) expire(now time.Time) {
	var gone []*client
	var lost []string
	n.mu.Lock()
	for id, r := range n.remotes {
		if now.Sub(r.seen) < nodeExpiry {
			continue
		}
		for _, cl := range r.socks {
			gone = append(gone, cl)
		}
		delete(n.remotes, id)
		lost = append(lost, id)
		n.log.Warn("cluster node lost", "peer", id, "silent_for", now.Sub(r.seen).Round(time.Millisecond))
	}
	// A lost node's conversations leave the boards with it.
	dropped := n.dropSharesLocked(now, lost...)
	n.mu.Unlock()
	n.detach(gone)
	if len(lost) > 0 {
		n.foldAgents()
	}
	if dropped {
		n.s.boardsStale()
	}
}

// agentsBeat is this node's part of every agent's state for its
// heartbeat: the agents it holds conversations or offers for, or knows
// an idle time or a presence choice of.
func (n *node) agentsBeat() []beatAgent {
	h := n.s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []beatAgent
	for id, a := range h.agents {
		if len(a.convs) == 0 && len(a.offered) == 0 && a.idleSince.IsZero() && a.presenceVer == 0 {
			continue
		}
		ba := beatAgent{ID: id, Convs: len(a.convs), Offered: len(a.offered), IdleSince: a.idleSince}
		if a.presenceVer > 0 {
			ba.Presence, ba.PresenceVer, ba.PresenceBy = a.presence, a.presenceVer, a.presenceBy
		}
		out = append(out, ba)
	}
	return out
}

// presenceNewer reports whether presence choice (ver, by) outranks
// (thanVer, thanBy): a higher version, or the same from a node whose id
// sorts higher.
func presenceNewer(ver uint64, by string, thanVer uint64, thanBy string) bool {
	return ver > thanVer || (ver == thanVer && by > thanBy)
}

// foldAgents brings every agent in the hub in line with what the other
// nodes hold of it: their conversations and offers count toward its
// max_chats and its "fewest offers first", the latest idle time any
// node saw is its idle time, and the latest presence choice made on any
// node is its presence here too. Then routing runs again: an agent who
// is away or at capacity elsewhere loses the offers made here.
func (n *node) foldAgents() {
	sum := map[string]*beatAgent{}
	n.mu.Lock()
	for _, r := range n.remotes {
		for id, ba := range r.agents {
			s := sum[id]
			if s == nil {
				s = &beatAgent{ID: id}
				sum[id] = s
			}
			s.Convs += ba.Convs
			s.Offered += ba.Offered
			if ba.IdleSince.After(s.IdleSince) {
				s.IdleSince = ba.IdleSince
			}
			if ba.Presence != "" && presenceNewer(ba.PresenceVer, ba.PresenceBy, s.PresenceVer, s.PresenceBy) {
				s.Presence, s.PresenceVer, s.PresenceBy = ba.Presence, ba.PresenceVer, ba.PresenceBy
			}
		}
	}
	n.mu.Unlock()
	h := n.s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	changed, presence := false, false
	for id, a := range h.agents {
		var s beatAgent
		if p := sum[id]; p != nil {
			s = *p
		}
		if load := (agentLoad{convs: s.Convs, offered: s.Offered}); load != a.elsewhere {
			a.elsewhere, changed = load, true
		}
		if s.IdleSince.After(a.idleSince) {
			a.idleSince, changed = s.IdleSince, true
		}
		if s.Presence != "" && presenceNewer(s.PresenceVer, s.PresenceBy, a.presenceVer, a.presenceBy) {
			a.presence, a.presenceVer, a.presenceBy = s.Presence, s.PresenceVer, s.PresenceBy
			presence = true
			n.log.Debug("agent presence from another node", "agent", id, "presence", s.Presence, "by", s.PresenceBy)
			// The node where it was chosen told every console it knows
			// of; this node tells its own too, which that node may not
			// have heard of yet (a frame twice changes nothing).
			for cl := range a.clients {
				if cl.forward == nil {
					cl.send(map[string]any{"type": "presence", "state": a.presence})
				}
			}
		}
	}
	if presence {
		h.broadcastAgentsLocked()
	}
	if changed || presence {
		h.updateGaugesLocked()
		h.routeLocked()
	}
}

// attach adds remote consoles to their agents, as a new socket would,
// and sends them what this node holds for their agent: its conversations
// and the waiting conversations of its queues.
func (n *node) attach(cls []*client) {
	if len(cls) == 0 {
		return
	}
	h := n.s.hub
	ctx := context.Background()
	for _, cl := range cls {
		h.mu.Lock()
		a, ok := h.agents[cl.agentID]
		if !ok {
			h.mu.Unlock()
			continue
		}
		if len(a.clients) == 0 {
			a.idleSince = h.now()
		}
		a.clients[cl] = struct{}{}
		var mine []*conv
		for _, cv := range a.convs {
			cl.send(map[string]any{"type": "conversation", "conversation": h.wireConvLocked(cv)})
			mine = append(mine, cv)
		}
		total := h.waitingForLocked(a)
		for _, q := range a.cfg.Queues {
			for _, cv := range h.waiting[q] {
				cl.send(map[string]any{"type": "queue.added", "total": total, "conversation": h.wireConvLocked(cv)})
			}
		}
		h.mu.Unlock()
		for _, cv := range mine {
			ms, older, err := h.historyPage(ctx, cv.c.ID, 0, 0)
			if err != nil {
				n.log.Error("history not loaded", "conv", cv.c.ID, "err", err)
				continue
			}
			cl.send(map[string]any{"type": "history", "conversation_id": cv.c.ID, "messages": toWireMessages(ms), "older": older})
		}
	}
	h.mu.Lock()
	h.updateGaugesLocked()
	h.broadcastAgentsLocked()
	h.routeLocked()
	h.mu.Unlock()
}

// detach removes remote consoles that went away, as unregister does.
func (n *node) detach(cls []*client) {
	if len(cls) == 0 {
		return
	}
	h := n.s.hub
	h.mu.Lock()
	for _, cl := range cls {
		if a, ok := h.agents[cl.agentID]; ok {
			delete(a.clients, cl)
		}
		cl.closeWith(statusGoingAway, "")
	}
	h.updateGaugesLocked()
	h.broadcastAgentsLocked()
	h.routeLocked()
	h.mu.Unlock()
}

// own starts answering commands for conversation id, held here now;
// called with hub.mu held.
func (n *node) own(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.owned[id]; ok {
		return
	}
	stop, err := n.bus.Respond(subjConv+id+".cmd", func(data []byte) []byte { return n.command(id, data) })
	if err != nil {
		n.log.Error("conversation not announced to the cluster", "conv", id, "err", err)
		return
	}
	n.owned[id] = stop
}

// disown stops answering commands for conversation id; called with
// hub.mu held. The unsubscribe runs on its own goroutine, since it
// waits for a command in progress, which may need hub.mu. It returns
// the revision of the conversation's lease, for the caller to free.
func (n *node) disown(id string) (rev uint64) {
	n.mu.Lock()
	stop, ok := n.owned[id]
	delete(n.owned, id)
	rev = n.revs[id]
	delete(n.revs, id)
	n.mu.Unlock()
	if ok {
		go stop()
	}
	return rev
}

// command runs a request for conversation id held here. Only what a
// node of the cluster would send is run: a release from another node, or
// a frame for this conversation from a console socket of a node heard
// from (its heartbeat), of an agent this gateway knows; anything else is
// refused with bad_frame.
func (n *node) command(id string, data []byte) []byte {
	var c command
	reply := func(err error) []byte {
		if err == nil {
			return []byte("{}")
		}
		ae := asAPIError(err)
		b, _ := json.Marshal(commandReply{Status: ae.Status, Code: ae.Code, Message: ae.Message})
		return b
	}
	bad := func(why string) []byte {
		n.log.Warn("cluster command refused", "conv", id, "why", why, "from_node", c.Node)
		return reply(errf(http.StatusBadRequest, "bad_frame", "bad command"))
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return bad("not JSON")
	}
	if !nodeIDRe.MatchString(c.Node) || c.Node == n.id {
		return bad("bad node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	switch c.Op {
	case "release":
		return reply(n.s.releaseConv(id))
	case "":
	default:
		return bad("unknown op")
	}
	var f inFrame
	if json.Unmarshal(c.Frame, &f) != nil || f.ConversationID != id {
		return bad("frame not for this conversation")
	}
	if !sockIDRe.MatchString(c.Socket) {
		return bad("bad socket")
	}
	n.s.hub.mu.Lock()
	_, known := n.s.hub.agents[c.Agent]
	n.s.hub.mu.Unlock()
	if !known {
		return bad("unknown agent")
	}
	n.mu.Lock()
	r := n.remotes[c.Node]
	var cl *client
	if r != nil {
		cl = r.socks[c.Socket]
	}
	n.mu.Unlock()
	if r == nil {
		return bad("node not heard from")
	}
	if cl == nil || cl.agentID != c.Agent {
		// The command overtook the heartbeat that announces its socket.
		cl = n.remoteClient(c.Node, c.Socket, c.Agent)
	}
	return reply(n.s.dispatch(ctx, cl, &f))
}

// forward sends an agent's frame for a conversation held elsewhere to its
// owner and returns the owner's verdict. ok is false when no node holds
// the conversation (the caller answers as for an unknown one).
func (n *node) forward(ctx context.Context, cl *client, f *inFrame) (ok bool, err error) {
	frame, err := json.Marshal(f)
	if err != nil {
		return true, err
	}
	req, _ := json.Marshal(command{Node: n.id, Socket: cl.sockID, Agent: cl.agentID, Frame: frame})
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	b, err := n.bus.Request(rctx, subjConv+f.ConversationID+".cmd", req)
	if errors.Is(err, errNoResponder) {
		return false, nil
	}
	if err != nil {
		return true, fmt.Errorf("gateway: cluster command %s: %w", f.Type, err)
	}
	var r commandReply
	if err := json.Unmarshal(b, &r); err != nil {
		return true, fmt.Errorf("gateway: cluster command %s: bad reply", f.Type)
	}
	if r.Code == "" {
		return true, nil
	}
	return true, &apiError{Status: r.Status, Code: r.Code, Message: r.Message}
}

// askRelease asks the node holding conversation id to let it go, so
// that this node, where its customer now is, can hold it. It fails with
// errNoResponder when no node answers for the conversation.
func (n *node) askRelease(ctx context.Context, id string) error {
	req, _ := json.Marshal(command{Op: "release", Node: n.id})
	rctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	b, err := n.bus.Request(rctx, subjConv+id+".cmd", req)
	if errors.Is(err, errNoResponder) {
		return err // its node is gone from the bus
	}
	if err != nil {
		return fmt.Errorf("gateway: take over %s: %w", id, err)
	}
	var r commandReply
	if json.Unmarshal(b, &r) != nil || r.Code != "" {
		return fmt.Errorf("gateway: take over %s: refused: %s", id, r.Message)
	}
	return nil
}

// adopt makes conversation id live on this node, where its customer has
// come back: the node that held it lets it go first (or is gone).
func (s *Server) adopt(ctx context.Context, id string) (*conv, *store.Conversation, error) {
	fromDead, err := s.node.takeOver(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.store.Conversation(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	h := s.hub
	h.mu.Lock()
	cv, ok := h.convs[id]
	if !ok {
		if c.State != store.StateWaiting && c.State != store.StateActive {
			h.mu.Unlock()
			return nil, c, nil
		}
		cv = h.restoreLocked(c)
		h.updateGaugesLocked()
		h.routeLocked()
		s.log.Info("conversation taken over", "conv", id, "node", s.node.id)
	}
	cc := cv.c
	h.mu.Unlock()
	if !ok && fromDead {
		s.node.endLeftUp(id)
	}
	return cv, &cc, nil
}

// releaseConv lets conversation id go from this node, for the node its
// customer is on now: offers are withdrawn, the customer's sockets here
// are closed and its media ends (media never crosses nodes).
func (s *Server) releaseConv(id string) error {
	h := s.hub
	h.mu.Lock()
	cv, ok := h.convs[id]
	if !ok {
		rev := h.node.disown(id)
		h.mu.Unlock()
		s.node.free(id, rev)
		return nil
	}
	h.clearOfferLocked(cv)
	if cv.c.State == store.StateWaiting {
		h.dequeueLocked(cv)
	}
	if a, ok := h.agents[cv.c.AgentID]; ok {
		delete(a.convs, id)
		h.node.changed()
	}
	delete(h.convs, id)
	rev := h.node.disown(id)
	var customers []*client
	for cl := range cv.customers {
		customers = append(customers, cl)
	}
	h.updateGaugesLocked()
	h.routeLocked()
	h.mu.Unlock()
	// The lease goes before the answer, so the asking node finds it free.
	s.node.free(id, rev)
	for _, cl := range customers {
		cl.closeWith(statusGoingAway, "conversation moved to another server")
	}
	s.closeConvMedia(cv)
	s.log.Info("conversation handed over", "conv", id)
	return nil
}
