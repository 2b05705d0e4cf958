package store

import (
	"context"
	"testing"
	"time"
)

// TestDayStats: the board's counts come from what was stored: opened,
// answered (with the wait until the first accept), abandoned, calls by
// outcome with the mean length of the answered ones; other queues and
// earlier days stay out.
func TestDayStats(t *testing.T) { forEachDriver(t, testDayStats) }

func testDayStats(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	day := time.Date(2030, 5, 6, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return day.Add(d) }
	add := func(id, queue, state, last string, created time.Time) {
		t.Helper()
		c := &Conversation{ID: id, State: state, Queue: queue, LastAgentID: last, TokenHash: []byte(id),
			CreatedAt: created, UpdatedAt: created}
		if err := s.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	accepted := func(id string, when time.Time) {
		t.Helper()
		if _, _, err := s.AppendMessage(ctx, &Message{ConversationID: id, ID: "e-" + id, Role: RoleSystem, Kind: KindEvent,
			Event: "conversation.accepted", CreatedAt: when}); err != nil {
			t.Fatal(err)
		}
	}
	add("a", "support", StateActive, "alice", at(9*time.Hour))
	accepted("a", at(9*time.Hour+10*time.Second))
	add("b", "support", StateEnded, "bob", at(10*time.Hour))
	accepted("b", at(10*time.Hour+30*time.Second))
	add("c", "support", StateEnded, "", at(11*time.Hour)) // abandoned
	add("d", "support", StateWaiting, "", at(12*time.Hour))
	add("old", "support", StateEnded, "alice", at(-time.Hour)) // yesterday
	add("sales", "sales", StateEnded, "", at(9*time.Hour))     // another queue
	calls := []*CallRecord{
		{ID: "k1", ConversationID: "a", Kind: "voice", StartedAt: at(9 * time.Hour), AnsweredAt: at(9*time.Hour + 5*time.Second),
			EndedAt: at(9*time.Hour + 65*time.Second), Cause: "The customer hung up"},
		{ID: "k2", ConversationID: "b", Kind: "voice", StartedAt: at(10 * time.Hour), AnsweredAt: at(10*time.Hour + 5*time.Second),
			EndedAt: at(10*time.Hour + 125*time.Second), Cause: "The agent hung up"},
		{ID: "k3", ConversationID: "b", Kind: "voice", StartedAt: at(10*time.Hour + time.Minute),
			EndedAt: at(10*time.Hour + 2*time.Minute), Cause: "The line is busy"},
		{ID: "k4", ConversationID: "a", Kind: "voice", StartedAt: at(13 * time.Hour), AnsweredAt: at(13*time.Hour + time.Second)},
		{ID: "k5", ConversationID: "sales", Kind: "voice", StartedAt: at(9 * time.Hour), EndedAt: at(9*time.Hour + time.Second)},
	}
	for _, k := range calls {
		if err := s.SaveCall(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.DayStats(ctx, day, []string{"support"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Conversations != 4 || st.Answered != 2 || st.Abandoned != 1 {
		t.Errorf("conversations %d, answered %d, abandoned %d; want 4, 2, 1", st.Conversations, st.Answered, st.Abandoned)
	}
	if st.AvgWait != 20*time.Second {
		t.Errorf("average wait %v, want 20s", st.AvgWait)
	}
	if st.AvgCall != 90*time.Second {
		t.Errorf("average call %v, want 1m30s", st.AvgCall)
	}
	if st.Calls[CallAnswered] != 2 || st.Calls[CallNotAnswered] != 1 || st.Calls[CallActive] != 1 {
		t.Errorf("calls by outcome %v, want 2 answered, 1 not answered, 1 active", st.Calls)
	}
	if st.Causes["The line is busy"] != 1 || st.Causes["The customer hung up"] != 1 || len(st.Causes) != 3 {
		t.Errorf("causes %v", st.Causes)
	}
	none, err := s.DayStats(ctx, day, nil)
	if err != nil || none.Conversations != 0 {
		t.Errorf("no queues: %+v, %v", none, err)
	}
}
