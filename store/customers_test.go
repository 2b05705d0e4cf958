package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestMigrateAddsCustomerColumns opens a database made by the first
// schema, without the columns added since, and finds its conversation
// readable and ratable.
func TestMigrateAddsCustomerColumns(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "db", "segue.db")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, schema); err != nil {
		t.Fatal(err)
	}
	if _, err := old.ExecContext(ctx, `INSERT INTO conversations (id, state, queue, token_hash, created_at, updated_at)
		VALUES ('c_old', 'ended', 'support', x'00', 1000, 1000)`); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s := openSQLite(t, dir)
	defer s.Close()
	c, err := s.Conversation(ctx, "c_old")
	if err != nil || c.Rating.Score != 0 || !c.AnsweredAt.IsZero() || c.Origin != "" {
		t.Fatalf("old conversation after migration: %+v, %v", c, err)
	}
	if err := s.RateConversation(ctx, "c_old", Rating{Score: 5, Comment: "fine", At: time.UnixMilli(2000)}); err != nil {
		t.Fatal(err)
	}
	// Opening again migrates nothing twice.
	s.Close()
	s = openSQLite(t, dir)
	c, err = s.Conversation(ctx, "c_old")
	if err != nil || c.Rating.Score != 5 || c.Rating.Comment != "fine" || c.Rating.At.UnixMilli() != 2000 {
		t.Fatalf("rated conversation: %+v, %v", c, err)
	}
}

// TestRateConversationOnce keeps the first rating and refuses the second.
func TestRateConversationOnce(t *testing.T) { forEachDriver(t, testRateConversationOnce) }

func testRateConversationOnce(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	if err := s.RateConversation(ctx, "c1", Rating{Score: 4, Comment: "quick and kind", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.RateConversation(ctx, "c1", Rating{Score: 1, Comment: "changed my mind", At: time.Now()}); !errors.Is(err, ErrRated) {
		t.Fatalf("second rating: %v, want ErrRated", err)
	}
	if err := s.RateConversation(ctx, "nope", Rating{Score: 3}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rating a missing conversation: %v, want ErrNotFound", err)
	}
	c, err := s.Conversation(ctx, "c1")
	if err != nil || c.Rating.Score != 4 || c.Rating.Comment != "quick and kind" {
		t.Fatalf("stored rating: %+v, %v", c.Rating, err)
	}
}

// TestRecentWaits returns the waits of the queue's conversations answered
// since the given time, and keeps the first answer time.
func TestRecentWaits(t *testing.T) { forEachDriver(t, testRecentWaits) }

func testRecentWaits(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	base := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	for i, w := range []time.Duration{time.Minute, 3 * time.Minute, 2 * time.Hour} {
		c := newConv(t, s, "c"+string(rune('a'+i)))
		c.CreatedAt = base.Add(-w)
		if i == 2 {
			c.CreatedAt = base.Add(-3 * time.Hour)
		}
		if err := s.CreateConversation(ctx, &Conversation{ID: c.ID + "x", State: StateActive, Queue: "support", TokenHash: []byte("x"),
			CreatedAt: c.CreatedAt, UpdatedAt: c.CreatedAt}); err != nil {
			t.Fatal(err)
		}
		answered := c.CreatedAt.Add(w)
		if err := s.UpdateConversation(ctx, &Conversation{ID: c.ID + "x", State: StateActive, Queue: "support", AnsweredAt: answered}); err != nil {
			t.Fatal(err)
		}
		// A later save does not move the first answer.
		if err := s.UpdateConversation(ctx, &Conversation{ID: c.ID + "x", State: StateActive, Queue: "support", AnsweredAt: answered.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	waits, err := s.RecentWaits(ctx, "support", base.Add(-time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	// The third was answered at base-1h as well (created 3 h before, waited 2 h).
	want := map[time.Duration]bool{time.Minute: true, 3 * time.Minute: true, 2 * time.Hour: true}
	if len(waits) != 3 {
		t.Fatalf("waits %v", waits)
	}
	for _, w := range waits {
		if !want[w] {
			t.Fatalf("unexpected wait %v in %v", w, waits)
		}
	}
	waits, err = s.RecentWaits(ctx, "support", base.Add(-30*time.Minute), 100)
	if err != nil || len(waits) != 2 {
		t.Fatalf("waits in the last 30 min: %v, %v", waits, err)
	}
	if waits, err := s.RecentWaits(ctx, "sales", time.Time{}, 100); err != nil || len(waits) != 0 {
		t.Fatalf("another queue: %v, %v", waits, err)
	}
}
