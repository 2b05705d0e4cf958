package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

const recordingSchema = `
CREATE TABLE IF NOT EXISTS recordings (
	id TEXT PRIMARY KEY,
	conversation_id TEXT NOT NULL REFERENCES conversations(id),
	call_id TEXT NOT NULL,
	format TEXT NOT NULL,
	type TEXT NOT NULL,
	size INTEGER NOT NULL DEFAULT 0,
	duration_ms INTEGER NOT NULL DEFAULT 0,
	started_by TEXT NOT NULL DEFAULT '',
	started_at INTEGER NOT NULL,
	ended_at INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recordings_conversation ON recordings(conversation_id);
`

// Recording is a call's recording: a stereo file (the customer on the
// left, the phone on the right) that the gateway writes while the call
// runs, kept with the conversation's files.
type Recording struct {
	ID             string
	ConversationID string
	CallID         string
	// Format is the file's format ("ogg" or "wav") and its extension;
	// Type is its media type.
	Format string
	Type   string
	Size   int64
	// Duration is the audio recorded, known once the recording ended.
	Duration time.Duration
	// StartedBy is the agent who started it, "" when the queue records
	// every call.
	StartedBy string
	StartedAt time.Time
	// EndedAt is zero while the recording runs (or when the gateway
	// stopped before it could finish it).
	EndedAt time.Time
}

// RecordingFile is a recording's file as it is written.
type RecordingFile interface {
	io.WriteSeeker
	io.Closer
	Sync() error
}

var recordingIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
var formatRe = regexp.MustCompile(`^[a-z0-9]{1,8}$`)

func (d fileDir) recordingPath(r *Recording) string {
	return filepath.Join(d.filesDir, "recordings", r.ID+"."+r.Format)
}

// createRecordingFile checks r's id and format, which name its file,
// sets its start time when unset and creates the file; an existing
// recording's file is never replaced.
func (d fileDir) createRecordingFile(r *Recording) (*os.File, error) {
	if !recordingIDRe.MatchString(r.ID) || !formatRe.MatchString(r.Format) {
		return nil, fmt.Errorf("store: create recording: bad id %q or format %q", r.ID, r.Format)
	}
	if err := os.MkdirAll(filepath.Join(d.filesDir, "recordings"), 0o750); err != nil {
		return nil, fmt.Errorf("store: create recording: %w", err)
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = time.Now().UTC()
	}
	f, err := os.OpenFile(d.recordingPath(r), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("store: create recording: %w", err)
	}
	return f, nil
}

// finishRecordingFile sets r's end time (now when unset) and its file's
// size.
func (d fileDir) finishRecordingFile(r *Recording) {
	if r.EndedAt.IsZero() {
		r.EndedAt = time.Now().UTC()
	}
	if fi, err := os.Stat(d.recordingPath(r)); err == nil {
		r.Size = fi.Size()
	}
}

// OpenRecording implements Store.
func (d fileDir) OpenRecording(r *Recording) (io.ReadSeekCloser, error) {
	f, err := os.Open(d.recordingPath(r))
	if err != nil {
		return nil, fmt.Errorf("store: open recording %s: %w", r.ID, err)
	}
	return f, nil
}

// CreateRecording implements Store.
func (s *SQLite) CreateRecording(ctx context.Context, r *Recording) (RecordingFile, error) {
	f, err := s.createRecordingFile(r)
	if err != nil {
		return nil, err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO recordings (id, conversation_id, call_id, format, type, started_by, started_at)
		VALUES (?,?,?,?,?,?,?)`, r.ID, r.ConversationID, r.CallID, r.Format, r.Type, r.StartedBy, unix(r.StartedAt)); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("store: create recording: %w", err)
	}
	return f, nil
}

// FinishRecording implements Store.
func (s *SQLite) FinishRecording(ctx context.Context, r *Recording) error {
	return s.FinishRecordingEvents(ctx, r, nil)
}

// FinishRecordingEvents implements Integrations.
func (s *SQLite) FinishRecordingEvents(ctx context.Context, r *Recording, events RecordingOutboxFunc) error {
	s.finishRecordingFile(r)
	outbox, err := recordingOutbox(r, events)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: finish recording %s: %w", r.ID, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	res, err := tx.ExecContext(ctx, `UPDATE recordings SET size=?, duration_ms=?, ended_at=? WHERE id=?`,
		r.Size, r.Duration.Milliseconds(), unix(r.EndedAt), r.ID)
	if err != nil {
		return fmt.Errorf("store: finish recording %s: %w", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	if err := insertOutboxSQLite(ctx, tx, outbox); err != nil {
		return fmt.Errorf("store: finish recording %s: %w", r.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: finish recording %s: %w", r.ID, err)
	}
	return nil
}

const recColumns = `id, conversation_id, call_id, format, type, size, duration_ms, started_by, started_at, ended_at`

func scanRecording(row interface{ Scan(...any) error }) (*Recording, error) {
	var r Recording
	var dur, st, en int64
	if err := row.Scan(&r.ID, &r.ConversationID, &r.CallID, &r.Format, &r.Type, &r.Size, &dur, &r.StartedBy, &st, &en); err != nil {
		return nil, err
	}
	r.Duration = time.Duration(dur) * time.Millisecond
	r.StartedAt, r.EndedAt = fromUnix(st), fromUnix(en)
	return &r, nil
}

// Recording implements Store.
func (s *SQLite) Recording(ctx context.Context, id string) (*Recording, error) {
	r, err := scanRecording(s.db.QueryRowContext(ctx, `SELECT `+recColumns+` FROM recordings WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: recording %s: %w", id, err)
	}
	return r, nil
}

// Recordings implements Store.
func (s *SQLite) Recordings(ctx context.Context, conversationID string) ([]*Recording, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+recColumns+` FROM recordings WHERE conversation_id = ? ORDER BY started_at, id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: recordings of %s: %w", conversationID, err)
	}
	defer rows.Close()
	var out []*Recording
	for rows.Next() {
		r, err := scanRecording(rows)
		if err != nil {
			return nil, fmt.Errorf("store: recordings of %s: %w", conversationID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
