package store

import (
	"strings"
	"testing"
)

// TestConfigValidatesPostgres: driver postgres needs a DSN the driver can
// parse and that keeps commits synchronous; each problem names its key.
func TestConfigValidatesPostgres(t *testing.T) {
	for _, tc := range []struct {
		dsn, want string
	}{
		{"postgres://segue@db.example.com:5432/segue", ""},
		{"host=db.example.com dbname=segue user=segue", ""},
		{"postgres://segue@db/segue?synchronous_commit=remote_apply", ""},
		{"", "dsn: required with driver postgres"},
		{"data/segue.db", "dsn: not a PostgreSQL connection string"},
		{"postgres://segue@db/segue?synchronous_commit=off", "dsn: synchronous_commit=off"},
	} {
		c := Config{Driver: "postgres", DSN: tc.dsn}
		c.ApplyDefaults()
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("dsn %q: %v", tc.dsn, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("dsn %q: %v, want %q", tc.dsn, err, tc.want)
		}
	}
	c := Config{Driver: "mysql"}
	c.ApplyDefaults()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `driver: "mysql" is not one of sqlite, postgres`) {
		t.Errorf("driver mysql: %v", err)
	}
}

// TestWhereHidesThePassword: the store's description in summaries names
// the server and database, never the password.
func TestWhereHidesThePassword(t *testing.T) {
	c := Config{Driver: "postgres", DSN: "postgres://segue:hunter2@db.example.com:5433/chat"}
	if got := c.Where(); got != "segue@db.example.com:5433/chat" {
		t.Errorf("postgres: %q", got)
	}
	c = Config{Driver: "postgres", DSN: "host=db.example.com user=segue password=hunter2 dbname=chat"}
	if got := c.Where(); strings.Contains(got, "hunter2") || !strings.Contains(got, "db.example.com") {
		t.Errorf("postgres key=value: %q", got)
	}
	c = Config{Driver: "sqlite", DSN: "data/segue.db"}
	if got := c.Where(); got != "data/segue.db" {
		t.Errorf("sqlite: %q", got)
	}
}
