package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/segue-rtc/segue/store"
)

// A supervisor (agents[].role: supervisor) supervises the queues it
// lists in agents[].queues: it sees them on a live board, reads and
// reassigns their conversations, and monitors their calls
// (docs/supervisors.md). It takes chats like any agent of those queues.

// errNotSupervisor refuses a supervisor's frame from an agent who is not
// one, or for a conversation of a queue it does not supervise.
var errNotSupervisor = errf(http.StatusForbidden, "not_supervisor", "this needs the supervisor role for the conversation's queue")

// boardDelay gathers the changes of a moment into one board frame.
const boardDelay = 200 * time.Millisecond

// boardWaitingShown caps the waiting conversations listed per queue on a
// board; the count covers them all.
const boardWaitingShown = 20

// supervision is the supervisors' live state. Lock order: hub.mu before
// supervision.mu; nothing takes hub.mu while holding supervision.mu.
type supervision struct {
	mu sync.Mutex
	// boards are the consoles subscribed to the board.
	boards map[*client]struct{}
	// pending: a board push is scheduled.
	pending bool
	// monitors are the monitored calls, by conversation (monitor.go).
	monitors map[*conv]*monitorSession
}

// supervises reports whether a is a supervisor of queue.
func supervises(a *agent, queue string) bool {
	return a != nil && a.cfg.Supervisor() && slices.Contains(a.cfg.Queues, queue)
}

// mayTransferLocked reports whether agent by may hand cv on: it holds
// cv, or supervises its queue while cv waits or is held; hub.mu held.
func (h *hub) mayTransferLocked(cv *conv, by string) bool {
	if cv.c.State == store.StateActive && cv.c.AgentID == by {
		return true
	}
	a := h.agents[by]
	return supervises(a, cv.c.Queue) && (cv.c.State == store.StateActive || cv.c.State == store.StateWaiting)
}

// boardChanged tells the subscribed boards that what they show may have
// changed: one push follows within boardDelay. It never blocks.
func (h *hub) boardChanged() {
	if h.onBoard != nil {
		h.onBoard()
	}
}

// boardChanged schedules a board push if a board is subscribed and, in
// a cluster, the publishing of this node's share of the boards.
func (s *Server) boardChanged() {
	s.node.shareChanged()
	s.boardsStale()
}

// boardsStale schedules a board push if a board is subscribed: what the
// boards show changed here or on another node. It never blocks.
func (s *Server) boardsStale() {
	sp := &s.super
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.boards) == 0 || sp.pending {
		return
	}
	sp.pending = true
	time.AfterFunc(boardDelay, s.pushBoards)
}

// supervisorFrame reports the frame types of supervisors' consoles.
func supervisorFrame(typ string) bool {
	switch typ {
	case "board.subscribe", "board.unsubscribe", "reassign",
		"monitor.start", "monitor.mode", "monitor.stop", "monitor.candidate":
		return true
	}
	return false
}

// dispatchSupervisor runs a supervisor's frame from an agent's console;
// an agent without the role is refused.
func (s *Server) dispatchSupervisor(ctx context.Context, cl *client, f *inFrame) error {
	h := s.hub
	h.mu.Lock()
	a := h.agents[cl.agentID]
	h.mu.Unlock()
	if a == nil || !a.cfg.Supervisor() {
		return errNotSupervisor
	}
	if s.node != nil && cl.forward == nil && f.ConversationID != "" && !s.hub.holds(f.ConversationID) {
		// Another node may hold the conversation: the reassignment or the
		// monitoring runs there, where its chat and its call are, as an
		// agent's commands for it do.
		if ok, err := s.node.forward(ctx, cl, f); ok {
			return err
		}
	}
	switch f.Type {
	case "board.subscribe":
		return s.subscribeBoard(ctx, cl)
	case "board.unsubscribe":
		s.super.mu.Lock()
		delete(s.super.boards, cl)
		s.super.mu.Unlock()
		return nil
	case "reassign":
		return s.reassign(ctx, cl, f)
	case "monitor.start":
		return s.startMonitor(ctx, cl, f.ConversationID, f.SDP)
	case "monitor.mode":
		return s.setMonitorMode(cl, f.ConversationID, f.State)
	case "monitor.candidate":
		return s.monitorCandidate(cl, f.ConversationID, f.Candidate)
	default:
		return s.stopMonitorOf(cl, f.ConversationID)
	}
}

// subscribeBoard adds the console to the boards and sends it the board
// now; changes follow as they happen.
func (s *Server) subscribeBoard(ctx context.Context, cl *client) error {
	b, err := s.board(ctx, cl.agentID)
	if err != nil {
		return err
	}
	s.super.mu.Lock()
	if s.super.boards == nil {
		s.super.boards = map[*client]struct{}{}
	}
	s.super.boards[cl] = struct{}{}
	s.super.mu.Unlock()
	cl.send(b)
	return nil
}

// pushBoards sends every subscribed board its state now. A console that
// is behind keeps one board frame queued at most (coalesced).
func (s *Server) pushBoards() {
	sp := &s.super
	sp.mu.Lock()
	sp.pending = false
	bySupervisor := map[string][]*client{}
	for cl := range sp.boards {
		select {
		case <-cl.quit:
			delete(sp.boards, cl)
			continue
		default:
		}
		bySupervisor[cl.agentID] = append(bySupervisor[cl.agentID], cl)
	}
	sp.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id, cls := range bySupervisor {
		b, err := s.board(ctx, id)
		if err != nil {
			s.log.Error("supervisor board not built", "agent", id, "err", err)
			continue
		}
		data, err := json.Marshal(b)
		if err != nil {
			s.log.Error("frame not encoded", "err", err)
			continue
		}
		for _, cl := range cls {
			cl.enqueue(outFrame{data: data, conv: "board", key: "board"})
		}
	}
}

