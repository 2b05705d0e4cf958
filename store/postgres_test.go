package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestMigrationsRunOnceWhenGatewaysStartTogether: gateways that start at
// the same time on an empty database all come up; the advisory lock lets
// one of them apply the schema and the others find it done.
func TestMigrationsRunOnceWhenGatewaysStartTogether(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t, "postgres")
	steps, err := loadMigrations(pgMigrations, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	const gateways = 6
	results := make([]MigrateResult, gateways)
	errs := make([]error, gateways)
	var wg sync.WaitGroup
	for i := range gateways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Migrate(ctx, Config{Driver: "postgres", DSN: loc.DSN, FilesDir: loc.Files})
		}()
	}
	wg.Wait()
	applied := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("gateway %d: %v", i, errs[i])
		}
		if !r.Versioned || r.To != len(steps) {
			t.Fatalf("gateway %d: %+v, want version %d", i, r, len(steps))
		}
		if r.From == 0 {
			applied++
		} else if r.From != len(steps) {
			t.Fatalf("gateway %d started from version %d", i, r.From)
		}
	}
	if applied != 1 {
		t.Fatalf("%d gateways applied the schema, want 1", applied)
	}
	s := loc.open(t)
	defer s.Close()
	if n := countRows(t, s, `SELECT count(*) FROM schema_migrations`); n != len(steps) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(steps))
	}
}

// TestNewerSchemaIsRefused: a gateway never runs on a database a newer
// release has migrated, nor marks it migrated.
func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t, "postgres")
	s := loc.open(t).(*Postgres)
	if _, err := s.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES (999, 'from_the_future')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, Config{Driver: "postgres", DSN: loc.DSN, FilesDir: loc.Files}); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
	r, err := Migrate(ctx, Config{Driver: "postgres", DSN: loc.DSN})
	if !errors.Is(err, ErrSchemaTooNew) || r.From != 999 || r.To != 999 {
		t.Fatalf("migrate a newer schema: %+v %v", r, err)
	}
}

// TestCommitsAreSynchronous: the test server's own default is
// synchronous_commit off, yet the store's sessions commit synchronously;
// a DSN that turns it off is refused at start.
func TestCommitsAreSynchronous(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t, "postgres")
	s := loc.open(t).(*Postgres)
	defer s.Close()
	var level string
	if err := s.pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&level); err != nil || level != "on" {
		t.Fatalf("the store's synchronous_commit is %q (%v), want on", level, err)
	}
	if _, err := OpenPostgres(ctx, loc.DSN+"&synchronous_commit=off", loc.Files); !errors.Is(err, ErrNotDurable) {
		t.Fatalf("open with synchronous_commit=off: %v, want ErrNotDurable", err)
	}
}

// TestGatewaysShareAConversation: two gateways on one database append to
// the same conversation at once (as when one takes a conversation over
// from another): every message gets its own seq, 1..n without a gap.
func TestGatewaysShareAConversation(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t, "postgres")
	a, b := loc.open(t), loc.open(t)
	defer a.Close()
	defer b.Close()
	newConv(t, a, "c1")
	const perGateway = 60
	var wg sync.WaitGroup
	errs := make(chan error, 2*perGateway)
	for g, s := range []Store{a, b} {
		for i := range perGateway {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: fmt.Sprintf("g%d-%d", g, i), Role: RoleCustomer, Kind: KindText})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ms, err := a.Messages(ctx, "c1", 0, 1000)
	if err != nil || len(ms) != 2*perGateway {
		t.Fatalf("%d messages (%v), want %d", len(ms), err, 2*perGateway)
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
	if c, err := b.Conversation(ctx, "c1"); err != nil || c.LastSeq != 2*perGateway {
		t.Fatalf("last seq %+v %v", c, err)
	}
}

// TestMigrateReportsSQLite: for the embedded store, Migrate creates the
// schema and says it has no versions.
func TestMigrateReportsSQLite(t *testing.T) {
	loc := newLocation(t, "sqlite")
	r, err := Migrate(context.Background(), Config{Driver: "sqlite", DSN: loc.DSN, FilesDir: loc.Files})
	if err != nil || r.Versioned {
		t.Fatalf("%+v %v", r, err)
	}
	s := loc.open(t)
	defer s.Close()
	if n := countRows(t, s, `SELECT COUNT(*) FROM conversations`); n != 0 {
		t.Fatalf("%d conversations in a new store", n)
	}
}

// TestBadDSNIsNotQuoted: a DSN the driver cannot parse is reported
// without its text, which may hold a password.
func TestBadDSNIsNotQuoted(t *testing.T) {
	const dsn = "postgres://segue:hunter2@db:notaport/segue"
	_, err := OpenPostgres(context.Background(), dsn, t.TempDir())
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("open: %v", err)
	}
	err = (&Config{Driver: "postgres", DSN: dsn, FilesDir: "f", MaxUploadBytes: 1}).Validate()
	if err == nil || !strings.HasPrefix(err.Error(), "dsn: ") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("validate: %v", err)
	}
}

