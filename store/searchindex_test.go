package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// openSQLiteIndex opens the store of dir (as openSQLite does) with the
// search index fed as index says.
func openSQLiteIndex(t *testing.T, dir string, index indexOptions) *SQLite {
	t.Helper()
	s, err := openSQLiteWith(context.Background(), filepath.Join(dir, "db", "segue.db"), filepath.Join(dir, "files"),
		walOptions{every: checkpointEvery, restartBytes: walRestartBytes, limitBytes: walLimitBytes}, index)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendTo(t *testing.T, s *SQLite, conv, id, text string) {
	t.Helper()
	if _, _, err := s.AppendMessage(context.Background(), &Message{ConversationID: conv, ID: id, Role: RoleCustomer,
		Kind: KindText, Text: text}); err != nil {
		t.Fatal(err)
	}
}

// indexedMatches counts the rows of the search index that match query,
// reading the index as it is (SearchConversations would have the writer
// index first).
func indexedMatches(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM messages_fts WHERE messages_fts MATCH ?`, query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkSearchIndex fails t unless the search index holds exactly the
// messages up to its mark, each once, and the mark is the newest rowid.
func checkSearchIndex(t *testing.T, db *sql.DB) {
	t.Helper()
	// FTS5's integrity check with rank 1 also compares the index with the
	// content table: a row indexed twice, a deleted row still indexed or
	// a row missing fails it.
	if _, err := db.Exec(`INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)`); err != nil {
		t.Fatalf("integrity check: %v", err)
	}
	var mark, last int64
	if err := db.QueryRow(`SELECT (SELECT indexed FROM search_index_mark), (SELECT IFNULL(MAX(rowid), 0) FROM messages)`).
		Scan(&mark, &last); err != nil {
		t.Fatal(err)
	}
	if mark != last {
		t.Fatalf("mark %d, newest message %d", mark, last)
	}
}

func searchFinds(t *testing.T, s *SQLite, text string, want ...string) {
	t.Helper()
	cs, err := s.SearchConversations(context.Background(), ConversationQuery{Text: text, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, c.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("search %q: %v, want %v", text, got, want)
	}
}

// A search finds a message stored just before it, just before a Close
// and after the store is opened again; Close leaves every message in the
// index.
func TestSearchFindsMessagesAcrossCloseAndReopen(t *testing.T) {
	dir := t.TempDir()
	s := openSQLiteIndex(t, dir, indexOptions{}) // no background passes
	newConv(t, s, "a")
	appendTo(t, s, "a", "m1", "alpha parcel")
	searchFinds(t, s, "alpha", "a")
	appendTo(t, s, "a", "m2", "bravo parcel")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Opened with the index left alone: what Close indexed is there.
	s = openSQLiteIndex(t, dir, indexOptions{off: true})
	if n := indexedMatches(t, s.db, "bravo"); n != 1 {
		t.Fatalf("after Close, %d index rows match the last message, want 1", n)
	}
	checkSearchIndex(t, s.db)
	s.Close()

	s = openSQLiteIndex(t, dir, indexOptions{})
	defer s.Close()
	searchFinds(t, s, "bravo", "a")
	newConv(t, s, "b")
	appendTo(t, s, "b", "m1", "charlie parcel")
	searchFinds(t, s, "charlie", "b")
	searchFinds(t, s, "parcel", "b", "a")
	checkSearchIndex(t, s.db)
}

// A gateway that stopped between storing messages and indexing them (the
// store opened with the index off stands for it) leaves them above the
// mark; the next Open indexes them, once.
func TestSearchIndexCatchesUpAfterACrash(t *testing.T) {
	dir := t.TempDir()
	s := openSQLiteIndex(t, dir, indexOptions{})
	newConv(t, s, "a")
	appendTo(t, s, "a", "m1", "indexed before")
	s.Close()

	s = openSQLiteIndex(t, dir, indexOptions{off: true})
	for i := range 3 {
		appendTo(t, s, "a", fmt.Sprint("lost", i), "stored never indexed")
	}
	if n := indexedMatches(t, s.db, "never"); n != 0 {
		t.Fatalf("%d index rows before any pass, want 0", n)
	}
	s.Close()

	for range 2 { // a second Open finds nothing left to index
		s = openSQLiteIndex(t, dir, indexOptions{off: true})
		s.Close()
		s = openSQLiteIndex(t, dir, indexOptions{})
		if n := indexedMatches(t, s.db, "never"); n != 3 {
			t.Fatalf("after Open, %d index rows match, want 3", n)
		}
		checkSearchIndex(t, s.db)
		s.Close()
	}
}

// Without searches, the writer indexes what it stored on its own once
// it idles.
func TestSearchIndexFedWhileIdle(t *testing.T) {
	s := openSQLiteIndex(t, t.TempDir(), indexOptions{every: 10 * time.Millisecond})
	defer s.Close()
	newConv(t, s, "a")
	appendTo(t, s, "a", "m1", "quiet afternoon")
	deadline := time.Now().Add(10 * time.Second)
	for indexedMatches(t, s.db, "quiet") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the message was not indexed without a search")
		}
		time.Sleep(5 * time.Millisecond)
	}
	checkSearchIndex(t, s.db)
}

// Deleting messages keeps the index right whether or not they were
// indexed yet, and a rowid that the deletion of the newest messages
// frees is indexed when a new message takes it.
func TestSearchIndexAfterDeletes(t *testing.T) {
	ctx := context.Background()
	s := openSQLiteIndex(t, t.TempDir(), indexOptions{})
	defer s.Close()
	for _, c := range []string{"a", "b", "c"} {
		newConv(t, s, c)
	}
	appendTo(t, s, "a", "m1", "first words")
	appendTo(t, s, "b", "m1", "second words")
	searchFinds(t, s, "words", "b", "a") // both indexed

	// The newest message, indexed, goes: its rowid is given again.
	if _, err := s.deleteWhere(ctx, `id = ?`, "b"); err != nil {
		t.Fatal(err)
	}
	checkSearchIndex(t, s.db)
	appendTo(t, s, "a", "m2", "reused rowid")
	searchFinds(t, s, "reused", "a")
	checkSearchIndex(t, s.db)

	// A message not indexed yet goes.
	appendTo(t, s, "c", "m1", "gone before indexing")
	if _, err := s.deleteWhere(ctx, `id = ?`, "c"); err != nil {
		t.Fatal(err)
	}
	searchFinds(t, s, "gone")
	searchFinds(t, s, "words", "a")
	checkSearchIndex(t, s.db)
}

// A database whose index a trigger fed gets its mark at the newest
// message and loses the trigger; if a build of before ran on it again
// (the trigger is back, and messages stored above the mark were never
// indexed), the index is built again.
func TestSearchIndexMigratesFromTheInsertTrigger(t *testing.T) {
	dir := t.TempDir()
	s := openSQLiteIndex(t, dir, indexOptions{})
	newConv(t, s, "a")
	appendTo(t, s, "a", "m1", "made by the new build")
	s.Close()

	oldTriggers := func(db *sql.DB) {
		t.Helper()
		for _, q := range []string{
			`CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
				INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text);
			END`,
			`INSERT INTO messages (conversation_id, seq, id, role, kind, text, created_at)
				VALUES ('a', (SELECT MAX(seq) + 1 FROM messages), 'old' || (SELECT COUNT(*) FROM messages), 'customer', 'text', 'written by the old build', 1)`,
			`UPDATE conversations SET last_seq = (SELECT MAX(seq) FROM messages WHERE conversation_id = 'a') WHERE id = 'a'`,
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A database of before: no mark, the old triggers.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "db", "segue.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`DROP TABLE search_index_mark`, `DROP TRIGGER messages_fts_delete`,
		`CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
			INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
		END`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	oldTriggers(db)
	db.Close()
	s = openSQLiteIndex(t, dir, indexOptions{})
	checkSearchIndex(t, s.db)
	searchFinds(t, s, "old", "a")
	searchFinds(t, s, "new", "a")
	var n int
	if err := s.db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'messages_fts_insert'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("insert trigger left: %d %v", n, err)
	}
	s.Close()

	// Messages above the mark, then a build of before.
	s = openSQLiteIndex(t, dir, indexOptions{off: true})
	appendTo(t, s, "a", "m2", "above the mark")
	s.Close()
	db, err = sql.Open("sqlite", "file:"+filepath.Join(dir, "db", "segue.db"))
	if err != nil {
		t.Fatal(err)
	}
	oldTriggers(db)
	db.Close()
	s = openSQLiteIndex(t, dir, indexOptions{})
	defer s.Close()
	checkSearchIndex(t, s.db)
	searchFinds(t, s, "above", "a")
	if n := indexedMatches(t, s.db, "old"); n != 2 {
		t.Fatalf("%d index rows of the old build's messages, want 2", n)
	}
}
