package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
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

// appendReq is one AppendMessage, one MarkRead (mark set, m nil) or
// one request for a pass of the search index (index set, m nil),
// waiting for the writer.
type appendReq struct {
	m     *Message
	mark  *readMark
	index bool
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
	res := w.submit(ctx, &appendReq{m: m, outbox: outbox})
	return res.msg, res.dup, res.err
}

// submit hands r to the writer and waits until its batch is committed.
func (w *groupWriter) submit(ctx context.Context, r *appendReq) appendResult {
	r.done = make(chan appendResult, 1)
	select {
	case w.appends <- r:
	case <-w.stop:
		return appendResult{err: ErrClosed}
	case <-ctx.Done():
		return appendResult{err: r.failed(ctx.Err())}
	}
	// Handed over: the outcome is waited for even if ctx ends, since the
	// message may be stored already.
	return <-r.done
}

// failed wraps err, which failed r, in what r was.
func (r *appendReq) failed(err error) error {
	if r.mark != nil {
		return fmt.Errorf("store: mark read %s: %w", r.mark.conv, err)
	}
	if r.index {
		return fmt.Errorf("store: search index: %w", err)
	}
	return fmt.Errorf("store: append message: %w", err)
}

// readMark is a read receipt: the conversation's read mark of role goes
// up to seq (never down).
type readMark struct {
	conv, role string
	seq        int64
}

// markRead hands a read receipt to the writer and waits until its batch
// is committed. Read receipts come about as often as messages (each side
// reports what it has seen as it arrives); each in a transaction of its
// own would cost an fsync, and a write from a connection other than the
// writer's makes the writer's connection drop its page cache.
func (w *groupWriter) markRead(ctx context.Context, mark readMark) error {
	return w.submit(ctx, &appendReq{mark: &mark}).err
}

// indexNow has the writer index, in its next batch, every message
// stored until then (searchindex.go), and waits until that batch is
// committed.
func (w *groupWriter) indexNow(ctx context.Context) error {
	return w.submit(ctx, &appendReq{index: true}).err
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
				r.done <- appendResult{err: r.failed(err)}
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
// conversation already has (stored before, or earlier in the batch) gets
// the stored one (dup); any other failure rolls the whole batch back and
// is returned for all. The webhook events of each message
// (AppendMessageEvents) are inserted after the messages, in the same
// transaction and in the messages' order; the outbox's seqs follow the
// commits, since this connection is the only writer while the
// transaction is open.
//
// The new messages go in with multi-row INSERTs (insertRows, a chunk of
// up to 64 rows each), not one INSERT each: fewer statements to bind and
// step (and, while a trigger fed the search index, fewer FTS5 segments:
// it wrote one per statement). A message stored before (a client
// sending it again after a lost ack) makes the INSERT fail on the
// unique index; the batch is then written again with the duplicates
// found first, a query per chunk (storedIDs, writeBatch), so that seqs
// are given only to the messages inserted. The conversations are
// updated a chunk at a time too (updateConvs). The search index takes the new messages in bulk
// (searchindex.go): when a pass is asked for or due, at the end of the
// transaction.
func (s *SQLite) commitBatch(batch []*appendReq) ([]appendResult, error) {
	ctx := context.Background()
	msgs := make([]*appendReq, 0, len(batch)) // the batch's messages
	askedIndex, onlyIndex := false, true
	for _, r := range batch {
		if r.m != nil {
			msgs = append(msgs, r)
		}
		askedIndex = askedIndex || r.index
		onlyIndex = onlyIndex && r.index
	}
	if onlyIndex && !s.indexer.pending.Load() {
		// Passes asked for, and nothing stored since the last one.
		return make([]appendResult, len(batch)), nil
	}
	s.ckpt.beforeBatch(ctx, s.wconn)
	results, err := s.writeBatch(ctx, batch, msgs, askedIndex, false)
	if len(msgs) > 0 && isConstraint(err) {
		// A message of the batch was stored before (a client sending it
		// again after a lost ack): the batch again, finding them first.
		results, err = s.writeBatch(ctx, batch, msgs, askedIndex, true)
	}
	return results, err
}

// isConstraint tells whether err is SQLite's SQLITE_CONSTRAINT (19), of
// any kind: the extended codes keep it in their low byte.
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == 19
}

