package store

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestSQLitePageSize: a new database file gets newPageSize; a file made
// with SQLite's default page size (by an earlier version) keeps it, and
// stores, reads and finds messages as before.
func TestSQLitePageSize(t *testing.T) {
	ctx := context.Background()
	t.Run("new", func(t *testing.T) {
		s := openSQLite(t, t.TempDir())
		defer s.Close()
		if got := pageSizeOf(t, s.db); got != newPageSize {
			t.Fatalf("page size %d, want %d", got, newPageSize)
		}
	})
	t.Run("existing", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "db", "segue.db")
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		old, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.ExecContext(ctx, schema); err != nil {
			t.Fatal(err)
		}
		was := pageSizeOf(t, old)
		old.Close()
		if was == newPageSize {
			t.Fatalf("SQLite's default page size is %d too", was)
		}
		s := openSQLite(t, dir)
		defer s.Close()
		if got := pageSizeOf(t, s.db); got != was {
			t.Fatalf("page size %d after opening, want %d as before", got, was)
		}
		newConv(t, s, "c")
		for i, text := range []string{"hello there", "where is my parcel"} {
			if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c", ID: fmt.Sprint("m", i), Role: RoleCustomer,
				Kind: KindText, Text: text}); err != nil {
				t.Fatal(err)
			}
		}
		ms, err := s.Messages(ctx, "c", 0, 10)
		if err != nil || len(ms) != 2 || ms[1].Seq != 2 {
			t.Fatalf("messages %v (%v)", ms, err)
		}
		found, err := s.SearchConversations(ctx, ConversationQuery{Text: "parcel", Limit: 10})
		if err != nil || len(found) != 1 || found[0].ID != "c" {
			t.Fatalf("search: %v (%v)", found, err)
		}
	})
}

func pageSizeOf(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`PRAGMA page_size`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
