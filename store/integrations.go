package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
)

// What integrations need from the store: searching conversations (with
// SQLite FTS5 over the transcript), listing a conversation's files, and
// the webhook outbox from which events are delivered at least once.

// RoleBot is the sender role of a message an integration posts as a
// named bot; it shows as a participant's message.
const RoleBot = "bot"

// Webhook delivery states.
const (
	WebhookPending   = "pending"
	WebhookDelivered = "delivered"
	WebhookDead      = "dead"
)

// ConversationQuery selects conversations for SearchConversations. Zero
// fields select everything.
type ConversationQuery struct {
	// From and To bound created_at: From <= created_at < To.
	From, To time.Time
	Queue    string
	// AgentID matches the agent holding the conversation or the last one
	// who held it.
	AgentID    string
	ExternalID string
	// Email matches the customer's e-mail without regard to case.
	Email string
	State string
	// Text is an FTS5 query over the text of the transcript's messages
	// (https://sqlite.org/fts5.html#full_text_query_syntax); an invalid
	// one gives ErrBadQuery. A conversation matches when one of its
	// messages does. With postgres, the words, "phrases", prefix*, AND,
	// OR, NOT and parentheses of that syntax are understood (ftsquery.go).
	Text string
	// After continues a listing: only conversations that come after this
	// one in the order (newest first) are returned.
	After *ConversationCursor
	Limit int
	// Keywords are plain words (not FTS5 syntax): a conversation matches
	// when its customer's name or e-mail contains every word, without
	// regard to case, or when its transcript holds every word (as the
	// start of a word).
	Keywords []string
	// Scope keeps to what one agent may read (AgentScope).
	Scope *AgentScope
}

// ConversationCursor is a position in the newest-first order of
// SearchConversations: a conversation's creation time and id.
type ConversationCursor struct {
	CreatedAt time.Time
	ID        string
}

// WebhookEvent is one event for one webhook in the outbox.
type WebhookEvent struct {
	// Seq orders the outbox: events of a conversation to a webhook are
	// delivered in Seq order.
	Seq            int64
	Webhook        string
	ConversationID string
	Type           string
	Body           []byte
	CreatedAt      time.Time
	Attempts       int
	NextAt         time.Time
	State          string
	LastError      string
}

// OutboxFunc gives the webhook events that a message causes, from the
// message as it is being stored (its seq and time set), for
// AppendMessageEvents. It runs on the store's writer, inside the
// message's transaction: it must be quick, must not keep stored, and must
// not call the store.
type OutboxFunc func(stored *Message) ([]*WebhookEvent, error)

// RecordingOutboxFunc gives the webhook events that finishing a recording
// causes, from the recording as finished (its size and end set), for
// FinishRecordingEvents. It runs inside the recording's transaction: it
// must be quick, must not keep finished, and must not call the store.
type RecordingOutboxFunc func(finished *Recording) ([]*WebhookEvent, error)

// WebhookCounts is how many outbox events are in each state.
type WebhookCounts struct {
	Pending, Dead int
}

