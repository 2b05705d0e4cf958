package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// openSQLiteByHand opens a SQLite store in a new directory whose
// checkpointer runs only when the test calls it, and asks the writer to
// catch up once the WAL holds restartBytes (limitBytes: to wait for old
// readers). It has one conversation, "c".
func openSQLiteByHand(t *testing.T, restartBytes, limitBytes int64) *SQLite {
	t.Helper()
	dir := t.TempDir()
	s, err := openSQLiteWAL(context.Background(), filepath.Join(dir, "segue.db"), filepath.Join(dir, "files"),
		walOptions{restartBytes: restartBytes, limitBytes: limitBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	newConv(t, s, "c")
	return s
}

// appendN appends n messages to conversation c, one at a time, with ids
// prefix0, prefix1...
func appendN(t *testing.T, s *SQLite, prefix string, n int) {
	t.Helper()
	for i := range n {
		appendText(t, s, fmt.Sprint(prefix, i), "a message to fill the log")
	}
}

// appendText appends a message of id and text to conversation c.
func appendText(t *testing.T, s *SQLite, id, text string) {
	t.Helper()
	if _, _, err := s.AppendMessage(context.Background(), &Message{ConversationID: "c", ID: id,
		Role: RoleCustomer, Kind: KindText, Text: text}); err != nil {
		t.Fatal(err)
	}
}

// walFrames returns the frames in s's WAL (after a PASSIVE checkpoint).
func walFrames(t *testing.T, s *SQLite) int64 {
	t.Helper()
	frames, _, err := walCheckpoint(context.Background(), s.db, "PASSIVE")
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

// TestSQLiteWriterRestartsTheWAL: commits do not checkpoint; a
// background checkpoint copies what was committed before it began (here
// a reader's snapshot stands for the writer's commits that run during
// it) and, with the WAL past its restart size, asks the writer to catch
// up; the writer's next batch first copies the rest, then starts the WAL
// again. Without the catch-up the frames left keep the WAL from starting
// again and it grows on.
func TestSQLiteWriterRestartsTheWAL(t *testing.T) {
	ctx := context.Background()
	for _, catchUp := range []bool{true, false} {
		t.Run(fmt.Sprint("catch up ", catchUp), func(t *testing.T) {
			s := openSQLiteByHand(t, 64<<10, 1<<30)
			appendN(t, s, "m", 100)
			reader := holdSnapshot(t, s)
			if err := s.MarkRead(ctx, "c", RoleAgent, 1); err != nil {
				t.Fatal(err)
			}
			full, err := s.ckpt.checkpoint(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if full < s.ckpt.restartFrames {
				t.Fatalf("%d frames in the WAL after 100 appends, want at least %d", full, s.ckpt.restartFrames)
			}
			if got := walAsk(s.ckpt.ask.Load()); got != walAskCatchUp {
				t.Fatalf("asked %d of the writer with the WAL past its restart size, want a catch-up", got)
			}
			if !catchUp {
				s.ckpt.ask.Store(int32(walAskNothing))
			}
			if _, err := reader.ExecContext(ctx, `COMMIT`); err != nil {
				t.Fatal(err)
			}
			appendText(t, s, "last", "after the checkpoint")
			after := walFrames(t, s)
			if catchUp && after >= full/4 {
				t.Errorf("%d frames in the WAL after the catch-up, %d before: it did not start again", after, full)
			}
			if !catchUp && after <= full {
				t.Errorf("%d frames in the WAL without a catch-up, %d before: it started again", after, full)
			}
			if got := walAsk(s.ckpt.ask.Load()); got != walAskNothing {
				t.Errorf("ask %d left after the writer's batch", got)
			}
			ms, err := s.Messages(ctx, "c", 0, 1000)
			if err != nil || len(ms) != 101 || ms[100].Text != "after the checkpoint" {
				t.Fatalf("%d messages (%v), want 101 ending with the last one", len(ms), err)
			}
		})
	}
}

// holdSnapshot begins a read transaction on a connection of its own,
// which the caller ends (COMMIT) and closes.
func holdSnapshot(t *testing.T, s *SQLite) *sql.Conn {
	t.Helper()
	ctx := context.Background()
	reader, err := s.db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reader.Close() })
	var n int
	if _, err := reader.ExecContext(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if err := reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return reader
}

// TestSQLiteWriterWaitsForOldReadersPastTheLimit: a reader keeps an old
// snapshot, so no checkpoint can copy the frames after it and the WAL
// grows past its limit; the writer's next batch then waits for that
// reader (a RESTART checkpoint) and starts the WAL again once it ends.
func TestSQLiteWriterWaitsForOldReadersPastTheLimit(t *testing.T) {
	ctx := context.Background()
	s := openSQLiteByHand(t, 32<<10, 128<<10)
	appendN(t, s, "old", 5)
	reader := holdSnapshot(t, s)
	appendN(t, s, "new", 200)
	full, err := s.ckpt.checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := walAsk(s.ckpt.ask.Load()); got != walAskRestart {
		t.Fatalf("asked %d of the writer with the WAL past its limit, want a restart", got)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c", ID: "waits", Role: RoleCustomer,
			Kind: KindText, Text: "after the old reader"}); err != nil {
			t.Error(err)
		}
	}()
	var still int
	if err := reader.QueryRowContext(ctx, `SELECT COUNT(*) FROM messages`).Scan(&still); err != nil || still != 5 {
		t.Fatalf("the old reader sees %d messages (%v), want 5", still, err)
	}
	select {
	case <-done:
		t.Fatal("the writer's batch went ahead while the old reader held the WAL")
	default:
	}
	if _, err := reader.ExecContext(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	<-done
	if after := walFrames(t, s); after >= full/4 {
		t.Errorf("%d frames in the WAL after the restart, %d before", after, full)
	}
	if n := countRows(t, s, `SELECT COUNT(*) FROM messages`); n != 206 {
		t.Errorf("%d messages stored, want 206", n)
	}
}
