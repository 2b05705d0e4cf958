package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// webhookClaim is how long an event DueWebhookEvents returned stays
// claimed by the gateway that took it, unless UpdateWebhookEvent records
// the attempt first. It outlasts a batch of deliveries (gateway: 32
// events, 8 at a time, each bounded by integrations.webhook_timeout); a
// gateway that dies mid-delivery leaves its events to the others once it
// lapses, or as soon as another node of its cluster sees it dead and
// releases its claims, so an event may be delivered twice, never lost.
const webhookClaim = 5 * time.Minute

// outboxLockClass is the first key of the advisory locks that serialize
// appends to one conversation's outbox events (the second is a hash of
// the conversation's id); two-key advisory locks never meet the one-key
// lock of migrations.
const outboxLockClass = 0x53656775 // "Segu"

// pgTextMatch is PostgreSQL's condition that a conversation has a
// message matching the tsquery expression tsq. The matching messages come
// first (the GIN index), then their conversations: as a plain IN, the
// planner tends to walk every conversation newest first and test its
// messages, which costs the whole table for a rare word.
func pgTextMatch(tsq string) string {
	return `id = ANY (ARRAY(SELECT conversation_id FROM messages WHERE search @@ ` + tsq + `))`
}

// SearchConversations implements Integrations. The full-text query is
// translated to a tsquery over the messages' search vectors (ftsquery.go).
func (p *Postgres) SearchConversations(ctx context.Context, q ConversationQuery) ([]*Conversation, error) {
	if !validText(append([]string{q.Queue, q.AgentID, q.ExternalID, q.Email, q.State}, q.Keywords...)...) ||
		q.After != nil && !validText(q.After.ID) {
		// PostgreSQL could not even take such text; no stored row holds it.
		return nil, nil
	}
	where, args := searchFilters(q, func(t time.Time) any { return t }, `lower(customer_email) = lower(?)`)
	if len(q.Keywords) > 0 {
		kq, err := keywordQuery(q.Keywords)
		if err != nil {
			return nil, err
		}
		cond, a := keywordCondition(q.Keywords, `ILIKE ? ESCAPE '\'`, pgTextMatch(kq.sql), kq.args)
		where = append(where, cond)
		args = append(args, a...)
	}
	for i, n := 0, 1; i < len(where); i++ {
		for strings.Contains(where[i], "?") {
			where[i] = strings.Replace(where[i], "?", fmt.Sprintf("$%d", n), 1)
			n++
		}
	}
	if q.Text != "" {
		tsq, err := ftsQuery(q.Text, len(args)+1)
		if err != nil {
			return nil, err
		}
		where = append(where, pgTextMatch(tsq.sql))
		args = append(args, tsq.args...)
	}
	sqlText := `SELECT ` + convColumns + ` FROM conversations`
	if len(where) > 0 {
		sqlText += ` WHERE ` + strings.Join(where, ` AND `)
	}
	args = append(args, q.Limit)
	sqlText += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := p.pool.Query(ctx, sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("store: search conversations: %w", err)
	}
	return scanPgConversations(rows, "search conversations")
}

// Files implements Integrations.
func (p *Postgres) Files(ctx context.Context, conversationID string) ([]*File, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+fileColumns+` FROM files WHERE conversation_id = $1 ORDER BY created_at, id`, conversationID)
	if err != nil {
		return nil, fmt.Errorf("store: files of %s: %w", conversationID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*File, error) { return scanPgFile(row) })
	if err != nil {
		return nil, fmt.Errorf("store: files of %s: %w", conversationID, err)
	}
	return out, nil
}

// pgOutboxInsert adds one event to PostgreSQL's outbox and returns its seq.
const pgOutboxInsert = `INSERT INTO webhook_outbox (webhook, conversation_id, type, body, created_at, next_at, state)
	VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING seq`

