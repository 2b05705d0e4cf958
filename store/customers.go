package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// conversationColumns are the columns added to conversations after the
// first schema, each with its definition. migrate adds those an older
// database lacks, so that a database file from any earlier version opens.
var conversationColumns = []struct{ name, def string }{
	{"answered_at", "INTEGER NOT NULL DEFAULT 0"},
	{"origin", "TEXT NOT NULL DEFAULT ''"},
	{"rating", "INTEGER NOT NULL DEFAULT 0"},
	{"rating_comment", "TEXT NOT NULL DEFAULT ''"},
	{"rated_at", "INTEGER NOT NULL DEFAULT 0"},
	{"wrap_up", "TEXT NOT NULL DEFAULT ''"},
}

// migrate brings an existing database up to the current schema: the
// columns of conversationColumns, then the indexes that use them.
func migrate(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info('conversations')`)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return err
		}
		have[name] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, c := range conversationColumns {
		if have[c.name] {
			continue
		}
		if _, err := db.ExecContext(ctx, `ALTER TABLE conversations ADD COLUMN `+c.name+` `+c.def); err != nil {
			return fmt.Errorf("add column %s: %w", c.name, err)
		}
	}
	_, err = db.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS conversations_answered ON conversations(queue, answered_at) WHERE answered_at > 0`)
	return err
}

// RateConversation implements Store.
func (s *SQLite) RateConversation(ctx context.Context, id string, r Rating) error {
	res, err := s.db.ExecContext(ctx, `UPDATE conversations SET rating=?, rating_comment=?, rated_at=? WHERE id=? AND rating=0`,
		r.Score, r.Comment, unix(r.At), id)
	if err != nil {
		return fmt.Errorf("store: rate conversation %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return nil
	}
	var one int
	err = s.db.QueryRowContext(ctx, `SELECT 1 FROM conversations WHERE id=?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: rate conversation %s: %w", id, err)
	}
	return ErrRated
}

// RecentWaits implements Store.
func (s *SQLite) RecentWaits(ctx context.Context, queue string, since time.Time, limit int) ([]time.Duration, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT answered_at - created_at FROM conversations
		WHERE queue = ? AND answered_at > 0 AND answered_at >= ? ORDER BY answered_at DESC LIMIT ?`, queue, unix(since), limit)
	if err != nil {
		return nil, fmt.Errorf("store: recent waits: %w", err)
	}
	defer rows.Close()
	var out []time.Duration
	for rows.Next() {
		var ms int64
		if err := rows.Scan(&ms); err != nil {
			return nil, fmt.Errorf("store: recent waits: %w", err)
		}
		out = append(out, time.Duration(max(ms, 0))*time.Millisecond)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: recent waits: %w", err)
	}
	return out, nil
}