// Integrations is the part of Store that integrations use.
type Integrations interface {
	// SearchConversations returns up to q.Limit conversations that match
	// q, newest first.
	SearchConversations(ctx context.Context, q ConversationQuery) ([]*Conversation, error)
	// Files lists a conversation's files, oldest first.
	Files(ctx context.Context, conversationID string) ([]*File, error)
	// AppendWebhookEvents adds events to the outbox, in order, as one
	// transaction; Seq, State and NextAt are set by the store. It is for
	// events no message causes; those a message causes go with it
	// (AppendMessageEvents).
	AppendWebhookEvents(ctx context.Context, events []*WebhookEvent) error
	// AppendMessageEvents is AppendMessage that also adds to the outbox,
	// in the message's own transaction, the events that events gives for
	// the stored message: the message and its events are stored together
	// or not at all, so a crash never leaves a stored message whose
	// events are lost. The events belong to the message's conversation
	// (ConversationID is set to it) and follow, in the outbox, every
	// event of the conversation appended before; their CreatedAt defaults
	// to the message's. A duplicate adds no events. An error from events,
	// or an event without webhook, type or body (ErrBadOutboxEvent),
	// fails the append alone and stores nothing; a failure of the
	// database fails the batch the message shared, as with
	// AppendMessage. events nil is AppendMessage.
	AppendMessageEvents(ctx context.Context, m *Message, events OutboxFunc) (stored *Message, dup bool, err error)
	// CreateConversationEvents is CreateConversation that also adds
	// events to the outbox in the conversation's own transaction: the
	// conversation and its events are stored together or not at all.
	// The events belong to c (ConversationID is set to c.ID); their
	// CreatedAt defaults to c's. An event without webhook, type or body
	// fails with ErrBadOutboxEvent and stores nothing. No events is
	// CreateConversation.
	CreateConversationEvents(ctx context.Context, c *Conversation, events []*WebhookEvent) error
	// FinishRecordingEvents is FinishRecording that also adds to the
	// outbox, in the same transaction as the recording's end, the events
	// events gives for the recording as finished: both are stored or
	// neither. The events belong to the recording's conversation; their
	// CreatedAt defaults to the recording's end. An error from events, or
	// a bad event (ErrBadOutboxEvent), fails it and stores nothing.
	// events nil is FinishRecording.
	FinishRecordingEvents(ctx context.Context, r *Recording, events RecordingOutboxFunc) error
	// DueWebhookEvents returns up to limit pending events, each the first
	// pending one of its webhook and conversation, whose next attempt is
	// due at now, in Seq order. An event not yet delivered thus holds back
	// the later events of its conversation to its webhook, and no others.
	// Stores shared by several gateways (PostgreSQL) claim the events
	// they return for claimant, the gateway delivering them, until their
	// attempts are recorded or the claim lapses; SQLite claims nothing.
	DueWebhookEvents(ctx context.Context, claimant string, webhooks []string, now time.Time, limit int) ([]*WebhookEvent, error)
	// ReleaseWebhookClaims ends the claims DueWebhookEvents made for
	// claimant, or every claim when claimant is "", and returns how many
	// it ended. It is for a gateway starting as the only one on its
	// database (the claims left are then those of its own last run, which
	// died mid-delivery) and for a cluster's node that saw another die:
	// their events would otherwise wait for the claims to lapse, minutes,
	// holding their conversations back. SQLite's returns 0.
	ReleaseWebhookClaims(ctx context.Context, claimant string) (int, error)
	// WebhookClaimants returns the claimants that hold claims, so that a
	// cluster's node can release those of nodes no longer alive. SQLite's
	// returns none.
	WebhookClaimants(ctx context.Context) ([]string, error)
	// NextWebhookAttempt is when the earliest pending event of webhooks is
	// due, or the zero time when none is pending.
	NextWebhookAttempt(ctx context.Context, webhooks []string) (time.Time, error)
	// UpdateWebhookEvent records the outcome of an attempt: state,
	// attempts, next attempt and last error. A delivered event leaves the
	// outbox.
	UpdateWebhookEvent(ctx context.Context, e *WebhookEvent) error
	// CountWebhookEvents counts the pending and dead events.
	CountWebhookEvents(ctx context.Context) (WebhookCounts, error)
	// DeadWebhookEvents returns up to limit dead events of webhook (""
	// for every webhook), oldest first.
	DeadWebhookEvents(ctx context.Context, webhook string, limit int) ([]*WebhookEvent, error)
	// ReplayWebhookEvents makes dead events pending again, due at now
	// with no attempts counted: the one with seq (0 for every one) of
	// webhook ("" for every webhook). It returns how many it revived.
	ReplayWebhookEvents(ctx context.Context, webhook string, seq int64, now time.Time) (int, error)
}

