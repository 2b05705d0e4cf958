package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"time"
)

// Checkpoints. In WAL mode a commit appends the pages it changed to the
// WAL, and a checkpoint copies the WAL's pages back into the database
// file (and fsyncs it); the WAL starts again from its beginning when a
// transaction begins with every frame copied. SQLite's default, a
// checkpoint every 1,000 pages inside the commit that passes the mark,
// put that copy on the message writer's path: with many conversations
// writing at once each message changes index pages of its own, so a
// checkpoint ran every other batch or so, and each copied pages that the
// next batches changed again.
//
// Instead every connection has wal_autocheckpoint=0 and a checkpointer
// goroutine runs a PASSIVE checkpoint every checkpointEvery: it copies
// each page once however many batches changed it meanwhile, and the
// writer goes on committing (PASSIVE takes no lock the writer waits
// for). It cannot empty the WAL while the writer appends to it, so once
// the WAL holds walRestartBytes the checkpointer asks the writer to catch
// up: the writer, between two batches, runs a PASSIVE checkpoint of its
// own, which copies only the frames committed since the background one,
// and its next transaction starts the WAL again (journal_size_limit then
// trims the file back). A reader that keeps an old snapshot stops a
// checkpoint short of the frames it may need, and the WAL grows
// meanwhile; past walLimitBytes the writer, between two batches, runs a
// RESTART checkpoint, which waits for such readers (up to the busy
// timeout) while appends wait for the writer, so that the WAL cannot grow
// without bound.

const (
	// checkpointEvery is the time between background checkpoints.
	checkpointEvery = time.Second
	// walRestartBytes is the WAL's size past which the writer makes it
	// start again; journal_size_limit trims its file back to it.
	walRestartBytes = 64 << 20
	// walLimitBytes is the WAL's size past which the writer waits for
	// the readers that keep it from starting again.
	walLimitBytes = 512 << 20
)

// walAsk is what the checkpointer asks of the writer.
type walAsk int32

const (
	walAskNothing walAsk = iota
	walAskCatchUp        // a PASSIVE checkpoint, so that the WAL starts again
	walAskRestart        // a RESTART checkpoint, waiting for old readers
)

// checkpointer runs the background checkpoints of a SQLite store.
type checkpointer struct {
	db *sql.DB
	// restartFrames and limitFrames are walRestartBytes and
	// walLimitBytes in frames of the database's page size.
	restartFrames, limitFrames int64
	ask                        atomic.Int32 // a walAsk, for the writer
	started                    bool         // set by start, before close
	stop, done                 chan struct{}
	closeOnce                  sync.Once
}

// newCheckpointer returns the checkpointer of db, whose pages are
// pageSize bytes, with the WAL sizes it acts on; start starts it.
func newCheckpointer(db *sql.DB, pageSize, restartBytes, limitBytes int64) *checkpointer {
	frame := pageSize + 24 // a frame is its page and a 24-byte header
	return &checkpointer{db: db, restartFrames: restartBytes / frame, limitFrames: limitBytes / frame,
		stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs a checkpoint every interval until close.
func (c *checkpointer) start(every time.Duration) {
	c.started = true
	go func() {
		defer close(c.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-c.stop:
				return
			}
			// A failed checkpoint is tried again at the next tick: what
			// made it fail fails the commits too, and Close reports its
			// final checkpoint's error.
			c.checkpoint(context.Background()) //nolint:errcheck // see above
		}
	}()
}

// catchUpPasses bounds the background checkpoints that run one after
// the other before the writer is asked to catch up; they stop sooner
// once one finds at most catchUpFrames new frames to copy.
const (
	catchUpPasses = 4
	catchUpFrames = 512
)

// checkpoint runs one background checkpoint and, from the WAL's size,
// decides what to ask of the writer. It returns the frames in the WAL.
// Before it asks the writer to catch up, it checkpoints again what the
// writer committed while it copied, until little is left: the writer's
// catch-up runs between two batches while appends wait, and copying a
// frame costs about the same wherever it is done (the fsync of the
// database file takes longer the more pages were written), so the
// writer is left the frames of the last pass's few milliseconds instead
// of those of a whole pass.
func (c *checkpointer) checkpoint(ctx context.Context) (frames int64, err error) {
	frames, _, err = walCheckpoint(ctx, c.db, "PASSIVE")
	for i := 1; i < catchUpPasses && err == nil && frames >= c.restartFrames && frames < c.limitFrames; i++ {
		before := frames
		if frames, _, err = walCheckpoint(ctx, c.db, "PASSIVE"); frames-before <= catchUpFrames {
			break
		}
	}
	switch {
	case err != nil:
	case frames >= c.limitFrames:
		c.ask.Store(int32(walAskRestart))
	case frames >= c.restartFrames:
		c.ask.CompareAndSwap(int32(walAskNothing), int32(walAskCatchUp))
	}
	return frames, err
}

// beforeBatch does on conn, the writer's connection, what the
// checkpointer asked of the writer, if anything. Only the writer
// goroutine calls it, between two batches.
func (c *checkpointer) beforeBatch(ctx context.Context, conn queryRower) {
	switch walAsk(c.ask.Swap(int32(walAskNothing))) {
	case walAskCatchUp:
		walCheckpoint(ctx, conn, "PASSIVE") //nolint:errcheck // asked again at the next tick
	case walAskRestart:
		walCheckpoint(ctx, conn, "RESTART") //nolint:errcheck // asked again at the next tick
	}
}

// close stops the background checkpoints, if started. It may be called
// more than once.
func (c *checkpointer) close() {
	c.closeOnce.Do(func() { close(c.stop) })
	if c.started {
		<-c.done
	}
}

// queryRower is a *sql.DB or a *sql.Conn.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// walCheckpoint runs a checkpoint of mode (PASSIVE, RESTART or TRUNCATE)
// on db and returns the frames in the WAL and how many of them are in
// the database file.
func walCheckpoint(ctx context.Context, db queryRower, mode string) (frames, copied int64, err error) {
	var busy int
	err = db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(`+mode+`)`).Scan(&busy, &frames, &copied)
	return frames, copied, err
}
