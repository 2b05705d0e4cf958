//go:build e2e && cluster

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// stallingReceiver is a webhook receiver that answers 503 at once, then
// holds every request until it is told to answer, then answers 200.
type stallingReceiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	mode    string // "fail", "stall" or "ok"
	tries   int
	held    int
	release chan struct{}
	got     map[string]int // conversation id → conversation.created delivered
}

func newStallingReceiver(t *testing.T) *stallingReceiver {
	r := &stallingReceiver{mode: "fail", release: make(chan struct{}), got: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.tries++
		mode := r.mode
		if mode == "stall" {
			r.held++
		}
		r.mu.Unlock()
		switch mode {
		case "fail":
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case "stall":
			select {
			case <-r.release:
				r.mu.Lock()
				r.held--
				r.mu.Unlock()
			case <-req.Context().Done(): // its gateway died
				r.mu.Lock()
				r.held--
				r.mu.Unlock()
				return
			}
		}
		var ev hookEvent
		if err := json.Unmarshal(body, &ev); err != nil || ev.Type != "conversation.created" {
			t.Errorf("event %s: %v", body, err)
		}
		r.mu.Lock()
		r.got[ev.Conversation.ID]++
		r.mu.Unlock()
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *stallingReceiver) set(mode string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mode = mode
	if mode == "ok" {
		close(r.release)
	}
}

// TestClusterDeadNodesWebhookClaimsReleased: two nodes share the webhook
// outbox, and each has a batch of events claimed and in flight to a
// receiver that holds the requests when node 1 is killed (kill -9). Node
// 2 releases node 1's claims once its life has expired, and every event
// reaches the receiver within seconds, not when the claims lapse (five
// minutes).
func TestClusterDeadNodesWebhookClaimsReleased(t *testing.T) {
	rc := newStallingReceiver(t)
	c := startCluster(t, 2, withIntegrationsYAML(apiKeysYAML()+fmt.Sprintf(`  webhooks:
    - {name: crm, url: %q, events: [conversation.created], secret: %q}
  webhook_timeout: 2m
  webhook_retry_min: 50ms
  webhook_retry_max: 200ms
  webhook_max_attempts: 1000
`, rc.srv.URL, e2eHookKey)))
	n1, n2 := c.nodes[0], c.nodes[1]
	// Forty events, due on both nodes: each node's deliverer claims a
	// batch of those due, and holds up to 8 of them in flight.
	var ids []string
	for i := range 40 {
		_, conv := c.nodes[i%2].newConversation(t, fmt.Sprintf("Customer %d", i))
		ids = append(ids, conv.ID)
	}
	waitFor(t, "a failed attempt at every event", func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.tries < 2*len(ids) {
			return fmt.Errorf("%d attempts", rc.tries)
		}
		return nil
	})
	rc.set("stall")
	var claims map[string]int
	waitFor(t, "deliveries of both nodes held", func() error {
		claims = claimsByNode(t)
		rc.mu.Lock()
		held := rc.held
		rc.mu.Unlock()
		if claims["n1"] == 0 || claims["n2"] == 0 || held < 2 {
			return fmt.Errorf("claimed events by node %v, %d requests held", claims, held)
		}
		return nil
	})
	t.Logf("claimed events by node before the kill: %v", claims)

	n1.Kill()
	killed := time.Now()
	rc.set("ok")
	waitFor(t, "every event delivered", func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		var missing []string
		for _, id := range ids {
			if rc.got[id] == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d events not delivered", len(missing), len(ids))
		}
		return nil
	})
	t.Logf("every event delivered %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	if claims := claimsByNode(t); len(claims) != 0 {
		t.Fatalf("claims left: %v", claims)
	}
	if m := metricsOf(t, n2); m["segue_webhook_outbox_pending"] != 0 {
		waitFor(t, "the survivor's outbox gauge", func() error {
			if p := metricsOf(t, n2)["segue_webhook_outbox_pending"]; p != 0 {
				return fmt.Errorf("%v pending", p)
			}
			return nil
		})
	}
}

// claimsByNode counts the outbox events claimed, by node id (the
// claimant's incarnation without its suffix), from the cluster's
// database.
func claimsByNode(t *testing.T) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := pgx.Connect(ctx, os.Getenv("SEGUE_TEST_PG_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	rows, err := db.Query(ctx, `SELECT claimed_by FROM webhook_outbox WHERE claimed_until > now()`)
	if err != nil {
		t.Fatal(err)
	}
	by, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, c := range by {
		node, _, _ := strings.Cut(c, ".")
		out[node]++
	}
	return out
}
