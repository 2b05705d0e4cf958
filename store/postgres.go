package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the store for several gateways sharing one database: the
// same records as SQLite in PostgreSQL (schema in migrations/postgres,
// applied as it opens), uploaded files' bytes in a directory the gateways
// share.
type Postgres struct {
	pool *pgxpool.Pool
	fileDir
	// writer commits appended messages in batches (groupcommit.go).
	writer *groupWriter
}

var _ Store = (*Postgres)(nil)

// OpenPostgres connects to the database dsn names, brings its schema up
// to date and opens the files directory dir. Every session commits
// synchronously (synchronous_commit on, unless the DSN asks for a
// stronger level): a write returns once it is in the server's WAL on
// disk, so what the gateway acknowledges survives a crash of the server.
// A DSN or server setting that turns it off is refused.
func OpenPostgres(ctx context.Context, dsn, dir string) (*Postgres, error) {
	pc, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, errBadDSN
	}
	if _, set := pc.ConnConfig.RuntimeParams["synchronous_commit"]; !set {
		pc.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	files, err := newFileDir(dir)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	var level string
	if err := pool.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&level); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	if level == "off" {
		pool.Close()
		return nil, fmt.Errorf("%w: synchronous_commit is off, so an acknowledged message could be lost", ErrNotDurable)
	}
	if _, err := migratePostgres(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	p := &Postgres{pool: pool, fileDir: files}
	p.writer = startGroupWriter(p.commitBatch)
	return p, nil
}

// validText reports whether PostgreSQL's text type can keep every s.
func validText(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
			return false
		}
	}
	return true
}

// ts is a time as a timestamptz parameter: NULL for the zero time.
func ts(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// fromTS is a scanned timestamptz: the zero time for NULL, else UTC.
func fromTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func conversationText(c *Conversation) bool {
	return validText(c.ID, c.State, c.Queue, c.AgentID, c.LastAgentID, c.Customer.Name, c.Customer.Email,
		c.Customer.ExternalID, c.ClientIP, c.Origin)
}

// CreateConversation implements Store.
func (p *Postgres) CreateConversation(ctx context.Context, c *Conversation) error {
	return p.CreateConversationEvents(ctx, c, nil)
}

// CreateConversationEvents implements Integrations.
func (p *Postgres) CreateConversationEvents(ctx context.Context, c *Conversation, events []*WebhookEvent) error {
	if !conversationText(c) {
		return ErrInvalidText
	}
	if err := prepareOutbox(events, c.ID, c.CreatedAt); err != nil {
		return err
	}
	var b pgx.Batch
	b.Queue(`INSERT INTO conversations (id, state, queue, agent_id, last_agent_id,
		customer_name, customer_email, customer_external_id, customer_verified, token_hash, client_ip,
		created_at, updated_at, ended_at, last_seq, read_customer, read_agent, answered_at, origin)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)`,
		c.ID, c.State, c.Queue, c.AgentID, c.LastAgentID, c.Customer.Name, c.Customer.Email,
		c.Customer.ExternalID, c.Customer.Verified, c.TokenHash, c.ClientIP,
		ts(c.CreatedAt), ts(c.UpdatedAt), ts(c.EndedAt), c.LastSeq, c.ReadByCust, c.ReadByAgt,
		ts(c.AnsweredAt), c.Origin)
	queueOutbox(&b, events)
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &b).Close() })
	if err != nil {
		return fmt.Errorf("store: create conversation %s: %w", c.ID, err)
	}
	return nil
}

func scanPgConversation(row pgx.Row) (*Conversation, error) {
	var c Conversation
	var created, updated, ended, answered, rated *time.Time
	err := row.Scan(&c.ID, &c.State, &c.Queue, &c.AgentID, &c.LastAgentID, &c.Customer.Name,
		&c.Customer.Email, &c.Customer.ExternalID, &c.Customer.Verified, &c.TokenHash, &c.ClientIP,
		&created, &updated, &ended, &c.LastSeq, &c.ReadByCust, &c.ReadByAgt,
		&answered, &c.Origin, &c.Rating.Score, &c.Rating.Comment, &rated, &c.WrapUp)
	if err != nil {
		return nil, err
	}
	c.CreatedAt, c.UpdatedAt, c.EndedAt = fromTS(created), fromTS(updated), fromTS(ended)
	c.AnsweredAt, c.Rating.At = fromTS(answered), fromTS(rated)
	return &c, nil
}

