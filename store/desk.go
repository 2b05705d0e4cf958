package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// What the agent's desk needs from the store: internal notes on
// conversations, personal canned replies, and the wrap-up code chosen
// when a conversation ends, counted per queue and code.

// Note is an internal note an agent wrote on a conversation. Notes are
// for the contact center only: they are kept apart from the transcript,
// so nothing that reads messages for the customer can reach them.
type Note struct {
	ID             string
	ConversationID string
	AgentID        string
	AgentName      string
	Text           string
	CreatedAt      time.Time
}

// CannedReply is an agent's own canned reply, inserted in the console's
// reply box by typing "/" and its shortcut.
type CannedReply struct {
	ID        string
	AgentID   string
	Shortcut  string
	Text      string
	UpdatedAt time.Time
}

// WrapUpCount is how many conversations of a queue ended with a code.
type WrapUpCount struct {
	Queue string
	Code  string
	Count int
}

// AgentScope is what an agent may read: the conversations of its queues
// that are not held by another agent now (waiting, left or ended), and
// every conversation it holds or held last.
type AgentScope struct {
	AgentID string
	Queues  []string
}

// Desk is the part of Store the agent's console uses beyond the chat.
type Desk interface {
	// AddNote stores an internal note; n.ID, n.ConversationID and n.Text
	// must be set. A note with an id already stored is ErrDuplicate.
	AddNote(ctx context.Context, n *Note) error
	// Notes lists a conversation's notes, oldest first.
	Notes(ctx context.Context, conversationID string) ([]*Note, error)
	// SetWrapUp records the wrap-up code of a conversation.
	SetWrapUp(ctx context.Context, conversationID, code string) error
	// WrapUpCounts counts the wrap-up codes of the conversations that
	// ended in [from, to), by queue and code, ordered by queue then code.
	WrapUpCounts(ctx context.Context, from, to time.Time) ([]WrapUpCount, error)
	// CannedReplies lists an agent's own canned replies by shortcut.
	CannedReplies(ctx context.Context, agentID string) ([]*CannedReply, error)
	// SaveCannedReply inserts r, or updates the reply with r.ID when the
	// same agent owns it; a reply of another agent is ErrNotFound, and a
	// shortcut the agent uses for another reply is ErrDuplicate.
	SaveCannedReply(ctx context.Context, r *CannedReply) error
	// DeleteCannedReply removes an agent's own reply, or gives ErrNotFound.
	DeleteCannedReply(ctx context.Context, agentID, id string) error
}

const deskSchema = `
CREATE TABLE IF NOT EXISTS notes (
	id TEXT PRIMARY KEY,
	conversation_id TEXT NOT NULL REFERENCES conversations(id),
	agent_id TEXT NOT NULL,
	agent_name TEXT NOT NULL DEFAULT '',
	text TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notes_conversation ON notes(conversation_id, created_at);
CREATE TABLE IF NOT EXISTS canned_replies (
	id TEXT PRIMARY KEY,
	agent_id TEXT NOT NULL,
	shortcut TEXT NOT NULL,
	text TEXT NOT NULL,
	updated_at INTEGER NOT NULL,
	UNIQUE (agent_id, shortcut)
);
CREATE INDEX IF NOT EXISTS conversations_wrap_up ON conversations(ended_at) WHERE wrap_up != '';
`

// migrateDesk adds the notes and canned replies tables; the wrap_up
// column comes with conversationColumns, before it.
func migrateDesk(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, deskSchema)
	return err
}

// isUniqueViolation reports SQLite's SQLITE_CONSTRAINT_UNIQUE and
// SQLITE_CONSTRAINT_PRIMARYKEY.
func isUniqueViolation(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "UNIQUE constraint failed") || strings.Contains(msg, "PRIMARY KEY constraint failed")
}

