//go:build e2e

package test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// segueCmd runs the segue binary with args and returns its combined
// output and exit code.
func segueCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, segueBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("segue %v: %v\n%s", args, err, out)
	}
	return string(out), 0
}

// deadRow is a row of "segue webhooks dead".
type deadRow struct {
	seq, webhook, conv, typ, attempts, lastError string
}

// deadRows parses the table "segue webhooks dead" prints.
func deadRows(t *testing.T, out string) []deadRow {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "SEQ ") {
		t.Fatalf("not a table of dead events:\n%s", out)
	}
	var rows []deadRow
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 7 {
			t.Fatalf("row %q of:\n%s", l, out)
		}
		rows = append(rows, deadRow{seq: f[0], webhook: f[1], conv: f[2], typ: f[3], attempts: f[5], lastError: strings.Join(f[6:], " ")})
	}
	return rows
}

// An admin drives dead letters with the CLI against a real gateway: two
// webhooks whose receivers fail until their events are dead;
// "segue webhooks dead" lists them (one webhook's, or all), the crm
// receiver recovers, "segue webhooks replay" sends one event by seq,
// then the rest of crm's, and crm's receiver gets each once, in order
// within what was replayed together; the other webhook's stay dead.
func TestWebhooksDeadAndReplayFromTheCLI(t *testing.T) {
	crm, audit := newHookReceiver(t), newHookReceiver(t)
	g := startGateway(t, withIntegrationsYAML(apiKeysYAML()+fmt.Sprintf(`  webhooks:
    - {name: crm, url: %q, events: [conversation.created, message.created], secret: %q}
    - {name: audit, url: %q, events: [conversation.created, message.created], secret: %q}
  webhook_retry_min: 50ms
  webhook_retry_max: 100ms
  webhook_max_attempts: 2
`, crm.srv.URL, e2eHookKey, audit.srv.URL, e2eHookKey)))
	_, conv := g.newConversation(t, "Ann")
	for _, text := range []string{"one", "two", "three"} {
		r := integrationCall(t, g, "POST", "/api/v1/integrations/conversations/"+conv.ID+"/messages", e2eKeyCRM,
			fmt.Sprintf(`{"text":%q,"sender":{"role":"bot","name":"Bot"}}`, text))
		if r.status != http.StatusCreated {
			t.Fatalf("post: %d %s", r.status, r.body)
		}
	}
	waitFor(t, "8 dead events", func() error {
		if d := metricsOf(t, g)["segue_webhook_dead_letters"]; d != 8 {
			return fmt.Errorf("%v dead", d)
		}
		return nil
	})

	out, code := segueCmd(t, "webhooks", "dead", "--webhook", "crm", "--config", g.config)
	if code != 0 {
		t.Fatalf("webhooks dead: exit %d\n%s", code, out)
	}
	rows := deadRows(t, out)
	var types []string
	for _, r := range rows {
		types = append(types, r.typ)
		if r.webhook != "crm" || r.conv != conv.ID || r.attempts != "2" || !strings.Contains(r.lastError, "status 503") {
			t.Errorf("dead row %+v", r)
		}
	}
	if strings.Join(types, " ") != "conversation.created message.created message.created message.created" {
		t.Fatalf("crm's dead events:\n%s", out)
	}
	all, code := segueCmd(t, "webhooks", "dead", "--config", g.config)
	if code != 0 || len(deadRows(t, all)) != 8 {
		t.Fatalf("every webhook's dead events: exit %d\n%s", code, all)
	}
	auditSeq := ""
	for _, r := range deadRows(t, all) {
		if r.webhook == "audit" {
			auditSeq = r.seq
		}
	}

	crm.mu.Lock()
	crm.failing = false
	crm.mu.Unlock()
	received := func() []string {
		crm.mu.Lock()
		defer crm.mu.Unlock()
		var s []string
		for _, ev := range crm.got {
			if ev.Type == "message.created" {
				s = append(s, ev.Data.Message.Text)
			} else {
				s = append(s, ev.Type)
			}
		}
		return s
	}
	// One event by its seq: "two".
	if out, code := segueCmd(t, "webhooks", "replay", "--webhook", "crm", "--seq", rows[2].seq, "--config", g.config); code != 0 ||
		!strings.Contains(out, "replayed 1 dead event for webhook crm") {
		t.Fatalf("replay --seq %s: exit %d\n%s", rows[2].seq, code, out)
	}
	waitFor(t, "the replayed event", func() error {
		if got := received(); strings.Join(got, " ") != "two" {
			return fmt.Errorf("crm received %v", got)
		}
		return nil
	})
	// An event of another webhook, or one no longer dead, is not crm's to replay.
	for _, seq := range []string{auditSeq, rows[2].seq} {
		if out, code := segueCmd(t, "webhooks", "replay", "--webhook", "crm", "--seq", seq, "--config", g.config); code != 1 ||
			!strings.Contains(out, "no dead event "+seq+" for webhook crm") {
			t.Errorf("replay --seq %s: exit %d\n%s", seq, code, out)
		}
	}
	out, _ = segueCmd(t, "webhooks", "dead", "--webhook", "crm", "--config", g.config)
	if left := deadRows(t, out); len(left) != 3 {
		t.Fatalf("crm's dead events after one replay:\n%s", out)
	}
	if out, code := segueCmd(t, "webhooks", "replay", "--webhook", "crm", "--config", g.config); code != 0 ||
		!strings.Contains(out, "replayed 3 dead events for webhook crm") {
		t.Fatalf("replay: exit %d\n%s", code, out)
	}
	waitFor(t, "every replayed event", func() error {
		if got := received(); strings.Join(got, " ") != "two conversation.created one three" {
			return fmt.Errorf("crm received %v", got)
		}
		return nil
	})
	if out, code := segueCmd(t, "webhooks", "dead", "--webhook", "crm", "--config", g.config); code != 0 ||
		strings.TrimSpace(out) != "no dead events for webhook crm" {
		t.Errorf("crm's dead events after the replays: exit %d\n%s", code, out)
	}
	waitFor(t, "the dead letters of audit only", func() error {
		m := metricsOf(t, g)
		if m["segue_webhook_dead_letters"] != 4 || m[`segue_webhook_deliveries_total{result="delivered",webhook="crm"}`] != 4 {
			return fmt.Errorf("dead %v, delivered to crm %v", m["segue_webhook_dead_letters"],
				m[`segue_webhook_deliveries_total{result="delivered",webhook="crm"}`])
		}
		return nil
	})
	audit.mu.Lock()
	if len(audit.got) != 0 {
		t.Errorf("audit received %d events, none replayed", len(audit.got))
	}
	audit.mu.Unlock()
	// The admin commands share their way to the gateway with config reload.
	if out, code := segueCmd(t, "config", "reload", "--config", g.config); code != 0 || !strings.HasPrefix(out, "reloaded") {
		t.Errorf("config reload: exit %d\n%s", code, out)
	}
}