// Conversation implements Store.
func (p *Postgres) Conversation(ctx context.Context, id string) (*Conversation, error) {
	c, err := scanPgConversation(p.pool.QueryRow(ctx, `SELECT `+convColumns+` FROM conversations WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: conversation %s: %w", id, err)
	}
	return c, nil
}

// UpdateConversation implements Store. It never lowers last_seq, which
// only AppendMessage advances, nor the read marks.
func (p *Postgres) UpdateConversation(ctx context.Context, c *Conversation) error {
	if !conversationText(c) {
		return ErrInvalidText
	}
	return pgUpdateConversation(ctx, p.pool, c)
}

// pgExec is what a pool and a transaction both run statements with.
type pgExec interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func pgUpdateConversation(ctx context.Context, db pgExec, c *Conversation) error {
	tag, err := db.Exec(ctx, `UPDATE conversations SET state=$1, queue=$2, agent_id=$3, last_agent_id=$4,
		customer_name=$5, customer_email=$6, customer_external_id=$7, customer_verified=$8, updated_at=$9, ended_at=$10,
		read_customer=GREATEST(read_customer, $11), read_agent=GREATEST(read_agent, $12),
		answered_at=COALESCE(answered_at, $13) WHERE id=$14`,
		c.State, c.Queue, c.AgentID, c.LastAgentID, c.Customer.Name, c.Customer.Email, c.Customer.ExternalID,
		c.Customer.Verified, ts(c.UpdatedAt), ts(c.EndedAt), c.ReadByCust, c.ReadByAgt, ts(c.AnsweredAt), c.ID)
	if err != nil {
		return fmt.Errorf("store: update conversation %s: %w", c.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// agentLockClass is the first key of the advisory locks that make one
// agent's assignments take turns (the second is a hash of the agent's
// id); see outboxLockClass.
const agentLockClass = 0x53656741 // "SegA"

// AssignConversation implements Store. Assignments to one agent take
// turns on an advisory lock held to the commit, so each one counts the
// agent's active conversations after the previous one committed: under
// READ COMMITTED a plain conditional UPDATE would let two gateways both
// count the agent's last free slot.
func (p *Postgres) AssignConversation(ctx context.Context, c *Conversation, max int) error {
	if !conversationText(c) || !validText(c.AgentID) {
		return ErrInvalidText
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, agentLockClass, c.AgentID); err != nil {
			return fmt.Errorf("store: assign %s: %w", c.ID, err)
		}
		var held int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM conversations WHERE state = $1 AND agent_id = $2 AND id <> $3`,
			StateActive, c.AgentID, c.ID).Scan(&held); err != nil {
			return fmt.Errorf("store: assign %s: %w", c.ID, err)
		}
		if held >= max {
			return ErrAtCapacity
		}
		return pgUpdateConversation(ctx, tx, c)
	})
	return err
}

// MarkRead implements Store.
func (p *Postgres) MarkRead(ctx context.Context, id, role string, seq int64) error {
	col := readColumn(role)
	if _, err := p.pool.Exec(ctx, `UPDATE conversations SET `+col+` = GREATEST(`+col+`, $1) WHERE id = $2`, seq, id); err != nil {
		return fmt.Errorf("store: mark read %s: %w", id, err)
	}
	return nil
}

