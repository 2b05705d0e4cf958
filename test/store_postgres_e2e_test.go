//go:build e2e

package test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/segue-rtc/segue/store/pgtest"
)

// TestPostgresStoreSurvivesACrash: a gateway on store.driver postgres
// (its DSN, password included, from ${NAME}) migrates the empty database
// as it starts, and "segue store migrate" then finds it up to date. A
// customer's message is acknowledged; one holding a NUL character, which
// PostgreSQL's text cannot keep, gets invalid_text and fails nothing
// else; after kill -9 and a start, the acknowledged messages are served
// and sit in PostgreSQL in order. The password shows in no output.
func TestPostgresStoreSurvivesACrash(t *testing.T) {
	ctx := context.Background()
	pg, err := pgtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop()
	dsn, err := pg.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The test server trusts loopback and ignores the password: it is
	// there to be looked for in what the gateway prints.
	const password = "pg-pass-never-printed"
	t.Setenv("SEGUE_TEST_PG_DSN", strings.Replace(dsn, "postgres@", "postgres:"+password+"@", 1))
	g := startGateway(t, func(o *gatewayOptions) {
		o.storeYAML = "  driver: postgres\n  dsn: \"${SEGUE_TEST_PG_DSN}\"\n"
	})

	out, err := exec.Command(segueBin, "store", "migrate", "--config", g.config).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "schema at version 1, up to date") {
		t.Fatalf("segue store migrate: %v\n%s", err, out)
	}
	if strings.Contains(string(out), password) {
		t.Fatalf("segue store migrate printed the password:\n%s", out)
	}
	out, err = exec.Command(segueBin, "config", "validate", "--config", g.config).CombinedOutput()
	if err != nil || strings.Contains(string(out), password) || !strings.Contains(string(out), "store:  postgres postgres@127.0.0.1:") {
		t.Fatalf("segue config validate: %v\n%s", err, out)
	}

	cust, conv := g.newConversation(t, "Ann")
	cw := customerWS(t, g, cust.token)
	cw.send(map[string]any{"type": "message", "id": "m1", "text": "hello from postgres"})
	if f := cw.expect("ack"); f["seq"] != float64(1) {
		t.Fatalf("ack of m1: %v", f)
	}
	cw.send(map[string]any{"type": "message", "id": "m2", "text": "nul \x00 inside"})
	if f := cw.expect("error"); f["code"] != "invalid_text" {
		t.Fatalf("a NUL character: %v, want error invalid_text", f)
	}
	other, conv2 := g.newConversation(t, "Bob")
	ow := customerWS(t, g, other.token)
	ow.send(map[string]any{"type": "message", "id": "o1", "text": "unaffected"})
	ow.expect("ack")
	cw.send(map[string]any{"type": "message", "id": "m3", "text": "still here"})
	if f := cw.expect("ack"); f["seq"] != float64(2) {
		t.Fatalf("ack of m3: %v", f)
	}

	g.Kill()
	g.Start()
	var texts []string
	for _, m := range cust.messages(conv.ID) {
		if m.From.Role == "customer" {
			texts = append(texts, m.Text)
		}
	}
	if strings.Join(texts, "|") != "hello from postgres|still here" {
		t.Fatalf("messages after kill -9 and a start: %q", texts)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT conversation_id, seq, text FROM messages WHERE role = 'customer' ORDER BY conversation_id = $1 DESC, seq`, conv.ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var id, text string
		var seq int64
		err := r.Scan(&id, &seq, &text)
		return fmt.Sprintf("%s:%s:%d", id, text, seq), err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := conv.ID + ":hello from postgres:1|" + conv.ID + ":still here:2|" + conv2.ID + ":unaffected:1"
	if strings.Join(got, "|") != want {
		t.Fatalf("rows in PostgreSQL:\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	if strings.Contains(g.Log(), password) {
		t.Fatal("the gateway's log holds the DSN's password")
	}
}
