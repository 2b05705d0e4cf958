package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// RateConversation implements Store. The rating is written only where
// none is (rating = 0), so of two gateways rating at once one wins and
// the other gets ErrRated.
func (p *Postgres) RateConversation(ctx context.Context, id string, r Rating) error {
	if !validText(id, r.Comment) {
		return ErrInvalidText
	}
	tag, err := p.pool.Exec(ctx, `UPDATE conversations SET rating = $1, rating_comment = $2, rated_at = $3
		WHERE id = $4 AND rating = 0`, r.Score, r.Comment, ts(r.At), id)
	if err != nil {
		return fmt.Errorf("store: rate conversation %s: %w", id, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var exists bool
	if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM conversations WHERE id = $1)`, id).Scan(&exists); err != nil {
		return fmt.Errorf("store: rate conversation %s: %w", id, err)
	}
	if !exists {
		return ErrNotFound
	}
	return ErrRated
}

// RecentWaits implements Store.
func (p *Postgres) RecentWaits(ctx context.Context, queue string, since time.Time, limit int) ([]time.Duration, error) {
	rows, err := p.pool.Query(ctx, `SELECT (extract(epoch FROM answered_at - created_at) * 1000000)::bigint FROM conversations
		WHERE queue = $1 AND answered_at IS NOT NULL AND answered_at >= $2 ORDER BY answered_at DESC LIMIT $3`,
		queue, since, limit)
	if err != nil {
		return nil, fmt.Errorf("store: recent waits: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (time.Duration, error) {
		var us int64
		err := row.Scan(&us)
		return time.Duration(max(us, 0)) * time.Microsecond, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: recent waits: %w", err)
	}
	return out, nil
}