const integrationsSchema = `
CREATE TABLE IF NOT EXISTS webhook_outbox (
	seq INTEGER PRIMARY KEY AUTOINCREMENT,
	webhook TEXT NOT NULL,
	conversation_id TEXT NOT NULL,
	type TEXT NOT NULL,
	body BLOB NOT NULL,
	created_at INTEGER NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	next_at INTEGER NOT NULL,
	state TEXT NOT NULL,
	last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS webhook_outbox_pending ON webhook_outbox(webhook, conversation_id, seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_outbox_state ON webhook_outbox(state);
CREATE INDEX IF NOT EXISTS conversations_created ON conversations(created_at, id);
CREATE TABLE IF NOT EXISTS search_index_mark (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	indexed INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
	INSERT INTO messages_fts(messages_fts, rowid, text) SELECT 'delete', old.rowid, old.text
		WHERE old.rowid <= (SELECT indexed FROM search_index_mark);
	UPDATE search_index_mark SET indexed = (SELECT IFNULL(MAX(rowid), 0) FROM messages)
		WHERE indexed > (SELECT IFNULL(MAX(rowid), 0) FROM messages);
END;
`

// migrateIntegrations adds the search index and the outbox to a database,
// and indexes the messages a database made before the index holds. A
// database whose index a trigger fed (messages_fts_insert, before the
// writer indexed in bulk: searchindex.go) has every message indexed: its
// mark is set to the newest, the trigger dropped and the delete trigger
// replaced. If that trigger is there although the mark is too, a build
// of before ran on the database after one of now: the messages stored
// above the mark before it ran were never indexed, and those it deleted
// may have stayed, so the index is built again.
func migrateIntegrations(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var fts, mark, insertTrigger int
	if err := tx.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages_fts'),
		(SELECT COUNT(*) FROM sqlite_master WHERE name = 'search_index_mark'),
		(SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages_fts_insert')`).Scan(&fts, &mark, &insertTrigger); err != nil {
		return err
	}
	rebuild := fts == 0 || (mark == 1 && insertTrigger == 1)
	if fts == 0 {
		// An external-content table: the text stays in messages only.
		if _, err := tx.ExecContext(ctx, `CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='rowid')`); err != nil {
			return err
		}
	}
	if rebuild {
		if _, err := tx.ExecContext(ctx, `INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')`); err != nil {
			return err
		}
	}
	if rebuild || mark == 0 || insertTrigger == 1 {
		for _, q := range []string{`DROP TRIGGER IF EXISTS messages_fts_insert`, `DROP TRIGGER IF EXISTS messages_fts_delete`} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return err
			}
		}
	}
	if _, err := tx.ExecContext(ctx, integrationsSchema); err != nil {
		return err
	}
	if rebuild || mark == 0 {
		// Every message is in the index now.
		if _, err := tx.ExecContext(ctx, `INSERT INTO search_index_mark (id, indexed)
			VALUES (1, (SELECT IFNULL(MAX(rowid), 0) FROM messages))
			ON CONFLICT (id) DO UPDATE SET indexed = excluded.indexed`); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// searchFilters are the conditions of q but its full text, with ?
// placeholders and their arguments in order; at gives a time as the
// driver stores it and email is the driver's condition on the e-mail
// address, regardless of case.
func searchFilters(q ConversationQuery, at func(time.Time) any, email string) (where []string, args []any) {
	add := func(cond string, a ...any) {
		where = append(where, cond)
		args = append(args, a...)
	}
	if !q.From.IsZero() {
		add(`created_at >= ?`, at(q.From))
	}
	if !q.To.IsZero() {
		add(`created_at < ?`, at(q.To))
	}
	if q.Queue != "" {
		add(`queue = ?`, q.Queue)
	}
	if q.AgentID != "" {
		add(`(agent_id = ? OR last_agent_id = ?)`, q.AgentID, q.AgentID)
	}
	if q.ExternalID != "" {
		add(`customer_external_id = ?`, q.ExternalID)
	}
	if q.Email != "" {
		add(email, q.Email)
	}
	if q.State != "" {
		add(`state = ?`, q.State)
	}
	if q.Scope != nil {
		cond, a := scopeCondition(q.Scope)
		add(cond, a...)
	}
	if q.After != nil {
		add(`(created_at < ? OR (created_at = ? AND id < ?))`, at(q.After.CreatedAt), at(q.After.CreatedAt), q.After.ID)
	}
	return where, args
}

// sqliteTextMatch is SQLite's condition that a conversation has a
// message matching the FTS5 query given as its parameter.
const sqliteTextMatch = `id IN (SELECT m.conversation_id FROM messages_fts JOIN messages m ON m.rowid = messages_fts.rowid
	WHERE messages_fts MATCH ?)`

// SearchConversations implements Integrations. A search of the text
// first has the writer index what it stored since its last pass
// (searchindex.go), so that it finds every message stored before it.
func (s *SQLite) SearchConversations(ctx context.Context, q ConversationQuery) ([]*Conversation, error) {
	if (q.Text != "" || len(q.Keywords) > 0) && !s.index.off {
		if err := s.writer.indexNow(ctx); err != nil {
			return nil, fmt.Errorf("store: search conversations: %w", err)
		}
	}
	where, args := searchFilters(q, func(t time.Time) any { return unix(t) }, `customer_email = ? COLLATE NOCASE`)
	if len(q.Keywords) > 0 {
		cond, a := keywordCondition(q.Keywords, `LIKE ? ESCAPE '\'`, sqliteTextMatch, []any{ftsWords(q.Keywords)})
		where = append(where, cond)
		args = append(args, a...)
	}
	if q.Text != "" {
		where = append(where, sqliteTextMatch)
		args = append(args, q.Text)
	}
	sqlText := `SELECT ` + convColumns + ` FROM conversations`
	if len(where) > 0 {
		sqlText += ` WHERE ` + strings.Join(where, ` AND `)
	}
	sqlText += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, q.Limit)
	rows, err := s.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, searchError(q, err)
	}
	out, err := scanConversations(rows, "search conversations")
	if err != nil {
		return nil, searchError(q, err)
	}
	return out, nil
}

