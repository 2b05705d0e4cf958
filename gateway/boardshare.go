package gateway

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// In a cluster each node holds its own share of what the supervisors'
// boards show: the waiting conversations it holds and the conversations
// it holds for agents. Every node publishes that share on subjBoard when
// it changes (gathered over boardDelay, as board pushes are) and every
// shareRefresh besides, and keeps the others' latest shares; a board is
// built from this node's share and theirs (mergeBoard). A node's share
// goes with the node: when it leaves or is lost (nodeExpiry), its
// conversations leave the boards.

// shareRefresh is how often a node publishes its share even when
// nothing changed, so that a share lost on the bus is made good.
const shareRefresh = 5 * heartbeatEvery

// boardShare is one node's part of the boards.
type boardShare struct {
	Node string `json:"node"`
	// Queues are the node's waiting conversations, per queue: how many,
	// and the oldest boardWaitingShown of them, oldest first.
	Queues []shareQueue `json:"queues,omitempty"`
	// Convs are the conversations the node holds for agents, with the
	// call state and video as that node knows them.
	Convs []shareConv `json:"convs,omitempty"`
}

type shareQueue struct {
	Name    string           `json:"name"`
	Waiting int              `json:"waiting"`
	List    []wireBoardWaits `json:"list,omitempty"`
}

type shareConv struct {
	Agent string `json:"agent"`
	wireBoardConv
}

// heldShare is another node's latest share and when it came.
type heldShare struct {
	share *boardShare
	at    time.Time
}

// shareLocked is this node's share, without the monitors (which
// monitorsOn adds); hub.mu held.
func (h *hub) shareLocked() *boardShare {
	sh := &boardShare{}
	for q, list := range h.waiting {
		if len(list) == 0 {
			continue
		}
		sq := shareQueue{Name: q, Waiting: len(list)}
		for _, cv := range list[:min(len(list), boardWaitingShown)] {
			sq.List = append(sq.List, wireBoardWaits{ID: cv.c.ID, Customer: cv.c.Customer.Name, Since: cv.c.CreatedAt.UTC(), Offered: cv.offeredTo})
		}
		sh.Queues = append(sh.Queues, sq)
	}
	for id, a := range h.agents {
		for _, cv := range a.convs {
			wc := wireBoardConv{ID: cv.c.ID, Customer: cv.c.Customer.Name, Queue: cv.c.Queue,
				Video: cv.video != nil || (cv.mstate != nil && len(cv.mstate.custVideos) > 0)}
			if v := cv.voice; v != nil {
				v.mu.Lock()
				wc.Call = v.state
				v.mu.Unlock()
			}
			sh.Convs = append(sh.Convs, shareConv{Agent: id, wireBoardConv: wc})
		}
	}
	sort.Slice(sh.Queues, func(i, j int) bool { return sh.Queues[i].Name < sh.Queues[j].Name })
	sort.Slice(sh.Convs, func(i, j int) bool { return sh.Convs[i].ID < sh.Convs[j].ID })
	return sh
}

// monitorsOn marks the conversations of sh that are monitored here.
func (s *Server) monitorsOn(sh *boardShare) {
	s.super.mu.Lock()
	defer s.super.mu.Unlock()
	if len(s.super.monitors) == 0 {
		return
	}
	byConv := make(map[string]*wireMonitor, len(s.super.monitors))
	for cv, ms := range s.super.monitors {
		byConv[cv.c.ID] = &wireMonitor{Supervisor: ms.supervisor, Mode: ms.mode}
	}
	for i := range sh.Convs {
		sh.Convs[i].Monitor = byConv[sh.Convs[i].ID]
	}
}

// localShare is this node's share now.
func (s *Server) localShare() *boardShare {
	h := s.hub
	h.mu.Lock()
	sh := h.shareLocked()
	h.mu.Unlock()
	s.monitorsOn(sh)
	return sh
}

// mergeBoard builds a board of queues at now from the nodes' shares,
// this node's first: every queue's waiting conversations of every node,
// oldest first, and each of agents' conversations (agents of those
// queues, sorted by id, whose Conversations are empty). A conversation
// that two shares list (one of them a moment old, as when it moves
// between nodes) is shown once, as the first share has it.
func mergeBoard(now time.Time, queues []string, agents []wireBoardAgent, shares []*boardShare) *wireBoard {
	b := &wireBoard{Type: "board", At: now.UTC(), Queues: []wireBoardQueue{}, Agents: agents}
	byAgent := make(map[string]int, len(agents))
	for i := range agents {
		byAgent[agents[i].ID] = i
	}
	type waits struct {
		count int
		list  []wireBoardWaits
	}
	byQueue := make(map[string]*waits, len(queues))
	for _, q := range queues {
		byQueue[q] = &waits{}
	}
	seen := map[string]bool{}
	for _, sh := range shares {
		if sh == nil {
			continue
		}
		for _, c := range sh.Convs {
			if seen[c.ID] {
				continue
			}
			seen[c.ID] = true
			if i, ok := byAgent[c.Agent]; ok {
				agents[i].Conversations = append(agents[i].Conversations, c.wireBoardConv)
			}
		}
		for _, sq := range sh.Queues {
			w := byQueue[sq.Name]
			if w == nil {
				continue
			}
			w.count += sq.Waiting
			for _, wc := range sq.List {
				if seen[wc.ID] {
					w.count-- // counted by the share that shows it
					continue
				}
				seen[wc.ID] = true
				w.list = append(w.list, wc)
			}
		}
	}
	for _, q := range queues {
		w := byQueue[q]
		sort.Slice(w.list, func(i, j int) bool {
			if c := w.list[i].Since.Compare(w.list[j].Since); c != 0 {
				return c < 0
			}
			return w.list[i].ID < w.list[j].ID
		})
		wq := wireBoardQueue{Name: q, Waiting: max(w.count, len(w.list)), List: w.list[:min(len(w.list), boardWaitingShown)]}
		if len(w.list) > 0 {
			since := w.list[0].Since
			// Another node's clock may run ahead of this one's.
			wq.OldestSince, wq.LongestWaitS = &since, max(0, int(now.Sub(since).Seconds()))
		}
		if wq.List == nil {
			wq.List = []wireBoardWaits{}
		}
		b.Queues = append(b.Queues, wq)
	}
	for i := range agents {
		cs := agents[i].Conversations
		sort.Slice(cs, func(x, y int) bool { return cs[x].ID < cs[y].ID })
	}
	return b
}

