package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateRecording implements Store.
func (p *Postgres) CreateRecording(ctx context.Context, r *Recording) (RecordingFile, error) {
	if !validText(r.ConversationID, r.CallID, r.Type, r.StartedBy) {
		return nil, ErrInvalidText
	}
	f, err := p.createRecordingFile(r)
	if err != nil {
		return nil, err
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO recordings (id, conversation_id, call_id, format, type, started_by, started_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7)`, r.ID, r.ConversationID, r.CallID, r.Format, r.Type, r.StartedBy, r.StartedAt); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("store: create recording: %w", err)
	}
	return f, nil
}

// FinishRecording implements Store.
func (p *Postgres) FinishRecording(ctx context.Context, r *Recording) error {
	return p.FinishRecordingEvents(ctx, r, nil)
}

// FinishRecordingEvents implements Integrations.
func (p *Postgres) FinishRecordingEvents(ctx context.Context, r *Recording, events RecordingOutboxFunc) error {
	p.finishRecordingFile(r)
	outbox, err := recordingOutbox(r, events)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE recordings SET size = $1, duration_ms = $2, ended_at = $3 WHERE id = $4`,
			r.Size, r.Duration.Milliseconds(), r.EndedAt, r.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		var b pgx.Batch
		queueOutbox(&b, outbox)
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("store: finish recording %s: %w", r.ID, err)
	}
	return nil
}

func scanPgRecording(row pgx.Row) (*Recording, error) {
	var r Recording
	var dur int64
	var st, en *time.Time
	if err := row.Scan(&r.ID, &r.ConversationID, &r.CallID, &r.Format, &r.Type, &r.Size, &dur, &r.StartedBy, &st, &en); err != nil {
		return nil, err
	}
	r.Duration = time.Duration(dur) * time.Millisecond
	r.StartedAt, r.EndedAt = fromTS(st), fromTS(en)
	return &r, nil
}

// Recording implements Store.
func (p *Postgres) Recording(ctx context.Context, id string) (*Recording, error) {
	r, err := scanPgRecording(p.pool.QueryRow(ctx, `SELECT `+recColumns+` FROM recordings WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: recording %s: %w", id, err)
	}
	return r, nil
}

// Recordings implements Store.
func (p *Postgres) Recordings(ctx context.Context, conversationID string) ([]*Recording, error) {
	return p.queryRecordings(ctx, `SELECT `+recColumns+` FROM recordings WHERE conversation_id = $1 ORDER BY started_at, id`, conversationID)
}

func (p *Postgres) queryRecordings(ctx context.Context, query string, args ...any) ([]*Recording, error) {
	rows, err := p.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: recordings: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Recording, error) { return scanPgRecording(row) })
	if err != nil {
		return nil, fmt.Errorf("store: recordings: %w", err)
	}
	return out, nil
}

// DeleteBefore implements Store: a conversation goes once it is closed
// (ended or left) and its last change is before cutoff.
func (p *Postgres) DeleteBefore(ctx context.Context, cutoff time.Time) (Deleted, error) {
	return p.deleteWhere(ctx, `state NOT IN ('waiting', 'active') AND updated_at < $1`, cutoff)
}

// pgCustomerMatch selects the conversations of the customer with
// external id $1 or e-mail $2 (any case); an empty one matches nothing.
const pgCustomerMatch = `(($1 <> '' AND customer_external_id = $1) OR ($2 <> '' AND lower(customer_email) = lower($2)))`

// EraseCustomer implements Store. Conversations still open are listed in
// Deleted.Open and kept: a gateway holds them live.
func (p *Postgres) EraseCustomer(ctx context.Context, externalID, email string) (Deleted, error) {
	if externalID == "" && email == "" {
		return Deleted{}, ErrNoCustomer
	}
	if !validText(externalID, email) {
		return Deleted{}, nil // no stored customer has such an id
	}
	rows, err := p.pool.Query(ctx, `SELECT id FROM conversations WHERE `+pgCustomerMatch+`
		AND state IN ('waiting', 'active') ORDER BY created_at, id`, externalID, email)
	if err != nil {
		return Deleted{}, fmt.Errorf("store: erase: %w", err)
	}
	open, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return Deleted{}, fmt.Errorf("store: erase: %w", err)
	}
	d, err := p.deleteWhere(ctx, pgCustomerMatch+` AND state NOT IN ('waiting', 'active')`, externalID, email)
	d.Open = open
	return d, err
}

// deleteWhere removes the conversations matching where (their rows
// locked first, so a gateway writing to one waits or is refused), with
// their messages, notes, files, call records, dialogs, recordings and
// the webhook events still owed for them in one transaction; then the bytes on disk that no remaining row uses.
func (p *Postgres) deleteWhere(ctx context.Context, where string, args ...any) (Deleted, error) {
	var d Deleted
	var contents []string
	var recs []*Recording
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM conversations WHERE `+where+` ORDER BY created_at, id FOR UPDATE`, args...)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(ids) == 0 {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT content_id FROM files WHERE conversation_id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		if contents, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT `+recColumns+` FROM recordings WHERE conversation_id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		if recs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*Recording, error) { return scanPgRecording(row) }); err != nil {
			return err
		}
		for _, st := range []struct {
			n *int
			q string
		}{
			{nil, `DELETE FROM call_dialogs WHERE call_id IN (SELECT id FROM calls WHERE conversation_id = ANY($1))`},
			{&d.Calls, `DELETE FROM calls WHERE conversation_id = ANY($1)`},
			{&d.Recordings, `DELETE FROM recordings WHERE conversation_id = ANY($1)`},
			{&d.Messages, `DELETE FROM messages WHERE conversation_id = ANY($1)`},
			{nil, `DELETE FROM notes WHERE conversation_id = ANY($1)`},
			{&d.Files, `DELETE FROM files WHERE conversation_id = ANY($1)`},
			{&d.Conversations, `DELETE FROM conversations WHERE id = ANY($1)`},
			// Events still owed to webhooks carry the conversation too.
			{nil, `DELETE FROM webhook_outbox WHERE conversation_id = ANY($1)`},
		} {
			tag, err := tx.Exec(ctx, st.q, ids)
			if err != nil {
				return err
			}
			if st.n != nil {
				*st.n = int(tag.RowsAffected())
			}
		}
		d.ConversationIDs = ids
		return nil
	})
	if err != nil {
		return Deleted{}, fmt.Errorf("store: delete: %w", err)
	}
	err = p.removeLeftovers(contents, recs, func(c string) (bool, error) {
		var used bool
		err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM files WHERE content_id = $1)`, c).Scan(&used)
		return used, err
	})
	return d, err
}
