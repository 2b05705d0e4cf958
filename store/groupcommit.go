package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Group commit. Every AppendMessage must be on disk before it returns
// (synchronous=FULL: the commit fsyncs the WAL), and one fsync costs
// milliseconds, so committing each message alone caps the store at a few
// hundred messages a second per disk. Instead one writer goroutine takes
// the appends that arrive while the previous commit runs and writes them
// in one transaction with one fsync; each caller returns once its batch
// is durable, so "acknowledged" still means "durable".

// maxBatch bounds the messages of one transaction, so that a burst does
// not hold the write lock (and the first callers) for long.
const maxBatch = 512

// maxCachedConversations bounds the writer's cache of last seqs; past it
// the cache starts afresh (each conversation's next append reads its seq).
const maxCachedConversations = 50000

// appendReq is one AppendMessage waiting for the writer.
type appendReq struct {
	m    *Message
	done chan appendResult // buffered: the writer never waits on a caller
}

type appendResult struct {
	msg *Message
	dup bool
	err error
}

// runWriter commits appends in batches until stop is closed. It is the
// only goroutine that writes messages or last_seq, so seqs come out in the
// order the appends arrived, and it may remember each conversation's last
// seq (lastSeq) instead of reading it again; a batch that fails leaves
// lastSeq as it was.
func (s *SQLite) runWriter() {
	defer close(s.writerDone)
	batch := make([]*appendReq, 0, maxBatch)
	for {
		select {
		case r := <-s.appends:
			batch = append(batch[:0], r)
		case <-s.stop:
			return
		}
		// The appends that arrived meanwhile are blocked in their send
		// (the channel is unbuffered): they join this batch.
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-s.appends:
				batch = append(batch, r)
			default:
				break more
			}
		}
		results, err := s.commitBatch(batch)
		for i, r := range batch {
			if err != nil {
				r.done <- appendResult{err: fmt.Errorf("store: append message: %w", err)}
				continue
			}
			r.done <- results[i]
		}
		clear(batch)
	}
}

// commitBatch writes batch in one immediate transaction. A message whose
// conversation does not exist gets ErrNotFound and one whose id the
// conversation already has gets the stored one (dup); any other failure
// rolls the whole batch back and is returned for all.
func (s *SQLite) commitBatch(batch []*appendReq) ([]appendResult, error) {
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	insert, err := tx.PrepareContext(ctx, `INSERT INTO messages (conversation_id, seq, id, role, sender_id, sender_name,
		kind, text, file_id, event, event_data, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (conversation_id, id) DO NOTHING`)
	if err != nil {
		return nil, err
	}
	defer insert.Close()
	selectLast, err := tx.PrepareContext(ctx, `SELECT last_seq FROM conversations WHERE id = ?`)
	if err != nil {
		return nil, err
	}
	defer selectLast.Close()
	type convState struct {
		last    int64
		updated time.Time
		changed bool
	}
	convs := map[string]*convState{}
	var order []string // conversations in first-seen order, for the updates
	results := make([]appendResult, len(batch))
	for i, r := range batch {
		m := r.m
		cs, ok := convs[m.ConversationID]
		if !ok {
			last, known := s.lastSeq[m.ConversationID]
			if !known {
				err := selectLast.QueryRowContext(ctx, m.ConversationID).Scan(&last)
				if errors.Is(err, sql.ErrNoRows) {
					results[i] = appendResult{err: ErrNotFound}
					continue
				}
				if err != nil {
					return nil, err
				}
			}
			cs = &convState{last: last}
			convs[m.ConversationID] = cs
			order = append(order, m.ConversationID)
		}
		out := *m
		out.Seq = cs.last + 1
		if out.CreatedAt.IsZero() {
			out.CreatedAt = time.Now().UTC()
		}
		fileID := ""
		if out.File != nil {
			fileID = out.File.ID
		}
		res, err := insert.ExecContext(ctx, out.ConversationID, out.Seq, out.ID, out.Role, out.SenderID, out.SenderName,
			out.Kind, out.Text, fileID, out.Event, string(out.EventData), unix(out.CreatedAt))
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 0 {
			old, err := scanMessage(tx.QueryRowContext(ctx, `SELECT `+msgColumns+` FROM messages m LEFT JOIN files f ON f.id = m.file_id
				WHERE m.conversation_id = ? AND m.id = ?`, m.ConversationID, m.ID))
			if err != nil {
				return nil, err
			}
			results[i] = appendResult{msg: old, dup: true}
			continue
		}
		cs.last, cs.updated, cs.changed = out.Seq, out.CreatedAt, true
		results[i] = appendResult{msg: &out}
	}
	update, err := tx.PrepareContext(ctx, `UPDATE conversations SET last_seq = ?, updated_at = ? WHERE id = ?`)
	if err != nil {
		return nil, err
	}
	defer update.Close()
	for _, id := range order {
		cs := convs[id]
		if !cs.changed {
			continue
		}
		if _, err := update.ExecContext(ctx, cs.last, unix(cs.updated), id); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	if len(s.lastSeq) > maxCachedConversations {
		clear(s.lastSeq)
	}
	for _, id := range order {
		s.lastSeq[id] = convs[id].last
	}
	return results, nil
}