// writeBatch is commitBatch's transaction. With findStored false it
// takes no message for stored already, and a duplicate makes an INSERT
// fail on the conversation's unique index; with true it queries the
// unique index first (storedIDs) and answers duplicates with the stored
// message. Duplicates are rare, so commitBatch writes without the query
// and writes the batch again with it if a constraint failed.
func (s *SQLite) writeBatch(ctx context.Context, batch, msgs []*appendReq, askedIndex, findStored bool) ([]appendResult, error) {
	tx, err := s.wconn.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var stored map[msgKey]bool
	if findStored {
		if stored, err = s.storedIDs(ctx, tx, msgs); err != nil {
			return nil, err
		}
	}
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
	inBatch := make(map[msgKey]int, len(batch)) // messages of this batch: index in batch
	rows := make([]*Message, 0, len(batch))
	var events []*WebhookEvent // the messages' webhook events, in order
	var marks []readMark       // read receipts, applied after the messages
	for i, r := range batch {
		if r.mark != nil {
			marks = append(marks, *r.mark)
			continue
		}
		if r.m == nil {
			continue // a request for a pass of the search index
		}
		m := r.m
		key := msgKey{m.ConversationID, m.ID}
		if j, ok := inBatch[key]; ok {
			// Sent twice in one batch: the second is the first's dup.
			results[i] = results[j]
			if results[j].msg != nil {
				results[i].dup = true
			}
			continue
		}
		inBatch[key] = i
		if stored[key] {
			old, err := scanMessage(tx.QueryRowContext(ctx, `SELECT `+msgColumns+` FROM messages m LEFT JOIN files f ON f.id = m.file_id
				WHERE m.conversation_id = ? AND m.id = ?`, m.ConversationID, m.ID))
			if err != nil {
				return nil, err
			}
			results[i] = appendResult{msg: old, dup: true}
			continue
		}
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
		evs, err := outboxEvents(r, &out)
		if err != nil {
			results[i] = appendResult{err: err}
			continue
		}
		events = append(events, evs...)
		rows = append(rows, &out)
		cs.last, cs.updated, cs.changed = out.Seq, out.CreatedAt, true
		results[i] = appendResult{msg: &out}
	}
	if err := s.insertRows(ctx, tx, rows); err != nil {
		return nil, err
	}
	if len(events) > 0 {
		outbox, err := tx.PrepareContext(ctx, sqliteOutboxInsert)
		if err != nil {
			return nil, err
		}
		defer outbox.Close()
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
	var updates []convUpdate
	for _, id := range order {
		if cs := convs[id]; cs.changed {
			updates = append(updates, convUpdate{id, cs.last, unix(cs.updated)})
		}
	}
	if err := s.updateConvs(ctx, tx, updates); err != nil {
		return nil, err
	}
	if err := applyReadMarks(ctx, tx, marks); err != nil {
		return nil, err
	}
	now := time.Now()
	index := !s.index.off && (askedIndex || s.indexer.due(now))
	if index {
		if err := indexNew(ctx, tx); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	if index {
		s.indexer.indexed(now)
	} else if len(rows) > 0 {
		s.indexer.pending.Store(true)
	}
	if len(s.lastSeq) > maxCachedConversations {
		clear(s.lastSeq)
	}
	for _, id := range order {
		s.lastSeq[id] = convs[id].last
	}
	return results, nil
}

// applyReadMarks raises the read marks of a batch, the highest seq of
// each conversation and role once.
func applyReadMarks(ctx context.Context, tx *sql.Tx, marks []readMark) error {
	if len(marks) == 0 {
		return nil
	}
	type key struct{ conv, col string }
	highest := map[key]int64{}
	var order []key
	for _, m := range marks {
		k := key{m.conv, readColumn(m.role)}
		if seq, ok := highest[k]; !ok {
			order = append(order, k)
			highest[k] = m.seq
		} else if m.seq > seq {
			highest[k] = m.seq
		}
	}
	for _, k := range order {
		if _, err := tx.ExecContext(ctx, `UPDATE conversations SET `+k.col+` = MAX(`+k.col+`, ?) WHERE id = ?`, highest[k], k.conv); err != nil {
			return err
		}
	}
	return nil
}

// readColumn is the conversations column of role's read mark.
func readColumn(role string) string {
	if role == RoleAgent {
		return "read_agent"
	}
	return "read_customer"
}

// msgKey names a message: ids are unique within a conversation.
type msgKey struct{ conv, id string }

// A batch's rows go to SQLite in chunks of rowChunks' sizes: as many of
// the largest as fit, then the rest in smaller ones. Each chunk size has
// one statement, prepared once and kept (rowStmt), so that a batch costs
// no parsing: parsing a new statement of a few hundred rows for every
// batch took a sixth of the writer's time. A chunk is one INSERT, and
// so one search index segment (see commitBatch).
var rowChunks = [...]int{64, 32, 16, 8, 4, 2, 1}

// chunked calls f with consecutive pieces of n items, sized from
// rowChunks, largest first.
func chunked(n int, f func(from, size int) error) error {
	from := 0
	for _, size := range rowChunks {
		for ; n-from >= size; from += size {
			if err := f(from, size); err != nil {
				return err
			}
		}
	}
	return nil
}

// rowKinds are the kinds of multi-row statement the writer uses.
var rowKinds = [...]string{"stored", "update", "insert"}

// rowSQL is the statement of kind ("insert", "stored" or "update") for
// size rows.
func rowSQL(kind string, size int) string {
	var q strings.Builder
	switch kind {
	case "stored":
		q.WriteString(`SELECT conversation_id, id FROM messages WHERE (conversation_id, id) IN (VALUES `)
		q.WriteString(strings.Repeat("(?,?),", size-1))
		q.WriteString("(?,?))")
	case "update":
		q.WriteString(`UPDATE conversations SET last_seq = v.column2, updated_at = v.column3 FROM (VALUES `)
		q.WriteString(strings.Repeat("(?,?,?),", size-1))
		q.WriteString("(?,?,?)) AS v WHERE conversations.id = v.column1")
	default:
		q.WriteString(`INSERT INTO messages (conversation_id, seq, id, role, sender_id, sender_name,
			kind, text, file_id, event, event_data, created_at) VALUES `)
		q.WriteString(strings.Repeat("(?,?,?,?,?,?,?,?,?,?,?,?),", size-1))
		q.WriteString("(?,?,?,?,?,?,?,?,?,?,?,?)")
	}
	return q.String()
}

// prepareRowStmts prepares every multi-row statement once, when the store
// opens. Not later: preparing on the pool takes a connection of its own,
// and while the writer's transaction is open the pool's other
// connections may all be waiting for the writer's lock (a transaction
// of webhook events, say), so the writer would wait for them and they
// for it until the busy timeout. They are prepared on the pool, not on
// the writer's connection: database/sql prepares a statement of a
// sql.Conn again at every Tx.StmtContext, and one of the pool once per
// connection.
func (s *SQLite) prepareRowStmts(ctx context.Context) error {
	for _, kind := range rowKinds {
		for _, size := range rowChunks {
			st, err := s.db.PrepareContext(ctx, rowSQL(kind, size))
			if err != nil {
				return err
			}
			s.rowStmts[fmt.Sprint(kind, size)] = st
		}
	}
	return nil
}

// rowStmt returns the statement of kind for size rows, on tx's
// connection. Only the writer goroutine calls it.
func (s *SQLite) rowStmt(ctx context.Context, tx *sql.Tx, kind string, size int) (*sql.Stmt, error) {
	st, ok := s.rowStmts[fmt.Sprint(kind, size)]
	if !ok {
		return nil, fmt.Errorf("store: no %s statement for %d rows", kind, size)
	}
	return tx.StmtContext(ctx, st), nil
}

// storedIDs returns which of batch's messages are stored already (row
// values over the messages' unique index).
func (s *SQLite) storedIDs(ctx context.Context, tx *sql.Tx, batch []*appendReq) (map[msgKey]bool, error) {
	stored := map[msgKey]bool{}
	args := make([]any, 0, 2*len(batch))
	err := chunked(len(batch), func(from, size int) error {
		st, err := s.rowStmt(ctx, tx, "stored", size)
		if err != nil {
			return err
		}
		args = args[:0]
		for _, r := range batch[from : from+size] {
			args = append(args, r.m.ConversationID, r.m.ID)
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k msgKey
			if err := rows.Scan(&k.conv, &k.id); err != nil {
				return err
			}
			stored[k] = true
		}
		return rows.Err()
	})
	return stored, err
}

// insertRows inserts ms, none of which is stored yet, a chunk of rows
// per statement.
func (s *SQLite) insertRows(ctx context.Context, tx *sql.Tx, ms []*Message) error {
	args := make([]any, 0, 12*min(len(ms), rowChunks[0]))
	return chunked(len(ms), func(from, size int) error {
		st, err := s.rowStmt(ctx, tx, "insert", size)
		if err != nil {
			return err
		}
		args = args[:0]
		for _, m := range ms[from : from+size] {
			fileID := ""
			if m.File != nil {
				fileID = m.File.ID
			}
			args = append(args, m.ConversationID, m.Seq, m.ID, m.Role, m.SenderID, m.SenderName,
				m.Kind, m.Text, fileID, m.Event, string(m.EventData), unix(m.CreatedAt))
		}
		_, err = st.ExecContext(ctx, args...)
		return err
	})
}

// convUpdate is a conversation's last seq and update time after a batch.
type convUpdate struct {
	id      string
	last    int64
	updated int64 // unix milliseconds
}

// updateConvs writes the conversations' last seqs and update times, a
// chunk of conversations per statement: one UPDATE each cost a quarter of
// the writer's time when a batch spans hundreds of conversations.
func (s *SQLite) updateConvs(ctx context.Context, tx *sql.Tx, us []convUpdate) error {
	args := make([]any, 0, 3*min(len(us), rowChunks[0]))
	return chunked(len(us), func(from, size int) error {
		st, err := s.rowStmt(ctx, tx, "update", size)
		if err != nil {
			return err
		}
		args = args[:0]
		for _, u := range us[from : from+size] {
			args = append(args, u.id, u.last, u.updated)
		}
		_, err = st.ExecContext(ctx, args...)
		return err
	})
}
