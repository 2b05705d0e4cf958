package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func trunkCfgs(list ...TrunkConfig) []TrunkConfig {
	for i := range list {
		list[i].ApplyDefaults()
	}
	return list
}

// UpdateTrunks swaps the trunk table while readers (the read filter,
// Dial's lookup, status) run: under -race this proves the swap safe. An
// unchanged trunk keeps its state, a changed one is replaced, a removed
// one takes no new call, a new one is known at once, and an invalid list
// changes nothing.
func TestUpdateTrunksWhileRead(t *testing.T) {
	a := TrunkConfig{Name: "a", URI: "sip:192.0.2.1:5060", AllowInboundFrom: []string{"198.51.100.0/24"}}
	b := TrunkConfig{Name: "b", URI: "sip:192.0.2.2:5060"}
	s := filterServer(t, Config{}, a, b)
	keptA := s.trunkTable().byName["a"]
	keptA.update(func(st *TrunkState) { st.Reachable = true })

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = s.staticAllowed(netip.MustParseAddr("198.51.100.7"))
				_ = s.TrunkStatus()
				_, _ = s.Dial(context.Background(), "nowhere", "600", DialOptions{})
			}
		}()
	}
	bChanged := TrunkConfig{Name: "b", URI: "sip:192.0.2.22:5060"}
	c := TrunkConfig{Name: "c", URI: "sip:192.0.2.3:5060", AllowInboundFrom: []string{"203.0.113.0/24"}}
	for i := range 50 {
		next := trunkCfgs(a, bChanged, c)
		if i%2 == 1 {
			next = trunkCfgs(a, b)
		}
		if _, err := s.UpdateTrunks(context.Background(), next); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()

	ch, err := s.UpdateTrunks(context.Background(), trunkCfgs(a, bChanged, c))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ch.Added, ch.Changed, ch.Removed) != "[c] [b] []" {
		t.Errorf("change: %+v", ch)
	}
	tab := s.trunkTable()
	if tab.byName["a"] != keptA || !tab.byName["a"].snapshot().Reachable {
		t.Error("the unchanged trunk was replaced")
	}
	if tab.byName["b"].host != "192.0.2.22" {
		t.Errorf("trunk b: host %s", tab.byName["b"].host)
	}
	if !s.staticAllowed(netip.MustParseAddr("203.0.113.5")) || !s.staticAllowed(netip.MustParseAddr("192.0.2.22")) {
		t.Error("the new trunk's sources are not allowed")
	}

	ch, err = s.UpdateTrunks(context.Background(), trunkCfgs(bChanged))
	if err != nil || fmt.Sprint(ch.Removed) != "[a c]" {
		t.Fatalf("remove: %+v %v", ch, err)
	}
	if _, err := s.Dial(context.Background(), "a", "600", DialOptions{}); !errors.Is(err, ErrUnknownTrunk) {
		t.Errorf("a call on a removed trunk: %v", err)
	}
	if s.staticAllowed(netip.MustParseAddr("198.51.100.7")) {
		t.Error("a removed trunk's allow_inbound_from still passes")
	}

	before := s.trunkTable()
	_, err = s.UpdateTrunks(context.Background(), trunkCfgs(bChanged, TrunkConfig{Name: "b", URI: "sip:192.0.2.9"}, TrunkConfig{Name: "x", URI: "http://x"}))
	if err == nil || !containsAll(err.Error(), `trunks[1].name: duplicate "b"`, "trunks[2]") {
		t.Errorf("invalid list: %v", err)
	}
	if s.trunkTable() != before {
		t.Error("an invalid list changed the table")
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
