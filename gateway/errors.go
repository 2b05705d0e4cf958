package gateway

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/segue-rtc/segue/store"
)

// apiError is an error with the HTTP status and the stable code that the
// API returns for it (docs/api.md).
type apiError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when above zero, is how many seconds the client should
	// wait before trying again (rate limits).
	RetryAfter int
}

func (e *apiError) Error() string { return fmt.Sprintf("gateway: %s: %s", e.Code, e.Message) }

func errf(status int, code, format string, a ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, a...)}
}

// Sentinel API errors, shared by the HTTP handlers and the WebSocket loop.
var (
	// ErrUnauthorized: no or bad credentials.
	ErrUnauthorized = errf(http.StatusUnauthorized, "unauthorized", "log in first")
	// ErrForbidden: credentials fine but not for this conversation.
	ErrForbidden = errf(http.StatusForbidden, "forbidden", "not a participant of this conversation")
	// ErrNotFound: no such conversation, file or agent.
	ErrNotFound = errf(http.StatusNotFound, "not_found", "no such object")
	// ErrEnded: the conversation has ended.
	ErrEnded = errf(http.StatusConflict, "ended", "the conversation has ended")
	// ErrOrigin: the request's Origin is not in http.allowed_origins.
	ErrOrigin = errf(http.StatusForbidden, "origin", "origin not allowed")
	// ErrShuttingDown: the gateway is stopping and takes nothing new;
	// clients may try again after a few seconds (Retry-After).
	ErrShuttingDown = &apiError{Status: http.StatusServiceUnavailable, Code: "shutting_down", RetryAfter: 5,
		Message: "the gateway is restarting; please try again in a few seconds"}
	// errNotHolder: an agent may read a waiting conversation of its
	// queues, but write only into one it holds.
	errNotHolder = errf(http.StatusForbidden, "not_holder", "only the agent holding this conversation may post in it")
	// errTooSlow: an upload's body arrived slower than minTransferRate.
	errTooSlow = errf(http.StatusRequestTimeout, "too_slow", "the upload was too slow; try again on a better connection")
)

// asAPIError maps any error to the apiError sent to clients; unknown
// errors become a 500 whose details stay in the log.
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, store.ErrInvalidText) {
		return errInvalidText
	}
	return errf(http.StatusInternalServerError, "internal", "internal error")
}

// Flow-control errors (docs/api.md, "Limits").
var (
	// errQueueFull: the queue holds queues[].max_waiting conversations; the
	// widget offers to leave an e-mail and a message instead.
	errQueueFull = errf(http.StatusServiceUnavailable, "queue_full",
		"we are very busy right now: leave your e-mail and a message, and we will answer by e-mail")
	// errTooManySockets: a socket cap (per conversation, address or agent)
	// is reached; the socket is closed with 1013 (try again later).
	errTooManySockets = errf(http.StatusTooManyRequests, "too_many_sockets", "too many open connections")
)

// errInvalidText: text the store cannot keep (a NUL character, or bytes
// that are not UTF-8, which PostgreSQL's text type refuses).
var errInvalidText = errf(http.StatusBadRequest, "invalid_text", "text must be UTF-8 without NUL characters")

// Cluster bus errors (bus.go).
var (
	// errNoResponder is a request to a subject nobody answers: the node
	// that held a conversation is gone, or never had it.
	errNoResponder = errors.New("gateway: no node answers")
	// errBusClosed is a publish or subscribe after the bus was closed.
	errBusClosed = errors.New("gateway: bus closed")
	// errLeaseTaken is a claim on a lease that another node took or
	// changed since it was read.
	errLeaseTaken = errors.New("gateway: lease taken by another node")
)
