package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
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
