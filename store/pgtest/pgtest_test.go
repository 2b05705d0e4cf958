package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestServerAnswersAndCreatesDatabases: a started server accepts
// connections on its port and gives each caller a database of its own;
// after Kill and StartAgain, what was committed is still there.
func TestServerAnswersAndCreatesDatabases(t *testing.T) {
	ctx := context.Background()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	a, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.NewDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatalf("two databases share the DSN %s", a)
	}
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.StartAgain(); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != "kept" {
		t.Fatalf("after a kill and a start: %q %v", v, err)
	}
}
