package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// SQLite is the embedded store: one database file in WAL mode plus a
// directory of uploaded files named by their SHA-256.
type SQLite struct {
	db *sql.DB
	fileDir
	// writer commits appended messages in batches (groupcommit.go) on
	// wconn, a connection of its own: SQLite drops a connection's page
	// cache whenever another connection has written since its last
	// transaction, so a writer that took whichever connection was free
	// read its pages again after the others' reads had it wait.
	writer *groupWriter
	wconn  *sql.Conn
	// ckpt checkpoints the WAL off the writer's path (checkpoint.go).
	ckpt *checkpointer
	// indexer has the writer feed the search index when it idles
	// (searchindex.go); index says when the index is fed.
	indexer *searchIndexer
	index   indexOptions
	// lastSeq caches conversations' last_seq; owned by the writer.
	lastSeq map[string]int64
	// rowStmts are the writer's multi-row statements (groupcommit.go).
	rowStmts map[string]*sql.Stmt
}

var _ Store = (*SQLite)(nil)

const schema = `
CREATE TABLE IF NOT EXISTS conversations (
	id TEXT PRIMARY KEY,
	state TEXT NOT NULL,
	queue TEXT NOT NULL,
	agent_id TEXT NOT NULL DEFAULT '',
	last_agent_id TEXT NOT NULL DEFAULT '',
	customer_name TEXT NOT NULL DEFAULT '',
	customer_email TEXT NOT NULL DEFAULT '',
	customer_external_id TEXT NOT NULL DEFAULT '',
	customer_verified INTEGER NOT NULL DEFAULT 0,
	token_hash BLOB NOT NULL,
	client_ip TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	ended_at INTEGER NOT NULL DEFAULT 0,
	last_seq INTEGER NOT NULL DEFAULT 0,
	read_customer INTEGER NOT NULL DEFAULT 0,
	read_agent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS conversations_state ON conversations(state);
CREATE TABLE IF NOT EXISTS files (
	id TEXT PRIMARY KEY,
	conversation_id TEXT NOT NULL REFERENCES conversations(id),
	name TEXT NOT NULL,
	type TEXT NOT NULL,
	size INTEGER NOT NULL,
	content_id TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS files_conversation ON files(conversation_id);
CREATE TABLE IF NOT EXISTS messages (
	conversation_id TEXT NOT NULL REFERENCES conversations(id),
	seq INTEGER NOT NULL,
	id TEXT NOT NULL,
	role TEXT NOT NULL,
	sender_id TEXT NOT NULL DEFAULT '',
	sender_name TEXT NOT NULL DEFAULT '',
	kind TEXT NOT NULL,
	text TEXT NOT NULL DEFAULT '',
	file_id TEXT NOT NULL DEFAULT '',
	event TEXT NOT NULL DEFAULT '',
	event_data TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (conversation_id, seq),
	UNIQUE (conversation_id, id)
);
CREATE TABLE IF NOT EXISTS sessions (
	token_hash BLOB PRIMARY KEY,
	agent_id TEXT NOT NULL,
	expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
	id TEXT PRIMARY KEY,
	conversation_id TEXT NOT NULL REFERENCES conversations(id),
	kind TEXT NOT NULL,
	direction TEXT NOT NULL,
	target TEXT NOT NULL DEFAULT '',
	started_at INTEGER NOT NULL,
	answered_at INTEGER NOT NULL DEFAULT 0,
	ended_at INTEGER NOT NULL DEFAULT 0,
	cause TEXT NOT NULL DEFAULT '',
	codec TEXT NOT NULL DEFAULT '',
	stats TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_conversation ON calls(conversation_id);
CREATE INDEX IF NOT EXISTS calls_unfinished ON calls(ended_at) WHERE ended_at = 0;
CREATE TABLE IF NOT EXISTS call_dialogs (
	call_id TEXT PRIMARY KEY REFERENCES calls(id),
	dialog TEXT NOT NULL
);
`