// searchError tells a text query SQLite could not parse (ErrBadQuery)
// from a failure of the store. SQLite reports FTS5 syntax errors, as any
// error in the SQL, with the generic SQLITE_ERROR code; the rest of the
// statement is the store's own, so with a text query that code means the
// query.
func searchError(q ConversationQuery, err error) error {
	var se *sqlite.Error
	if (q.Text != "" || len(q.Keywords) > 0) && errors.As(err, &se) && se.Code() == 1 {
		return fmt.Errorf("%w: %s", ErrBadQuery, strings.TrimPrefix(se.Error(), "SQL logic error: "))
	}
	return fmt.Errorf("store: search conversations: %w", err)
}

// Files implements Integrations.
func (s *SQLite) Files(ctx context.Context, conversationID string) ([]*File, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, conversation_id, name, type, size, content_id, created_at
		FROM files WHERE conversation_id = ? ORDER BY created_at, id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: files of %s: %w", conversationID, err)
	}
	defer rows.Close()
	var out []*File
	for rows.Next() {
		var f File
		var created int64
		if err := rows.Scan(&f.ID, &f.ConversationID, &f.Name, &f.Type, &f.Size, &f.ContentID, &created); err != nil {
			return nil, fmt.Errorf("store: files of %s: %w", conversationID, err)
		}
		f.CreatedAt = fromUnix(created)
		out = append(out, &f)
	}
	return out, rows.Err()
}

// sqliteOutboxInsert adds one event to SQLite's outbox.
const sqliteOutboxInsert = `INSERT INTO webhook_outbox (webhook, conversation_id, type, body, created_at, next_at, state)
	VALUES (?,?,?,?,?,?,?)`

// AppendWebhookEvents implements Integrations.
func (s *SQLite) AppendWebhookEvents(ctx context.Context, events []*WebhookEvent) error {
	if len(events) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: append webhook events: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	for _, e := range events {
		if e.CreatedAt.IsZero() {
			e.CreatedAt = time.Now().UTC()
		}
		e.State, e.NextAt = WebhookPending, e.CreatedAt
		res, err := tx.ExecContext(ctx, sqliteOutboxInsert, e.Webhook, e.ConversationID, e.Type, e.Body, unix(e.CreatedAt), unix(e.NextAt), e.State)
		if err != nil {
			return fmt.Errorf("store: append webhook events: %w", err)
		}
		if e.Seq, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("store: append webhook events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: append webhook events: %w", err)
	}
	return nil
}

