package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSearchConversationsFiltersAndPages(t *testing.T) {
	forEachDriver(t, testSearchConversationsFiltersAndPages)
}

func testSearchConversationsFiltersAndPages(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i := range 5 {
		c := &Conversation{ID: fmt.Sprintf("c%d", i), State: StateActive, Queue: "support", AgentID: "alice",
			Customer: Customer{Email: "Ann@Example.com", ExternalID: "crm-1"}, TokenHash: []byte{1},
			CreatedAt: base.Add(time.Duration(i) * time.Minute), UpdatedAt: base}
		if i%2 == 1 {
			c.Queue, c.AgentID, c.LastAgentID, c.Customer.ExternalID = "sales", "", "bob", "crm-2"
		}
		if err := s.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for i, text := range []string{"my invoice is wrong", "refund please", "invoice number 42"} {
		if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: fmt.Sprintf("c%d", i*2), ID: "m", Role: RoleCustomer,
			Kind: KindText, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(q ConversationQuery) []string {
		t.Helper()
		if q.Limit == 0 {
			q.Limit = 100
		}
		cs, err := s.SearchConversations(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	for name, tc := range map[string]struct {
		q    ConversationQuery
		want string
	}{
		"all newest first": {ConversationQuery{}, "[c4 c3 c2 c1 c0]"},
		"queue":            {ConversationQuery{Queue: "sales"}, "[c3 c1]"},
		"agent or last":    {ConversationQuery{AgentID: "bob"}, "[c3 c1]"},
		"external id":      {ConversationQuery{ExternalID: "crm-1"}, "[c4 c2 c0]"},
		"email any case":   {ConversationQuery{Email: "ann@example.COM", Queue: "support"}, "[c4 c2 c0]"},
		"time range":       {ConversationQuery{From: base.Add(time.Minute), To: base.Add(3 * time.Minute)}, "[c2 c1]"},
		"full text":        {ConversationQuery{Text: "invoice"}, "[c4 c0]"},
		"full text prefix": {ConversationQuery{Text: "ref*"}, "[c2]"},
		"state":            {ConversationQuery{State: StateEnded}, "[]"},
	} {
		if got := fmt.Sprint(ids(tc.q)); got != tc.want {
			t.Errorf("%s: got %s, want %s", name, got, tc.want)
		}
	}
	// Paging: two at a time from a cursor gives everything once.
	var all []string
	var after *ConversationCursor
	for {
		page, err := s.SearchConversations(ctx, ConversationQuery{Limit: 2, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			all = append(all, c.ID)
		}
		if len(page) < 2 {
			break
		}
		last := page[len(page)-1]
		after = &ConversationCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	if fmt.Sprint(all) != "[c4 c3 c2 c1 c0]" {
		t.Errorf("pages: %v", all)
	}
}

func TestSearchBadFullTextQueryIsErrBadQuery(t *testing.T) {
	forEachDriver(t, testSearchBadFullTextQueryIsErrBadQuery)
}

func testSearchBadFullTextQueryIsErrBadQuery(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	for _, q := range []string{`"unterminated`, `foo:bar`, `AND`, `NEAR(`, `a OR`, `x') OR 1=1 --`} {
		_, err := s.SearchConversations(ctx, ConversationQuery{Text: q, Limit: 10})
		if !errors.Is(err, ErrBadQuery) {
			t.Errorf("%q: %v, want ErrBadQuery", q, err)
		}
	}
	// Quotes bound as a parameter are just text.
	cs, err := s.SearchConversations(ctx, ConversationQuery{Queue: "x' OR '1'='1", Limit: 10})
	if err != nil || len(cs) != 0 {
		t.Errorf("injection in a filter: %v %v", cs, err)
	}
}

// A database made before the search index gets its messages indexed
// when it is opened again.
func TestSearchIndexesMessagesOfAnOlderDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := openSQLite(t, dir)
	newConv(t, s, "c1")
	if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: "m", Role: RoleCustomer, Kind: KindText, Text: "parcel lost"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "db", "segue.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TRIGGER messages_fts_delete`, `DROP TABLE messages_fts`, `DROP TABLE search_index_mark`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s = openSQLite(t, dir)
	defer s.Close()
	cs, err := s.SearchConversations(ctx, ConversationQuery{Text: "parcel", Limit: 10})
	if err != nil || len(cs) != 1 {
		t.Fatalf("after migration: %v %v", cs, err)
	}
}

func TestWebhookOutboxHeadsPerConversation(t *testing.T) {
	forEachDriver(t, testWebhookOutboxHeadsPerConversation)
}

func testWebhookOutboxHeadsPerConversation(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	s := loc.open(t)
	// Both drivers keep times to the millisecond at least.
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	var evs []*WebhookEvent
	for i, conv := range []string{"a", "a", "b", "a", "b"} {
		evs = append(evs, &WebhookEvent{Webhook: "crm", ConversationID: conv, Type: "message.created",
			Body: []byte(fmt.Sprintf(`{"n":%d}`, i)), CreatedAt: t0})
	}
	evs = append(evs, &WebhookEvent{Webhook: "other", ConversationID: "a", Type: "x", Body: []byte(`{}`), CreatedAt: t0})
	if err := s.AppendWebhookEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// take returns the events due at now as a gateway takes them (a
	// claim, with postgres) and gives back all but keep, unchanged, as an
	// attempt that changed nothing records.
	take := func(now time.Time, keep int) []*WebhookEvent {
		t.Helper()
		due, err := s.DueWebhookEvents(ctx, "", []string{"crm"}, now, 10)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range due {
			if i == keep {
				continue
			}
			if err := s.UpdateWebhookEvent(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		return due
	}
	heads := func(now time.Time) string {
		t.Helper()
		out := ""
		for _, e := range take(now, -1) {
			out += fmt.Sprintf("%s%s ", e.ConversationID, e.Body)
		}
		return out
	}
	if got := heads(t0); got != `a{"n":0} b{"n":2} ` {
		t.Fatalf("heads: %s", got)
	}
	// A failed head holds back its conversation only, until it is due.
	first := take(t0, 0)[0]
	first.Attempts, first.NextAt, first.LastError = 1, t0.Add(time.Minute), "500"
	if err := s.UpdateWebhookEvent(ctx, first); err != nil {
		t.Fatal(err)
	}
	if got := heads(t0); got != `b{"n":2} ` {
		t.Fatalf("heads with a failing a: %s", got)
	}
	next, err := s.NextWebhookAttempt(ctx, []string{"crm"})
	if err != nil || !next.Equal(t0) {
		t.Fatalf("next attempt: %v %v, want %v", next, err, t0)
	}
	// Dead: the next of the conversation comes up; delivered: it leaves.
	first.State = WebhookDead
	if err := s.UpdateWebhookEvent(ctx, first); err != nil {
		t.Fatal(err)
	}
	b := take(t0, 1)
	b[1].State = WebhookDelivered
	if err := s.UpdateWebhookEvent(ctx, b[1]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The outbox survives a restart.
	s = loc.open(t)
	defer s.Close()
	if got := heads(t0); got != `a{"n":1} b{"n":4} ` {
		t.Fatalf("heads after dead, delivered and a restart: %s", got)
	}
	c, err := s.CountWebhookEvents(ctx)
	if err != nil || c.Pending != 4 || c.Dead != 1 {
		t.Fatalf("counts: %+v %v", c, err)
	}
}

// TestDeadWebhookEventsAreListedAndReplayed: dead events are listed by
// webhook, oldest first, with their last error; a replay makes the ones
// it selects (a webhook's, or one by seq) pending and due again with no
// attempts counted, and leaves the rest dead.
func TestDeadWebhookEventsAreListedAndReplayed(t *testing.T) {
	forEachDriver(t, testDeadWebhookEventsAreListedAndReplayed)
}

func testDeadWebhookEventsAreListedAndReplayed(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	evs := []*WebhookEvent{
		{Webhook: "crm", ConversationID: "a", Type: "message.created", Body: []byte(`{"n":0}`), CreatedAt: t0},
		{Webhook: "crm", ConversationID: "a", Type: "message.created", Body: []byte(`{"n":1}`), CreatedAt: t0},
		{Webhook: "erp", ConversationID: "b", Type: "message.created", Body: []byte(`{"n":2}`), CreatedAt: t0},
	}
	if err := s.AppendWebhookEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*WebhookEvent{evs[0], evs[2]} {
		due, err := s.DueWebhookEvents(ctx, "", []string{e.Webhook}, t0, 10)
		if err != nil || len(due) != 1 || due[0].Seq != e.Seq {
			t.Fatalf("due for %s: %+v, %v", e.Webhook, due, err)
		}
		due[0].State, due[0].Attempts, due[0].LastError = WebhookDead, 8, "HTTP 500"
		if err := s.UpdateWebhookEvent(ctx, due[0]); err != nil {
			t.Fatal(err)
		}
	}
	dead := func(webhook string) string {
		t.Helper()
		list, err := s.DeadWebhookEvents(ctx, webhook, 10)
		if err != nil {
			t.Fatal(err)
		}
		out := ""
		for _, e := range list {
			out += fmt.Sprintf("%s%s/%d/%s ", e.Webhook, e.Body, e.Attempts, e.LastError)
		}
		return out
	}
	if got := dead(""); got != `crm{"n":0}/8/HTTP 500 erp{"n":2}/8/HTTP 500 ` {
		t.Fatalf("dead events: %s", got)
	}
	if got := dead("erp"); got != `erp{"n":2}/8/HTTP 500 ` {
		t.Fatalf("dead events of erp: %s", got)
	}
	later := t0.Add(time.Hour)
	if n, err := s.ReplayWebhookEvents(ctx, "crm", 0, later); err != nil || n != 1 {
		t.Fatalf("replay of crm: %d, %v", n, err)
	}
	if n, err := s.ReplayWebhookEvents(ctx, "", evs[2].Seq+100, later); err != nil || n != 0 {
		t.Fatalf("replay of an unknown seq: %d, %v", n, err)
	}
	if got := dead(""); got != `erp{"n":2}/8/HTTP 500 ` {
		t.Fatalf("dead after the replay of crm: %s", got)
	}
	// The replayed event heads its conversation again, due at the time of
	// the replay and not before.
	if due, err := s.DueWebhookEvents(ctx, "", []string{"crm"}, later.Add(-time.Second), 10); err != nil || len(due) != 0 {
		t.Fatalf("due before the replay's time: %+v, %v", due, err)
	}
	due, err := s.DueWebhookEvents(ctx, "", []string{"crm"}, later, 10)
	if err != nil || len(due) != 1 || due[0].Seq != evs[0].Seq || due[0].Attempts != 0 || due[0].LastError != "" ||
		due[0].State != WebhookPending || !due[0].NextAt.Equal(later) {
		t.Fatalf("due after the replay: %+v, %v", due, err)
	}
	if n, err := s.ReplayWebhookEvents(ctx, "", evs[2].Seq, later); err != nil || n != 1 {
		t.Fatalf("replay by seq: %d, %v", n, err)
	}
	if c, err := s.CountWebhookEvents(ctx); err != nil || c.Dead != 0 || c.Pending != 3 {
		t.Fatalf("counts after the replays: %+v, %v", c, err)
	}
}

// TestFullTextQueriesMeanTheSame: the query language integrations are
// told about (words, "phrases", prefix*, AND, OR, NOT, parentheses)
// finds the same conversations with either driver.
func TestFullTextQueriesMeanTheSame(t *testing.T) { forEachDriver(t, testFullTextQueriesMeanTheSame) }

func testFullTextQueriesMeanTheSame(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i, texts := range [][]string{
		{"My invoice is wrong", "please refund the invoice"},
		{"the parcel never arrived", "Invoice 42 and parcel 7"},
		{"Où est mon colis ?", "and or not near"},
		{`she said "hello" twice`},
	} {
		id := fmt.Sprintf("c%d", i)
		if err := s.CreateConversation(ctx, &Conversation{ID: id, State: StateActive, Queue: "support", TokenHash: []byte{1},
			CreatedAt: base.Add(time.Duration(i) * time.Minute), UpdatedAt: base}); err != nil {
			t.Fatal(err)
		}
		for j, text := range texts {
			if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: id, ID: fmt.Sprint("m", j), Role: RoleCustomer,
				Kind: KindText, Text: text}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for q, want := range map[string]string{
		"invoice":                     "[c1 c0]",
		"INVOICE":                     "[c1 c0]",
		"inv*":                        "[c1 c0]",
		`"refund the invoice"`:        "[c0]",
		`"the invoice refund"`:        "[]",
		`"refund the inv"*`:           "[c0]",
		"invoice wrong":               "[c0]",
		"invoice AND parcel":          "[c1]",
		"invoice NOT parcel":          "[c0]",
		"wrong OR arrived":            "[c1 c0]",
		"(wrong OR parcel) AND 42":    "[c1]",
		"(wrong OR arrived) AND 42":   "[]", // one message must match it all
		"parcel OR colis NOT invoice": "[c2 c1]",
		"colis":                       "[c2]",
		"où":                          "[c2]",
		"and":                         "[c2 c1]",
		"near":                        "[c2]",
		`"said ""hello"""`:            "[c3]",
		"nothing":                     "[]",
	} {
		cs, err := s.SearchConversations(ctx, ConversationQuery{Text: q, Limit: 10})
		if err != nil {
			t.Errorf("%q: %v", q, err)
			continue
		}
		var ids []string
		for _, c := range cs {
			ids = append(ids, c.ID)
		}
		if got := fmt.Sprint(ids); got != want {
			t.Errorf("%q: %s, want %s", q, got, want)
		}
	}
}

// FuzzFTSQuery: any input is either refused with ErrBadQuery or gives a
// tsquery expression whose placeholders are exactly its parameters.
func FuzzFTSQuery(f *testing.F) {
	for _, q := range []string{`invoice`, `"a ""b"" c"*`, `(a OR b) NOT c`, `NEAR(a b)`, `a:b`, `((((`, "\x00", `x') OR 1=1 --`, `ref*`} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		e, err := ftsQuery(q, 3)
		if err != nil {
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("%q: %v", q, err)
			}
			return
		}
		for i := range e.args {
			if !strings.Contains(e.sql, fmt.Sprintf("$%d)", 3+i)) {
				t.Fatalf("%q: $%d missing from %s", q, 3+i, e.sql)
			}
		}
		if strings.Contains(e.sql, fmt.Sprintf("$%d)", 3+len(e.args))) || strings.ContainsAny(strings.ReplaceAll(e.sql, "'simple'", ""), "'\"\\") {
			t.Fatalf("%q: text of the query in the SQL: %s", q, e.sql)
		}
	})
}

// FuzzKeywordQuery: keywords of any text give a tsquery expression whose
// ? placeholders are exactly its parameters, with none of their text in
// the SQL, or ErrBadQuery.
func FuzzKeywordQuery(f *testing.F) {
	for _, w := range []string{`invo`, `zed@example`, `%`, `"a" OR b*`, `x') OR 1=1 --`, `où?`, `'':*`, ``} {
		f.Add(w, "ann")
	}
	f.Fuzz(func(t *testing.T, w1, w2 string) {
		e, err := keywordQuery([]string{w1, w2})
		if err != nil {
			if !errors.Is(err, ErrBadQuery) {
				t.Fatalf("%q %q: %v", w1, w2, err)
			}
			return
		}
		if n := strings.Count(e.sql, "?"); n != len(e.args) {
			t.Fatalf("%q %q: %d placeholders for %d parameters in %s", w1, w2, n, len(e.args), e.sql)
		}
		if strings.ContainsAny(strings.ReplaceAll(e.sql, "'simple'", ""), "'\"\\$") {
			t.Fatalf("%q %q: text of the keywords in the SQL: %s", w1, w2, e.sql)
		}
	})
}