// OpenConversations implements Store.
func (p *Postgres) OpenConversations(ctx context.Context) ([]*Conversation, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+convColumns+` FROM conversations
		WHERE state IN ('waiting', 'active') ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("store: open conversations: %w", err)
	}
	return scanPgConversations(rows, "open conversations")
}

// LeftConversations implements Store.
func (p *Postgres) LeftConversations(ctx context.Context, queues []string, limit int) ([]*Conversation, error) {
	if len(queues) == 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `SELECT `+convColumns+` FROM conversations WHERE state = $1 AND queue = ANY($2)
		ORDER BY created_at DESC, id DESC LIMIT $3`, StateLeft, queues, limit)
	if err != nil {
		return nil, fmt.Errorf("store: left conversations: %w", err)
	}
	return scanPgConversations(rows, "left conversations")
}

func scanPgConversations(rows pgx.Rows, what string) ([]*Conversation, error) {
	defer rows.Close()
	var out []*Conversation
	for rows.Next() {
		c, err := scanPgConversation(rows)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", what, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	return out, nil
}

func messageText(m *Message) bool {
	return validText(m.ConversationID, m.ID, m.Role, m.SenderID, m.SenderName, m.Kind, m.Text, m.Event, string(m.EventData))
}

// AppendMessage implements Store, with the group commit of SQLite
// (groupcommit.go); it returns once the message's transaction is
// committed. Text PostgreSQL cannot keep is refused before it reaches a
// batch, so it never fails the messages it would have shared one with.
func (p *Postgres) AppendMessage(ctx context.Context, m *Message) (*Message, bool, error) {
	return p.AppendMessageEvents(ctx, m, nil)
}

// AppendMessageEvents implements Integrations: the events are written by
// the writer in the message's transaction, after the advisory lock of
// their conversation that AppendWebhookEvents takes too, so that a
// conversation's outbox seqs are in commit order whichever way its
// events come.
func (p *Postgres) AppendMessageEvents(ctx context.Context, m *Message, events OutboxFunc) (*Message, bool, error) {
	if !messageText(m) {
		return nil, false, ErrInvalidText
	}
	return p.writer.append(ctx, m, events)
}

func scanPgMessage(row pgx.Row) (*Message, error) {
	var m Message
	var created, fcreated *time.Time
	var data string
	var fid, fname, ftype, fcontent *string
	var fsize *int64
	if err := row.Scan(&m.ConversationID, &m.Seq, &m.ID, &m.Role, &m.SenderID, &m.SenderName, &m.Kind,
		&m.Text, &m.Event, &data, &created, &fid, &fname, &ftype, &fsize, &fcontent, &fcreated); err != nil {
		return nil, err
	}
	m.CreatedAt = fromTS(created)
	if data != "" {
		m.EventData = []byte(data)
	}
	if fid != nil {
		m.File = &File{ID: *fid, ConversationID: m.ConversationID, Name: *fname, Type: *ftype,
			Size: *fsize, ContentID: *fcontent, CreatedAt: fromTS(fcreated)}
	}
	return &m, nil
}

// commitBatch writes batch in one transaction. Unlike SQLite's writer it
// remembers nothing between batches: another gateway may append to the
// same conversation (after taking it over), so each batch locks its
// conversations' rows (in id order, so that two writers cannot deadlock)
// and reads their last seqs and the ids already stored. A message whose
// conversation does not exist gets ErrNotFound and one whose id the
// conversation already has gets the stored one (dup); any other failure
// rolls the whole batch back and is returned for all. The messages'
// webhook events (AppendMessageEvents) are inserted in the same
// transaction, in the order of their messages.
func (p *Postgres) commitBatch(batch []*appendReq) ([]appendResult, error) {
	ctx := context.Background()
	var convIDs, pairConv, pairID []string
	for _, r := range batch {
		if !slices.Contains(convIDs, r.m.ConversationID) {
			convIDs = append(convIDs, r.m.ConversationID)
		}
		pairConv, pairID = append(pairConv, r.m.ConversationID), append(pairID, r.m.ID)
	}
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	last := map[string]int64{}
	rows, err := tx.Query(ctx, `SELECT id, last_seq FROM conversations WHERE id = ANY($1) ORDER BY id FOR UPDATE`, convIDs)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return nil, err
		}
		last[id] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	type key struct{ conv, id string }
	stored := map[key]*Message{}
	rows, err = tx.Query(ctx, `SELECT `+msgColumns+` FROM messages m LEFT JOIN files f ON f.id = m.file_id
		WHERE (m.conversation_id, m.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, pairConv, pairID)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		m, err := scanPgMessage(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		stored[key{m.ConversationID, m.ID}] = m
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	results := make([]appendResult, len(batch))
	var outbox []*WebhookEvent // the messages' webhook events, in order
	updated := map[string]time.Time{}
	var order []string // conversations in first-appended order, for the updates
	var b pgx.Batch
	for i, r := range batch {
		m := r.m
		seq, ok := last[m.ConversationID]
		if !ok {
			results[i] = appendResult{err: ErrNotFound}
			continue
		}
		if old, ok := stored[key{m.ConversationID, m.ID}]; ok {
			dup := *old
			results[i] = appendResult{msg: &dup, dup: true}
			continue
		}
		out := *m
		out.Seq = seq + 1
		if out.CreatedAt.IsZero() {
			out.CreatedAt = time.Now().UTC()
		}
		// What is returned is what a later read gives back.
		out.CreatedAt = out.CreatedAt.Truncate(time.Microsecond)
		events, err := outboxEvents(r, &out)
		if err != nil {
			results[i] = appendResult{err: err}
			continue
		}
		outbox = append(outbox, events...)
		fileID := ""
		if out.File != nil {
			fileID = out.File.ID
		}
		b.Queue(`INSERT INTO messages (conversation_id, seq, id, role, sender_id, sender_name, kind, text, file_id,
			event, event_data, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
			out.ConversationID, out.Seq, out.ID, out.Role, out.SenderID, out.SenderName, out.Kind, out.Text, fileID,
			out.Event, string(out.EventData), out.CreatedAt)
		last[m.ConversationID] = out.Seq
		if _, seen := updated[m.ConversationID]; !seen {
			order = append(order, m.ConversationID)
		}
		updated[m.ConversationID] = out.CreatedAt
		stored[key{m.ConversationID, m.ID}] = &out
		results[i] = appendResult{msg: &out}
	}
	for _, id := range order {
		b.Queue(`UPDATE conversations SET last_seq = $1, updated_at = $2 WHERE id = $3`, last[id], updated[id], id)
	}
	queueOutbox(&b, outbox)
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	return results, nil
}

// Messages implements Store.
func (p *Postgres) Messages(ctx context.Context, conversationID string, after int64, limit int) ([]*Message, error) {
	return p.queryMessages(ctx, conversationID, `m.seq > $2 ORDER BY m.seq`, after, limit)
}

// MessagesBefore implements Store.
func (p *Postgres) MessagesBefore(ctx context.Context, conversationID string, before int64, limit int) ([]*Message, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	out, err := p.queryMessages(ctx, conversationID, `m.seq < $2 ORDER BY m.seq DESC`, before, limit)
	slices.Reverse(out)
	return out, err
}

// queryMessages reads up to limit messages of a conversation with their
// files, selected and ordered by where ($2 for seq).
func (p *Postgres) queryMessages(ctx context.Context, conversationID, where string, seq int64, limit int) ([]*Message, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+msgColumns+` FROM messages m LEFT JOIN files f ON f.id = m.file_id
		WHERE m.conversation_id = $1 AND `+where+` LIMIT $3`, conversationID, seq, limit)
	if err != nil {
		return nil, fmt.Errorf("store: messages of %s: %w", conversationID, err)
	}
	defer rows.Close()
	var out []*Message
	for rows.Next() {
		m, err := scanPgMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("store: messages of %s: %w", conversationID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// SaveFile implements Store: the bytes are on disk under their content
// id (fileDir.writeContent) before the record is written.
func (p *Postgres) SaveFile(ctx context.Context, f *File, r io.Reader, max int64) error {
	if !validText(f.ID, f.ConversationID, f.Name, f.Type) {
		return ErrInvalidText
	}
	if err := p.writeContent(f, r, max); err != nil {
		return err
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO files (id, conversation_id, name, type, size, content_id, created_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7)`, f.ID, f.ConversationID, f.Name, f.Type, f.Size, f.ContentID, ts(f.CreatedAt)); err != nil {
		return fmt.Errorf("store: save file: %w", err)
	}
	return nil
}

// File implements Store.
func (p *Postgres) File(ctx context.Context, id string) (*File, error) {
	f, err := scanPgFile(p.pool.QueryRow(ctx, `SELECT `+fileColumns+` FROM files WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: file %s: %w", id, err)
	}
	return f, nil
}

const fileColumns = `id, conversation_id, name, type, size, content_id, created_at`

func scanPgFile(row pgx.Row) (*File, error) {
	var f File
	var created *time.Time
	if err := row.Scan(&f.ID, &f.ConversationID, &f.Name, &f.Type, &f.Size, &f.ContentID, &created); err != nil {
		return nil, err
	}
	f.CreatedAt = fromTS(created)
	return &f, nil
}

// OpenFile implements Store.
func (p *Postgres) OpenFile(f *File) (io.ReadSeekCloser, error) { return p.openContent(f) }

// DeleteFile implements Store.
func (p *Postgres) DeleteFile(ctx context.Context, f *File) error {
	var n int
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM files WHERE id = $1`, f.ID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT count(*) FROM files WHERE content_id = $1`, f.ContentID).Scan(&n)
	})
	if err != nil {
		return fmt.Errorf("store: delete file %s: %w", f.ID, err)
	}
	if n == 0 {
		return p.removeContent(f)
	}
	return nil
}

// CountFiles implements Store.
func (p *Postgres) CountFiles(ctx context.Context, conversationID string) (int, error) {
	var n int
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM files WHERE conversation_id = $1`, conversationID).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count files: %w", err)
	}
	return n, nil
}

// CreateSession implements Store; it also forgets expired sessions.
func (p *Postgres) CreateSession(ctx context.Context, ss *Session) error {
	if !validText(ss.AgentID) {
		return ErrInvalidText
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM sessions WHERE expires_at < now()`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO sessions (token_hash, agent_id, expires_at) VALUES ($1,$2,$3)`,
			ss.TokenHash, ss.AgentID, ss.ExpiresAt)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	return nil
}

// Session implements Store; expired sessions are not found.
func (p *Postgres) Session(ctx context.Context, tokenHash []byte) (*Session, error) {
	var ss Session
	err := p.pool.QueryRow(ctx, `SELECT token_hash, agent_id, expires_at FROM sessions WHERE token_hash = $1`, tokenHash).
		Scan(&ss.TokenHash, &ss.AgentID, &ss.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: session: %w", err)
	}
	ss.ExpiresAt = ss.ExpiresAt.UTC()
	if time.Now().After(ss.ExpiresAt) {
		return nil, ErrNotFound
	}
	return &ss, nil
}

// DeleteSession implements Store.
func (p *Postgres) DeleteSession(ctx context.Context, tokenHash []byte) error {
	if _, err := p.pool.Exec(ctx, `DELETE FROM sessions WHERE token_hash = $1`, tokenHash); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteAgentSessions implements Store.
func (p *Postgres) DeleteAgentSessions(ctx context.Context, agentID string) (int, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM sessions WHERE agent_id = $1`, agentID)
	if err != nil {
		return 0, fmt.Errorf("store: delete sessions of %s: %w", agentID, err)
	}
	return int(tag.RowsAffected()), nil
}

// SaveCall implements Store.
func (p *Postgres) SaveCall(ctx context.Context, r *CallRecord) error {
	if !validText(r.ID, r.ConversationID, r.Kind, r.Direction, r.Target, r.Cause, r.Codec, string(r.Stats)) {
		return ErrInvalidText
	}
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO calls (id, conversation_id, kind, direction, target, started_at,
			answered_at, ended_at, cause, codec, stats) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
			ON CONFLICT (id) DO UPDATE SET answered_at=EXCLUDED.answered_at, ended_at=EXCLUDED.ended_at,
			cause=EXCLUDED.cause, codec=EXCLUDED.codec, stats=EXCLUDED.stats`,
			r.ID, r.ConversationID, r.Kind, r.Direction, r.Target, ts(r.StartedAt), ts(r.AnsweredAt),
			ts(r.EndedAt), r.Cause, r.Codec, string(r.Stats)); err != nil {
			return err
		}
		if r.EndedAt.IsZero() {
			return nil
		}
		// An ended call's dialog has nothing left to clean up.
		_, err := tx.Exec(ctx, `DELETE FROM call_dialogs WHERE call_id = $1`, r.ID)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: save call %s: %w", r.ID, err)
	}
	return nil
}

// SaveCallDialog implements Store.
func (p *Postgres) SaveCallDialog(ctx context.Context, callID string, dialog json.RawMessage) error {
	if !validText(callID, string(dialog)) {
		return ErrInvalidText
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO call_dialogs (call_id, dialog) VALUES ($1, $2)
		ON CONFLICT (call_id) DO UPDATE SET dialog=EXCLUDED.dialog`, callID, string(dialog))
	if err != nil {
		return fmt.Errorf("store: save dialog of call %s: %w", callID, err)
	}
	return nil
}

const pgCallColumns = `c.id, c.conversation_id, c.kind, c.direction, c.target, c.started_at, c.answered_at,
	c.ended_at, c.cause, c.codec, c.stats`

func scanPgCall(row pgx.Row, dialog *string) (*CallRecord, error) {
	var r CallRecord
	var st, an, en *time.Time
	var stats string
	dest := []any{&r.ID, &r.ConversationID, &r.Kind, &r.Direction, &r.Target, &st, &an, &en, &r.Cause, &r.Codec, &stats}
	if dialog != nil {
		dest = append(dest, dialog)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	r.StartedAt, r.AnsweredAt, r.EndedAt = fromTS(st), fromTS(an), fromTS(en)
	if stats != "" {
		r.Stats = []byte(stats)
	}
	return &r, nil
}

// UnfinishedCalls implements Store.
func (p *Postgres) UnfinishedCalls(ctx context.Context, conversationID string) ([]*CallRecord, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+pgCallColumns+`, COALESCE(d.dialog, '') FROM calls c
		LEFT JOIN call_dialogs d ON d.call_id = c.id WHERE c.ended_at IS NULL AND ($1 = '' OR c.conversation_id = $1)
		ORDER BY c.started_at, c.id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: unfinished calls: %w", err)
	}
	defer rows.Close()
	var out []*CallRecord
	for rows.Next() {
		var dialog string
		r, err := scanPgCall(rows, &dialog)
		if err != nil {
			return nil, fmt.Errorf("store: unfinished calls: %w", err)
		}
		if dialog != "" {
			r.Dialog = []byte(dialog)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Calls implements Store.
func (p *Postgres) Calls(ctx context.Context, conversationID string) ([]*CallRecord, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+pgCallColumns+` FROM calls c WHERE c.conversation_id = $1
		ORDER BY c.started_at, c.id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: calls of %s: %w", conversationID, err)
	}
	defer rows.Close()
	var out []*CallRecord
	for rows.Next() {
		r, err := scanPgCall(rows, nil)
		if err != nil {
			return nil, fmt.Errorf("store: calls of %s: %w", conversationID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Ping implements Store.
func (p *Postgres) Ping(ctx context.Context) error { return p.pool.Ping(ctx) }

// Close implements Store: it stops the writer once its batch in progress
// is committed (later appends get ErrClosed) and closes the connections.
func (p *Postgres) Close() error {
	p.writer.close()
	p.pool.Close()
	return nil
}
