package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segue-rtc/segue/store"
)

// Lease timing: a node renews its life every heartbeatEvery; it steps
// down (gives up every conversation and trunk it holds) once it could not
// renew for leaseTTL - leaseMargin, before the others may take them; it
// looks for conversations orphaned by a dead node whenever a node's life
// ends, and every scanEvery anyway.
const (
	leaseMargin = time.Second
	scanEvery   = 10 * time.Second
	leaseOpWait = 2 * time.Second
)

// trunkHold is a trunk registration this node holds.
type trunkHold struct {
	rev    uint64
	cancel context.CancelFunc
}

func convKey(id string) string { return "conv." + id }

// trunkKey encodes the trunk's name, which may hold characters a key
// may not.
func trunkKey(name string) string { return "trunk." + hex.EncodeToString([]byte(name)) }

// newIncarnation names one start of node id.
func newIncarnation(id string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return id + "." + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// live makes this incarnation alive in the lease store, trying until it
// works or ctx ends; the node claims nothing before.
func (n *node) live(ctx context.Context) error {
	for {
		hctx, cancel := context.WithTimeout(ctx, leaseOpWait)
		err := n.leases.Heartbeat(hctx, n.inc)
		cancel()
		if err == nil {
			n.mu.Lock()
			n.lastLife = time.Now()
			n.mu.Unlock()
			n.readyOnce.Do(func() { close(n.ready) })
			return nil
		}
		n.log.Warn("cluster lease store not reachable", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway: cluster leases: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// leaseLoop renews this node's life, steps down when it cannot, keeps
// its trunk holds honest and picks up orphaned conversations, until ctx
// ends.
func (n *node) leaseLoop(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	var known map[string]bool
	lastScan := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hctx, cancel := context.WithTimeout(ctx, leaseOpWait)
		err := n.leases.Heartbeat(hctx, n.inc)
		cancel()
		now := time.Now()
		n.mu.Lock()
		if err == nil {
			n.lastLife = now
		}
		silent := now.Sub(n.lastLife)
		n.mu.Unlock()
		if err != nil {
			n.log.Warn("cluster lease not renewed", "err", err, "silent_for", silent.Round(time.Millisecond))
			if silent > leaseTTL-leaseMargin {
				n.stepDown()
			}
			continue
		}
		n.checkTrunks(ctx)
		actx, cancel := context.WithTimeout(ctx, leaseOpWait)
		alive, err := n.leases.Alive(actx)
		cancel()
		if err != nil {
			continue
		}
		died := false
		for inc := range known {
			if !alive[inc] {
				died = true
				n.log.Warn("cluster node's leases expired", "peer", inc)
			}
		}
		known = alive
		if died || now.Sub(lastScan) >= scanEvery {
			lastScan = now
			n.pickUpOrphans(ctx, alive)
			n.releaseDeadClaims(ctx)
		}
	}
}

// stepDown gives up everything this node holds: it could not renew its
// life, so the others may take its conversations and trunks from now on.
func (n *node) stepDown() {
	n.mu.Lock()
	ids := make([]string, 0, len(n.owned))
	for id := range n.owned {
		ids = append(ids, id)
	}
	holds := n.trunks
	n.trunks = map[string]*trunkHold{}
	n.mu.Unlock()
	if len(ids) == 0 && len(holds) == 0 {
		return
	}
	n.log.Error("cluster lease lost: giving up conversations and trunks", "conversations", len(ids), "trunks", len(holds))
	for _, h := range holds {
		h.cancel()
	}
	for _, id := range ids {
		_ = n.s.releaseConv(id)
	}
}

// waitReady waits until this node is alive in the lease store.
func (n *node) waitReady(ctx context.Context) error {
	select {
	case <-n.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// claimNew takes the lease of a conversation being created here.
func (n *node) claimNew(ctx context.Context, id string) error {
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
	defer cancel()
	rev, err := n.leases.Claim(lctx, convKey(id), n.inc, 0)
	if err != nil {
		return fmt.Errorf("gateway: conversation lease: %w", err)
	}
	n.mu.Lock()
	n.revs[id] = rev
	n.mu.Unlock()
	return nil
}

// takeOver takes the lease of conversation id for this node, where its
// customer has come back: a live holder is asked to let it go first (it
// frees the lease), a dead holder's lease is taken as it is. Of two
// nodes taking one conversation at once, one gets it; the other asks the
// winner to let it go, since its customer is on this node. fromDead says
// the lease was taken from a dead holder, whose calls of the conversation
// nobody ended.
func (n *node) takeOver(ctx context.Context, id string) (fromDead bool, err error) {
	if err := n.waitReady(ctx); err != nil {
		return false, err
	}
	key := convKey(id)
	for range 4 {
		lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
		holder, rev, err := n.leases.Holder(lctx, key)
		cancel()
		if err != nil {
			return false, fmt.Errorf("gateway: take over %s: %w", id, err)
		}
		if holder == n.inc {
			n.mu.Lock()
			n.revs[id] = rev
			n.mu.Unlock()
			return false, nil
		}
		if holder != "" {
			lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
			alive, err := n.leases.Alive(lctx)
			cancel()
			if err != nil {
				return false, fmt.Errorf("gateway: take over %s: %w", id, err)
			}
			if alive[holder] {
				err := n.askRelease(ctx, id)
				if errors.Is(err, errNoResponder) {
					// Its node is gone from NATS (killed, or cut off):
					// its lease is taken once its life expires, not
					// before, since a node cut off still holds it until
					// then.
					if err = n.waitDead(ctx, holder); err != nil {
						return false, fmt.Errorf("gateway: take over %s: %w", id, err)
					}
				} else if err != nil {
					return false, err
				}
				continue // the holder freed the lease or died: read it again
			}
		}
		lctx, cancel = context.WithTimeout(ctx, leaseOpWait)
		rev, err = n.leases.Claim(lctx, key, n.inc, rev)
		cancel()
		if errors.Is(err, errLeaseTaken) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("gateway: take over %s: %w", id, err)
		}
		if holder != "" {
			n.log.Info("conversation lease taken from a dead node", "conv", id, "peer", holder)
		}
		n.mu.Lock()
		n.revs[id] = rev
		n.mu.Unlock()
		return holder != "", nil
	}
	return false, fmt.Errorf("gateway: take over %s: %w", id, errLeaseTaken)
}

// waitDead waits until incarnation inc is no longer alive (at most
// leaseTTL after its last heartbeat).
func (n *node) waitDead(ctx context.Context, inc string) error {
	ctx, cancel := context.WithTimeout(ctx, leaseTTL+leaseOpWait)
	defer cancel()
	for {
		alive, err := n.leases.Alive(ctx)
		if err != nil {
			return err
		}
		if !alive[inc] {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// free gives up the lease of conversation id at rev; the lease store's
// answer only matters to the log.
func (n *node) free(id string, rev uint64) {
	if rev == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseOpWait)
	defer cancel()
	if err := n.leases.Free(ctx, convKey(id), rev); err != nil {
		n.log.Debug("conversation lease not freed", "conv", id, "err", err)
	}
}

// pickUpOrphans takes the conversations whose holder is not alive and
// makes them live here: a waiting one is offered to the agents at once,
// without waiting for its customer to come back.
func (n *node) pickUpOrphans(ctx context.Context, alive map[string]bool) {
	lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
	entries, err := n.leases.List(lctx, "conv.")
	cancel()
	if err != nil {
		n.log.Warn("cluster leases not listed", "err", err)
		return
	}
	for _, e := range entries {
		if alive[e.Holder] || e.Holder == n.inc {
			continue
		}
		id := strings.TrimPrefix(e.Key, "conv.")
		lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
		rev, err := n.leases.Claim(lctx, e.Key, n.inc, e.Rev)
		cancel()
		if err != nil {
			continue // another survivor took it, or it was given up
		}
		n.log.Info("orphaned conversation picked up", "conv", id, "peer", e.Holder)
		n.mu.Lock()
		n.revs[id] = rev
		n.mu.Unlock()
		if !n.s.restoreOrphan(ctx, id) {
			n.mu.Lock()
			delete(n.revs, id)
			n.mu.Unlock()
			n.free(id, rev)
		}
	}
}

// releaseDeadClaims ends the webhook claims of nodes no longer alive, so
// that the events they took for delivery go out now rather than when the
// claims lapse (minutes). The claimants are read before the living: a node
// is alive before it claims anything, so a claimant missing from the later
// list is dead.
func (n *node) releaseDeadClaims(ctx context.Context) {
	st := n.s.store
	cctx, cancel := context.WithTimeout(ctx, leaseOpWait)
	claimants, err := st.WebhookClaimants(cctx)
	cancel()
	if err != nil {
		n.log.Warn("webhook claimants not read", "err", err)
		return
	}
	if len(claimants) == 0 {
		return
	}
	actx, cancel := context.WithTimeout(ctx, leaseOpWait)
	alive, err := n.leases.Alive(actx)
	cancel()
	if err != nil {
		return
	}
	released := 0
	for _, c := range claimants {
		if c == n.inc || alive[c] {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, leaseOpWait)
		k, err := st.ReleaseWebhookClaims(rctx, c)
		cancel()
		if err != nil {
			n.log.Warn("webhook claims of a dead node not released", "peer", c, "err", err)
			continue
		}
		if k > 0 {
			n.log.Info("webhook claims of a dead node released", "peer", c, "events", k)
			released += k
		}
	}
	if released > 0 {
		n.s.webhooks.wakeAll()
	}
}

// restoreOrphan makes stored conversation id, whose lease this node just
// took from a dead node, live here, and reports whether it is open. The
// calls the dead node left up in it are ended (endLeftUp).
func (s *Server) restoreOrphan(ctx context.Context, id string) bool {
	c, err := s.store.Conversation(ctx, id)
	if err != nil || (c.State != store.StateWaiting && c.State != store.StateActive) {
		return false
	}
	h := s.hub
	h.mu.Lock()
	_, live := h.convs[id]
	if !live {
		h.restoreLocked(c)
		h.updateGaugesLocked()
		h.routeLocked()
	}
	h.mu.Unlock()
	if !live {
		s.node.endLeftUp(id)
	}
	return true
}

// endLeftUp ends, in the background, the calls of conversation id, just
// taken from a dead node and live here, that the dead node left up
// (Server.endCallsLeftUp): their records are closed and the desk phones
// get their BYE. It runs under the node's life; run waits for it.
func (n *node) endLeftUp(id string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || n.life == nil || n.life.Err() != nil {
		return
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.s.endCallsLeftUp(n.life, id)
	}()
}

// holdTrunk blocks until this node holds the registration of trunk name
// or ctx ends. The context it returns ends when the hold is lost: the
// node stepped down, or the lease store names another holder.
func (n *node) holdTrunk(ctx context.Context, name string) (context.Context, error) {
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	key := trunkKey(name)
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		if rev, ok := n.tryTrunk(ctx, key); ok {
			hctx, cancel := context.WithCancel(ctx)
			h := &trunkHold{rev: rev, cancel: cancel}
			n.mu.Lock()
			n.trunks[key] = h
			n.mu.Unlock()
			n.log.Info("trunk registration held here", "trunk", name)
			context.AfterFunc(hctx, func() {
				n.mu.Lock()
				mine := n.trunks[key] == h
				delete(n.trunks, key)
				n.mu.Unlock()
				if mine {
					fctx, cancel := context.WithTimeout(context.Background(), leaseOpWait)
					defer cancel()
					_ = n.leases.Free(fctx, key, rev)
				}
			})
			return hctx, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// tryTrunk claims key if no live node holds it.
func (n *node) tryTrunk(ctx context.Context, key string) (uint64, bool) {
	lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
	defer cancel()
	holder, rev, err := n.leases.Holder(lctx, key)
	if err != nil {
		return 0, false
	}
	if holder != "" && holder != n.inc {
		alive, err := n.leases.Alive(lctx)
		if err != nil || alive[holder] {
			return 0, false
		}
	}
	rev, err = n.leases.Claim(lctx, key, n.inc, rev)
	return rev, err == nil
}

// checkTrunks ends the holds whose key names another holder now.
func (n *node) checkTrunks(ctx context.Context) {
	n.mu.Lock()
	holds := make(map[string]*trunkHold, len(n.trunks))
	for k, h := range n.trunks {
		holds[k] = h
	}
	n.mu.Unlock()
	for key, h := range holds {
		lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
		holder, _, err := n.leases.Holder(lctx, key)
		cancel()
		if err == nil && holder != n.inc {
			n.log.Warn("trunk registration held by another node now", "key", key, "holder", holder)
			n.mu.Lock()
			if n.trunks[key] == h {
				delete(n.trunks, key)
			}
			n.mu.Unlock()
			h.cancel()
		}
	}
}

// holderAddrs returns the advertised SIP and HTTP addresses of the other
// live node that holds conversation id; ok is false when none does or
// this node has not heard from it.
func (n *node) holderAddrs(ctx context.Context, id string) (sipURI, httpURL string, ok bool) {
	lctx, cancel := context.WithTimeout(ctx, leaseOpWait)
	defer cancel()
	holder, _, err := n.leases.Holder(lctx, convKey(id))
	i := strings.LastIndexByte(holder, '.')
	if err != nil || holder == "" || holder == n.inc || i <= 0 {
		return "", "", false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.remotes[holder[:i]]
	if r == nil {
		return "", "", false
	}
	return r.sip, r.http, true
}

// redirectFor returns where to redirect a PBX's INVITE for user, the
// conversation id's number, when another live node holds the
// conversation: the holder's cluster.advertise.sip with user as its user
// part. ok is false when no other node holds it or the holder advertises
// no SIP address.
func (n *node) redirectFor(ctx context.Context, id, user string) (uri string, ok bool) {
	adv, _, ok := n.holderAddrs(ctx, id)
	if !ok {
		return "", false
	}
	scheme, rest, found := strings.Cut(adv, ":")
	if !found || (scheme != "sip" && scheme != "sips") {
		return "", false
	}
	if _, host, at := strings.Cut(rest, "@"); at {
		rest = host
	}
	return scheme + ":" + user + "@" + rest, true
}
