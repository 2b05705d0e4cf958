package store

import "errors"

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrTooLarge is returned by SaveFile when the content exceeds the limit.
var ErrTooLarge = errors.New("store: file too large")

// ErrDriver is returned by Open for a driver this build does not include.
var ErrDriver = errors.New("store: unsupported driver")

// ErrClosed is returned by AppendMessage once the store is closing.
var ErrClosed = errors.New("store: closed")

// ErrSchemaTooNew is returned when a database's schema is at a version
// newer than this build knows: a newer release migrated it.
var ErrSchemaTooNew = errors.New("store: schema newer than this build")

// ErrInvalidText is returned by the PostgreSQL store for text that is not
// valid UTF-8 or holds a NUL byte, which PostgreSQL's text type cannot
// keep; the write is refused alone, never its batch.
var ErrInvalidText = errors.New("store: text is not valid UTF-8 or holds a NUL byte")

// errBadDSN is returned for a store.dsn PostgreSQL cannot parse. The DSN
// itself is left out: it may hold a password.
var errBadDSN = errors.New("store: dsn is not a PostgreSQL connection string")

// ErrNotDurable is returned by OpenPostgres when the database would
// acknowledge a commit before it is durable.
var ErrNotDurable = errors.New("store: commits are not durable")
