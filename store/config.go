package store

import (
	"errors"
	"fmt"
)

// Config is the "store" section of the YAML file.
type Config struct {
	// Driver selects the backend; "sqlite" is the embedded default.
	Driver string `yaml:"driver"`
	// DSN is the database location: a file path for sqlite.
	DSN string `yaml:"dsn"`
	// FilesDir is where uploaded files are kept, by content id.
	FilesDir string `yaml:"files_dir"`
	// MaxUploadBytes is the largest accepted upload.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
	// Retention is how many days a closed conversation is kept after its
	// last change, with its messages, files, call records and recordings;
	// 0 (the default) keeps everything.
	Retention int `yaml:"retention"`
}

// ApplyDefaults fills unset fields with their defaults.
func (c *Config) ApplyDefaults() {
	if c.Driver == "" {
		c.Driver = "sqlite"
	}
	if c.DSN == "" {
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
	case "postgres":
		errs = append(errs, errors.New(`driver: "postgres" is not available in this build; use "sqlite"`))
	default:
		errs = append(errs, fmt.Errorf("driver: %q is not one of sqlite, postgres", c.Driver))
	}
	if c.DSN == "" {
		errs = append(errs, errors.New("dsn: required"))
	}
	if c.FilesDir == "" {
		errs = append(errs, errors.New("files_dir: required"))
	}
	if c.MaxUploadBytes < 1 {
		errs = append(errs, errors.New("max_upload_bytes: must be positive"))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("retention: %d is negative; write a number of days (0 keeps everything)", c.Retention))
	}
	return errors.Join(errs...)
}