// outboxEvents gives the outbox events of r's message as it is being
// stored (stored), ready to insert: ConversationID, CreatedAt, State and
// NextAt set. An error fails r alone.
func outboxEvents(r *appendReq, stored *Message) ([]*WebhookEvent, error) {
	if r.outbox == nil {
		return nil, nil
	}
	m := *stored // the caller's function cannot change what is stored
	evs, err := r.outbox(&m)
	if err != nil {
		return nil, fmt.Errorf("store: outbox events of message %s: %w", stored.ID, err)
	}
	if err := prepareOutbox(evs, stored.ConversationID, stored.CreatedAt); err != nil {
		return nil, err
	}
	return evs, nil
}

// prepareOutbox makes events, caused by something stored in conversation
// conv at time at, ready to insert with it: ConversationID, CreatedAt
// (at, unless set), State and NextAt set. An event without webhook, type
// or body, or with text a store cannot keep, is ErrBadOutboxEvent.
func prepareOutbox(events []*WebhookEvent, conv string, at time.Time) error {
	for _, e := range events {
		if e == nil || e.Webhook == "" || e.Type == "" || e.Body == nil || !validText(e.Webhook, e.Type) {
			return ErrBadOutboxEvent
		}
		e.ConversationID = conv
		if e.CreatedAt.IsZero() {
			e.CreatedAt = at
		}
		e.State, e.NextAt, e.Attempts, e.LastError = WebhookPending, e.CreatedAt, 0, ""
	}
	return nil
}

// recordingOutbox gives the outbox events of r, finished, ready to
// insert (prepareOutbox).
func recordingOutbox(r *Recording, events RecordingOutboxFunc) ([]*WebhookEvent, error) {
	if events == nil {
		return nil, nil
	}
	finished := *r
	evs, err := events(&finished)
	if err != nil {
		return nil, fmt.Errorf("store: outbox events of recording %s: %w", r.ID, err)
	}
	if err := prepareOutbox(evs, r.ConversationID, r.EndedAt); err != nil {
		return nil, err
	}
	return evs, nil
}

// insertOutboxSQLite inserts events, prepared, in tx and sets their seqs.
func insertOutboxSQLite(ctx context.Context, tx *sql.Tx, events []*WebhookEvent) error {
	for _, e := range events {
		res, err := tx.ExecContext(ctx, sqliteOutboxInsert, e.Webhook, e.ConversationID, e.Type, e.Body, unix(e.CreatedAt), unix(e.NextAt), e.State)
		if err != nil {
			return err
		}
		if e.Seq, err = res.LastInsertId(); err != nil {
			return err
		}
	}
	return nil
}

const webhookColumns = `seq, webhook, conversation_id, type, body, created_at, attempts, next_at, state, last_error`

// scanWebhookEvents reads the webhookColumns of rows and closes them;
// what names the listing in errors.
func scanWebhookEvents(rows *sql.Rows, what string) ([]*WebhookEvent, error) {
	defer rows.Close()
	var out []*WebhookEvent
	for rows.Next() {
		var e WebhookEvent
		var created, next int64
		if err := rows.Scan(&e.Seq, &e.Webhook, &e.ConversationID, &e.Type, &e.Body, &created, &e.Attempts, &next,
			&e.State, &e.LastError); err != nil {
			return nil, fmt.Errorf("store: %s webhook events: %w", what, err)
		}
		e.CreatedAt, e.NextAt = fromUnix(created), fromUnix(next)
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s webhook events: %w", what, err)
	}
	return out, nil
}

