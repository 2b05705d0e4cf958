package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// The search index of the SQLite store (messages_fts, an FTS5 table
// over messages.text) is fed in bulk, not by a trigger per row. A
// trigger indexed each multi-row INSERT of the writer as a statement of
// its own, and FTS5 writes its pending terms out as a new index segment
// at each statement, so every batch made several small segments that
// FTS5 then merged again. Instead, the message writer indexes every
// message stored since the last time with one INSERT … SELECT over the
// new rowids (indexNew): at most every indexEvery while messages keep
// coming, in the transaction of the batch that is due, and otherwise
// when the indexer goroutine asks it to. It runs on the writer's own
// connection and in its transaction: SQLite has one write lock, so an
// indexer on a connection of its own would hold up the writer all the
// same, would cost an fsync of its own, and would make the writer's
// connection drop its page cache (a connection drops it whenever
// another one has written).
//
// search_index_mark holds the highest rowid indexed: the messages with a
// rowid up to it are in the index and those above it are not. It is
// updated in the same transaction as the index, so a crash leaves both
// as they were and the next pass (at the latest when the store opens)
// indexes what is above the mark, never anything twice. The delete
// trigger removes a deleted message from the index only if it is at or
// under the mark, and lowers the mark to the highest rowid left when
// the deleted messages were the newest: SQLite gives a new row the
// highest rowid plus one, so a rowid under the mark could otherwise be
// given again to a message the index would never take.
//
// A search first asks the writer for a pass (indexNow) and waits for
// it, so a search finds every message stored before it began; Close
// indexes what is left and Open what a crash left.

// indexEvery is the most time the writer lets pass between two indexing
// passes while messages come in. A pass holds up the batch it is in:
// at 10,000 messages a second, a pass a second took some 35 ms, one
// every 100 ms some 3 ms (BENCHMARKS.md), and still makes one index
// segment where the trigger made several a batch.
const indexEvery = 100 * time.Millisecond

// indexOptions are when the search index is fed: every 0 starts no
// indexer goroutine; off never feeds it (tests of a gateway that stopped
// between storing messages and indexing them).
type indexOptions struct {
	every time.Duration
	off   bool
}

// searchIndexer asks the writer for an indexing pass when messages are
// waiting to be indexed and the writer has not indexed them for every.
type searchIndexer struct {
	every time.Duration
	// last is when the writer last indexed (unix nanoseconds) and
	// pending whether it stored messages since; the writer sets both.
	last    atomic.Int64
	pending atomic.Bool

	stop, done chan struct{}
	closeOnce  sync.Once
}

// due tells the writer whether the batch it commits should index.
func (x *searchIndexer) due(now time.Time) bool {
	return x.every > 0 && now.UnixNano()-x.last.Load() >= int64(x.every)
}

// indexed records a pass of the writer.
func (x *searchIndexer) indexed(now time.Time) {
	x.last.Store(now.UnixNano())
	x.pending.Store(false)
}

// start runs the indexer goroutine: every x.every it asks w for a pass
// if messages wait and the writer did none meanwhile (an idle writer
// indexes only when asked). close stops it.
func (x *searchIndexer) start(w *groupWriter) {
	go func() {
		defer close(x.done)
		t := time.NewTicker(x.every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-x.stop:
				return
			}
			if x.pending.Load() && x.due(time.Now()) {
				// A failed pass is tried again at the next tick; Close
				// reports the error of its last pass.
				w.indexNow(context.Background()) //nolint:errcheck // see above
			}
		}
	}()
}

// close stops the indexer goroutine, if started.
func (x *searchIndexer) close() {
	x.closeOnce.Do(func() { close(x.stop) })
	<-x.done
}

// execer is a *sql.Tx (the writer's batch) or a *sql.Conn.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// indexNew adds to the search index the messages above the mark and
// raises the mark to the highest rowid, in tx. Only the writer calls it
// (or Open and Close, while the writer is not running), inside a
// transaction that holds the write lock: no message is stored between
// its two statements.
func indexNew(ctx context.Context, tx execer) error {
	res, err := tx.ExecContext(ctx, `INSERT INTO messages_fts(rowid, text)
		SELECT rowid, text FROM messages WHERE rowid > (SELECT indexed FROM search_index_mark)`)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nil
	}
	_, err = tx.ExecContext(ctx, `UPDATE search_index_mark SET indexed = (SELECT IFNULL(MAX(rowid), 0) FROM messages)`)
	return err
}

// indexPass runs indexNew in a transaction of its own on conn, for Open
// and Close (the writer is not running).
func indexPass(ctx context.Context, conn *sql.Conn) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if err := indexNew(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}
