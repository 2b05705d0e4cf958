package sip

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"
)

// trunkTable is the trunk list in force. It is immutable once stored:
// UpdateTrunks builds a new one and swaps it in, so the many readers
// (the read filter, Dial, in-dialog checks, status) take it without a
// lock and see one list or the other, never a mix.
type trunkTable struct {
	byName map[string]*trunk
	order  []*trunk
}

// trunkTable returns the trunk list in force.
func (s *Server) trunkTable() *trunkTable { return s.table.Load() }

// buildTrunkTable checks trunks and builds their table, reusing the
// trunks of cur whose configuration is unchanged (nil: none). Errors name
// the key (trunks[N]...).
func buildTrunkTable(trunks []TrunkConfig, cur *trunkTable) (*trunkTable, error) {
	var errs []error
	t := &trunkTable{byName: map[string]*trunk{}}
	for i, tc := range trunks {
		if err := tc.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("trunks[%d]: %w", i, err))
			continue
		}
		if _, dup := t.byName[tc.Name]; dup {
			errs = append(errs, fmt.Errorf("trunks[%d].name: duplicate %q", i, tc.Name))
			continue
		}
		tr := (*trunk)(nil)
		if cur != nil {
			if old, ok := cur.byName[tc.Name]; ok && reflect.DeepEqual(old.cfg, tc) {
				tr = old
			}
		}
		if tr == nil {
			var err error
			if tr, err = newTrunk(tc); err != nil {
				errs = append(errs, fmt.Errorf("trunks[%d]: %w", i, err))
				continue
			}
		}
		t.byName[tc.Name] = tr
		t.order = append(t.order, tr)
	}
	if err := CheckTrunkTLS(trunks); err != nil {
		errs = append(errs, err)
	}
	return t, errors.Join(errs...)
}

// TrunkChange says what UpdateTrunks changed, by trunk name.
type TrunkChange struct {
	Added, Changed, Removed []string
}

// UpdateTrunks puts a new trunk list in force while the server runs.
// Trunks whose settings are the same are kept as they are (registration,
// keepalives, calls). A changed trunk is replaced: its old registration
// is removed and the new settings register again, while the calls it
// carries go on with the settings they started with. A new trunk takes
// calls at once; a removed one takes no new call, and its calls go on to
// their end. An invalid list changes nothing. Safe for concurrent use
// with everything else; it may take a few seconds when a trunk that
// registers is changed or removed (the un-REGISTER).
func (s *Server) UpdateTrunks(ctx context.Context, trunks []TrunkConfig) (TrunkChange, error) {
	var ch TrunkChange
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	cur := s.trunkTable()
	next, err := buildTrunkTable(trunks, cur)
	if err != nil {
		return ch, err
	}
	var started, stopped []*trunk
	for _, tr := range next.order {
		old, ok := cur.byName[tr.cfg.Name]
		switch {
		case !ok:
			ch.Added = append(ch.Added, tr.cfg.Name)
		case old != tr:
			ch.Changed = append(ch.Changed, tr.cfg.Name)
			stopped = append(stopped, old)
		default:
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s.resolveTrunkHost(rctx, tr)
		cancel()
		started = append(started, tr)
	}
	for _, tr := range cur.order {
		if _, ok := next.byName[tr.cfg.Name]; !ok {
			ch.Removed = append(ch.Removed, tr.cfg.Name)
			stopped = append(stopped, tr)
		}
	}
	s.table.Store(next)
	// The old bindings go before the new ones are made: an un-REGISTER
	// sent after the new REGISTER could remove the same contact.
	var wg sync.WaitGroup
	for _, tr := range stopped {
		s.mu.Lock()
		stop := tr.stopLoops
		tr.stopLoops = nil
		s.mu.Unlock()
		if stop != nil {
			wg.Add(1)
			go func() { defer wg.Done(); stop() }()
		}
	}
	wg.Wait()
	s.mu.Lock()
	for _, tr := range started {
		s.startTrunkLoopsLocked(tr)
	}
	s.mu.Unlock()
	for _, l := range [][]string{ch.Added, ch.Changed, ch.Removed} {
		slices.Sort(l)
	}
	s.log.Info("trunks updated", "added", ch.Added, "changed", ch.Changed, "removed", ch.Removed)
	return ch, nil
}

// startTrunkLoopsLocked starts tr's register and OPTIONS loops when the
// server runs, and sets tr.stopLoops to end them and wait; s.mu held.
func (s *Server) startTrunkLoopsLocked(tr *trunk) {
	if s.ctx == nil || s.ctx.Err() != nil || (!tr.cfg.Register && tr.cfg.OptionsInterval <= 0) {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	if tr.cfg.Register {
		wg.Add(1)
		s.trunkLoops.Add(1)
		go func() { defer s.trunkLoops.Done(); defer wg.Done(); s.registerLoop(ctx, tr) }()
	}
	if tr.cfg.OptionsInterval > 0 {
		wg.Add(1)
		s.trunkLoops.Add(1)
		go func() { defer s.trunkLoops.Done(); defer wg.Done(); s.optionsLoop(ctx, tr) }()
	}
	tr.stopLoops = func() { cancel(); wg.Wait() }
}
