package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fill gives conversation id a message, a file with content body, a call
// record with a dialog and a recording, and returns the recording.
func fill(t *testing.T, s Store, id, body string) *Recording {
	t.Helper()
	ctx := context.Background()
	if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: id, ID: "m-" + id, Role: RoleCustomer, Kind: KindText, Text: "hi"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveFile(ctx, &File{ID: "f-" + id, ConversationID: id, Name: "a.txt", Type: "text/plain"}, strings.NewReader(body), 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCall(ctx, &CallRecord{ID: "k-" + id, ConversationID: id, Kind: "voice", Direction: "outbound", StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCallDialog(ctx, "k-"+id, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	r := &Recording{ID: "r-" + id, ConversationID: id, CallID: "k-" + id, Format: "ogg", Type: "audio/ogg"}
	f, err := s.CreateRecording(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("OggS audio of " + id)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r.Duration = 1500 * time.Millisecond
	if err := s.FinishRecording(ctx, r); err != nil {
		t.Fatal(err)
	}
	return r
}

func closeConv(t *testing.T, s Store, c *Conversation, at time.Time) {
	t.Helper()
	c.State, c.UpdatedAt, c.EndedAt = StateEnded, at, at
	if err := s.UpdateConversation(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

func TestRecordingRows(t *testing.T) { forEachDriver(t, testRecordingRows) }

func testRecordingRows(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	r := fill(t, s, "c1", "x")
	got, err := s.Recording(ctx, r.ID)
	if err != nil || got.Size != int64(len("OggS audio of c1")) || got.Duration != 1500*time.Millisecond || got.EndedAt.IsZero() || got.CallID != "k-c1" {
		t.Fatalf("recording: %+v %v", got, err)
	}
	list, err := s.Recordings(ctx, "c1")
	if err != nil || len(list) != 1 || list[0].ID != r.ID {
		t.Fatalf("recordings: %v %v", list, err)
	}
	rc, err := s.OpenRecording(got)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if _, err := s.Recording(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing recording: %v", err)
	}
	for _, bad := range []*Recording{{ID: "../x", ConversationID: "c1", Format: "ogg"}, {ID: "ok", ConversationID: "c1", Format: "../ogg"}} {
		if _, err := s.CreateRecording(ctx, bad); err == nil {
			t.Errorf("recording %q.%q created", bad.ID, bad.Format)
		}
	}
	if _, err := s.CreateRecording(ctx, &Recording{ID: "r-c1", ConversationID: "c1", Format: "ogg"}); err == nil {
		t.Error("a second recording with the same id replaced the first")
	}
}

// TestDeleteBefore: closed conversations past the cutoff go with their
// rows and bytes; an open one and a recent one stay, and so do the bytes
// of an upload another conversation shares.
func TestDeleteBefore(t *testing.T) { forEachDriver(t, testDeleteBefore) }

func testDeleteBefore(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	s := loc.open(t)
	dir := filesOf(s)
	defer s.Close()
	old := time.Now().Add(-40 * 24 * time.Hour)
	c1, c2, c3, c4 := newConv(t, s, "old"), newConv(t, s, "recent"), newConv(t, s, "open"), newConv(t, s, "shares")
	r1 := fill(t, s, "old", "only the old one has this")
	fill(t, s, "recent", "recent")
	fill(t, s, "open", "open")
	fill(t, s, "shares", "shared bytes")
	if err := s.SaveFile(ctx, &File{ID: "f-old-2", ConversationID: "old", Name: "b.txt", Type: "text/plain"}, strings.NewReader("shared bytes"), 1<<20); err != nil {
		t.Fatal(err)
	}
	closeConv(t, s, c1, old)
	closeConv(t, s, c2, time.Now())
	closeConv(t, s, c4, time.Now())
	c3.UpdatedAt = old
	if err := s.UpdateConversation(ctx, c3); err != nil {
		t.Fatal(err)
	}
	oldFile, _ := s.File(ctx, "f-old")
	d, err := s.DeleteBefore(ctx, time.Now().Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if d.Conversations != 1 || d.Messages != 1 || d.Files != 2 || d.Recordings != 1 || d.Calls != 1 || !slices.Equal(d.ConversationIDs, []string{"old"}) {
		t.Errorf("deleted %+v", d)
	}
	if _, err := s.Conversation(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("old conversation: %v", err)
	}
	if ms, _ := s.Messages(ctx, "old", 0, 10); len(ms) != 0 {
		t.Errorf("old messages left: %d", len(ms))
	}
	if cs, _ := s.Calls(ctx, "old"); len(cs) != 0 {
		t.Errorf("old calls left: %d", len(cs))
	}
	if un, _ := s.UnfinishedCalls(ctx, ""); slices.ContainsFunc(un, func(c *CallRecord) bool { return c.ID == "k-old" }) {
		t.Error("old call's dialog left")
	}
	if exists(dir.contentPath(oldFile.ContentID)) {
		t.Error("the old upload's bytes are still on disk")
	}
	if exists(dir.recordingPath(r1)) {
		t.Error("the old recording is still on disk")
	}
	shared, _ := s.File(ctx, "f-shares")
	if !exists(dir.contentPath(shared.ContentID)) {
		t.Error("bytes another conversation shares were deleted")
	}
	for _, id := range []string{"recent", "open", "shares"} {
		if _, err := s.Conversation(ctx, id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
		if rs, _ := s.Recordings(ctx, id); len(rs) != 1 || !exists(dir.recordingPath(rs[0])) {
			t.Errorf("%s lost its recording", id)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(loc.Files, "recordings", "r-old*")); len(left) != 0 {
		t.Errorf("left on disk: %v", left)
	}
}

// TestEraseCustomer: by customer id or e-mail (any case), the closed
// conversations go and the open one is reported, not touched.
func TestEraseCustomer(t *testing.T) { forEachDriver(t, testEraseCustomer) }

func testEraseCustomer(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	mk := func(id, ext, email string, closed bool) {
		c := newConv(t, s, id)
		c.Customer.ExternalID, c.Customer.Email = ext, email
		if err := s.UpdateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		fill(t, s, id, "bytes of "+id)
		// A note, and an event still owed to a webhook, go with it.
		if err := s.AddNote(ctx, &Note{ID: "n-" + id, ConversationID: id, AgentID: "alice", Text: "about " + id}); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendWebhookEvents(ctx, []*WebhookEvent{{Webhook: "crm", ConversationID: id, Type: "conversation.ended",
			Body: []byte(`{}`)}}); err != nil {
			t.Fatal(err)
		}
		if closed {
			closeConv(t, s, c, time.Now())
		}
	}
	mk("a1", "cust-7", "", true)
	mk("a2", "", "Ann@Example.com", true)
	mk("a3", "cust-7", "", false)
	mk("b1", "cust-8", "bob@example.com", true)
	d, err := s.EraseCustomer(ctx, "cust-7", "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if d.Conversations != 2 || d.Recordings != 2 || d.Files != 2 || d.Calls != 2 || !slices.Equal(d.Open, []string{"a3"}) {
		t.Errorf("erased %+v", d)
	}
	for id, want := range map[string]bool{"a1": false, "a2": false, "a3": true, "b1": true} {
		if _, err := s.Conversation(ctx, id); (err == nil) != want {
			t.Errorf("%s kept=%v, want %v", id, err == nil, want)
		}
		n := 0
		if want {
			n = 1
		}
		if notes, err := s.Notes(ctx, id); err != nil || len(notes) != n {
			t.Errorf("%s: notes %+v (%v), want %d", id, notes, err, n)
		}
		if got := countRows(t, s, `SELECT COUNT(*) FROM webhook_outbox WHERE conversation_id = '`+id+`'`); got != n {
			t.Errorf("%s: %d events owed to webhooks, want %d", id, got, n)
		}
	}
	if _, err := s.EraseCustomer(ctx, "", ""); err == nil {
		t.Error("an erasure with no customer ran")
	}
}