// AddNote implements Desk.
func (s *SQLite) AddNote(ctx context.Context, n *Note) error {
	if n.CreatedAt.IsZero() {
		n.CreatedAt = time.Now().UTC()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO notes (id, conversation_id, agent_id, agent_name, text, created_at)
		VALUES (?,?,?,?,?,?)`, n.ID, n.ConversationID, n.AgentID, n.AgentName, n.Text, unix(n.CreatedAt))
	if err != nil && isUniqueViolation(err) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("store: add note to %s: %w", n.ConversationID, err)
	}
	return nil
}

// Notes implements Desk.
func (s *SQLite) Notes(ctx context.Context, conversationID string) ([]*Note, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, conversation_id, agent_id, agent_name, text, created_at
		FROM notes WHERE conversation_id = ? ORDER BY created_at, id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: notes of %s: %w", conversationID, err)
	}
	defer rows.Close()
	var out []*Note
	for rows.Next() {
		var n Note
		var created int64
		if err := rows.Scan(&n.ID, &n.ConversationID, &n.AgentID, &n.AgentName, &n.Text, &created); err != nil {
			return nil, fmt.Errorf("store: notes of %s: %w", conversationID, err)
		}
		n.CreatedAt = fromUnix(created)
		out = append(out, &n)
	}
	return out, rows.Err()
}

// SetWrapUp implements Desk.
func (s *SQLite) SetWrapUp(ctx context.Context, conversationID, code string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET wrap_up = ? WHERE id = ?`, code, conversationID)
	if err != nil {
		return fmt.Errorf("store: wrap-up of %s: %w", conversationID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// WrapUpCounts implements Desk.
func (s *SQLite) WrapUpCounts(ctx context.Context, from, to time.Time) ([]WrapUpCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT queue, wrap_up, COUNT(*) FROM conversations
		WHERE wrap_up != '' AND ended_at >= ? AND ended_at < ? GROUP BY queue, wrap_up ORDER BY queue, wrap_up`,
		unix(from), unix(to))
	if err != nil {
		return nil, fmt.Errorf("store: wrap-up counts: %w", err)
	}
	defer rows.Close()
	var out []WrapUpCount
	for rows.Next() {
		var c WrapUpCount
		if err := rows.Scan(&c.Queue, &c.Code, &c.Count); err != nil {
			return nil, fmt.Errorf("store: wrap-up counts: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// CannedReplies implements Desk.
func (s *SQLite) CannedReplies(ctx context.Context, agentID string) ([]*CannedReply, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, agent_id, shortcut, text, updated_at FROM canned_replies
		WHERE agent_id = ? ORDER BY shortcut`, agentID)
	if err != nil {
		return nil, fmt.Errorf("store: canned replies of %s: %w", agentID, err)
	}
	defer rows.Close()
	var out []*CannedReply
	for rows.Next() {
		var r CannedReply
		var updated int64
		if err := rows.Scan(&r.ID, &r.AgentID, &r.Shortcut, &r.Text, &updated); err != nil {
			return nil, fmt.Errorf("store: canned replies of %s: %w", agentID, err)
		}
		r.UpdatedAt = fromUnix(updated)
		out = append(out, &r)
	}
	return out, rows.Err()
}

// SaveCannedReply implements Desk.
func (s *SQLite) SaveCannedReply(ctx context.Context, r *CannedReply) error {
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = time.Now().UTC()
	}
	// The upsert touches a row only when the same agent owns it; another
	// agent's id changes nothing and is reported as not found.
	res, err := s.db.ExecContext(ctx, `INSERT INTO canned_replies (id, agent_id, shortcut, text, updated_at) VALUES (?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET shortcut = excluded.shortcut, text = excluded.text, updated_at = excluded.updated_at
		WHERE canned_replies.agent_id = excluded.agent_id`, r.ID, r.AgentID, r.Shortcut, r.Text, unix(r.UpdatedAt))
	if err != nil && isUniqueViolation(err) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("store: save canned reply: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteCannedReply implements Desk.
func (s *SQLite) DeleteCannedReply(ctx context.Context, agentID, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM canned_replies WHERE id = ? AND agent_id = ?`, id, agentID)
	if err != nil {
		return fmt.Errorf("store: delete canned reply: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// escapeLike escapes LIKE's wildcards in s for ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ftsWords turns plain words into an FTS5 query: each word a quoted
// prefix term, so no word is read as FTS5 syntax.
func ftsWords(words []string) string {
	terms := make([]string, 0, len(words))
	for _, w := range words {
		terms = append(terms, `"`+strings.ReplaceAll(w, `"`, `""`)+`"*`)
	}
	return strings.Join(terms, " ")
}

// keywordCondition is the SQL of ConversationQuery.Keywords with ?
// placeholders: every word in the customer's name or e-mail (like is the
// driver's case-blind LIKE operator with its ? and escape), or transcript,
// the driver's condition that the transcript holds every word, with its
// arguments.
func keywordCondition(words []string, like, transcript string, transcriptArgs []any) (string, []any) {
	var parts []string
	var args []any
	for _, w := range words {
		p := "%" + escapeLike(w) + "%"
		parts = append(parts, `(customer_name `+like+` OR customer_email `+like+`)`)
		args = append(args, p, p)
	}
	return `((` + strings.Join(parts, ` AND `) + `) OR ` + transcript + `)`, append(args, transcriptArgs...)
}

// scopeCondition is the SQL of ConversationQuery.Scope.
func scopeCondition(sc *AgentScope) (string, []any) {
	args := []any{sc.AgentID, StateActive, sc.AgentID}
	cond := `(agent_id = ? OR (state != ? AND last_agent_id = ?)`
	if len(sc.Queues) > 0 {
		cond += ` OR (state != ? AND queue IN (?` + strings.Repeat(",?", len(sc.Queues)-1) + `))`
		args = append(args, StateActive)
		for _, q := range sc.Queues {
			args = append(args, q)
		}
	}
	return cond + `)`, args
}
