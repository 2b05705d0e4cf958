package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"time"

	"github.com/coder/websocket"

	"github.com/segue-rtc/segue/sip"
)

// ReloadResult says what a reload changed, and which changed sections
// wait for a restart.
type ReloadResult struct {
	AgentsAdded   []string `json:"agents_added"`
	AgentsChanged []string `json:"agents_changed"`
	// AgentsRemoved are signed out once their current conversations end.
	AgentsRemoved []string `json:"agents_removed"`
	QueuesAdded   []string `json:"queues_added"`
	QueuesChanged []string `json:"queues_changed"`
	QueuesRemoved []string `json:"queues_removed"`
	// Restart lists the changed sections that a reload does not apply.
	Restart []string `json:"restart,omitempty"`
	// APIKeysAdded, APIKeysChanged and APIKeysRemoved are the names of
	// integrations.api_keys entries: a removed key is refused from the
	// next request on.
	APIKeysAdded   []string `json:"api_keys_added,omitempty"`
	APIKeysChanged []string `json:"api_keys_changed,omitempty"`
	APIKeysRemoved []string `json:"api_keys_removed,omitempty"`
	// WebhooksAdded, WebhooksChanged and WebhooksRemoved are the names of
	// integrations.webhooks entries.
	WebhooksAdded   []string `json:"webhooks_added,omitempty"`
	WebhooksChanged []string `json:"webhooks_changed,omitempty"`
	WebhooksRemoved []string `json:"webhooks_removed,omitempty"`
	// TrunksAdded, TrunksChanged and TrunksRemoved are the names of
	// trunks entries: a changed trunk registers again with its new
	// settings while its calls go on, a removed one takes no new call.
	TrunksAdded   []string `json:"trunks_added,omitempty"`
	TrunksChanged []string `json:"trunks_changed,omitempty"`
	TrunksRemoved []string `json:"trunks_removed,omitempty"`
}