// shareChanged asks for this node's share to be published within
// boardDelay. It never blocks, so it may be called with hub.mu held; a
// nil node (no cluster) does nothing.
func (n *node) shareChanged() {
	if n == nil {
		return
	}
	select {
	case n.shareKick <- struct{}{}:
	default:
	}
}

// publishShare sends this node's share to the others. A node whose
// configuration names no supervisor sends none: no board needs it.
func (n *node) publishShare() {
	h := n.s.hub
	h.mu.Lock()
	boards := false
	for _, a := range h.agents {
		boards = boards || a.cfg.Supervisor()
	}
	h.mu.Unlock()
	if !boards {
		return
	}
	sh := n.s.localShare()
	sh.Node = n.id
	b, err := encodeShare(sh)
	if err == nil {
		err = n.bus.Publish(subjBoard, b)
	}
	if err != nil {
		n.log.Warn("board share not sent", "err", err, "bytes", len(b))
	}
}

// A share is JSON, gzipped when it is larger than shareGzipAbove: the
// conversations a node holds for agents take some 150 bytes each, so
// about 7,000 of them would pass NATS's default limit of 1 MB on a
// message; gzipped, the limit is near the 65,536 a share may list. A
// node takes both forms (one of an earlier version sends plain JSON),
// and stops inflating at maxShareBytes.
const (
	shareGzipAbove = 64 << 10
	maxShareBytes  = 32 << 20
)

// encodeShare returns sh as it goes on the bus.
func encodeShare(sh *boardShare) ([]byte, error) {
	b, err := json.Marshal(sh)
	if err != nil || len(b) <= shareGzipAbove {
		return b, err
	}
	var z bytes.Buffer
	w, err := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return z.Bytes(), nil
}

// decodeShare reads a share as encodeShare wrote it, or as plain JSON.
func decodeShare(data []byte, sh *boardShare) error {
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b { // not gzip
		return json.Unmarshal(data, sh)
	}
	r, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return err
	}
	b, err := io.ReadAll(io.LimitReader(r, maxShareBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxShareBytes {
		return errShareTooLarge
	}
	return json.Unmarshal(b, sh)
}

var errShareTooLarge = errors.New("board share larger than it may be")

// takeShare keeps another node's share and tells the boards here.
func (n *node) takeShare(_ string, data []byte) {
	var sh boardShare
	if decodeShare(data, &sh) != nil || sh.Node == n.id || !nodeIDRe.MatchString(sh.Node) {
		return
	}
	clean := &boardShare{Node: sh.Node}
	for _, sq := range sh.Queues {
		if sq.Name == "" || sq.Waiting < 0 || sq.Waiting > maxBeatCount {
			continue
		}
		sq.List = slices.DeleteFunc(sq.List[:min(len(sq.List), boardWaitingShown)], func(w wireBoardWaits) bool { return w.ID == "" })
		clean.Queues = append(clean.Queues, sq)
	}
	for _, c := range sh.Convs[:min(len(sh.Convs), maxBeatCount)] {
		if c.ID != "" && c.Agent != "" {
			clean.Convs = append(clean.Convs, c)
		}
	}
	n.mu.Lock()
	n.shares[sh.Node] = heldShare{share: clean, at: time.Now()}
	n.mu.Unlock()
	n.s.boardsStale()
}

// dropSharesLocked forgets the shares of the nodes gone and those of
// nodes never heard from by heartbeat for nodeExpiry; n.mu held. It
// reports whether any went.
func (n *node) dropSharesLocked(now time.Time, gone ...string) bool {
	dropped := false
	for id, hs := range n.shares {
		if slices.Contains(gone, id) || (n.remotes[id] == nil && now.Sub(hs.at) >= nodeExpiry) {
			delete(n.shares, id)
			dropped = true
		}
	}
	return dropped
}

// boardShares returns the other nodes' latest shares, by node id; none
// without a cluster.
func (n *node) boardShares() []*boardShare {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*boardShare, 0, len(n.shares))
	for _, hs := range n.shares {
		out = append(out, hs.share)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Node, out[j].Node) < 0 })
	return out
}