// Open opens the store cfg describes, creating the database file (sqlite)
// or migrating the database's schema (postgres), and the files directory,
// as needed.
func Open(ctx context.Context, cfg Config) (Store, error) {
	switch cfg.Driver {
	case "sqlite":
		return OpenSQLite(ctx, cfg.DSN, cfg.FilesDir)
	case "postgres":
		return OpenPostgres(ctx, cfg.DSN, cfg.FilesDir)
	}
	return nil, fmt.Errorf("%w: %q", ErrDriver, cfg.Driver)
}

// OpenSQLite opens (or creates) the database at path and the files
// directory dir.
func OpenSQLite(ctx context.Context, path, dir string) (*SQLite, error) {
	return openSQLiteWith(ctx, path, dir, walOptions{checkpointEvery, walRestartBytes, walLimitBytes}, indexOptions{every: indexEvery})
}

// walOptions are when the WAL is checkpointed (checkpoint.go): every 0
// starts no background checkpoints (tests run them by hand).
type walOptions struct {
	every                    time.Duration
	restartBytes, limitBytes int64
}

// writerCacheKiB is the page cache of the message writer's connection:
// each conversation that writes keeps a leaf page of each of the
// messages' two indexes busy, and the writer reads them back at every
// batch; SQLite's default of 2 MiB held a few hundred conversations'
// worth of those pages.
const writerCacheKiB = 16 << 10

// newPageSize is the page size of a new database file. Each message
// changes a leaf page of each of the messages' two indexes (every
// conversation writes at the end of its own key range) and the WAL
// takes whole pages, so the page size sets how many bytes a message
// costs the WAL, the checkpoints and the disk: 1 KiB pages write about
// 6 KB a message where SQLite's default of 4 KiB wrote about 15 KB. An
// existing file keeps the page size it has; in WAL mode SQLite cannot
// change it.
const newPageSize = 1024

// openSQLiteWAL is OpenSQLite with the WAL's checkpoints as wal says.
func openSQLiteWAL(ctx context.Context, path, dir string, wal walOptions) (*SQLite, error) {
	return openSQLiteWith(ctx, path, dir, wal, indexOptions{every: indexEvery})
}

// openSQLiteWith is OpenSQLite with the WAL's checkpoints as wal says
// and the search index fed as index says.
func openSQLiteWith(ctx context.Context, path, dir string, wal walOptions, index indexOptions) (*SQLite, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	files, err := newFileDir(dir)
	if err != nil {
		return nil, err
	}
	q := url.Values{}
	for _, p := range []string{fmt.Sprintf("page_size(%d)", newPageSize), "synchronous(FULL)", "busy_timeout(10000)",
		"foreign_keys(1)", "temp_store(MEMORY)", "wal_autocheckpoint(0)", fmt.Sprintf("journal_size_limit(%d)", wal.restartBytes)} {
		q.Add("_pragma", p)
	}
	// The driver runs the _pragma list sorted by name and _journal_mode
	// after it: the page size must be set before WAL mode writes a new
	// file's first page.
	q.Set("_journal_mode", "WAL")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.ExecContext(ctx, schema+recordingSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: schema in %s: %w", path, err)
	}
	if err := migrateIntegrations(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: search index and outbox in %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: migrate %s: %w", path, err)
	}
	if err := migrateDesk(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: notes and canned replies in %s: %w", path, err)
	}
	s := &SQLite{db: db, fileDir: files, lastSeq: map[string]int64{}, rowStmts: map[string]*sql.Stmt{}, index: index}
	if err := s.startWriter(ctx, wal); err != nil {
		for _, st := range s.rowStmts {
			st.Close()
		}
		if s.wconn != nil {
			s.wconn.Close()
		}
		db.Close()
		return nil, fmt.Errorf("store: start the writer of %s: %w", path, err)
	}
	return s, nil
}

