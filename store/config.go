package store

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is the "store" section of the YAML file.
type Config struct {
	// Driver selects the backend: "sqlite", the embedded default, or
	// "postgres" for several gateways sharing one database.
	Driver string `yaml:"driver"`
	// DSN is the database location: a file path for sqlite; for postgres
	// a connection string, as a URL (postgres://user@host:5432/segue) or
	// key=value pairs. Its password may come from ${NAME}, or be left
	// out for libpq's PGPASSWORD or ~/.pgpass. It is never logged.
	DSN string `yaml:"dsn"`
	// FilesDir is where uploaded files are kept, by content id. With
	// postgres, every gateway of the database must see the same
	// directory (a shared file system).
	FilesDir string `yaml:"files_dir"`
	// MaxUploadBytes is the largest accepted upload.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
}

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.Driver == "" {
		c.Driver = "sqlite"
	}
	if c.DSN == "" && c.Driver == "sqlite" {
		c.DSN = "data/segue.db"
	}
	if c.FilesDir == "" {
		c.FilesDir = "data/files"
	}
	if c.MaxUploadBytes == 0 {
		c.MaxUploadBytes = 10 << 20
	}
}

// Validate reports every problem in c, naming keys relative to "store".
func (c *Config) Validate() error {
	var errs []error
	switch c.Driver {
	case "sqlite":
		if c.DSN == "" {
			errs = append(errs, errors.New("dsn: required"))
		}
	case "postgres":
		errs = append(errs, validatePostgresDSN(c.DSN)...)
	default:
		errs = append(errs, fmt.Errorf("driver: %q is not one of sqlite, postgres", c.Driver))
	}
	if c.FilesDir == "" {
		errs = append(errs, errors.New("files_dir: required"))
	}
	if c.MaxUploadBytes < 1 {
		errs = append(errs, errors.New("max_upload_bytes: must be positive"))
	}
	return errors.Join(errs...)
}

// validatePostgresDSN checks a postgres dsn without connecting. Its
// errors never quote the DSN, which may hold a password.
func validatePostgresDSN(dsn string) []error {
	if dsn == "" {
		return []error{errors.New(`dsn: required with driver postgres (e.g. "postgres://segue@db.example.com:5432/segue")`)}
	}
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return []error{errors.New(`dsn: not a PostgreSQL connection string (a URL "postgres://user@host:5432/db" or "host=... dbname=..." pairs)`)}
	}
	if pc.ConnConfig.RuntimeParams["synchronous_commit"] == "off" {
		return []error{errors.New("dsn: synchronous_commit=off would acknowledge messages before they are durable")}
	}
	return nil
}

// Where describes the database for logs and summaries without secrets:
// the file path for sqlite; user, host, port and database for postgres,
// never the password.
func (c *Config) Where() string {
	if c.Driver != "postgres" {
		return c.DSN
	}
	pc, err := pgxpool.ParseConfig(c.DSN)
	if err != nil {
		return "(unparsable dsn)"
	}
	cc := pc.ConnConfig
	return fmt.Sprintf("%s@%s:%d/%s", cc.User, cc.Host, cc.Port, cc.Database)
}