// Reload applies next, a configuration LoadConfig accepted, to the
// running gateway without touching chats or calls: agents (new ones may
// sign in, changed ones take their new name, phone, queues and limits,
// removed ones get no new conversations and are signed out once their
// current ones end), queues (waiting conversations of a removed queue move
// to the first queue), recording settings, integrations (API keys
// from the next request on, webhooks: see webhooks.update) and, with a
// SIP server, trunks (sip.Server.UpdateTrunks). Calls keep the settings
// they started with. Other sections that changed are listed in
// Restart and left as they run. An invalid next is refused and nothing
// changes.
func (s *Server) Reload(ctx context.Context, next *Config) (ReloadResult, error) {
	var res ReloadResult
	if next == nil {
		return res, errors.New("gateway: reload: no configuration")
	}
	if err := next.Validate(); err != nil {
		return res, fmt.Errorf("gateway: reload: invalid config: %w", err)
	}
	// Trunks first, outside the hub's lock (an un-REGISTER takes a
	// moment): a list the SIP server refuses changes nothing at all.
	var trunks sip.TrunkChange
	if s.updateTrunks != nil {
		s.hub.mu.Lock()
		same := reflect.DeepEqual(s.cfg.Trunks, next.Trunks)
		s.hub.mu.Unlock()
		if !same {
			var err error
			if trunks, err = s.updateTrunks(ctx, next.Trunks); err != nil {
				return res, fmt.Errorf("gateway: reload: invalid config: %w", err)
			}
		}
	}
	res.TrunksAdded, res.TrunksChanged, res.TrunksRemoved = trunks.Added, trunks.Changed, trunks.Removed
	h := s.hub
	h.mu.Lock()
	cur := s.cfg
	if s.updateTrunks != nil {
		cur.Trunks = next.Trunks
	}
	for _, sec := range []struct {
		name string
		a, b any
	}{
		{"http", cur.HTTP, next.HTTP}, {"store", cur.Store, next.Store}, {"webrtc", cur.WebRTC, next.WebRTC},
		{"sip", cur.SIP, next.SIP}, {"trunks", cur.Trunks, next.Trunks}, {"limits", cur.Limits, next.Limits},
		{"identity", cur.Identity, next.Identity}, {"log", cur.Log, next.Log}, {"demo_phone", cur.DemoPhone, next.DemoPhone},
	} {
		if !reflect.DeepEqual(sec.a, sec.b) {
			res.Restart = append(res.Restart, sec.name)
		}
	}
	// Queues.
	newQueues := map[string]QueueConfig{}
	for _, q := range next.Queues {
		newQueues[q.Name] = q
		if old, ok := h.queues[q.Name]; !ok {
			res.QueuesAdded = append(res.QueuesAdded, q.Name)
		} else if !reflect.DeepEqual(old, q) {
			res.QueuesChanged = append(res.QueuesChanged, q.Name)
		}
	}
	var moved []*conv
	for name := range h.queues {
		if _, ok := newQueues[name]; !ok {
			res.QueuesRemoved = append(res.QueuesRemoved, name)
			moved = append(moved, h.waiting[name]...)
		}
	}
	for _, cv := range moved {
		h.dequeueLocked(cv)
	}
	h.queues = newQueues
	cur.Queues = next.Queues
	first := next.Queues[0].Name
	for _, cv := range moved {
		cv.c.Queue = first
		h.enqueueLocked(cv)
	}
	cur.Recording = next.Recording
	// Integrations: keys and webhooks take effect at once.
	res.APIKeysAdded, res.APIKeysChanged, res.APIKeysRemoved = diffAPIKeys(cur.Integrations.APIKeys, next.Integrations.APIKeys)
	s.integ.setKeys(next.Integrations.APIKeys)
	hooks := s.webhooks.update(next.Integrations)
	res.WebhooksAdded, res.WebhooksChanged, res.WebhooksRemoved = hooks.Added, hooks.Changed, hooks.Removed
	cur.Integrations = next.Integrations
	// Agents.
	var retire []*agent
	seen := map[string]bool{}
	for _, ac := range next.Agents {
		seen[ac.ID] = true
		a, ok := h.agents[ac.ID]
		if !ok {
			h.agents[ac.ID] = &agent{cfg: ac, maxChats: next.MaxChats(ac), presence: presenceAvailable, idleSince: h.now(),
				clients: map[*client]struct{}{}, convs: map[string]*conv{}, offered: map[string]*conv{}}
			res.AgentsAdded = append(res.AgentsAdded, ac.ID)
			continue
		}
		if a.removed || !reflect.DeepEqual(a.cfg, ac) || a.maxChats != next.MaxChats(ac) {
			res.AgentsChanged = append(res.AgentsChanged, ac.ID)
		}
		a.cfg, a.maxChats, a.removed = ac, next.MaxChats(ac), false
	}
	for id, a := range h.agents {
		if seen[id] || a.removed {
			continue
		}
		a.removed = true
		res.AgentsRemoved = append(res.AgentsRemoved, id)
		for _, cv := range a.offered {
			h.clearOfferLocked(cv)
		}
		if len(a.convs) == 0 {
			retire = append(retire, a)
		}
	}
	cur.Agents = next.Agents
	for _, a := range retire {
		h.retireLocked(a)
	}
	h.updateGaugesLocked()
	h.broadcastAgentsLocked()
	h.routeLocked()
	h.mu.Unlock()
	for _, l := range [][]string{res.AgentsAdded, res.AgentsChanged, res.AgentsRemoved, res.QueuesAdded, res.QueuesChanged,
		res.QueuesRemoved, res.Restart, res.APIKeysAdded, res.APIKeysChanged, res.APIKeysRemoved, res.WebhooksAdded,
		res.WebhooksChanged, res.WebhooksRemoved, res.TrunksAdded, res.TrunksChanged, res.TrunksRemoved} {
		slices.Sort(l)
	}
	s.log.Info("config reloaded", "agents_added", res.AgentsAdded, "agents_changed", res.AgentsChanged,
		"agents_removed", res.AgentsRemoved, "queues_added", res.QueuesAdded, "queues_changed", res.QueuesChanged,
		"queues_removed", res.QueuesRemoved, "waiting_moved", len(moved), "api_keys_added", res.APIKeysAdded,
		"api_keys_changed", res.APIKeysChanged, "api_keys_removed", res.APIKeysRemoved, "webhooks_added", res.WebhooksAdded,
		"webhooks_changed", res.WebhooksChanged, "webhooks_removed", res.WebhooksRemoved, "trunks_added", res.TrunksAdded,
		"trunks_changed", res.TrunksChanged, "trunks_removed", res.TrunksRemoved)
	if len(res.Restart) > 0 {
		s.log.Warn("config reload: these sections changed and apply at the next restart", "sections", res.Restart)
	}
	return res, nil
}