// startWriter takes the writer's connection, prepares its statements and
// starts it and the checkpointer.
func (s *SQLite) startWriter(ctx context.Context, wal walOptions) error {
	var err error
	if s.wconn, err = s.db.Conn(ctx); err != nil {
		return err
	}
	if _, err := s.wconn.ExecContext(ctx, fmt.Sprintf(`PRAGMA cache_size = -%d`, writerCacheKiB)); err != nil {
		return err
	}
	if err := s.prepareRowStmts(ctx); err != nil {
		return err
	}
	// What a gateway stopped before indexing left (searchindex.go).
	if !s.index.off {
		if err := indexPass(ctx, s.wconn); err != nil {
			return fmt.Errorf("search index: %w", err)
		}
	}
	var pageSize int64
	if err := s.db.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&pageSize); err != nil {
		return err
	}
	s.ckpt = newCheckpointer(s.db, pageSize, wal.restartBytes, wal.limitBytes)
	if wal.every > 0 {
		s.ckpt.start(wal.every)
	}
	s.indexer = &searchIndexer{every: s.index.every, stop: make(chan struct{}), done: make(chan struct{})}
	s.indexer.indexed(time.Now())
	s.writer = startGroupWriter(s.commitBatch)
	if s.index.every > 0 && !s.index.off {
		s.indexer.start(s.writer)
	} else {
		close(s.indexer.done)
	}
	return nil
}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromUnix(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// CreateConversation implements Store.
func (s *SQLite) CreateConversation(ctx context.Context, c *Conversation) error {
	return s.CreateConversationEvents(ctx, c, nil)
}

// CreateConversationEvents implements Integrations.
func (s *SQLite) CreateConversationEvents(ctx context.Context, c *Conversation, events []*WebhookEvent) error {
	if err := prepareOutbox(events, c.ID, c.CreatedAt); err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: create conversation %s: %w", c.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	_, err = tx.ExecContext(ctx, `INSERT INTO conversations (id, state, queue, agent_id, last_agent_id,
		customer_name, customer_email, customer_external_id, customer_verified, token_hash, client_ip,
		created_at, updated_at, ended_at, last_seq, read_customer, read_agent, answered_at, origin)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		c.ID, c.State, c.Queue, c.AgentID, c.LastAgentID, c.Customer.Name, c.Customer.Email,
		c.Customer.ExternalID, c.Customer.Verified, c.TokenHash, c.ClientIP,
		unix(c.CreatedAt), unix(c.UpdatedAt), unix(c.EndedAt), c.LastSeq, c.ReadByCust, c.ReadByAgt,
		unix(c.AnsweredAt), c.Origin)
	if err == nil {
		err = insertOutboxSQLite(ctx, tx, events)
	}
	if err == nil {
		err = tx.Commit()
	}
	if err != nil {
		return fmt.Errorf("store: create conversation %s: %w", c.ID, err)
	}
	return nil
}

const convColumns = `id, state, queue, agent_id, last_agent_id, customer_name, customer_email,
	customer_external_id, customer_verified, token_hash, client_ip, created_at, updated_at, ended_at,
	last_seq, read_customer, read_agent, answered_at, origin, rating, rating_comment, rated_at, wrap_up`

func scanConversation(row interface{ Scan(...any) error }) (*Conversation, error) {
	var c Conversation
	var created, updated, ended, answered, rated int64
	err := row.Scan(&c.ID, &c.State, &c.Queue, &c.AgentID, &c.LastAgentID, &c.Customer.Name,
		&c.Customer.Email, &c.Customer.ExternalID, &c.Customer.Verified, &c.TokenHash, &c.ClientIP,
		&created, &updated, &ended, &c.LastSeq, &c.ReadByCust, &c.ReadByAgt,
		&answered, &c.Origin, &c.Rating.Score, &c.Rating.Comment, &rated, &c.WrapUp)
	if err != nil {
		return nil, err
	}
	c.CreatedAt, c.UpdatedAt, c.EndedAt = fromUnix(created), fromUnix(updated), fromUnix(ended)
	c.AnsweredAt, c.Rating.At = fromUnix(answered), fromUnix(rated)
	return &c, nil
}

