//go:build e2e

package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
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
// and sit in PostgreSQL in order. The integrations API finds them by
// full text (words, a "phrase", a prefix*) and answers a query it cannot
// parse, NUL included, with 400 bad_query; the customer's rating of the
// ended conversation is kept once. The password shows in no output.
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
	g := startGateway(t, withIntegrationsYAML(apiKeysYAML()), func(o *gatewayOptions) {
		o.storeYAML = "  driver: postgres\n  dsn: \"${SEGUE_TEST_PG_DSN}\"\n"
	})

	out, err := exec.Command(segueBin, "store", "migrate", "--config", g.config).CombinedOutput()
	if err != nil || !regexp.MustCompile(`schema at version \d+, up to date`).Match(out) {
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

	search := func(q string, want int) string {
		t.Helper()
		res := integrationCall(t, g, "GET", "/api/v1/integrations/conversations?q="+url.QueryEscape(q), e2eKeyReader, "")
		if res.status != want {
			t.Fatalf("search %q: %d %s, want %d", q, res.status, res.body, want)
		}
		var body struct {
			Conversations []struct{ ID string } `json:"conversations"`
			Error         struct{ Code string } `json:"error"`
		}
		if err := json.Unmarshal(res.body, &body); err != nil {
			t.Fatalf("search %q: %v in %s", q, err, res.body)
		}
		if want != http.StatusOK {
			return body.Error.Code
		}
		var ids []string
		for _, c := range body.Conversations {
			ids = append(ids, c.ID)
		}
		return strings.Join(ids, " ")
	}
	for q, want := range map[string]string{
		"postgres":            conv.ID,
		`"STILL here"`:        conv.ID,
		"unaff*":              conv2.ID,
		"hello OR unaffected": conv2.ID + " " + conv.ID,
		"hello NOT postgres":  "",
		"nowhere":             "",
	} {
		if got := search(q, http.StatusOK); got != want {
			t.Errorf("search %q: %q, want %q", q, got, want)
		}
	}
	for _, q := range []string{`"unterminated`, "(hello AND still) OR", "body:x", "x') OR 1=1 --", "nul \x00", "\xff\xfe"} {
		if code := search(q, http.StatusBadRequest); code != "bad_query" {
			t.Errorf("search %q: code %q, want bad_query", q, code)
		}
	}

	if res := integrationCall(t, g, "POST", "/api/v1/integrations/conversations/"+conv.ID+"/end", e2eKeyCRM, `{}`); res.status != http.StatusOK {
		t.Fatalf("end: %d %s", res.status, res.body)
	}
	cust.json("POST", "/api/v1/conversations/"+conv.ID+"/rating", map[string]any{"score": 5, "comment": "kept in postgres"}, http.StatusCreated, nil)
	cust.json("POST", "/api/v1/conversations/"+conv.ID+"/rating", map[string]any{"score": 1}, http.StatusConflict, nil)
	var score int
	var comment string
	if err := conn.QueryRow(ctx, `SELECT rating, rating_comment FROM conversations WHERE id = $1`, conv.ID).Scan(&score, &comment); err != nil {
		t.Fatal(err)
	}
	if score != 5 || comment != "kept in postgres" {
		t.Fatalf("rating in PostgreSQL: %d %q", score, comment)
	}
	if strings.Contains(g.Log(), password) {
		t.Fatal("the gateway's log holds the DSN's password")
	}
}
