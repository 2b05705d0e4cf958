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

// ErrBadQuery is returned by SearchConversations for a full-text query
// that the store cannot parse (the syntax is FTS5's, with both drivers);
// the message says why.
var ErrBadQuery = errors.New("store: bad search query")

// ErrRated is returned by RateConversation when the conversation already
// has a rating.
var ErrRated = errors.New("store: already rated")

// ErrAtCapacity is returned by AssignConversation when the agent already
// holds the most active conversations allowed.
var ErrAtCapacity = errors.New("store: agent at capacity")

// ErrDuplicate is returned by AddNote and SaveCannedReply when a unique
// key (a note's id, an agent's shortcut) is taken.
var ErrDuplicate = errors.New("store: duplicate")

// ErrNoCustomer is returned by EraseCustomer when given neither a
// customer id nor an e-mail address.
var ErrNoCustomer = errors.New("store: erase: a customer id or an e-mail address is required")

// ErrSchemaTooNew is returned when a database's schema is at a version
// newer than this build knows: a newer release migrated it.
var ErrSchemaTooNew = errors.New("store: schema newer than this build")

// ErrInvalidText is returned by the PostgreSQL store for text that is not
// valid UTF-8 or holds a NUL byte, which PostgreSQL's text type cannot
// keep; the write is refused alone, never its batch.
var ErrInvalidText = errors.New("store: text is not valid UTF-8 or holds a NUL byte")

// ErrBadOutboxEvent is returned by AppendMessageEvents when an event of
// the message lacks a webhook, a type or a body, or names its webhook or
// type with text a store cannot keep; the append is refused alone, never
// its batch.
var ErrBadOutboxEvent = errors.New("store: outbox event without a webhook, type or body, or with text a store cannot keep")

// errBadDSN is returned for a store.dsn PostgreSQL cannot parse. The DSN
// itself is left out: it may hold a password.
var errBadDSN = errors.New("store: dsn is not a PostgreSQL connection string")

// ErrNotDurable is returned by OpenPostgres when the database would
// acknowledge a commit before it is durable.
var ErrNotDurable = errors.New("store: commits are not durable")