// Conversation implements Store.
func (s *SQLite) Conversation(ctx context.Context, id string) (*Conversation, error) {
	c, err := scanConversation(s.db.QueryRowContext(ctx, `SELECT `+convColumns+` FROM conversations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: conversation %s: %w", id, err)
	}
	return c, nil
}

// UpdateConversation implements Store. It never lowers last_seq, which
// only AppendMessage advances.
func (s *SQLite) UpdateConversation(ctx context.Context, c *Conversation) error {
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET state=?, queue=?, agent_id=?, last_agent_id=?,
		customer_name=?, customer_email=?, customer_external_id=?, customer_verified=?, updated_at=?, ended_at=?,
		read_customer=MAX(read_customer, ?), read_agent=MAX(read_agent, ?),
		answered_at=CASE WHEN answered_at = 0 THEN ? ELSE answered_at END WHERE id=?`,
		c.State, c.Queue, c.AgentID, c.LastAgentID, c.Customer.Name, c.Customer.Email, c.Customer.ExternalID,
		c.Customer.Verified, unix(c.UpdatedAt), unix(c.EndedAt), c.ReadByCust, c.ReadByAgt, unix(c.AnsweredAt), c.ID)
	if err != nil {
		return fmt.Errorf("store: update conversation %s: %w", c.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// AssignConversation implements Store. One UPDATE counts and writes:
// SQLite runs a writing statement under the database's write lock from
// its start, so no other assignment can commit between the two.
func (s *SQLite) AssignConversation(ctx context.Context, c *Conversation, max int) error {
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET state=?, queue=?, agent_id=?, last_agent_id=?,
		customer_name=?, customer_email=?, customer_external_id=?, customer_verified=?, updated_at=?, ended_at=?,
		read_customer=MAX(read_customer, ?), read_agent=MAX(read_agent, ?),
		answered_at=CASE WHEN answered_at = 0 THEN ? ELSE answered_at END
		WHERE id=? AND (SELECT count(*) FROM conversations WHERE state = ? AND agent_id = ? AND id <> ?) < ?`,
		c.State, c.Queue, c.AgentID, c.LastAgentID, c.Customer.Name, c.Customer.Email, c.Customer.ExternalID,
		c.Customer.Verified, unix(c.UpdatedAt), unix(c.EndedAt), c.ReadByCust, c.ReadByAgt, unix(c.AnsweredAt), c.ID,
		StateActive, c.AgentID, c.ID, max)
	if err != nil {
		return fmt.Errorf("store: assign %s: %w", c.ID, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	var one int
	err = s.db.QueryRowContext(ctx, `SELECT 1 FROM conversations WHERE id = ?`, c.ID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: assign %s: %w", c.ID, err)
	}
	return ErrAtCapacity
}

// MarkRead implements Store.
func (s *SQLite) MarkRead(ctx context.Context, id, role string, seq int64) error {
	return s.writer.markRead(ctx, readMark{conv: id, role: role, seq: seq})
}

// OpenConversations implements Store.
func (s *SQLite) OpenConversations(ctx context.Context) ([]*Conversation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+convColumns+` FROM conversations WHERE state IN (?, ?) ORDER BY created_at, id`,
		StateWaiting, StateActive)
	if err != nil {
		return nil, fmt.Errorf("store: open conversations: %w", err)
	}
	return scanConversations(rows, "open conversations")
}

// LeftConversations implements Store.
func (s *SQLite) LeftConversations(ctx context.Context, queues []string, limit int) ([]*Conversation, error) {
	if len(queues) == 0 {
		return nil, nil
	}
	args := []any{StateLeft}
	for _, q := range queues {
		args = append(args, q)
	}
	args = append(args, limit)
	rows, err := s.db.QueryContext(ctx, `SELECT `+convColumns+` FROM conversations WHERE state = ? AND queue IN (?`+
		strings.Repeat(",?", len(queues)-1)+`) ORDER BY created_at DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: left conversations: %w", err)
	}
	return scanConversations(rows, "left conversations")
}

func scanConversations(rows *sql.Rows, what string) ([]*Conversation, error) {
	defer rows.Close()
	var out []*Conversation
	for rows.Next() {
		c, err := scanConversation(rows)
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

// AppendMessage implements Store. The writer goroutine takes the seq and
// writes the message in a transaction shared with the appends that arrived
// meanwhile (group commit, groupcommit.go); AppendMessage returns once that
// transaction is on disk. Appends are stored in the order they arrive.
func (s *SQLite) AppendMessage(ctx context.Context, m *Message) (*Message, bool, error) {
	return s.writer.append(ctx, m, nil)
}

// AppendMessageEvents implements Integrations: the events are written by
// the writer in the message's transaction.
func (s *SQLite) AppendMessageEvents(ctx context.Context, m *Message, events OutboxFunc) (*Message, bool, error) {
	return s.writer.append(ctx, m, events)
}

const msgColumns = `m.conversation_id, m.seq, m.id, m.role, m.sender_id, m.sender_name, m.kind, m.text,
	m.event, m.event_data, m.created_at, f.id, f.name, f.type, f.size, f.content_id, f.created_at`

func scanMessage(row interface{ Scan(...any) error }) (*Message, error) {
	var m Message
	var created int64
	var data string
	var fid, fname, ftype, fcontent sql.NullString
	var fsize, fcreated sql.NullInt64
	if err := row.Scan(&m.ConversationID, &m.Seq, &m.ID, &m.Role, &m.SenderID, &m.SenderName, &m.Kind,
		&m.Text, &m.Event, &data, &created, &fid, &fname, &ftype, &fsize, &fcontent, &fcreated); err != nil {
		return nil, err
	}
	m.CreatedAt = fromUnix(created)
	if data != "" {
		m.EventData = []byte(data)
	}
	if fid.Valid {
		m.File = &File{ID: fid.String, ConversationID: m.ConversationID, Name: fname.String, Type: ftype.String,
			Size: fsize.Int64, ContentID: fcontent.String, CreatedAt: fromUnix(fcreated.Int64)}
	}
	return &m, nil
}

// Messages implements Store.
func (s *SQLite) Messages(ctx context.Context, conversationID string, after int64, limit int) ([]*Message, error) {
	return s.queryMessages(ctx, conversationID, `m.seq > ? ORDER BY m.seq`, after, limit)
}

// MessagesBefore implements Store.
func (s *SQLite) MessagesBefore(ctx context.Context, conversationID string, before int64, limit int) ([]*Message, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	out, err := s.queryMessages(ctx, conversationID, `m.seq < ? ORDER BY m.seq DESC`, before, limit)
	slices.Reverse(out)
	return out, err
}

// queryMessages reads up to limit messages of a conversation with their
// files, selected and ordered by where (one ? for seq).
func (s *SQLite) queryMessages(ctx context.Context, conversationID, where string, seq int64, limit int) ([]*Message, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+msgColumns+` FROM messages m LEFT JOIN files f ON f.id = m.file_id
		WHERE m.conversation_id = ? AND `+where+` LIMIT ?`, conversationID, seq, limit)
	if err != nil {
		return nil, fmt.Errorf("store: messages of %s: %w", conversationID, err)
	}
	defer rows.Close()
	var out []*Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("store: messages of %s: %w", conversationID, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// SaveFile implements Store: the bytes are on disk under their content
// id (fileDir.writeContent) before the record is written.
func (s *SQLite) SaveFile(ctx context.Context, f *File, r io.Reader, max int64) error {
	if err := s.writeContent(f, r, max); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO files (id, conversation_id, name, type, size, content_id, created_at)
		VALUES (?,?,?,?,?,?,?)`, f.ID, f.ConversationID, f.Name, f.Type, f.Size, f.ContentID, unix(f.CreatedAt)); err != nil {
		return fmt.Errorf("store: save file: %w", err)
	}
	return nil
}

// File implements Store.
func (s *SQLite) File(ctx context.Context, id string) (*File, error) {
	var f File
	var created int64
	err := s.db.QueryRowContext(ctx, `SELECT id, conversation_id, name, type, size, content_id, created_at FROM files WHERE id = ?`, id).
		Scan(&f.ID, &f.ConversationID, &f.Name, &f.Type, &f.Size, &f.ContentID, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: file %s: %w", id, err)
	}
	f.CreatedAt = fromUnix(created)
	return &f, nil
}

// OpenFile implements Store.
func (s *SQLite) OpenFile(f *File) (io.ReadSeekCloser, error) { return s.openContent(f) }

// DeleteFile implements Store.
func (s *SQLite) DeleteFile(ctx context.Context, f *File) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM files WHERE id = ?`, f.ID); err != nil {
		return fmt.Errorf("store: delete file %s: %w", f.ID, err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM files WHERE content_id = ?`, f.ContentID).Scan(&n); err != nil {
		return fmt.Errorf("store: delete file %s: %w", f.ID, err)
	}
	if n == 0 {
		return s.removeContent(f)
	}
	return nil
}

// CountFiles implements Store.
func (s *SQLite) CountFiles(ctx context.Context, conversationID string) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM files WHERE conversation_id = ?`, conversationID).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count files: %w", err)
	}
	return n, nil
}

// CreateSession implements Store.
func (s *SQLite) CreateSession(ctx context.Context, ss *Session) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at < ?`, unix(time.Now())); err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO sessions (token_hash, agent_id, expires_at) VALUES (?,?,?)`,
		ss.TokenHash, ss.AgentID, unix(ss.ExpiresAt)); err != nil {
		return fmt.Errorf("store: create session: %w", err)
	}
	return nil
}

// Session implements Store; expired sessions are not found.
func (s *SQLite) Session(ctx context.Context, tokenHash []byte) (*Session, error) {
	var ss Session
	var exp int64
	err := s.db.QueryRowContext(ctx, `SELECT token_hash, agent_id, expires_at FROM sessions WHERE token_hash = ?`, tokenHash).
		Scan(&ss.TokenHash, &ss.AgentID, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: session: %w", err)
	}
	ss.ExpiresAt = fromUnix(exp)
	if time.Now().After(ss.ExpiresAt) {
		return nil, ErrNotFound
	}
	return &ss, nil
}

// DeleteSession implements Store.
func (s *SQLite) DeleteSession(ctx context.Context, tokenHash []byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash); err != nil {
		return fmt.Errorf("store: delete session: %w", err)
	}
	return nil
}

// DeleteAgentSessions implements Store.
func (s *SQLite) DeleteAgentSessions(ctx context.Context, agentID string) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE agent_id = ?`, agentID)
	if err != nil {
		return 0, fmt.Errorf("store: delete sessions of %s: %w", agentID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// SaveCall implements Store.
func (s *SQLite) SaveCall(ctx context.Context, r *CallRecord) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO calls (id, conversation_id, kind, direction, target, started_at,
		answered_at, ended_at, cause, codec, stats) VALUES (?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT(id) DO UPDATE SET answered_at=excluded.answered_at, ended_at=excluded.ended_at,
		cause=excluded.cause, codec=excluded.codec, stats=excluded.stats`,
		r.ID, r.ConversationID, r.Kind, r.Direction, r.Target, unix(r.StartedAt), unix(r.AnsweredAt),
		unix(r.EndedAt), r.Cause, r.Codec, string(r.Stats))
	if err != nil {
		return fmt.Errorf("store: save call %s: %w", r.ID, err)
	}
	if !r.EndedAt.IsZero() {
		// An ended call's dialog has nothing left to clean up.
		if _, err := s.db.ExecContext(ctx, `DELETE FROM call_dialogs WHERE call_id = ?`, r.ID); err != nil {
			return fmt.Errorf("store: save call %s: %w", r.ID, err)
		}
	}
	return nil
}