// retireLocked signs out a removed agent who holds no conversation any
// more: its consoles are closed with a reason and its sessions deleted;
// hub.mu held.
func (h *hub) retireLocked(a *agent) {
	delete(h.agents, a.cfg.ID)
	for cl := range a.clients {
		cl.closeWith(websocket.StatusPolicyViolation, "your agent account was removed from the configuration")
	}
	h.log.Info("agent removed by a reload: signed out", "agent", a.cfg.ID)
	id := a.cfg.ID
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := h.store.DeleteAgentSessions(ctx, id); err != nil {
			h.log.Error("sessions of a removed agent not deleted", "agent", id, "err", err)
		}
	}()
}

// queueFor resolves the queue a new conversation asks for ("" is the
// first queue) against the running configuration.
func (h *hub) queueFor(name string) (string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if name == "" {
		return h.cfg.Queues[0].Name, true
	}
	_, ok := h.queues[name]
	return name, ok
}

// agentConfig is the running configuration of agent id, if it may sign in.
func (h *hub) agentConfig(id string) (AgentConfig, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a, ok := h.agents[id]
	if !ok || a.removed {
		return AgentConfig{}, false
	}
	return a.cfg, true
}

// postReload serves POST /admin/reload on the admin listener: it reads
// the configuration file again (WithConfigFile) and applies it. An
// invalid file is refused with 422 and its problems, one a line, the
// same as segue config validate prints them.
func (s *Server) postReload(w http.ResponseWriter, r *http.Request) {
	res, err := s.ReloadFile(r.Context())
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnprocessableEntity)
		fmt.Fprintln(w, err)
		return
	}
	_ = writeJSON(w, http.StatusOK, res)
}

// WithConfigFile names the file Reload reads again on SIGHUP and POST
// /admin/reload.
func WithConfigFile(path string) Option {
	return func(s *Server) { s.configFile = path }
}

// ReloadFile reads the configuration file again and applies it; an
// invalid file is refused, logged, and the running configuration stays.
func (s *Server) ReloadFile(ctx context.Context) (ReloadResult, error) {
	if s.configFile == "" {
		return ReloadResult{}, errors.New("gateway: reload: the gateway was started without a configuration file")
	}
	next, err := LoadConfig(s.configFile)
	if err == nil {
		var res ReloadResult
		if res, err = s.Reload(ctx, next); err == nil {
			return res, nil
		}
	}
	s.log.Error("config reload refused: the running configuration stays", "file", s.configFile, "err", err)
	return ReloadResult{}, fmt.Errorf("%s: invalid configuration, not reloaded:\n%w", s.configFile, err)
}

// diffAPIKeys names the keys of next that cur lacks, those whose hash,
// scopes or expiry changed, and those of cur that next lacks.
func diffAPIKeys(cur, next []APIKeyConfig) (added, changed, removed []string) {
	old := map[string]APIKeyConfig{}
	for _, k := range cur {
		old[k.Name] = k
	}
	for _, k := range next {
		o, ok := old[k.Name]
		switch {
		case !ok:
			added = append(added, k.Name)
		case !reflect.DeepEqual(o, k):
			changed = append(changed, k.Name)
		}
		delete(old, k.Name)
	}
	for name := range old {
		removed = append(removed, name)
	}
	return added, changed, removed
}
