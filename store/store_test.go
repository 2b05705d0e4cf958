package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newConv(t *testing.T, s Store, id string) *Conversation {
	t.Helper()
	c := &Conversation{ID: id, State: StateWaiting, Queue: "support", TokenHash: []byte("h-" + id),
		Customer: Customer{Name: "Ann"}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := s.CreateConversation(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAppendMessageOrdersAndDeduplicates(t *testing.T) {
	forEachDriver(t, testAppendMessageOrdersAndDeduplicates)
}

func testAppendMessageOrdersAndDeduplicates(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")

	m1, dup, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: "a", Role: RoleCustomer, Kind: KindText, Text: "hello"})
	if err != nil || dup || m1.Seq != 1 {
		t.Fatalf("first append: seq %v dup %v err %v", m1, dup, err)
	}
	m2, dup, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: "b", Role: RoleAgent, Kind: KindText, Text: "hi"})
	if err != nil || dup || m2.Seq != 2 {
		t.Fatalf("second append: %+v dup %v err %v", m2, dup, err)
	}
	again, dup, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: "a", Role: RoleCustomer, Kind: KindText, Text: "changed"})
	if err != nil || !dup || again.Seq != 1 || again.Text != "hello" {
		t.Fatalf("duplicate append: %+v dup %v err %v", again, dup, err)
	}
	if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: "nope", ID: "x", Kind: KindText}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("append to missing conversation: %v", err)
	}
	ms, err := s.Messages(ctx, "c1", 1, 100)
	if err != nil || len(ms) != 1 || ms[0].ID != "b" {
		t.Fatalf("messages after 1: %v %v", ms, err)
	}
	c, err := s.Conversation(ctx, "c1")
	if err != nil || c.LastSeq != 2 {
		t.Fatalf("conversation last seq: %+v %v", c, err)
	}
}

func TestConcurrentAppendsGetDistinctSeqs(t *testing.T) {
	forEachDriver(t, testConcurrentAppendsGetDistinctSeqs)
}

func testConcurrentAppendsGetDistinctSeqs(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: fmt.Sprint("m", i), Kind: KindText, Role: RoleCustomer})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ms, err := s.Messages(ctx, "c1", 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != n {
		t.Fatalf("got %d messages, want %d", len(ms), n)
	}
	for i, m := range ms {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d", i, m.Seq)
		}
	}
}

func TestReopenKeepsEverything(t *testing.T) { forEachDriver(t, testReopenKeepsEverything) }

func testReopenKeepsEverything(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	s := loc.open(t)
	c := newConv(t, s, "c1")
	c.State, c.AgentID, c.ReadByCust = StateActive, "alice", 1
	if err := s.UpdateConversation(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: "a", Kind: KindText, Text: "persist me"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = loc.open(t)
	defer s.Close()
	got, err := s.Conversation(ctx, "c1")
	if err != nil || got.State != StateActive || got.AgentID != "alice" || got.LastSeq != 1 || got.ReadByCust != 1 {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	open, err := s.OpenConversations(ctx)
	if err != nil || len(open) != 1 {
		t.Fatalf("open conversations: %v %v", open, err)
	}
	ms, err := s.Messages(ctx, "c1", 0, 10)
	if err != nil || len(ms) != 1 || ms[0].Text != "persist me" {
		t.Fatalf("messages after reopen: %v %v", ms, err)
	}
}

func TestFiles(t *testing.T) { forEachDriver(t, testFiles) }

func testFiles(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	data := bytes.Repeat([]byte("segue"), 100)
	f := &File{ID: "f1", ConversationID: "c1", Name: "../../etc/passwd", Type: "text/plain"}
	if err := s.SaveFile(ctx, f, bytes.NewReader(data), 1000); err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(data)) || len(f.ContentID) != 64 {
		t.Fatalf("file metadata: %+v", f)
	}
	got, err := s.File(ctx, "f1")
	if err != nil || got.Name != "../../etc/passwd" || got.ContentID != f.ContentID {
		t.Fatalf("file lookup: %+v %v", got, err)
	}
	r, err := s.OpenFile(got)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(back, data) {
		t.Fatal("file bytes differ")
	}
	if err := s.SaveFile(ctx, &File{ID: "f2", ConversationID: "c1"}, bytes.NewReader(data), 499); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize file: %v", err)
	}
	if n, err := s.CountFiles(ctx, "c1"); err != nil || n != 1 {
		t.Fatalf("count files: %d %v", n, err)
	}
	m, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: "fm", Kind: KindFile, File: got})
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := s.Messages(ctx, "c1", m.Seq-1, 1)
	if len(ms) != 1 || ms[0].File == nil || ms[0].File.ID != "f1" || ms[0].File.Size != f.Size {
		t.Fatalf("file message: %+v", ms)
	}
}

