package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
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
	m *Message
	// outbox, when set, gives the webhook events the message causes,
	// written in the message's transaction (AppendMessageEvents).
	outbox OutboxFunc
	done   chan appendResult // buffered: the writer never waits on a caller
}

type appendResult struct {
	msg *Message
	dup bool
	err error
}

// groupWriter is the one goroutine that writes a store's messages. It
// takes the appends that arrive while the previous commit runs and hands
// them to commit as one batch.
type groupWriter struct {
	// appends is unbuffered, so an append is either taken by the writer
	// or refused once stop is closed. closeOnce guards stop.
	appends   chan *appendReq
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	// commit writes a batch in one transaction and returns one result per
	// append, or an error that fails them all.
	commit func(batch []*appendReq) ([]appendResult, error)
}

// startGroupWriter starts a writer that commits batches with commit.
func startGroupWriter(commit func([]*appendReq) ([]appendResult, error)) *groupWriter {
	w := &groupWriter{appends: make(chan *appendReq), stop: make(chan struct{}), done: make(chan struct{}), commit: commit}
	go w.run()
	return w
}

// append hands m, and the outbox events it causes, to the writer and
// waits until its batch is committed.
func (w *groupWriter) append(ctx context.Context, m *Message, outbox OutboxFunc) (*Message, bool, error) {
	r := &appendReq{m: m, outbox: outbox, done: make(chan appendResult, 1)}
	select {
	case w.appends <- r:
	case <-w.stop:
		return nil, false, ErrClosed
	case <-ctx.Done():
		return nil, false, fmt.Errorf("store: append message: %w", ctx.Err())
	}
	// Handed over: the outcome is waited for even if ctx ends, since the
	// message may be stored already.
	res := <-r.done
	return res.msg, res.dup, res.err
}

// close stops the writer once its batch in progress is committed; later
// appends get ErrClosed.
func (w *groupWriter) close() {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.done
}

// run commits appends in batches until stop is closed. Being the only
// goroutine that writes messages, it stores them in the order the appends
// arrived.
func (w *groupWriter) run() {
	defer close(w.done)
	batch := make([]*appendReq, 0, maxBatch)
	for {
		select {
		case r := <-w.appends:
			batch = append(batch[:0], r)
		case <-w.stop:
			return
		}
		// The appends that arrived meanwhile are blocked in their send
		// (the channel is unbuffered): they join this batch.
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-w.appends:
				batch = append(batch, r)
			default:
				break more
			}
		}
		results, err := w.commit(batch)
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

// commitBatch writes batch in one immediate transaction. The SQLite
// writer is the only one writing messages or last_seq to its file, so it
// may remember each conversation's last seq (lastSeq) instead of reading
// it again; a batch that fails leaves lastSeq as it was. A message whose
// conversation does not exist gets ErrNotFound and one whose id the
// conversation already has gets the stored one (dup); any other failure
// rolls the whole batch back and is returned for all. The webhook events
// of each message (AppendMessageEvents) are inserted right after it, in
// the same transaction; the outbox's seqs follow the commits, since this
// connection is the only writer while the transaction is open.
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
	// outbox inserts the messages' webhook events, prepared once a
	// message has some.
	var outbox *sql.Stmt
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
		events, err := outboxEvents(r, &out)
		if err != nil {
			results[i] = appendResult{err: err}
			continue
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
		if len(events) > 0 {
			if outbox == nil {
				if outbox, err = tx.PrepareContext(ctx, sqliteOutboxInsert); err != nil {
					return nil, err
				}
				defer outbox.Close()
			}
			for _, e := range events {
				res, err := outbox.ExecContext(ctx, e.Webhook, e.ConversationID, e.Type, e.Body, unix(e.CreatedAt), unix(e.NextAt), e.State)
				if err != nil {
					return nil, err
				}
				if e.Seq, err = res.LastInsertId(); err != nil {
					return nil, err
				}
			}
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
