package store

import (
	"context"
	"encoding/json"
	"io"
	"time"
)

// Conversation states.
const (
	StateWaiting = "waiting"
	StateActive  = "active"
	StateEnded   = "ended"
	// StateLeft is a message the customer left while the queue was full
	// (queues[].max_waiting): never routed, read by the queue's agents.
	StateLeft = "left"
)

// Message kinds.
const (
	KindText  = "text"
	KindFile  = "file"
	KindEvent = "event"
)

// Sender roles.
const (
	RoleCustomer = "customer"
	RoleAgent    = "agent"
	RoleSystem   = "system"
)

// Conversation is one customer's conversation with the contact center.
type Conversation struct {
	ID    string
	State string
	Queue string
	// AgentID is the agent holding the conversation ("" while waiting).
	AgentID string
	// LastAgentID is the last agent who held it, kept after it ends so a
	// returning customer can be routed back.
	LastAgentID string
	Customer    Customer
	// TokenHash is the SHA-256 of the customer's bearer token.
	TokenHash  []byte
	CreatedAt  time.Time
	UpdatedAt  time.Time
	EndedAt    time.Time
	LastSeq    int64
	ReadByCust int64
	ReadByAgt  int64
	// ClientIP is where the conversation was opened from.
	ClientIP string
	// AnsweredAt is when an agent first took the conversation (zero until
	// then): AnsweredAt-CreatedAt is its wait (RecentWaits).
	AnsweredAt time.Time
	// Origin is how the conversation began: "" for a chat, OriginMessage
	// for a message left while the queue was closed or unstaffed.
	Origin string
	// Rating is the customer's satisfaction rating, once given.
	Rating Rating
	// WrapUp is the wrap-up code the agent chose when ending it
	// (queues[].wrap_up_codes); "" when none was.
	WrapUp string
}

// OriginMessage marks a conversation that began as a message left while
// nobody could answer (Conversation.Origin).
const OriginMessage = "message"

// Rating is a customer's satisfaction rating of a conversation: a score
// from 1 to 5 and an optional comment. Score 0 means not rated.
type Rating struct {
	Score   int
	Comment string
	At      time.Time
}

// Customer is who the agent talks to; Verified is set when a signed
// identity vouched for the other fields.
type Customer struct {
	Name       string
	Email      string
	ExternalID string
	Verified   bool
}

// Message is one transcript entry: text, a file, or an event such as
// "voice.started".
type Message struct {
	ConversationID string
	ID             string
	Seq            int64
	Role           string
	SenderID       string
	SenderName     string
	Kind           string
	Text           string
	File           *File
	Event          string
	EventData      json.RawMessage
	CreatedAt      time.Time
}

// File is an uploaded file's metadata; its bytes are kept by content id.
type File struct {
	ID             string
	ConversationID string
	Name           string
	Type           string
	Size           int64
	// ContentID is the hex SHA-256 of the bytes; the on-disk name.
	ContentID string
	CreatedAt time.Time
}

// Session is a logged-in agent's browser session.
type Session struct {
	TokenHash []byte
	AgentID   string
	ExpiresAt time.Time
}

// CallRecord is one media leg of a conversation (voice or video).
type CallRecord struct {
	ID             string
	ConversationID string
	Kind           string // "voice" or "video"
	Direction      string // "outbound" or "inbound"
	Target         string
	StartedAt      time.Time
	AnsweredAt     time.Time
	EndedAt        time.Time
	Cause          string
	Codec          string
	Stats          json.RawMessage
	// Dialog is what it takes to end the call's SIP dialog from outside
	// the call (opaque to the store): set by UnfinishedCalls only, for
	// calls whose dialog SaveCallDialog recorded.
	Dialog json.RawMessage
}