func TestSessionsExpire(t *testing.T) { forEachDriver(t, testSessionsExpire) }

func testSessionsExpire(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	if err := s.CreateSession(ctx, &Session{TokenHash: []byte("live"), AgentID: "alice", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSession(ctx, &Session{TokenHash: []byte("old"), AgentID: "bob", ExpiresAt: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if ss, err := s.Session(ctx, []byte("live")); err != nil || ss.AgentID != "alice" {
		t.Fatalf("live session: %+v %v", ss, err)
	}
	if _, err := s.Session(ctx, []byte("old")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	if err := s.DeleteSession(ctx, []byte("live")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, []byte("live")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
}

func TestCallRecords(t *testing.T) { forEachDriver(t, testCallRecords) }

func testCallRecords(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	r := &CallRecord{ID: "k1", ConversationID: "c1", Kind: "voice", Direction: "outbound", Target: "sip:1001@pbx", StartedAt: time.Now()}
	if err := s.SaveCall(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.EndedAt, r.Cause, r.Codec = time.Now(), "agent hung up", "PCMU"
	if err := s.SaveCall(ctx, r); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Calls(ctx, "c1")
	if err != nil || len(cs) != 1 || cs[0].Cause != "agent hung up" || cs[0].EndedAt.IsZero() {
		t.Fatalf("calls: %+v %v", cs, err)
	}
}

func TestMarkReadOnlyRaises(t *testing.T) { forEachDriver(t, testMarkReadOnlyRaises) }

func testMarkReadOnlyRaises(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	for _, step := range []struct {
		role string
		seq  int64
	}{{RoleCustomer, 5}, {RoleCustomer, 3}, {RoleAgent, 2}} {
		if err := s.MarkRead(ctx, "c1", step.role, step.seq); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Conversation(ctx, "c1")
	if err != nil || c.ReadByCust != 5 || c.ReadByAgt != 2 || c.State != StateWaiting {
		t.Fatalf("after read marks: %+v %v", c, err)
	}
}

func TestMessagesBeforePagesBackwards(t *testing.T) {
	forEachDriver(t, testMessagesBeforePagesBackwards)
}

func testMessagesBeforePagesBackwards(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	newConv(t, s, "c2")
	for i := range 7 {
		if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: fmt.Sprint("m", i), Role: RoleCustomer, Kind: KindText, Text: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(ms []*Message) []int64 {
		out := []int64{}
		for _, m := range ms {
			out = append(out, m.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		before int64
		limit  int
		want   []int64
	}{
		{0, 3, []int64{5, 6, 7}},
		{5, 3, []int64{2, 3, 4}},
		{2, 3, []int64{1}},
		{1, 3, []int64{}},
		{100, 10, []int64{1, 2, 3, 4, 5, 6, 7}},
	} {
		ms, err := s.MessagesBefore(ctx, "c1", tc.before, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := seqs(ms); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("MessagesBefore(%d, %d) = %v, want %v", tc.before, tc.limit, got, tc.want)
		}
	}
	if ms, err := s.MessagesBefore(ctx, "c2", 0, 10); err != nil || len(ms) != 0 {
		t.Errorf("another conversation's page: %v %v", ms, err)
	}
}

func TestLeftConversationsByQueueNewestFirst(t *testing.T) {
	forEachDriver(t, testLeftConversationsByQueueNewestFirst)
}

func testLeftConversationsByQueueNewestFirst(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	base := time.Now()
	for i, q := range []string{"support", "billing", "support", "sales"} {
		c := &Conversation{ID: fmt.Sprint("l", i), State: StateLeft, Queue: q, TokenHash: []byte("h"),
			Customer: Customer{Email: "ann@example.com"}, CreatedAt: base.Add(time.Duration(i) * time.Second), UpdatedAt: base}
		if err := s.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	newConv(t, s, "waiting")
	got, err := s.LeftConversations(ctx, []string{"support", "billing"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if fmt.Sprint(ids) != "[l2 l1 l0]" {
		t.Errorf("left conversations = %v, want [l2 l1 l0]", ids)
	}
	if got, _ := s.LeftConversations(ctx, []string{"support"}, 1); len(got) != 1 || got[0].ID != "l2" {
		t.Errorf("limit 1: %v", got)
	}
	open, err := s.OpenConversations(ctx)
	if err != nil || len(open) != 1 || open[0].ID != "waiting" {
		t.Errorf("open conversations include left ones: %v %v", open, err)
	}
}

// TestDeleteAgentSessions: signing an agent out everywhere ends each of
// its sessions and no other agent's.
func TestDeleteAgentSessions(t *testing.T) { forEachDriver(t, testDeleteAgentSessions) }

func testDeleteAgentSessions(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	for _, ss := range []*Session{
		{TokenHash: []byte("a1"), AgentID: "alice", ExpiresAt: time.Now().Add(time.Hour)},
		{TokenHash: []byte("a2"), AgentID: "alice", ExpiresAt: time.Now().Add(time.Hour)},
		{TokenHash: []byte("b1"), AgentID: "bob", ExpiresAt: time.Now().Add(time.Hour)},
	} {
		if err := s.CreateSession(ctx, ss); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.DeleteAgentSessions(ctx, "alice"); err != nil || n != 2 {
		t.Fatalf("deleted %d, %v; want 2", n, err)
	}
	for _, h := range []string{"a1", "a2"} {
		if _, err := s.Session(ctx, []byte(h)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session %s: %v", h, err)
		}
	}
	if ss, err := s.Session(ctx, []byte("b1")); err != nil || ss.AgentID != "bob" {
		t.Fatalf("bob's session: %+v %v", ss, err)
	}
}

// TestSaveFileSyncsTheDirectory: after renaming an upload to its content
// id, SaveFile syncs the files directory (where the new name lives)
// before it records the file, and fails if that sync fails.
func TestSaveFileSyncsTheDirectory(t *testing.T) { forEachDriver(t, testSaveFileSyncsTheDirectory) }

func testSaveFileSyncsTheDirectory(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	s := loc.open(t)
	defer s.Close()
	newConv(t, s, "c1")
	files := filesOf(s)
	var synced []string
	files.syncDir = func(d string) error {
		synced = append(synced, d)
		if _, err := os.Stat(filepath.Join(d, fmt.Sprintf("%x", sha256.Sum256([]byte("hello"))))); err != nil {
			t.Errorf("directory synced before the rename: %v", err)
		}
		return syncDir(d)
	}
	f := &File{ID: "f1", ConversationID: "c1", Name: "a.txt", Type: "text/plain"}
	if err := s.SaveFile(ctx, f, bytes.NewReader([]byte("hello")), 100); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != files.filesDir {
		t.Fatalf("synced %v, want [%s]", synced, files.filesDir)
	}
	files.syncDir = func(string) error { return errors.New("disk gone") }
	err := s.SaveFile(ctx, &File{ID: "f2", ConversationID: "c1", Name: "b.txt"}, bytes.NewReader([]byte("other")), 100)
	if err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("a failed sync: %v", err)
	}
	if _, err := s.File(ctx, "f2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a file whose name may be lost was recorded: %v", err)
	}
}

func TestUnfinishedCallsKeepTheirDialogAcrossReopen(t *testing.T) {
	forEachDriver(t, testUnfinishedCallsKeepTheirDialogAcrossReopen)
}

func testUnfinishedCallsKeepTheirDialogAcrossReopen(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	s := loc.open(t)
	newConv(t, s, "c1")
	up := &CallRecord{ID: "k1", ConversationID: "c1", Kind: "voice", Direction: "outbound", Target: "sip:1001@pbx",
		StartedAt: time.Now(), AnsweredAt: time.Now()}
	dialing := &CallRecord{ID: "k2", ConversationID: "c1", Kind: "voice", Direction: "outbound", Target: "sip:1002@pbx",
		StartedAt: time.Now().Add(time.Second)}
	over := &CallRecord{ID: "k3", ConversationID: "c1", Kind: "voice", Direction: "outbound", Target: "sip:1003@pbx",
		StartedAt: time.Now(), AnsweredAt: time.Now()}
	newConv(t, s, "c2")
	other := &CallRecord{ID: "k4", ConversationID: "c2", Kind: "voice", Direction: "outbound", Target: "sip:1004@pbx",
		StartedAt: time.Now().Add(2 * time.Second), AnsweredAt: time.Now()}
	for _, r := range []*CallRecord{up, dialing, over, other} {
		if err := s.SaveCall(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"k1", "k3"} {
		if err := s.SaveCallDialog(ctx, id, []byte(`{"call_id":"`+id+`@segue"}`)); err != nil {
			t.Fatal(err)
		}
	}
	over.EndedAt = time.Now()
	if err := s.SaveCall(ctx, over); err != nil {
		t.Fatal(err)
	}
	// A crash: the process goes without Close.
	s2 := loc.open(t)
	defer s2.Close()
	defer s.Close()
	all, err := s2.UnfinishedCalls(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].ID != "k1" || all[1].ID != "k2" || all[2].ID != "k4" {
		t.Fatalf("unfinished calls: %+v", all)
	}
	// One conversation's: what a node taking it over from a dead node ends.
	got, err := s2.UnfinishedCalls(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "k1" || got[1].ID != "k2" {
		t.Fatalf("unfinished calls of c1: %+v", got)
	}
	if none, err := s2.UnfinishedCalls(ctx, "nope"); err != nil || len(none) != 0 {
		t.Fatalf("unfinished calls of an unknown conversation: %+v, %v", none, err)
	}
	if string(got[0].Dialog) != `{"call_id":"k1@segue"}` || got[1].Dialog != nil {
		t.Fatalf("dialogs: %q %q", got[0].Dialog, got[1].Dialog)
	}
	if n := countRows(t, s2, `SELECT COUNT(*) FROM call_dialogs WHERE call_id = 'k3'`); n != 0 {
		t.Fatalf("ended call's dialog kept: %d", n)
	}
}

// TestTextADatabaseCannotKeepFailsAlone: a customer's message with a NUL
// byte or bytes that are not UTF-8 (PostgreSQL's text cannot hold them)
// is either stored as sent or refused with ErrInvalidText, and never
// fails the messages committed in the same batch.
func TestTextADatabaseCannotKeepFailsAlone(t *testing.T) {
	forEachDriver(t, testTextADatabaseCannotKeepFailsAlone)
}

func testTextADatabaseCannotKeepFailsAlone(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	newConv(t, s, "c2")
	bad := []string{"nul \x00 byte", "latin-1 caf\xe9", "\xff\xfe"}
	const good = 30
	var wg sync.WaitGroup
	errs := make(chan error, good)
	badErrs := make([]error, len(bad))
	for i, text := range bad {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, badErrs[i] = s.AppendMessage(ctx, &Message{ConversationID: "c1", ID: fmt.Sprint("bad", i), Role: RoleCustomer, Kind: KindText, Text: text})
		}()
	}
	for i := range good {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c2", ID: fmt.Sprint("m", i), Role: RoleCustomer, Kind: KindText, Text: "fine"})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a good message failed: %v", err)
		}
	}
	if ms, err := s.Messages(ctx, "c2", 0, 100); err != nil || len(ms) != good {
		t.Fatalf("%d good messages stored (%v), want %d", len(ms), err, good)
	}
	stored, err := s.Messages(ctx, "c1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]string{}
	for _, m := range stored {
		kept[m.ID] = m.Text
	}
	for i, text := range bad {
		id := fmt.Sprint("bad", i)
		switch got, ok := kept[id]; {
		case badErrs[i] == nil && (!ok || got != text):
			t.Errorf("%s acknowledged but stored as %q (%v), sent %q", id, got, ok, text)
		case badErrs[i] != nil && !errors.Is(badErrs[i], ErrInvalidText):
			t.Errorf("%s: %v, want ErrInvalidText", id, badErrs[i])
		case badErrs[i] != nil && ok:
			t.Errorf("%s refused but stored", id)
		}
	}
	bogus := &Conversation{ID: "c3", State: StateWaiting, Queue: "support", TokenHash: []byte("h"), Customer: Customer{Name: "A\x00nn"}}
	if err := s.CreateConversation(ctx, bogus); err != nil && !errors.Is(err, ErrInvalidText) {
		t.Errorf("a conversation with a NUL in its name: %v, want nil or ErrInvalidText", err)
	}
}

// TestAssignConversationHoldsMax: assignments to one agent through two
// handles on one database at once never give the agent more than max
// active conversations; ending one frees a slot.
func TestAssignConversationHoldsMax(t *testing.T) { forEachDriver(t, testAssignConversationHoldsMax) }

func testAssignConversationHoldsMax(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	a, b := loc.open(t), loc.open(t)
	defer a.Close()
	defer b.Close()
	const max, tries = 2, 8
	convs := make([]*Conversation, tries)
	for i := range convs {
		convs[i] = newConv(t, a, fmt.Sprintf("c%d", i))
	}
	assign := func(s Store, c *Conversation, agent string) error {
		next := *c
		next.State, next.AgentID, next.LastAgentID, next.AnsweredAt = StateActive, agent, agent, time.Now()
		return s.AssignConversation(ctx, &next, max)
	}
	var wg sync.WaitGroup
	errs := make([]error, tries)
	for i, c := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = assign([]Store{a, b}[i%2], c, "alice")
		}()
	}
	wg.Wait()
	var won []*Conversation
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, convs[i])
		case !errors.Is(err, ErrAtCapacity):
			t.Fatalf("assign %s: %v", convs[i].ID, err)
		}
	}
	if len(won) != max {
		t.Fatalf("%d assignments went through, want %d", len(won), max)
	}
	open, err := b.OpenConversations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, c := range open {
		if c.State == StateActive && c.AgentID == "alice" {
			held++
		}
	}
	if held != max {
		t.Fatalf("alice holds %d conversations, want %d", held, max)
	}
	// Writing a conversation the agent holds again is no new slot.
	if err := assign(b, won[0], "alice"); err != nil {
		t.Fatalf("assign a held conversation again: %v", err)
	}
	// Another agent is not limited by alice's slots.
	var free *Conversation
	for _, c := range convs {
		if c != won[0] && c != won[1] {
			free = c
			break
		}
	}
	if err := assign(a, free, "bob"); err != nil {
		t.Fatalf("assign to bob: %v", err)
	}
	ended := *won[0]
	ended.State, ended.AgentID, ended.EndedAt = StateEnded, "", time.Now()
	if err := a.UpdateConversation(ctx, &ended); err != nil {
		t.Fatal(err)
	}
	for _, c := range convs {
		if c != won[0] && c != won[1] && c != free {
			if err := assign(b, c, "alice"); err != nil {
				t.Fatalf("assign after one ended: %v", err)
			}
			break
		}
	}
	if err := assign(a, &Conversation{ID: "nope"}, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("assign a missing conversation: %v", err)
	}
}
