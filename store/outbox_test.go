package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// hookEvents is an OutboxFunc giving one event per webhook named, with
// the stored message's conversation, seq and id as the body.
func hookEvents(webhooks ...string) OutboxFunc {
	return func(m *Message) ([]*WebhookEvent, error) {
		var out []*WebhookEvent
		for _, w := range webhooks {
			out = append(out, &WebhookEvent{Webhook: w, Type: "message.created",
				Body: fmt.Appendf(nil, "%s/%d/%s", m.ConversationID, m.Seq, m.ID)})
		}
		return out, nil
	}
}

// drainOutbox delivers every pending event of webhook as a gateway would
// (heads first, one round at a time) and returns the bodies delivered,
// per conversation, in delivery order.
func drainOutbox(t *testing.T, s Store, webhook string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][]string{}
	for {
		due, err := s.DueWebhookEvents(ctx, "", []string{webhook}, time.Now().Add(time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) == 0 {
			return out
		}
		for _, e := range due {
			out[e.ConversationID] = append(out[e.ConversationID], string(e.Body))
			e.State = WebhookDelivered
			if err := s.UpdateWebhookEvent(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// execSQL runs a statement written for each database.
func execSQL(t *testing.T, s Store, sqlite, postgres string) {
	t.Helper()
	var err error
	switch s := s.(type) {
	case *SQLite:
		_, err = s.db.ExecContext(context.Background(), sqlite)
	case *Postgres:
		_, err = s.pool.Exec(context.Background(), postgres)
	default:
		t.Fatalf("store %T", s)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestMessageEventsCommitWithTheirMessage: a message and the webhook
// events it causes are stored together or not at all. Events come out
// with the message's seq, conversation and time; a duplicate adds none;
// an events function that fails, an event without a body and a database
// that refuses an event's row each leave neither the message nor any
// event, and the conversation's next message takes the seq the failed
// one would have had.
func TestMessageEventsCommitWithTheirMessage(t *testing.T) {
	forEachDriver(t, testMessageEventsCommitWithTheirMessage)
}

func testMessageEventsCommitWithTheirMessage(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	text := func(id string) *Message {
		return &Message{ConversationID: "c1", ID: id, Role: RoleCustomer, Kind: KindText, Text: "hello " + id}
	}
	m, dup, err := s.AppendMessageEvents(ctx, text("m1"), hookEvents("crm", "bi"))
	if err != nil || dup || m.Seq != 1 {
		t.Fatalf("append with events: %+v %v %v", m, dup, err)
	}
	if _, dup, err := s.AppendMessageEvents(ctx, text("m1"), hookEvents("crm")); err != nil || !dup {
		t.Fatalf("append again: dup %v %v", dup, err)
	}
	due, err := s.DueWebhookEvents(ctx, "", []string{"crm", "bi"}, time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("due after one message and its duplicate: %d events, %v", len(due), err)
	}
	for _, e := range due {
		if e.ConversationID != "c1" || string(e.Body) != "c1/1/m1" || e.Type != "message.created" || e.State != WebhookPending ||
			!e.CreatedAt.Equal(m.CreatedAt.Truncate(time.Millisecond)) && !e.CreatedAt.Equal(m.CreatedAt) {
			t.Errorf("event of m1: %+v (message at %v)", e, m.CreatedAt)
		}
		// Given back unchanged, as an attempt that changed nothing.
		if err := s.UpdateWebhookEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}

	failing := func(*Message) ([]*WebhookEvent, error) { return nil, errors.New("no body today") }
	if _, _, err := s.AppendMessageEvents(ctx, text("m2"), failing); err == nil {
		t.Fatal("an events function that fails: the append succeeded")
	}
	noBody := func(*Message) ([]*WebhookEvent, error) {
		return []*WebhookEvent{{Webhook: "crm", Type: "message.created"}}, nil
	}
	if _, _, err := s.AppendMessageEvents(ctx, text("m3"), noBody); !errors.Is(err, ErrBadOutboxEvent) {
		t.Fatalf("an event without a body: %v, want ErrBadOutboxEvent", err)
	}
	// The database itself refuses the event's row, after the message's
	// row was written in the same transaction.
	execSQL(t, s, `CREATE TRIGGER refuse_outbox BEFORE INSERT ON webhook_outbox WHEN new.type = 'refused'
		BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`,
		`CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.type = 'refused' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_outbox BEFORE INSERT ON webhook_outbox FOR EACH ROW EXECUTE FUNCTION refuse_outbox()`)
	refused := func(*Message) ([]*WebhookEvent, error) {
		return []*WebhookEvent{{Webhook: "crm", Type: "refused", Body: []byte("{}")}}, nil
	}
	if _, _, err := s.AppendMessageEvents(ctx, text("m4"), refused); err == nil {
		t.Fatal("an event the database refuses: the append succeeded")
	}
	for _, id := range []string{"m2", "m3", "m4"} {
		if n := countRows(t, s, `SELECT COUNT(*) FROM messages WHERE id = '`+id+`'`); n != 0 {
			t.Errorf("message %s was stored although its events were not", id)
		}
	}
	if n := countRows(t, s, `SELECT COUNT(*) FROM webhook_outbox`); n != 2 {
		t.Errorf("outbox: %d events, want m1's 2", n)
	}
	m, _, err = s.AppendMessageEvents(ctx, text("m5"), hookEvents("crm"))
	if err != nil || m.Seq != 2 {
		t.Fatalf("the next message: %+v %v, want seq 2", m, err)
	}
	c, err := s.Conversation(ctx, "c1")
	if err != nil || c.LastSeq != 2 {
		t.Fatalf("last seq %v %v, want 2", c, err)
	}
	got := drainOutbox(t, s, "crm")["c1"]
	if fmt.Sprint(got) != "[c1/1/m1 c1/2/m5]" {
		t.Errorf("crm's events: %v", got)
	}
	if _, _, err := s.AppendMessageEvents(ctx, &Message{ConversationID: "nope", ID: "x", Kind: KindText}, hookEvents("crm")); !errors.Is(err, ErrNotFound) {
		t.Errorf("append with events to no conversation: %v", err)
	}
	if n := countRows(t, s, `SELECT COUNT(*) FROM webhook_outbox WHERE conversation_id = 'nope'`); n != 0 {
		t.Errorf("%d events for a conversation that does not exist", n)
	}
}

// TestOutboxFollowsMessagesPerConversation: conversations append at once
// (one append at a time each, as the hub does), through the group
// commit's batches, messages with events mixed with events of their own
// transaction. Each conversation's events are delivered in the order they
// were appended.
func TestOutboxFollowsMessagesPerConversation(t *testing.T) {
	forEachDriver(t, testOutboxFollowsMessagesPerConversation)
}

func testOutboxFollowsMessagesPerConversation(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	const convs, perConv = 12, 30
	want := make([][]string, convs)
	var wg sync.WaitGroup
	errs := make(chan error, convs)
	for c := range convs {
		conv := fmt.Sprint("c", c)
		newConv(t, s, conv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perConv {
				if i%4 == 3 {
					body := fmt.Sprintf("%s/own/%d", conv, i)
					if err := s.AppendWebhookEvents(ctx, []*WebhookEvent{{Webhook: "crm", ConversationID: conv, Type: "call.ringing", Body: []byte(body)}}); err != nil {
						errs <- err
						return
					}
					want[c] = append(want[c], body)
					continue
				}
				m, _, err := s.AppendMessageEvents(ctx, &Message{ConversationID: conv, ID: fmt.Sprint("m", i), Role: RoleCustomer, Kind: KindText, Text: "x"}, hookEvents("crm"))
				if err != nil {
					errs <- err
					return
				}
				want[c] = append(want[c], fmt.Sprintf("%s/%d/m%d", conv, m.Seq, i))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := drainOutbox(t, s, "crm")
	for c := range convs {
		conv := fmt.Sprint("c", c)
		if fmt.Sprint(got[conv]) != fmt.Sprint(want[c]) {
			t.Errorf("%s:\n got %v\nwant %v", conv, got[conv], want[c])
		}
	}
}

// BenchmarkAppendWithEvents: 256 conversations append at once, one
// message at a time each as the hub does, every message causing one
// webhook event: written with the message (AppendMessageEvents, one
// group-commit batch) or, as before, by a transaction of its own after
// the message's (AppendMessage, then AppendWebhookEvents).
func BenchmarkAppendWithEvents(b *testing.B) {
	for _, drv := range drivers {
		for _, how := range []string{"with-message", "own-transaction"} {
			b.Run(drv+"/"+how, func(b *testing.B) {
				ctx := context.Background()
				loc := newLocation(b, drv)
				s, err := Open(ctx, Config{Driver: loc.Driver, DSN: loc.DSN, FilesDir: loc.Files})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				const convs = 256
				events := hookEvents("crm")
				appendConcurrently(b, s, convs, func(m *Message) error {
					if how == "with-message" {
						_, _, err := s.AppendMessageEvents(ctx, m, events)
						return err
					}
					stored, _, err := s.AppendMessage(ctx, m)
					if err == nil {
						var evs []*WebhookEvent
						if evs, err = events(stored); err == nil {
							evs[0].ConversationID = stored.ConversationID
							err = s.AppendWebhookEvents(ctx, evs)
						}
					}
					return err
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
		}
	}
}

// refuseOutboxType makes the database itself refuse any outbox row of
// type typ, as a failure that comes after the rows written before it in
// the same transaction.
func refuseOutboxType(t *testing.T, s Store, typ string) {
	t.Helper()
	execSQL(t, s, `CREATE TRIGGER refuse_outbox BEFORE INSERT ON webhook_outbox WHEN new.type = '`+typ+`'
		BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`,
		`CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.type = '`+typ+`' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_outbox BEFORE INSERT ON webhook_outbox FOR EACH ROW EXECUTE FUNCTION refuse_outbox()`)
}

// TestConversationEventsCommitWithTheirConversation: a conversation and
// the webhook events its creation causes are stored together or not at
// all. The events come out as the conversation's, at its creation time;
// an event without a body and a database that refuses an event's row
// each leave neither the conversation nor any event, and the same
// conversation can be created afterwards.
func TestConversationEventsCommitWithTheirConversation(t *testing.T) {
	forEachDriver(t, testConversationEventsCommitWithTheirConversation)
}

func testConversationEventsCommitWithTheirConversation(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	at := time.Now().UTC().Truncate(time.Millisecond)
	conv := func(id string) *Conversation {
		return &Conversation{ID: id, State: StateWaiting, Queue: "support", TokenHash: []byte("h-" + id), CreatedAt: at, UpdatedAt: at}
	}
	created := func(webhooks ...string) []*WebhookEvent {
		var out []*WebhookEvent
		for _, w := range webhooks {
			// ConversationID is the store's to set.
			out = append(out, &WebhookEvent{Webhook: w, ConversationID: "elsewhere", Type: "conversation.created", Body: []byte(w + "/created")})
		}
		return out
	}
	if err := s.CreateConversationEvents(ctx, conv("c1"), created("crm", "bi")); err != nil {
		t.Fatal(err)
	}
	due, err := s.DueWebhookEvents(ctx, "", []string{"crm", "bi"}, at.Add(time.Hour), 10)
	if err != nil || len(due) != 2 {
		t.Fatalf("due after one conversation: %d events, %v", len(due), err)
	}
	for _, e := range due {
		if e.ConversationID != "c1" || e.Type != "conversation.created" || string(e.Body) != e.Webhook+"/created" ||
			e.State != WebhookPending || !e.CreatedAt.Equal(at) {
			t.Errorf("event of c1: %+v (created at %v)", e, at)
		}
		// Given back unchanged, as an attempt that changed nothing.
		if err := s.UpdateWebhookEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// A second conversation of the same id is refused with its events.
	if err := s.CreateConversationEvents(ctx, conv("c1"), created("crm")); err == nil {
		t.Fatal("a conversation created twice")
	}
	noBody := []*WebhookEvent{{Webhook: "crm", Type: "conversation.created"}}
	if err := s.CreateConversationEvents(ctx, conv("c2"), noBody); !errors.Is(err, ErrBadOutboxEvent) {
		t.Fatalf("an event without a body: %v, want ErrBadOutboxEvent", err)
	}
	refuseOutboxType(t, s, "refused")
	refused := []*WebhookEvent{{Webhook: "crm", Type: "refused", Body: []byte("{}")}}
	if err := s.CreateConversationEvents(ctx, conv("c3"), refused); err == nil {
		t.Fatal("an event the database refuses: the conversation was created")
	}
	for _, id := range []string{"c2", "c3"} {
		if _, err := s.Conversation(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("conversation %s was stored although its events were not: %v", id, err)
		}
	}
	if n := countRows(t, s, `SELECT COUNT(*) FROM webhook_outbox`); n != 2 {
		t.Errorf("outbox: %d events, want c1's 2", n)
	}
	if err := s.CreateConversationEvents(ctx, conv("c3"), created("crm")); err != nil {
		t.Fatalf("c3 again, with a good event: %v", err)
	}
	// Without events it is CreateConversation.
	if err := s.CreateConversationEvents(ctx, conv("c4"), nil); err != nil {
		t.Fatal(err)
	}
	got := drainOutbox(t, s, "crm")
	if fmt.Sprint(got) != "map[c1:[crm/created] c3:[crm/created]]" {
		t.Errorf("crm's events: %v", got)
	}
	// The conversation's events follow its creation in the outbox.
	m, _, err := s.AppendMessageEvents(ctx, &Message{ConversationID: "c4", ID: "m1", Role: RoleCustomer, Kind: KindText, Text: "hi"}, hookEvents("crm"))
	if err != nil || m.Seq != 1 {
		t.Fatalf("first message of c4: %+v %v", m, err)
	}
}

// TestRecordingEventsCommitWithItsEnd: a recording's end and the webhook
// events it causes are stored together or not at all; the events see the
// recording as finished (its size and end).
func TestRecordingEventsCommitWithItsEnd(t *testing.T) {
	forEachDriver(t, testRecordingEventsCommitWithItsEnd)
}

func testRecordingEventsCommitWithItsEnd(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	newConv(t, s, "c1")
	start := func(id string) *Recording {
		t.Helper()
		r := &Recording{ID: id, ConversationID: "c1", CallID: "call1", Format: "wav", Type: "audio/wav"}
		f, err := s.CreateRecording(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("RIFF1234")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return r
	}
	ready := func(typ string) RecordingOutboxFunc {
		return func(r *Recording) ([]*WebhookEvent, error) {
			return []*WebhookEvent{{Webhook: "crm", Type: typ, Body: fmt.Appendf(nil, "%s/%d/%v", r.ID, r.Size, !r.EndedAt.IsZero())}}, nil
		}
	}
	r1 := start("r1")
	r1.Duration = 2 * time.Second
	if err := s.FinishRecordingEvents(ctx, r1, ready("recording.ready")); err != nil {
		t.Fatal(err)
	}
	failing := func(*Recording) ([]*WebhookEvent, error) { return nil, errors.New("no body today") }
	r2 := start("r2")
	if err := s.FinishRecordingEvents(ctx, r2, failing); err == nil {
		t.Fatal("an events function that fails: the recording was finished")
	}
	refuseOutboxType(t, s, "refused")
	r3 := start("r3")
	if err := s.FinishRecordingEvents(ctx, r3, ready("refused")); err == nil {
		t.Fatal("an event the database refuses: the recording was finished")
	}
	for _, id := range []string{"r2", "r3"} {
		r, err := s.Recording(ctx, id)
		if err != nil || !r.EndedAt.IsZero() || r.Size != 0 {
			t.Errorf("recording %s finished although its events were not: %+v %v", id, r, err)
		}
	}
	if err := s.FinishRecordingEvents(ctx, &Recording{ID: "gone", ConversationID: "c1", Format: "wav"}, ready("recording.ready")); !errors.Is(err, ErrNotFound) {
		t.Errorf("finishing a recording that does not exist: %v, want ErrNotFound", err)
	}
	got, err := s.Recording(ctx, "r1")
	if err != nil || got.Size != 8 || got.EndedAt.IsZero() || got.Duration != 2*time.Second {
		t.Fatalf("r1 as finished: %+v %v", got, err)
	}
	due, err := s.DueWebhookEvents(ctx, "", []string{"crm"}, time.Now().Add(time.Hour), 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due: %d events, %v; want r1's alone", len(due), err)
	}
	if e := due[0]; e.ConversationID != "c1" || e.Type != "recording.ready" || string(e.Body) != "r1/8/true" ||
		!e.CreatedAt.Equal(got.EndedAt) {
		t.Errorf("r1's event: %+v, body %s (ended at %v)", e, e.Body, got.EndedAt)
	}
	if n := countRows(t, s, `SELECT COUNT(*) FROM webhook_outbox`); n != 1 {
		t.Errorf("outbox: %d events, want r1's alone", n)
	}
}

// TestReleaseWebhookClaims: an event taken for delivery by a gateway that
// then died is claimed (with PostgreSQL) and not due to anyone until the
// claim lapses, or until a gateway starting alone on the database
// releases every claim, or a cluster's node releases that gateway's: then
// it is due again, attempts unchanged. Another claimant's claims stay.
func TestReleaseWebhookClaims(t *testing.T) {
	forEachDriver(t, testReleaseWebhookClaims)
}

func testReleaseWebhookClaims(t *testing.T, drv string) {
	ctx := context.Background()
	s := newLocation(t, drv).open(t)
	defer s.Close()
	ev := &WebhookEvent{Webhook: "crm", ConversationID: "c1", Type: "conversation.created", Body: []byte("{}")}
	if err := s.AppendWebhookEvents(ctx, []*WebhookEvent{ev}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	want := 0
	if drv == "sqlite" {
		want = 1 // SQLite claims nothing: one gateway alone uses it
	}
	for _, release := range []struct{ who, claimant, other string }{
		{"a gateway starting alone", "", ""},
		{"a node that saw n1 die", "n1.x", "n2.y"},
	} {
		if due, err := s.DueWebhookEvents(ctx, "n1.x", []string{"crm"}, now, 10); err != nil || len(due) != 1 {
			t.Fatalf("due: %v %v", due, err)
		}
		// The gateway that took it dies without recording an attempt.
		due, err := s.DueWebhookEvents(ctx, "n2.y", []string{"crm"}, now, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) != want {
			t.Fatalf("due while taken: %d events, want %d", len(due), want)
		}
		claimants, err := s.WebhookClaimants(ctx)
		if err != nil || (want == 0) != slices.Equal(claimants, []string{"n1.x"}) || (want == 1) != (len(claimants) == 0) {
			t.Fatalf("claimants %q, %v", claimants, err)
		}
		if release.other != "" {
			if n, err := s.ReleaseWebhookClaims(ctx, release.other); err != nil || n != 0 {
				t.Fatalf("%s released %d claims of %s, %v; want none", release.who, n, release.other, err)
			}
		}
		n, err := s.ReleaseWebhookClaims(ctx, release.claimant)
		if err != nil || n != 1-want {
			t.Fatalf("%s released %d claims, %v; want %d", release.who, n, err, 1-want)
		}
		if claimants, err := s.WebhookClaimants(ctx); err != nil || len(claimants) != 0 {
			t.Fatalf("claimants after %s released: %q, %v", release.who, claimants, err)
		}
		due, err = s.DueWebhookEvents(ctx, "", []string{"crm"}, now, 10)
		if err != nil || len(due) != 1 || due[0].Seq != ev.Seq || due[0].Attempts != 0 {
			t.Fatalf("due after %s released: %+v %v", release.who, due, err)
		}
		if n, err := s.ReleaseWebhookClaims(ctx, ""); err != nil || n != 1-want {
			t.Fatalf("released %d claims the second time, %v", n, err)
		}
	}
}