// Store persists everything that must survive a restart. Implementations
// are safe for concurrent use.
type Store interface {
	// CreateConversation inserts c; c.ID must be unique.
	CreateConversation(ctx context.Context, c *Conversation) error
	// Conversation returns the conversation with id, or ErrNotFound.
	Conversation(ctx context.Context, id string) (*Conversation, error)
	// UpdateConversation writes state, queue, agents, customer and read marks.
	UpdateConversation(ctx context.Context, c *Conversation) error
	// AssignConversation writes c as UpdateConversation does, c being
	// active with agent c.AgentID, provided that the agent holds fewer
	// than max other active conversations; otherwise it fails with
	// ErrAtCapacity and writes nothing. The count and the write are one
	// step for every handle on the database: gateways sharing it never
	// give one agent more than max conversations between them.
	AssignConversation(ctx context.Context, c *Conversation, max int) error
	// MarkRead raises a conversation's read mark for role (RoleCustomer or
	// RoleAgent) to seq; it never lowers it and touches no other field.
	MarkRead(ctx context.Context, id, role string, seq int64) error
	// RateConversation records a conversation's rating once; a second
	// rating fails with ErrRated and changes nothing.
	RateConversation(ctx context.Context, id string, r Rating) error
	// RecentWaits returns how long the conversations of queue answered at
	// or after since waited (AnsweredAt-CreatedAt), at most limit of the
	// latest.
	RecentWaits(ctx context.Context, queue string, since time.Time, limit int) ([]time.Duration, error)
	// OpenConversations returns every waiting or active conversation,
	// oldest first.
	OpenConversations(ctx context.Context) ([]*Conversation, error)
	// LeftConversations returns the latest limit conversations in state
	// StateLeft of the given queues, newest first.
	LeftConversations(ctx context.Context, queues []string, limit int) ([]*Conversation, error)
	// AppendMessage stores m with the conversation's next seq and returns
	// the stored message. When a message with the same id already exists in
	// the conversation, it returns that one and dup=true, storing nothing.
	AppendMessage(ctx context.Context, m *Message) (stored *Message, dup bool, err error)
	// Messages returns up to limit messages with seq > after, in seq order.
	Messages(ctx context.Context, conversationID string, after int64, limit int) ([]*Message, error)
	// MessagesBefore returns the latest limit messages with seq < before
	// (before <= 0: the latest of all), in seq order: one page of history
	// read backwards from the end.
	MessagesBefore(ctx context.Context, conversationID string, before int64, limit int) ([]*Message, error)
	// SaveFile streams r to disk, keyed by content, and records f; it fails
	// with ErrTooLarge past max bytes. f.ID and f.ConversationID must be set.
	SaveFile(ctx context.Context, f *File, r io.Reader, max int64) error
	// File returns a file's metadata, or ErrNotFound.
	File(ctx context.Context, id string) (*File, error)
	// OpenFile opens a stored file's bytes.
	OpenFile(f *File) (io.ReadSeekCloser, error)
	// DeleteFile forgets a file that was refused after it was saved; its
	// bytes go too unless another file record shares them.
	DeleteFile(ctx context.Context, f *File) error
	// CountFiles counts the files uploaded to a conversation.
	CountFiles(ctx context.Context, conversationID string) (int, error)
	// CreateSession, Session and DeleteSession manage agent sessions.
	CreateSession(ctx context.Context, s *Session) error
	Session(ctx context.Context, tokenHash []byte) (*Session, error)
	DeleteSession(ctx context.Context, tokenHash []byte) error
	// DeleteAgentSessions ends every session of an agent ("sign out
	// everywhere") and returns how many there were.
	DeleteAgentSessions(ctx context.Context, agentID string) (int, error)
	// SaveCall inserts or updates a call record.
	SaveCall(ctx context.Context, r *CallRecord) error
	// Calls lists a conversation's call records, oldest first.
	Calls(ctx context.Context, conversationID string) ([]*CallRecord, error)
	// DayStats counts the conversations of queues opened at or after
	// since, and their voice calls started at or after since (the
	// supervisor board's "today").
	DayStats(ctx context.Context, since time.Time, queues []string) (*DayStats, error)
	// SaveCallDialog records the SIP dialog of an answered call, so that
	// a gateway restarted after a crash can end it; saving the call with
	// an end time forgets it.
	SaveCallDialog(ctx context.Context, callID string, dialog json.RawMessage) error
	// UnfinishedCalls lists the call records without an end time, oldest
	// first, each with its dialog when one was saved: after a crash, the
	// calls that were up. A conversationID other than "" lists that
	// conversation's only (a cluster node taking a conversation over from
	// a dead node).
	UnfinishedCalls(ctx context.Context, conversationID string) ([]*CallRecord, error)
	// Integrations searches conversations and keeps the webhook outbox.
	Integrations
	// Desk keeps internal notes, canned replies and wrap-up codes.
	Desk
	// CreateRecording records r (ID, ConversationID, CallID, Format and
	// Type set) and creates its file, which the caller writes and closes.
	CreateRecording(ctx context.Context, r *Recording) (RecordingFile, error)
	// FinishRecording records r's duration and end (now when unset) and
	// its file's size, once the file is complete.
	FinishRecording(ctx context.Context, r *Recording) error
	// Recording returns a recording's metadata, or ErrNotFound.
	Recording(ctx context.Context, id string) (*Recording, error)
	// Recordings lists a conversation's recordings, oldest first.
	Recordings(ctx context.Context, conversationID string) ([]*Recording, error)
	// OpenRecording opens a recording's file.
	OpenRecording(r *Recording) (io.ReadSeekCloser, error)
	// DeleteBefore removes the closed conversations last changed before
	// cutoff with everything they hold: messages, files, call records
	// and recordings, rows and bytes (store.retention).
	DeleteBefore(ctx context.Context, cutoff time.Time) (Deleted, error)
	// EraseCustomer removes the closed conversations of the customer with
	// externalID or email ("" matches nothing) the same way.
	EraseCustomer(ctx context.Context, externalID, email string) (Deleted, error)
	// Ping checks the store answers.
	Ping(ctx context.Context) error
	// Close flushes and releases the store.
	Close() error
}
