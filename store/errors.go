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
// that SQLite's FTS5 cannot parse; the message says why.
var ErrBadQuery = errors.New("store: bad search query")

// ErrRated is returned by RateConversation when the conversation already
// has a rating.
var ErrRated = errors.New("store: already rated")
