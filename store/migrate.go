package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// pgMigrations holds the PostgreSQL schema as numbered steps,
// NNNN_name.sql, applied in order and never edited once released: a
// change of schema is a new file.
//
//go:embed migrations/postgres/*.sql
var pgMigrations embed.FS

// migrateLockKey is the advisory lock (pg_advisory_xact_lock) that
// serializes gateways migrating the same database: "Segue" in ASCII.
const migrateLockKey int64 = 0x5365677565

// migration is one step of the schema.
type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the steps in dir of fsys, sorted by version. The
// versions must run 1, 2, 3... without a gap or a repeat.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("store: migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("store: migrations: %s is not named NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: migrations: %w", err)
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	// fs.ReadDir sorts by name and the numbers are zero-padded.
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("store: migrations: version %d where %d was expected", m.version, i+1)
		}
	}
	return out, nil
}

// MigrateResult tells what Migrate did.
type MigrateResult struct {
	// Versioned is false for a driver whose schema is created as it
	// opens, without versions (sqlite).
	Versioned bool
	// From and To are the schema versions before and after.
	From, To int
}

// Migrate brings the schema of the store cfg describes up to date and
// reports the versions, as opening it for serving does.
func Migrate(ctx context.Context, cfg Config) (MigrateResult, error) {
	switch cfg.Driver {
	case "sqlite":
		s, err := OpenSQLite(ctx, cfg.DSN, cfg.FilesDir)
		if err != nil {
			return MigrateResult{}, err
		}
		return MigrateResult{}, s.Close()
	case "postgres":
		conn, err := connectPostgres(ctx, cfg.DSN)
		if err != nil {
			return MigrateResult{}, err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		return migratePostgres(ctx, conn)
	}
	return MigrateResult{}, fmt.Errorf("%w: %q", ErrDriver, cfg.Driver)
}

// connectPostgres opens one connection for migrating.
func connectPostgres(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errBadDSN
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	return conn, nil
}

// pgExecer is what migrating needs of a connection or a pool.
type pgExecer interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// migratePostgres applies the steps the database has not seen, all in
// one transaction that first takes an advisory lock, so that gateways
// starting together migrate one after the other (the second finds
// nothing left to do) and a failed step leaves the schema as it was.
// A database whose schema is newer than this build's is refused:
// running on it could lose what the newer schema keeps.
func migratePostgres(ctx context.Context, db pgExecer) (MigrateResult, error) {
	steps, err := loadMigrations(pgMigrations, "migrations/postgres")
	if err != nil {
		return MigrateResult{}, err
	}
	res := MigrateResult{Versioned: true}
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY,
			name text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_migrations`).Scan(&res.From); err != nil {
			return err
		}
		res.To = res.From
		if res.From > len(steps) {
			return fmt.Errorf("%w: the database is at version %d, this build knows %d", ErrSchemaTooNew, res.From, len(steps))
		}
		for _, m := range steps[res.From:] {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("version %d (%s): %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return err
			}
			res.To = m.version
		}
		return nil
	})
	if err != nil {
		return MigrateResult{From: res.From, To: res.From, Versioned: true}, fmt.Errorf("store: migrate: %w", err)
	}
	return res, nil
}
