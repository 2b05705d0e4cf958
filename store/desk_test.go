package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestNotesAreKeptApartFromTheTranscript(t *testing.T) {
	forEachDriver(t, testNotesAreKeptApartFromTheTranscript)
}

func testNotesAreKeptApartFromTheTranscript(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	c := newConv(t, s, "c1")
	if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: c.ID, ID: "m1", Role: RoleCustomer, Kind: KindText, Text: "hello"}); err != nil {
		t.Fatal(err)
	}
	n := &Note{ID: "n1", ConversationID: c.ID, AgentID: "alice", AgentName: "Alice", Text: "VIP, refund approved"}
	if err := s.AddNote(ctx, n); err != nil {
		t.Fatal(err)
	}
	if err := s.AddNote(ctx, n); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second AddNote with the same id: %v, want ErrDuplicate", err)
	}
	notes, err := s.Notes(ctx, c.ID)
	if err != nil || len(notes) != 1 || notes[0].Text != "VIP, refund approved" || notes[0].AgentName != "Alice" {
		t.Fatalf("Notes = %+v, %v", notes, err)
	}
	ms, err := s.Messages(ctx, c.ID, 0, 100)
	if err != nil || len(ms) != 1 || ms[0].Text != "hello" {
		t.Errorf("the transcript holds %+v (%v), want the one message", ms, err)
	}
	// Retention takes the notes with their conversation.
	c.State, c.EndedAt, c.UpdatedAt = StateEnded, time.Now(), time.Now().Add(-48*time.Hour)
	if err := s.UpdateConversation(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteBefore(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if notes, err := s.Notes(ctx, c.ID); err != nil || len(notes) != 0 {
		t.Errorf("after retention: notes %+v, %v", notes, err)
	}
}

func TestWrapUpsAreStoredAndCounted(t *testing.T) { forEachDriver(t, testWrapUpsAreStoredAndCounted) }

func testWrapUpsAreStoredAndCounted(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	day := time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)
	for i, code := range []string{"resolved", "resolved", "callback", ""} {
		c := newConv(t, s, string(rune('a'+i)))
		c.State, c.EndedAt = StateEnded, day.Add(time.Duration(i+1)*time.Hour)
		if err := s.UpdateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		if code != "" {
			if err := s.SetWrapUp(ctx, c.ID, code); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.SetWrapUp(ctx, "nope", "resolved"); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetWrapUp of an unknown conversation: %v", err)
	}
	if c, err := s.Conversation(ctx, "a"); err != nil || c.WrapUp != "resolved" {
		t.Errorf("conversation a: wrap-up %q, %v", c.WrapUp, err)
	}
	got, err := s.WrapUpCounts(ctx, day, day.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []WrapUpCount{{"support", "callback", 1}, {"support", "resolved", 2}}
	if !slices.Equal(got, want) {
		t.Errorf("WrapUpCounts = %+v, want %+v", got, want)
	}
	if got, _ := s.WrapUpCounts(ctx, day.Add(24*time.Hour), day.Add(48*time.Hour)); len(got) != 0 {
		t.Errorf("the next day counts %+v", got)
	}
}

func TestCannedRepliesBelongToTheirAgent(t *testing.T) {
	forEachDriver(t, testCannedRepliesBelongToTheirAgent)
}

func testCannedRepliesBelongToTheirAgent(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	r := &CannedReply{ID: "r1", AgentID: "alice", Shortcut: "greet", Text: "Hello, how can I help?"}
	if err := s.SaveCannedReply(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCannedReply(ctx, &CannedReply{ID: "r2", AgentID: "alice", Shortcut: "greet", Text: "x"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("a second reply with the same shortcut: %v, want ErrDuplicate", err)
	}
	// Bob may use the same shortcut, but not touch Alice's reply.
	if err := s.SaveCannedReply(ctx, &CannedReply{ID: "r3", AgentID: "bob", Shortcut: "greet", Text: "Hi"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCannedReply(ctx, &CannedReply{ID: "r1", AgentID: "bob", Shortcut: "mine", Text: "taken"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob saving alice's reply: %v, want ErrNotFound", err)
	}
	if err := s.DeleteCannedReply(ctx, "bob", "r1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob deleting alice's reply: %v, want ErrNotFound", err)
	}
	r.Text = "Hello! How may I help?"
	if err := s.SaveCannedReply(ctx, r); err != nil {
		t.Fatal(err)
	}
	list, err := s.CannedReplies(ctx, "alice")
	if err != nil || len(list) != 1 || list[0].Text != "Hello! How may I help?" {
		t.Fatalf("alice's replies: %+v, %v", list, err)
	}
	if err := s.DeleteCannedReply(ctx, "alice", "r1"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.CannedReplies(ctx, "alice"); len(list) != 0 {
		t.Errorf("after delete: %+v", list)
	}
}

func TestSearchByKeywordsWithinAnAgentsScope(t *testing.T) {
	forEachDriver(t, testSearchByKeywordsWithinAnAgentsScope)
}

func testSearchByKeywordsWithinAnAgentsScope(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	mk := func(id, queue, state, agent, name, email, text string) {
		c := &Conversation{ID: id, State: state, Queue: queue, AgentID: agent, LastAgentID: agent, TokenHash: []byte(id),
			Customer: Customer{Name: name, Email: email}, CreatedAt: time.Now(), UpdatedAt: time.Now()}
		if state != StateActive {
			c.AgentID = ""
		}
		if err := s.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: id, ID: "m-" + id, Role: RoleCustomer, Kind: KindText, Text: text}); err != nil {
			t.Fatal(err)
		}
	}
	mk("c1", "support", StateEnded, "alice", "Ann Lee", "ann@example.com", "my invoice is wrong")
	mk("c2", "billing", StateEnded, "alice", "Ann Lee", "ann@example.com", "refund please")
	mk("c3", "support", StateActive, "bob", "Ann Lee", "ann@example.com", "invoice again")
	mk("c4", "support", StateEnded, "bob", "Zed", "zed@example.com", "50% off? a_b")
	ids := func(q ConversationQuery) []string {
		t.Helper()
		q.Limit = 10
		cs, err := s.SearchConversations(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		slices.Sort(out)
		return out
	}
	bob := &AgentScope{AgentID: "bob", Queues: []string{"support"}}
	alice := &AgentScope{AgentID: "alice", Queues: []string{"support", "billing"}}
	for _, tc := range []struct {
		name string
		q    ConversationQuery
		want []string
	}{
		{"bob by name: his queue's ended one and his own live one, not billing", ConversationQuery{Keywords: []string{"ann"}, Scope: bob}, []string{"c1", "c3"}},
		{"alice by name: not bob's live one", ConversationQuery{Keywords: []string{"LEE"}, Scope: alice}, []string{"c1", "c2"}},
		{"text prefix", ConversationQuery{Keywords: []string{"invo"}, Scope: alice}, []string{"c1"}},
		{"e-mail", ConversationQuery{Keywords: []string{"zed@example"}, Scope: bob}, []string{"c4"}},
		{"wildcards are plain characters", ConversationQuery{Keywords: []string{"%"}, Scope: bob}, nil},
		{"quotes are plain characters", ConversationQuery{Keywords: []string{`"a" OR b*`}, Scope: bob}, nil},
		{"every word must match", ConversationQuery{Keywords: []string{"ann", "zed"}, Scope: bob}, nil},
	} {
		if got := ids(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
