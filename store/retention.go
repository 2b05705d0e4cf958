package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Deleted counts what a retention run or an erasure removed.
type Deleted struct {
	Conversations int
	Messages      int
	Files         int
	Recordings    int
	Calls         int
	// ConversationIDs are the conversations removed.
	ConversationIDs []string
	// Open are the conversations an erasure matched but left alone
	// because they are still waiting or active.
	Open []string
}

// Add adds o's counts to d.
func (d *Deleted) Add(o Deleted) {
	d.Conversations += o.Conversations
	d.Messages += o.Messages
	d.Files += o.Files
	d.Recordings += o.Recordings
	d.Calls += o.Calls
	d.ConversationIDs = append(d.ConversationIDs, o.ConversationIDs...)
	d.Open = append(d.Open, o.Open...)
}

// DeleteBefore implements Store: a conversation goes once it is closed
// (ended or left) and its last change is before cutoff.
func (s *SQLite) DeleteBefore(ctx context.Context, cutoff time.Time) (Deleted, error) {
	return s.deleteWhere(ctx, `state NOT IN (?, ?) AND updated_at < ?`, StateWaiting, StateActive, unix(cutoff))
}

// EraseCustomer implements Store. Conversations still open are listed in
// Deleted.Open and kept: the gateway holds them live.
func (s *SQLite) EraseCustomer(ctx context.Context, externalID, email string) (Deleted, error) {
	if externalID == "" && email == "" {
		return Deleted{}, ErrNoCustomer
	}
	var conds []string
	var args []any
	if externalID != "" {
		conds, args = append(conds, `customer_external_id = ?`), append(args, externalID)
	}
	if email != "" {
		conds, args = append(conds, `lower(customer_email) = lower(?)`), append(args, email)
	}
	match := "(" + strings.Join(conds, " OR ") + ")"
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM conversations WHERE `+match+` AND state IN (?, ?) ORDER BY created_at, id`,
		append(append([]any(nil), args...), StateWaiting, StateActive)...)
	if err != nil {
		return Deleted{}, fmt.Errorf("store: erase: %w", err)
	}
	var open []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err == nil {
			open = append(open, id)
		}
	}
	rows.Close()
	d, err := s.deleteWhere(ctx, match+` AND state NOT IN (?, ?)`, append(args, StateWaiting, StateActive)...)
	d.Open = open
	return d, err
}

// deleteWhere removes the conversations matching where, with their
// messages, files, call records, dialogs and recordings: the rows in one
// transaction, then the bytes on disk that no remaining row uses.
func (s *SQLite) deleteWhere(ctx context.Context, where string, args ...any) (Deleted, error) {
	var d Deleted
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return d, fmt.Errorf("store: delete: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	rows, err := tx.QueryContext(ctx, `SELECT id FROM conversations WHERE `+where, args...)
	if err != nil {
		return d, fmt.Errorf("store: delete: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return d, fmt.Errorf("store: delete: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("store: delete: %w", err)
	}
	var contents []string
	var recs []*Recording
	for _, id := range ids {
		fr, err := tx.QueryContext(ctx, `SELECT content_id FROM files WHERE conversation_id = ?`, id)
		if err != nil {
			return d, fmt.Errorf("store: delete %s: %w", id, err)
		}
		for fr.Next() {
			var c string
			if err := fr.Scan(&c); err == nil {
				contents = append(contents, c)
			}
		}
		fr.Close()
		rr, err := tx.QueryContext(ctx, `SELECT `+recColumns+` FROM recordings WHERE conversation_id = ?`, id)
		if err != nil {
			return d, fmt.Errorf("store: delete %s: %w", id, err)
		}
		for rr.Next() {
			if r, err := scanRecording(rr); err == nil {
				recs = append(recs, r)
			}
		}
		rr.Close()
		for _, st := range []struct {
			n *int
			q string
		}{
			{nil, `DELETE FROM call_dialogs WHERE call_id IN (SELECT id FROM calls WHERE conversation_id = ?)`},
			{&d.Calls, `DELETE FROM calls WHERE conversation_id = ?`},
			{&d.Recordings, `DELETE FROM recordings WHERE conversation_id = ?`},
			{&d.Messages, `DELETE FROM messages WHERE conversation_id = ?`},
			{nil, `DELETE FROM notes WHERE conversation_id = ?`},
			{&d.Files, `DELETE FROM files WHERE conversation_id = ?`},
			{&d.Conversations, `DELETE FROM conversations WHERE id = ?`},
			// Events still owed to webhooks carry the conversation too.
			{nil, `DELETE FROM webhook_outbox WHERE conversation_id = ?`},
		} {
			res, err := tx.ExecContext(ctx, st.q, id)
			if err != nil {
				return d, fmt.Errorf("store: delete %s: %w", id, err)
			}
			if st.n != nil {
				n, _ := res.RowsAffected()
				*st.n += int(n)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return d, fmt.Errorf("store: delete: %w", err)
	}
	d.ConversationIDs = ids
	err = s.removeLeftovers(contents, recs, func(c string) (bool, error) {
		var n int
		err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM files WHERE content_id = ?`, c).Scan(&n)
		return n > 0, err
	})
	return d, err
}

// removeLeftovers deletes, once their rows are gone, the bytes of the
// uploads in contents that no remaining file uses (inUse says; uploads
// are stored once by content) and the files of recs.
func (d fileDir) removeLeftovers(contents []string, recs []*Recording, inUse func(contentID string) (bool, error)) error {
	var errs []error
	for _, c := range contents {
		used, err := inUse(c)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !used {
			if err := os.Remove(d.contentPath(c)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	for _, r := range recs {
		if err := os.Remove(d.recordingPath(r)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: delete: files left on disk: %w", err)
	}
	return nil
}