// SaveCallDialog implements Store.
func (s *SQLite) SaveCallDialog(ctx context.Context, callID string, dialog json.RawMessage) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO call_dialogs (call_id, dialog) VALUES (?, ?)
		ON CONFLICT(call_id) DO UPDATE SET dialog=excluded.dialog`, callID, string(dialog))
	if err != nil {
		return fmt.Errorf("store: save dialog of call %s: %w", callID, err)
	}
	return nil
}

// UnfinishedCalls implements Store.
func (s *SQLite) UnfinishedCalls(ctx context.Context, conversationID string) ([]*CallRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT c.id, c.conversation_id, c.kind, c.direction, c.target, c.started_at,
		c.answered_at, c.ended_at, c.cause, c.codec, c.stats, COALESCE(d.dialog, '') FROM calls c
		LEFT JOIN call_dialogs d ON d.call_id = c.id WHERE c.ended_at = 0 AND (?1 = '' OR c.conversation_id = ?1)
		ORDER BY c.started_at, c.id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: unfinished calls: %w", err)
	}
	defer rows.Close()
	var out []*CallRecord
	for rows.Next() {
		var r CallRecord
		var st, an, en int64
		var stats, dialog string
		if err := rows.Scan(&r.ID, &r.ConversationID, &r.Kind, &r.Direction, &r.Target, &st, &an, &en,
			&r.Cause, &r.Codec, &stats, &dialog); err != nil {
			return nil, fmt.Errorf("store: unfinished calls: %w", err)
		}
		r.StartedAt, r.AnsweredAt, r.EndedAt = fromUnix(st), fromUnix(an), fromUnix(en)
		if stats != "" {
			r.Stats = []byte(stats)
		}
		if dialog != "" {
			r.Dialog = []byte(dialog)
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

// Calls implements Store.
func (s *SQLite) Calls(ctx context.Context, conversationID string) ([]*CallRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, conversation_id, kind, direction, target, started_at, answered_at,
		ended_at, cause, codec, stats FROM calls WHERE conversation_id = ? ORDER BY started_at, id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: calls of %s: %w", conversationID, err)
	}
	defer rows.Close()
	var out []*CallRecord
	for rows.Next() {
		var r CallRecord
		var st, an, en int64
		var stats string
		if err := rows.Scan(&r.ID, &r.ConversationID, &r.Kind, &r.Direction, &r.Target, &st, &an, &en,
			&r.Cause, &r.Codec, &stats); err != nil {
			return nil, fmt.Errorf("store: calls of %s: %w", conversationID, err)
		}
		r.StartedAt, r.AnsweredAt, r.EndedAt = fromUnix(st), fromUnix(an), fromUnix(en)
		if stats != "" {
			r.Stats = []byte(stats)
		}
		out = append(out, &r)
	}
	return out, rows.Err()
}

// Ping implements Store.
func (s *SQLite) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close implements Store: it stops the writer once its batch in progress
// is committed (later appends get ErrClosed) and the background
// checkpoints, indexes the messages the search index does not hold yet,
// and checkpoints the WAL into the main file.
func (s *SQLite) Close() error {
	s.indexer.close()
	s.writer.close()
	s.ckpt.close()
	var ierr error
	if !s.index.off {
		if ierr = indexPass(context.Background(), s.wconn); ierr != nil {
			ierr = fmt.Errorf("store: search index: %w", ierr)
		}
	}
	for _, st := range s.rowStmts {
		st.Close()
	}
	werr := s.wconn.Close()
	_, cerr := s.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
	return errors.Join(ierr, werr, cerr, s.db.Close())
}