type wireBoard struct {
	Type   string           `json:"type"`
	At     time.Time        `json:"at"`
	Queues []wireBoardQueue `json:"queues"`
	Agents []wireBoardAgent `json:"agents"`
	Today  wireToday        `json:"today"`
}

type wireBoardQueue struct {
	Name    string `json:"name"`
	Waiting int    `json:"waiting"`
	// OldestSince is when the longest-waiting conversation opened; the
	// console counts its wait from there.
	OldestSince  *time.Time       `json:"oldest_since,omitempty"`
	LongestWaitS int              `json:"longest_wait_s"`
	List         []wireBoardWaits `json:"list"`
}

type wireBoardWaits struct {
	ID       string    `json:"id"`
	Customer string    `json:"customer"`
	Since    time.Time `json:"since"`
	Offered  string    `json:"offered_to,omitempty"`
}

type wireBoardAgent struct {
	ID            string          `json:"id"`
	Name          string          `json:"name"`
	Role          string          `json:"role"`
	Presence      string          `json:"presence"`
	MaxChats      int             `json:"max_chats"`
	Conversations []wireBoardConv `json:"conversations"`
}

type wireBoardConv struct {
	ID       string `json:"id"`
	Customer string `json:"customer"`
	Queue    string `json:"queue"`
	// Call is the voice call's state ("" without a call).
	Call string `json:"call,omitempty"`
	// Video: the conversation has video (the customer's or the console's).
	Video bool `json:"video"`
	// Monitor is the supervisor monitoring the call and the mode.
	Monitor *wireMonitor `json:"monitor,omitempty"`
}

type wireMonitor struct {
	Supervisor string `json:"supervisor"`
	Mode       string `json:"mode"`
}

type wireToday struct {
	Since         time.Time      `json:"since"`
	Conversations int            `json:"conversations"`
	Answered      int            `json:"answered"`
	Abandoned     int            `json:"abandoned"`
	AvgWaitS      float64        `json:"avg_wait_s"`
	AvgCallS      float64        `json:"avg_call_s"`
	Calls         map[string]int `json:"calls"`
	Causes        map[string]int `json:"causes"`
}

// board builds the board of supervisor id: its queues, the agents who
// serve any of them, and today's counts (since local midnight) from the
// store. In a cluster it shows every node's conversations (boardshare.go).
func (s *Server) board(ctx context.Context, id string) (*wireBoard, error) {
	h := s.hub
	h.mu.Lock()
	sup := h.agents[id]
	if sup == nil {
		h.mu.Unlock()
		return nil, ErrUnauthorized
	}
	now := h.now()
	queues := slices.Clone(sup.cfg.Queues)
	agents := []wireBoardAgent{}
	for _, a := range h.agents {
		if !slices.ContainsFunc(a.cfg.Queues, func(q string) bool { return slices.Contains(queues, q) }) {
			continue
		}
		role := a.cfg.Role
		if role == "" {
			role = RoleAgent
		}
		agents = append(agents, wireBoardAgent{ID: a.cfg.ID, Name: a.cfg.Name, Role: role, Presence: h.presenceLocked(a),
			MaxChats: a.maxChats, Conversations: []wireBoardConv{}})
	}
	local := h.shareLocked()
	h.mu.Unlock()
	sort.Slice(agents, func(i, j int) bool { return agents[i].ID < agents[j].ID })
	s.monitorsOn(local)
	b := mergeBoard(now, queues, agents, append([]*boardShare{local}, s.node.boardShares()...))
	y, mo, d := now.Date()
	since := time.Date(y, mo, d, 0, 0, 0, 0, now.Location())
	st, err := s.store.DayStats(ctx, since, queues)
	if err != nil {
		return nil, err
	}
	b.Today = wireToday{Since: since.UTC(), Conversations: st.Conversations, Answered: st.Answered, Abandoned: st.Abandoned,
		AvgWaitS: st.AvgWait.Round(time.Second).Seconds(), AvgCallS: st.AvgCall.Round(time.Second).Seconds(),
		Calls: st.Calls, Causes: st.Causes}
	return b, nil
}

// reassign hands a conversation of a supervised queue to another agent
// (or back to a queue), through the agents' own transfer path with the
// supervisor as its initiator. The transcript says where it went, as for
// any transfer, and nothing of who moved it.
func (s *Server) reassign(ctx context.Context, cl *client, f *inFrame) error {
	if f.ConversationID == "" {
		return errf(http.StatusBadRequest, "bad_frame", "conversation_id is required")
	}
	h := s.hub
	h.mu.Lock()
	cv, ok := h.convs[f.ConversationID]
	if !ok {
		h.mu.Unlock()
		return ErrNotFound
	}
	if !supervises(h.agents[cl.agentID], cv.c.Queue) {
		h.mu.Unlock()
		return errNotSupervisor
	}
	h.mu.Unlock()
	if err := h.transfer(ctx, cl.agentID, cv, f.Agent, f.Queue); err != nil {
		return err
	}
	h.mu.Lock()
	vs := cv.video
	h.mu.Unlock()
	if vs != nil {
		s.leaveVideo(cv, vs)
	}
	s.log.Info("supervisor: conversation reassigned", "conv", cv.c.ID, "supervisor", cl.agentID, "to_agent", f.Agent, "to_queue", f.Queue)
	return nil
}
