package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// isPgUniqueViolation reports PostgreSQL's unique_violation (SQLSTATE
// 23505), which a primary key raises too.
func isPgUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// AddNote implements Desk.
func (p *Postgres) AddNote(ctx context.Context, n *Note) error {
	if !validText(n.ID, n.ConversationID, n.AgentID, n.AgentName, n.Text) {
		return ErrInvalidText
	}
	if n.CreatedAt.IsZero() {
		n.CreatedAt = time.Now().UTC()
	}
	_, err := p.pool.Exec(ctx, `INSERT INTO notes (id, conversation_id, agent_id, agent_name, text, created_at)
		VALUES ($1,$2,$3,$4,$5,$6)`, n.ID, n.ConversationID, n.AgentID, n.AgentName, n.Text, n.CreatedAt)
	if err != nil && isPgUniqueViolation(err) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("store: add note to %s: %w", n.ConversationID, err)
	}
	return nil
}

// Notes implements Desk.
func (p *Postgres) Notes(ctx context.Context, conversationID string) ([]*Note, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, conversation_id, agent_id, agent_name, text, created_at
		FROM notes WHERE conversation_id = $1 ORDER BY created_at, id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: notes of %s: %w", conversationID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Note, error) {
		var n Note
		err := row.Scan(&n.ID, &n.ConversationID, &n.AgentID, &n.AgentName, &n.Text, &n.CreatedAt)
		n.CreatedAt = n.CreatedAt.UTC()
		return &n, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: notes of %s: %w", conversationID, err)
	}
	return out, nil
}

// SetWrapUp implements Desk.
func (p *Postgres) SetWrapUp(ctx context.Context, conversationID, code string) error {
	if !validText(conversationID, code) {
		return ErrInvalidText
	}
	tag, err := p.pool.Exec(ctx, `UPDATE conversations SET wrap_up = $1 WHERE id = $2`, code, conversationID)
	if err != nil {
		return fmt.Errorf("store: wrap-up of %s: %w", conversationID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// WrapUpCounts implements Desk.
func (p *Postgres) WrapUpCounts(ctx context.Context, from, to time.Time) ([]WrapUpCount, error) {
	rows, err := p.pool.Query(ctx, `SELECT queue, wrap_up, count(*) FROM conversations
		WHERE wrap_up <> '' AND ended_at >= $1 AND ended_at < $2 GROUP BY queue, wrap_up ORDER BY queue, wrap_up`, from, to)
	if err != nil {
		return nil, fmt.Errorf("store: wrap-up counts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (WrapUpCount, error) {
		var c WrapUpCount
		err := row.Scan(&c.Queue, &c.Code, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: wrap-up counts: %w", err)
	}
	return out, nil
}

// CannedReplies implements Desk.
func (p *Postgres) CannedReplies(ctx context.Context, agentID string) ([]*CannedReply, error) {
	rows, err := p.pool.Query(ctx, `SELECT id, agent_id, shortcut, text, updated_at FROM canned_replies
		WHERE agent_id = $1 ORDER BY shortcut`, agentID)
	if err != nil {
		return nil, fmt.Errorf("store: canned replies of %s: %w", agentID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*CannedReply, error) {
		var r CannedReply
		err := row.Scan(&r.ID, &r.AgentID, &r.Shortcut, &r.Text, &r.UpdatedAt)
		r.UpdatedAt = r.UpdatedAt.UTC()
		return &r, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: canned replies of %s: %w", agentID, err)
	}
	return out, nil
}

// SaveCannedReply implements Desk.
func (p *Postgres) SaveCannedReply(ctx context.Context, r *CannedReply) error {
	if !validText(r.ID, r.AgentID, r.Shortcut, r.Text) {
		return ErrInvalidText
	}
	if r.UpdatedAt.IsZero() {
		r.UpdatedAt = time.Now().UTC()
	}
	// As with SQLite, the upsert touches a row only when the same agent
	// owns it; the shortcut's own unique key still raises its violation.
	tag, err := p.pool.Exec(ctx, `INSERT INTO canned_replies (id, agent_id, shortcut, text, updated_at) VALUES ($1,$2,$3,$4,$5)
		ON CONFLICT (id) DO UPDATE SET shortcut = EXCLUDED.shortcut, text = EXCLUDED.text, updated_at = EXCLUDED.updated_at
		WHERE canned_replies.agent_id = EXCLUDED.agent_id`, r.ID, r.AgentID, r.Shortcut, r.Text, r.UpdatedAt)
	if err != nil && isPgUniqueViolation(err) {
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("store: save canned reply: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteCannedReply implements Desk.
func (p *Postgres) DeleteCannedReply(ctx context.Context, agentID, id string) error {
	tag, err := p.pool.Exec(ctx, `DELETE FROM canned_replies WHERE id = $1 AND agent_id = $2`, id, agentID)
	if err != nil {
		return fmt.Errorf("store: delete canned reply: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// DayStats counts the conversations of queues opened at or after since,
// and their voice calls started at or after since.
func (p *Postgres) DayStats(ctx context.Context, since time.Time, queues []string) (*DayStats, error) {
	d := newDayTally()
	if len(queues) == 0 {
		return d.done(), nil
	}
	var opened, answered, abandoned, waited int
	var wait float64
	err := p.pool.QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE last_agent_id <> ''),
		count(*) FILTER (WHERE state = '`+StateEnded+`' AND last_agent_id = ''),
		COALESCE(sum(extract(epoch FROM w)), 0)::float8, count(w)
		FROM (SELECT c.state, c.last_agent_id, (SELECT min(m.created_at) FROM messages m WHERE m.conversation_id = c.id
			AND m.event = 'conversation.accepted') - c.created_at AS w
		FROM conversations c WHERE c.created_at >= $1 AND c.queue = ANY($2)) day`, since, queues).
		Scan(&opened, &answered, &abandoned, &wait, &waited)
	if err != nil {
		return nil, fmt.Errorf("store: day stats: %w", err)
	}
	d.conversations(opened, answered, abandoned, time.Duration(wait*float64(time.Second)), waited)
	rows, err := p.pool.Query(ctx, `SELECT k.answered_at, k.ended_at, k.cause FROM calls k
		JOIN conversations c ON c.id = k.conversation_id
		WHERE k.kind = 'voice' AND k.started_at >= $1 AND c.queue = ANY($2)`, since, queues)
	if err != nil {
		return nil, fmt.Errorf("store: day stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var an, en *time.Time
		var cause string
		if err := rows.Scan(&an, &en, &cause); err != nil {
			return nil, fmt.Errorf("store: day stats: %w", err)
		}
		d.call(fromTS(an), fromTS(en), cause)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: day stats: %w", err)
	}
	return d.done(), nil
}