// DueWebhookEvents implements Integrations.
func (s *SQLite) DueWebhookEvents(ctx context.Context, _ string, webhooks []string, now time.Time, limit int) ([]*WebhookEvent, error) {
	if len(webhooks) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(webhooks)+2)
	for _, w := range webhooks {
		args = append(args, w)
	}
	args = append(args, unix(now), limit)
	rows, err := s.db.QueryContext(ctx, `SELECT `+webhookColumns+` FROM webhook_outbox o
		WHERE o.state = 'pending' AND o.webhook IN (?`+strings.Repeat(",?", len(webhooks)-1)+`)
		AND o.seq = (SELECT MIN(seq) FROM webhook_outbox h WHERE h.state = 'pending'
			AND h.webhook = o.webhook AND h.conversation_id = o.conversation_id)
		AND o.next_at <= ? ORDER BY o.seq LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: due webhook events: %w", err)
	}
	return scanWebhookEvents(rows, "due")
}

// ReleaseWebhookClaims implements Integrations: one gateway alone uses
// an SQLite database, and it claims nothing.
func (s *SQLite) ReleaseWebhookClaims(context.Context, string) (int, error) { return 0, nil }

// WebhookClaimants implements Integrations: SQLite claims nothing.
func (s *SQLite) WebhookClaimants(context.Context) ([]string, error) { return nil, nil }

// NextWebhookAttempt implements Integrations.
func (s *SQLite) NextWebhookAttempt(ctx context.Context, webhooks []string) (time.Time, error) {
	if len(webhooks) == 0 {
		return time.Time{}, nil
	}
	args := make([]any, 0, len(webhooks))
	for _, w := range webhooks {
		args = append(args, w)
	}
	var next sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT MIN(next_at) FROM webhook_outbox WHERE state = 'pending'
		AND webhook IN (?`+strings.Repeat(",?", len(webhooks)-1)+`)`, args...).Scan(&next)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: next webhook attempt: %w", err)
	}
	if !next.Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(next.Int64).UTC(), nil
}

// UpdateWebhookEvent implements Integrations.
func (s *SQLite) UpdateWebhookEvent(ctx context.Context, e *WebhookEvent) error {
	if e.State == WebhookDelivered {
		// Delivered events are done with: the outbox keeps what is owed.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM webhook_outbox WHERE seq = ?`, e.Seq); err != nil {
			return fmt.Errorf("store: update webhook event %d: %w", e.Seq, err)
		}
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE webhook_outbox SET state = ?, attempts = ?, next_at = ?, last_error = ? WHERE seq = ?`,
		e.State, e.Attempts, unix(e.NextAt), e.LastError, e.Seq)
	if err != nil {
		return fmt.Errorf("store: update webhook event %d: %w", e.Seq, err)
	}
	return nil
}

// CountWebhookEvents implements Integrations.
func (s *SQLite) CountWebhookEvents(ctx context.Context) (WebhookCounts, error) {
	var c WebhookCounts
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM webhook_outbox WHERE state = 'pending'),
		(SELECT COUNT(*) FROM webhook_outbox WHERE state = 'dead')`).Scan(&c.Pending, &c.Dead)
	if err != nil {
		return c, fmt.Errorf("store: count webhook events: %w", err)
	}
	return c, nil
}

// DeadWebhookEvents implements Integrations.
func (s *SQLite) DeadWebhookEvents(ctx context.Context, webhook string, limit int) ([]*WebhookEvent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+webhookColumns+` FROM webhook_outbox
		WHERE state = 'dead' AND (? = '' OR webhook = ?) ORDER BY seq LIMIT ?`, webhook, webhook, limit)
	if err != nil {
		return nil, fmt.Errorf("store: dead webhook events: %w", err)
	}
	return scanWebhookEvents(rows, "dead")
}

// ReplayWebhookEvents implements Integrations.
func (s *SQLite) ReplayWebhookEvents(ctx context.Context, webhook string, seq int64, now time.Time) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_at = ?, last_error = ''
		WHERE state = 'dead' AND (? = '' OR webhook = ?) AND (? = 0 OR seq = ?)`, unix(now), webhook, webhook, seq, seq)
	if err != nil {
		return 0, fmt.Errorf("store: replay webhook events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("store: replay webhook events: %w", err)
	}
	return int(n), nil
}
