package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/segue-rtc/segue/store/pgtest"
)

// The store's tests form one suite that every driver passes: each Test
// runs its body once per driver, as subtests named after the driver.
var drivers = []string{"sqlite", "postgres"}

// forEachDriver runs test against a store of each driver.
func forEachDriver(t *testing.T, test func(t *testing.T, drv string)) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) { test(t, drv) })
	}
}

// pg is the PostgreSQL server the package's tests share, started by the
// first test that needs it (pgServer) and stopped by TestMain. Its own
// default is synchronous_commit off, so the tests show that the store
// turns it on for itself.
var (
	pg      *pgtest.Server
	pgErr   error
	pgStart sync.Once
)

func pgServer(t testing.TB) *pgtest.Server {
	t.Helper()
	pgStart.Do(func() { pg, pgErr = pgtest.Start(pgtest.Setting("synchronous_commit", "off")) })
	if pgErr != nil {
		t.Fatal(pgErr)
	}
	return pg
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg != nil {
		if err := pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// location is where a store keeps its data: a new, empty one per test,
// opened again after a Close or a crash to see what survived.
type location struct {
	Driver string `json:"driver"`
	DSN    string `json:"dsn"`
	Files  string `json:"files"`
}

func newLocation(t testing.TB, drv string) location {
	t.Helper()
	dir := t.TempDir()
	loc := location{Driver: drv, Files: filepath.Join(dir, "files")}
	switch drv {
	case "sqlite":
		loc.DSN = filepath.Join(dir, "db", "segue.db")
	case "postgres":
		dsn, err := pgServer(t).NewDatabase(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		loc.DSN = dsn
	default:
		t.Fatalf("no driver %q", drv)
	}
	return loc
}

func (l location) open(t *testing.T) Store {
	t.Helper()
	s, err := Open(context.Background(), Config{Driver: l.Driver, DSN: l.DSN, FilesDir: l.Files})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// filesOf is the files directory of s, to watch its syncs.
func filesOf(s Store) *fileDir {
	switch s := s.(type) {
	case *SQLite:
		return &s.fileDir
	case *Postgres:
		return &s.fileDir
	}
	panic(fmt.Sprintf("store %T has no files directory", s))
}

// countRows runs a SELECT COUNT(*) query written for both databases.
func countRows(t *testing.T, s Store, query string) int {
	t.Helper()
	var n int
	var err error
	switch s := s.(type) {
	case *SQLite:
		err = s.db.QueryRowContext(context.Background(), query).Scan(&n)
	case *Postgres:
		err = s.pool.QueryRow(context.Background(), query).Scan(&n)
	default:
		t.Fatalf("store %T", s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}