// AppendWebhookEvents implements Integrations. Appends to one
// conversation take turns (an advisory lock held to the commit), so that
// its events' seqs are in commit order: a gateway never sees a later
// event of a conversation as its head while an earlier one is still
// being written.
func (p *Postgres) AppendWebhookEvents(ctx context.Context, events []*WebhookEvent) error {
	if len(events) == 0 {
		return nil
	}
	var convs []string
	for _, e := range events {
		if !validText(e.Webhook, e.ConversationID, e.Type) {
			return ErrInvalidText
		}
		convs = append(convs, e.ConversationID)
	}
	slices.Sort(convs) // one order for every gateway: no deadlock
	convs = slices.Compact(convs)
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for _, c := range convs {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, outboxLockClass, c); err != nil {
				return err
			}
		}
		for _, e := range events {
			if e.CreatedAt.IsZero() {
				e.CreatedAt = time.Now().UTC()
			}
			e.State, e.NextAt = WebhookPending, e.CreatedAt
			if err := tx.QueryRow(ctx, pgOutboxInsert, e.Webhook, e.ConversationID, e.Type, e.Body, e.CreatedAt, e.NextAt, e.State).
				Scan(&e.Seq); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: append webhook events: %w", err)
	}
	return nil
}

// ReleaseWebhookClaims implements Integrations.
func (p *Postgres) ReleaseWebhookClaims(ctx context.Context, claimant string) (int, error) {
	tag, err := p.pool.Exec(ctx, `UPDATE webhook_outbox SET claimed_until = NULL, claimed_by = ''
		WHERE claimed_until IS NOT NULL AND ($1 = '' OR claimed_by = $1)`, claimant)
	if err != nil {
		return 0, fmt.Errorf("store: release webhook claims: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// WebhookClaimants implements Integrations.
func (p *Postgres) WebhookClaimants(ctx context.Context) ([]string, error) {
	rows, err := p.pool.Query(ctx, `SELECT DISTINCT claimed_by FROM webhook_outbox
		WHERE claimed_until IS NOT NULL AND claimed_by <> '' ORDER BY claimed_by`)
	if err != nil {
		return nil, fmt.Errorf("store: webhook claimants: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: webhook claimants: %w", err)
	}
	return out, nil
}

// queueOutbox queues on b, a batch sent in a transaction, the inserts of
// events (prepared), after the advisory locks of their conversations
// that AppendWebhookEvents takes too, in the same order: a
// conversation's outbox seqs are in commit order whichever way its events
// come. Each event's seq is set once the batch ran.
func queueOutbox(b *pgx.Batch, events []*WebhookEvent) {
	if len(events) == 0 {
		return
	}
	var locks []string
	for _, e := range events {
		locks = append(locks, e.ConversationID)
	}
	slices.Sort(locks)
	for _, c := range slices.Compact(locks) {
		b.Queue(`SELECT pg_advisory_xact_lock($1, hashtext($2))`, outboxLockClass, c)
	}
	for _, e := range events {
		b.Queue(pgOutboxInsert, e.Webhook, e.ConversationID, e.Type, e.Body, e.CreatedAt, e.NextAt, e.State).
			QueryRow(func(row pgx.Row) error { return row.Scan(&e.Seq) })
	}
}

// DueWebhookEvents implements Integrations, for gateways sharing the
// outbox: it claims the events it returns for claimant until
// now+webhookClaim, until ReleaseWebhookClaims ends the claim, or until
// UpdateWebhookEvent records their attempt, and skips the events another
// gateway is claiming or has locked (FOR UPDATE SKIP LOCKED), so two
// gateways never deliver one event at once. A claimed head still holds
// back the rest of its conversation.
func (p *Postgres) DueWebhookEvents(ctx context.Context, claimant string, webhooks []string, now time.Time, limit int) ([]*WebhookEvent, error) {
	if len(webhooks) == 0 {
		return nil, nil
	}
	rows, err := p.pool.Query(ctx, `WITH due AS (
			SELECT seq FROM webhook_outbox o
			WHERE o.state = 'pending' AND o.webhook = ANY($1) AND o.next_at <= $2
				AND (o.claimed_until IS NULL OR o.claimed_until <= $2)
				AND NOT EXISTS (SELECT 1 FROM webhook_outbox h WHERE h.state = 'pending'
					AND h.webhook = o.webhook AND h.conversation_id = o.conversation_id AND h.seq < o.seq)
			ORDER BY o.seq LIMIT $3
			FOR UPDATE SKIP LOCKED)
		UPDATE webhook_outbox w SET claimed_until = $4, claimed_by = $5 FROM due WHERE w.seq = due.seq
		RETURNING `+prefixed("w.", webhookColumns), webhooks, now, limit, now.Add(webhookClaim), claimant)
	if err != nil {
		return nil, fmt.Errorf("store: due webhook events: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanPgWebhookEvent)
	if err != nil {
		return nil, fmt.Errorf("store: due webhook events: %w", err)
	}
	slices.SortFunc(out, func(a, b *WebhookEvent) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// scanPgWebhookEvent reads the webhookColumns of a row.
func scanPgWebhookEvent(row pgx.CollectableRow) (*WebhookEvent, error) {
	var e WebhookEvent
	err := row.Scan(&e.Seq, &e.Webhook, &e.ConversationID, &e.Type, &e.Body, &e.CreatedAt, &e.Attempts, &e.NextAt,
		&e.State, &e.LastError)
	e.CreatedAt, e.NextAt = e.CreatedAt.UTC(), e.NextAt.UTC()
	return &e, err
}

// prefixed qualifies each of a list of columns with prefix.
func prefixed(prefix, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// NextWebhookAttempt implements Integrations. An event another gateway
// claims is due, at the earliest, when its claim lapses.
func (p *Postgres) NextWebhookAttempt(ctx context.Context, webhooks []string) (time.Time, error) {
	if len(webhooks) == 0 {
		return time.Time{}, nil
	}
	var next *time.Time
	err := p.pool.QueryRow(ctx, `SELECT min(GREATEST(next_at, COALESCE(claimed_until, next_at))) FROM webhook_outbox
		WHERE state = 'pending' AND webhook = ANY($1)`, webhooks).Scan(&next)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: next webhook attempt: %w", err)
	}
	return fromTS(next), nil
}

// UpdateWebhookEvent implements Integrations; it ends the event's claim.
func (p *Postgres) UpdateWebhookEvent(ctx context.Context, e *WebhookEvent) error {
	if e.State == WebhookDelivered {
		// Delivered events are done with: the outbox keeps what is owed.
		if _, err := p.pool.Exec(ctx, `DELETE FROM webhook_outbox WHERE seq = $1`, e.Seq); err != nil {
			return fmt.Errorf("store: update webhook event %d: %w", e.Seq, err)
		}
		return nil
	}
	// The last error quotes a receiver's reply, cut to a length: keep what
	// text can hold rather than lose the attempt.
	lastError := strings.ReplaceAll(strings.ToValidUTF8(e.LastError, "\uFFFD"), "\x00", "")
	_, err := p.pool.Exec(ctx, `UPDATE webhook_outbox SET state = $1, attempts = $2, next_at = $3, last_error = $4,
		claimed_until = NULL, claimed_by = '' WHERE seq = $5`, e.State, e.Attempts, e.NextAt, lastError, e.Seq)
	if err != nil {
		return fmt.Errorf("store: update webhook event %d: %w", e.Seq, err)
	}
	return nil
}

// CountWebhookEvents implements Integrations.
func (p *Postgres) CountWebhookEvents(ctx context.Context) (WebhookCounts, error) {
	var c WebhookCounts
	err := p.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'dead')
		FROM webhook_outbox`).Scan(&c.Pending, &c.Dead)
	if err != nil {
		return c, fmt.Errorf("store: count webhook events: %w", err)
	}
	return c, nil
}

// DeadWebhookEvents implements Integrations.
func (p *Postgres) DeadWebhookEvents(ctx context.Context, webhook string, limit int) ([]*WebhookEvent, error) {
	rows, err := p.pool.Query(ctx, `SELECT `+webhookColumns+` FROM webhook_outbox
		WHERE state = 'dead' AND ($1 = '' OR webhook = $1) ORDER BY seq LIMIT $2`, webhook, limit)
	if err != nil {
		return nil, fmt.Errorf("store: dead webhook events: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanPgWebhookEvent)
	if err != nil {
		return nil, fmt.Errorf("store: dead webhook events: %w", err)
	}
	return out, nil
}

// ReplayWebhookEvents implements Integrations. A dead event holds no
// claim, but the claim is cleared all the same so that the event is due
// to every gateway at once.
func (p *Postgres) ReplayWebhookEvents(ctx context.Context, webhook string, seq int64, now time.Time) (int, error) {
	if !validText(webhook) {
		return 0, nil // no stored webhook has such a name
	}
	tag, err := p.pool.Exec(ctx, `UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_at = $1, last_error = '',
		claimed_until = NULL, claimed_by = '' WHERE state = 'dead' AND ($2 = '' OR webhook = $2) AND ($3 = 0 OR seq = $3)`, now, webhook, seq)
	if err != nil {
		return 0, fmt.Errorf("store: replay webhook events: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
