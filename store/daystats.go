package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// DayStats are a supervisor board's counts over a period: conversations
// opened since a point in time, in some queues, and their calls.
type DayStats struct {
	// Conversations opened in the period.
	Conversations int
	// Answered are those of them an agent held at some point.
	Answered int
	// Abandoned are those that ended before any agent held them.
	Abandoned int
	// AvgWait is the mean time from opening to the first accept, over the
	// answered conversations that were accepted from the queue.
	AvgWait time.Duration
	// AvgCall is the mean length (answer to end) of the voice calls that
	// were answered and have ended.
	AvgCall time.Duration
	// Calls counts the voice calls started in the period by outcome:
	// "answered", "not_answered" (ended without an answer) and "active".
	Calls map[string]int
	// Causes counts the ended calls by their recorded cause.
	Causes map[string]int
}

// Call outcomes of DayStats.Calls.
const (
	CallAnswered    = "answered"
	CallNotAnswered = "not_answered"
	CallActive      = "active"
)

// dayTally builds a DayStats from what a driver reads: the counts of the
// conversations, then the voice calls one by one.
type dayTally struct {
	st    *DayStats
	talk  time.Duration
	talks int
}

func newDayTally() *dayTally {
	return &dayTally{st: &DayStats{Calls: map[string]int{CallAnswered: 0, CallNotAnswered: 0, CallActive: 0}, Causes: map[string]int{}}}
}

// conversations sets the conversations' counts; wait is the sum of the
// waits of the waited ones.
func (d *dayTally) conversations(opened, answered, abandoned int, wait time.Duration, waited int) {
	d.st.Conversations, d.st.Answered, d.st.Abandoned = opened, answered, abandoned
	if waited > 0 {
		d.st.AvgWait = wait / time.Duration(waited)
	}
}

// call counts a voice call by outcome and cause; the zero time stands for
// not answered or not ended.
func (d *dayTally) call(answered, ended time.Time, cause string) {
	switch {
	case ended.IsZero():
		d.st.Calls[CallActive]++
		return
	case !answered.IsZero():
		d.st.Calls[CallAnswered]++
		d.talk += ended.Sub(answered)
		d.talks++
	default:
		d.st.Calls[CallNotAnswered]++
	}
	if cause != "" {
		d.st.Causes[cause]++
	}
}

func (d *dayTally) done() *DayStats {
	if d.talks > 0 {
		d.st.AvgCall = d.talk / time.Duration(d.talks)
	}
	return d.st
}

// DayStats counts the conversations of queues opened at or after since,
// and their voice calls started at or after since.
func (s *SQLite) DayStats(ctx context.Context, since time.Time, queues []string) (*DayStats, error) {
	d := newDayTally()
	if len(queues) == 0 {
		return d.done(), nil
	}
	in := "(?" + strings.Repeat(",?", len(queues)-1) + ")"
	args := []any{unix(since)}
	for _, q := range queues {
		args = append(args, q)
	}
	var opened, answered, abandoned, waited int64
	var wait float64
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*),
		COALESCE(SUM(last_agent_id != ''), 0),
		COALESCE(SUM(state = '`+StateEnded+`' AND last_agent_id = ''), 0),
		COALESCE(SUM(w), 0), COUNT(w)
		FROM (SELECT c.*, (SELECT MIN(m.created_at) FROM messages m WHERE m.conversation_id = c.id
			AND m.event = 'conversation.accepted') - c.created_at AS w
		FROM conversations c WHERE c.created_at >= ? AND c.queue IN `+in+`)`, args...).
		Scan(&opened, &answered, &abandoned, &wait, &waited)
	if err != nil {
		return nil, fmt.Errorf("store: day stats: %w", err)
	}
	d.conversations(int(opened), int(answered), int(abandoned), time.Duration(wait*float64(time.Millisecond)), int(waited))
	rows, err := s.db.QueryContext(ctx, `SELECT k.answered_at, k.ended_at, k.cause FROM calls k
		JOIN conversations c ON c.id = k.conversation_id
		WHERE k.kind = 'voice' AND k.started_at >= ? AND c.queue IN `+in, args...)
	if err != nil {
		return nil, fmt.Errorf("store: day stats: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var an, en int64
		var cause string
		if err := rows.Scan(&an, &en, &cause); err != nil {
			return nil, fmt.Errorf("store: day stats: %w", err)
		}
		d.call(fromUnix(an), fromUnix(en), cause)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: day stats: %w", err)
	}
	return d.done(), nil
}