// TestGatewaysNeverDeliverAnEventTwiceAtOnce: two gateways drain one
// outbox together, each taking due events, "delivering" them and
// recording the delivery. No event is in the hands of both at once, each
// is delivered once, and each conversation's events go out in order.
func TestGatewaysNeverDeliverAnEventTwiceAtOnce(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t, "postgres")
	a, b := loc.open(t), loc.open(t)
	defer a.Close()
	defer b.Close()
	const convs, perConv = 6, 8
	var evs []*WebhookEvent
	for i := range perConv {
		for c := range convs {
			evs = append(evs, &WebhookEvent{Webhook: "crm", ConversationID: fmt.Sprintf("c%d", c), Type: "x",
				Body: []byte(fmt.Sprintf(`{"n":%d}`, i))})
		}
	}
	if err := a.AppendWebhookEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	inHand := map[int64]bool{}
	delivered := map[string][]int64{} // conversation -> seqs in delivery order
	var problems []string
	var wg sync.WaitGroup
	for g, s := range []Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				due, err := s.DueWebhookEvents(ctx, "", []string{"crm"}, time.Now(), 3)
				if err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
					return
				}
				if len(due) == 0 {
					if c, err := s.CountWebhookEvents(ctx); err != nil || c.Pending == 0 {
						return
					}
					continue
				}
				mu.Lock()
				for _, e := range due {
					if inHand[e.Seq] {
						problems = append(problems, fmt.Sprintf("gateway %d took event %d while the other held it", g, e.Seq))
					}
					inHand[e.Seq] = true
					delivered[e.ConversationID] = append(delivered[e.ConversationID], e.Seq)
				}
				mu.Unlock()
				for _, e := range due {
					mu.Lock()
					delete(inHand, e.Seq)
					mu.Unlock()
					e.State = WebhookDelivered
					if err := s.UpdateWebhookEvent(ctx, e); err != nil {
						mu.Lock()
						problems = append(problems, err.Error())
						mu.Unlock()
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
	for c := range convs {
		seqs := delivered[fmt.Sprintf("c%d", c)]
		if len(seqs) != perConv || !slices.IsSorted(seqs) {
			t.Errorf("conversation c%d: delivered %v, want %d events in seq order", c, seqs, perConv)
		}
	}
}

// TestAClaimLapses: an event a gateway took and never reported on (it
// died mid-delivery) is held from the other gateways, then theirs once
// the claim lapses; a reported attempt ends the claim at once.
func TestAClaimLapses(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t, "postgres")
	a, b := loc.open(t), loc.open(t)
	defer a.Close()
	defer b.Close()
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	if err := a.AppendWebhookEvents(ctx, []*WebhookEvent{
		{Webhook: "crm", ConversationID: "c1", Type: "x", Body: []byte(`{}`), CreatedAt: t0},
		{Webhook: "crm", ConversationID: "c2", Type: "x", Body: []byte(`{}`), CreatedAt: t0},
	}); err != nil {
		t.Fatal(err)
	}
	took, err := a.DueWebhookEvents(ctx, "", []string{"crm"}, t0, 10)
	if err != nil || len(took) != 2 {
		t.Fatalf("gateway a took %v, %v", took, err)
	}
	if due, err := b.DueWebhookEvents(ctx, "", []string{"crm"}, t0.Add(webhookClaim-time.Second), 10); err != nil || len(due) != 0 {
		t.Fatalf("gateway b took %d claimed events (%v)", len(due), err)
	}
	if next, err := b.NextWebhookAttempt(ctx, []string{"crm"}); err != nil || !next.Equal(t0.Add(webhookClaim)) {
		t.Fatalf("next attempt %v (%v), want when the claim lapses", next, err)
	}
	// Gateway a records a failed attempt of c1's event, due again at once.
	took[0].Attempts, took[0].LastError = 1, "500 \xff cut mid-character\x00"
	if err := a.UpdateWebhookEvent(ctx, took[0]); err != nil {
		t.Fatal(err)
	}
	due, err := b.DueWebhookEvents(ctx, "", []string{"crm"}, t0, 10)
	if err != nil || len(due) != 1 || due[0].Seq != took[0].Seq || due[0].Attempts != 1 {
		t.Fatalf("after a's report gateway b took %+v (%v), want c1's event", due, err)
	}
	due[0].State = WebhookDelivered
	if err := b.UpdateWebhookEvent(ctx, due[0]); err != nil {
		t.Fatal(err)
	}
	due, err = b.DueWebhookEvents(ctx, "", []string{"crm"}, t0.Add(webhookClaim), 10)
	if err != nil || len(due) != 1 || due[0].Seq != took[1].Seq {
		t.Fatalf("after the claim lapsed gateway b took %+v (%v), want c2's event", due, err)
	}
}

// TestFirstSchemaDatabaseIsMigrated: a database left at the first schema
// with a conversation and its messages is brought up to date as a
// gateway opens it: the messages are found by full text, the
// conversation can be rated, recorded and erased.
func TestFirstSchemaDatabaseIsMigrated(t *testing.T) {
	ctx := context.Background()
	loc := newLocation(t, "postgres")
	steps, err := loadMigrations(pgMigrations, "migrations/postgres")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, loc.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		steps[0].sql,
		`INSERT INTO schema_migrations (version, name) VALUES (1, 'schema')`,
		`INSERT INTO conversations (id, state, queue, token_hash, customer_external_id, created_at, updated_at, last_seq)
			VALUES ('c_old', 'ended', 'support', '\x00', 'crm-9', now(), now(), 1)`,
		`INSERT INTO messages (conversation_id, seq, id, role, kind, text, created_at)
			VALUES ('c_old', 1, 'm1', 'customer', 'text', 'Where is my Parcel?', now())`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	s := loc.open(t)
	defer s.Close()
	cs, err := s.SearchConversations(ctx, ConversationQuery{Text: "parcel", Limit: 10})
	if err != nil || len(cs) != 1 || cs[0].ID != "c_old" {
		t.Fatalf("search after migration: %v %v", cs, err)
	}
	if err := s.RateConversation(ctx, "c_old", Rating{Score: 3, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	fill(t, s, "c_old", "bytes")
	d, err := s.EraseCustomer(ctx, "crm-9", "")
	if err != nil || d.Conversations != 1 || d.Messages != 2 || d.Recordings != 1 {
		t.Fatalf("erased %+v, %v", d, err)
	}
}
