package store

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// TestGroupCommitKeepsEveryAppendInOrder: many conversations append at
// once, each in its own order (as the hub does, one append at a time per
// conversation), with retried ids among them. Every message lands once,
// in its conversation's order with seqs 1..n, and is there after the
// store is closed and opened again.
func TestGroupCommitKeepsEveryAppendInOrder(t *testing.T) {
	forEachDriver(t, testGroupCommitKeepsEveryAppendInOrder)
}

func testGroupCommitKeepsEveryAppendInOrder(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	s := loc.open(t)
	const convs, perConv = 24, 40
	for c := range convs {
		newConv(t, s, fmt.Sprint("c", c))
	}
	var wg sync.WaitGroup
	errs := make(chan error, convs)
	for c := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conv := fmt.Sprint("c", c)
			for i := range perConv {
				m, dup, err := s.AppendMessage(ctx, &Message{ConversationID: conv, ID: fmt.Sprint("m", i), Role: RoleCustomer, Kind: KindText, Text: fmt.Sprint(conv, " says ", i)})
				if err != nil || dup || m.Seq != int64(i+1) {
					errs <- fmt.Errorf("%s message %d: seq %v dup %v err %v", conv, i, m, dup, err)
					return
				}
				if i%10 == 9 { // a client that did not see the ack sends again
					again, dup, err := s.AppendMessage(ctx, &Message{ConversationID: conv, ID: fmt.Sprint("m", i), Role: RoleCustomer, Kind: KindText, Text: "again"})
					if err != nil || !dup || again.Seq != int64(i+1) || again.Text != m.Text {
						errs <- fmt.Errorf("%s retried message %d: %+v dup %v err %v", conv, i, again, dup, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = loc.open(t)
	defer s.Close()
	for c := range convs {
		conv := fmt.Sprint("c", c)
		ms, err := s.Messages(ctx, conv, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != perConv {
			t.Fatalf("%s has %d messages after reopening, want %d", conv, len(ms), perConv)
		}
		for i, m := range ms {
			if m.Seq != int64(i+1) || m.ID != fmt.Sprint("m", i) || m.Text != fmt.Sprint(conv, " says ", i) {
				t.Fatalf("%s message %d after reopening: seq %d id %s text %q", conv, i, m.Seq, m.ID, m.Text)
			}
		}
		cv, err := s.Conversation(ctx, conv)
		if err != nil || cv.LastSeq != perConv {
			t.Fatalf("%s last_seq %v (%v), want %d", conv, cv, err, perConv)
		}
	}
}

func TestAppendAfterCloseIsRefused(t *testing.T) { forEachDriver(t, testAppendAfterCloseIsRefused) }

func testAppendAfterCloseIsRefused(t *testing.T, drv string) {
	s := newLocation(t, drv).open(t)
	newConv(t, s, "c1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AppendMessage(context.Background(), &Message{ConversationID: "c1", ID: "late", Kind: KindText}); err != ErrClosed {
		t.Fatalf("append after close: %v, want ErrClosed", err)
	}
}

// crashEnv tells the child process of TestAcknowledgedMessagesSurviveAKill
// where its store is (a location as JSON).
const crashEnv = "SEGUE_STORE_CRASH"

// TestAcknowledgedMessagesSurviveAKill: a child process appends messages
// from many goroutines, prints each id once AppendMessage returned (the
// acknowledgement), and exits at once after the last one without closing
// the store. Every acknowledged message is in the store when it is
// opened again, and so is the webhook event appended with it, in the
// conversation's order.
func TestAcknowledgedMessagesSurviveAKill(t *testing.T) {
	forEachDriver(t, testAcknowledgedMessagesSurviveAKill)
}

func testAcknowledgedMessagesSurviveAKill(t *testing.T, drv string) {
	if env := os.Getenv(crashEnv); env != "" {
		var loc location
		if err := json.Unmarshal([]byte(env), &loc); err != nil {
			t.Fatal(err)
		}
		if loc.Driver == drv {
			crashChild(t, loc)
		}
		return
	}
	loc := newLocation(t, drv)
	s := loc.open(t)
	for c := range 8 {
		newConv(t, s, fmt.Sprint("c", c))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	env, _ := json.Marshal(loc)
	cmd := exec.Command(os.Args[0], "-test.run", "^TestAcknowledgedMessagesSurviveAKill$/^"+drv+"$", "-test.count", "1")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(env))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("child: %v, want exit status 3 right after the last ack\n%s%s", err, out, stderr.String())
	}
	acked := map[string][]string{}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if conv, id, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "acked "), "/"); ok && strings.HasPrefix(sc.Text(), "acked ") {
			acked[conv] = append(acked[conv], id)
			n++
		}
	}
	if n != 8*50 {
		t.Fatalf("the child acknowledged %d messages, want %d:\n%s", n, 8*50, out)
	}
	if drv == "postgres" {
		// The database server crashes too, right after the
		// acknowledgements: synchronous commit kept them.
		if err := pg.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := pg.StartAgain(); err != nil {
			t.Fatal(err)
		}
	}
	s = loc.open(t)
	defer s.Close()
	for conv, ids := range acked {
		ms, err := s.Messages(context.Background(), conv, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != len(ids) {
			t.Fatalf("%s: %d messages after the kill, %d were acknowledged", conv, len(ms), len(ids))
		}
		for i, m := range ms {
			if m.ID != ids[i] {
				t.Fatalf("%s message %d is %s after the kill, want %s (acknowledged in that order)", conv, i, m.ID, ids[i])
			}
		}
	}
	events := drainOutbox(t, s, "crm")
	for conv, ids := range acked {
		want := make([]string, len(ids))
		for i, id := range ids {
			want[i] = fmt.Sprintf("%s/%d/%s", conv, i+1, id)
		}
		if fmt.Sprint(events[conv]) != fmt.Sprint(want) {
			t.Fatalf("%s: webhook events after the kill\n got %v\nwant %v", conv, events[conv], want)
		}
	}
}

// crashChild is the child process of TestAcknowledgedMessagesSurviveAKill.
func crashChild(t *testing.T, loc location) {
	s := loc.open(t)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conv := fmt.Sprint("c", c)
			for i := range 50 {
				if _, _, err := s.AppendMessageEvents(context.Background(), &Message{ConversationID: conv, ID: fmt.Sprint("m", i), Role: RoleCustomer, Kind: KindText, Text: "x"}, hookEvents("crm")); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Printf("acked %s/m%d\n", conv, i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(3) // no Close: as if killed right after the last acknowledgement
}

// BenchmarkAppendConcurrent: 256 conversations append at once, one
// message at a time each as the hub does, through each driver's group
// commit; it reports acknowledged messages per second.
func BenchmarkAppendConcurrent(b *testing.B) {
	benchAppend(b, func(s Store, m *Message) error {
		_, _, err := s.AppendMessage(context.Background(), m)
		return err
	})
}

// BenchmarkAppendWithReadReceipts: as BenchmarkAppendConcurrent, and
// each message is then reported read by the other side, as the widget
// and the agent's console do for a conversation in view (one receipt a
// message: the most a chat sends). It reports messages per second.
func BenchmarkAppendWithReadReceipts(b *testing.B) {
	benchAppend(b, func(s Store, m *Message) error {
		ctx := context.Background()
		stored, _, err := s.AppendMessage(ctx, m)
		if err != nil {
			return err
		}
		return s.MarkRead(ctx, m.ConversationID, RoleAgent, stored.Seq)
	})
}

// benchAppend runs add for b.N messages of 256 conversations at once on
// a new store of each driver and reports messages per second.
func benchAppend(b *testing.B, add func(Store, *Message) error) {
	for _, drv := range drivers {
		b.Run(drv, func(b *testing.B) {
			loc := newLocation(b, drv)
			s, err := Open(context.Background(), Config{Driver: loc.Driver, DSN: loc.DSN, FilesDir: loc.Files})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			appendConcurrently(b, s, 256, func(m *Message) error { return add(s, m) })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// TestSQLiteBatchOfEveryKind hands the SQLite writer one full batch at
// once: new messages of many conversations, a message sent twice within
// the batch, one stored by an earlier batch, one of a conversation that
// does not exist. Each gets its own outcome, seqs have no gaps, and the
// search index holds the new messages' words.
func TestSQLiteBatchOfEveryKind(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t, t.TempDir())
	defer s.Close()
	const convs = 64
	for c := range convs {
		newConv(t, s, fmt.Sprint("c", c))
	}
	first, _, err := s.AppendMessage(ctx, &Message{ConversationID: "c0", ID: "before", Role: RoleCustomer, Kind: KindText, Text: "stored earlier"})
	if err != nil {
		t.Fatal(err)
	}
	var batch []*appendReq
	add := func(conv, id, text string) {
		batch = append(batch, &appendReq{m: &Message{ConversationID: conv, ID: id, Role: RoleCustomer, Kind: KindText, Text: text}})
	}
	add("c0", "before", "again")       // 0: stored by an earlier batch
	add("nowhere", "x", "lost")        // 1: no such conversation
	add("c1", "twice", "first words")  // 2
	add("c1", "twice", "second words") // 3: the same id again in this batch
	for len(batch) < maxBatch {
		i := len(batch)
		add(fmt.Sprint("c", i%convs), fmt.Sprint("m", i), fmt.Sprintf("word%d", i))
	}
	results, err := s.commitBatch(batch)
	if err != nil {
		t.Fatal(err)
	}
	if r := results[0]; r.err != nil || !r.dup || r.msg.Seq != first.Seq || r.msg.Text != "stored earlier" {
		t.Errorf("stored earlier: %+v %v", r.msg, r)
	}
	if r := results[1]; !errors.Is(r.err, ErrNotFound) {
		t.Errorf("no such conversation: %v, want ErrNotFound", r.err)
	}
	if r := results[2]; r.err != nil || r.dup || r.msg.Text != "first words" {
		t.Errorf("first of a pair: %+v %v", r.msg, r)
	}
	if r := results[3]; r.err != nil || !r.dup || r.msg.Seq != results[2].msg.Seq || r.msg.Text != "first words" {
		t.Errorf("second of a pair: %+v %v", r.msg, r)
	}
	next := map[string]int64{"c0": first.Seq}
	for i, r := range results {
		if i == 1 || r.dup {
			continue
		}
		conv := batch[i].m.ConversationID
		if r.err != nil || r.msg.Seq != next[conv]+1 {
			t.Fatalf("message %d of %s: %+v %v, want seq %d", i, conv, r.msg, r.err, next[conv]+1)
		}
		next[conv] = r.msg.Seq
	}
	for conv, last := range next {
		ms, err := s.Messages(ctx, conv, 0, 1000)
		if err != nil || int64(len(ms)) != last {
			t.Fatalf("%s: %d messages stored (%v), want %d", conv, len(ms), err, last)
		}
		c, err := s.Conversation(ctx, conv)
		if err != nil || c.LastSeq != last {
			t.Fatalf("%s: last_seq %v (%v), want %d", conv, c, err, last)
		}
	}
	found, err := s.SearchConversations(ctx, ConversationQuery{Text: fmt.Sprintf("word%d", maxBatch-1), Limit: 10})
	if err != nil || len(found) != 1 || found[0].ID != fmt.Sprint("c", (maxBatch-1)%convs) {
		t.Fatalf("search for the batch's last word: %v %v", found, err)
	}
	found, err = s.SearchConversations(ctx, ConversationQuery{Text: "second", Limit: 10})
	if err != nil || len(found) != 0 {
		t.Fatalf("search for the dropped duplicate's words: %v %v", found, err)
	}
}

func TestChunkedCoversEveryRowOnce(t *testing.T) {
	for n := range maxBatch + 1 {
		next, calls := 0, 0
		err := chunked(n, func(from, size int) error {
			if from != next {
				t.Fatalf("n=%d: chunk at %d, want %d", n, from, next)
			}
			next += size
			calls++
			return nil
		})
		if err != nil || next != n {
			t.Fatalf("n=%d: covered %d rows (%v)", n, next, err)
		}
		if limit := n/rowChunks[0] + len(rowChunks) - 1; calls > limit {
			t.Fatalf("n=%d: %d chunks, want at most %d", n, calls, limit)
		}
	}
}

// appendConcurrently creates convs active conversations, c0 to
// c<convs-1>, then has them append b.N messages between them at once, one
// at a time each, through add; the timer runs for the appends only.
func appendConcurrently(b *testing.B, s Store, convs int, add func(*Message) error) {
	b.Helper()
	for c := range convs {
		if err := s.CreateConversation(context.Background(), &Conversation{ID: fmt.Sprint("c", c), State: StateActive,
			Queue: "support", TokenHash: []byte("h")}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range convs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < b.N; i += convs {
				if err := add(&Message{ConversationID: fmt.Sprint("c", c), ID: fmt.Sprint("m", i), Role: RoleCustomer,
					Kind: KindText, Text: "a message of a typical length, some forty characters"}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestReadMarksAmongAppends: read receipts interleaved with appends from
// many goroutines (the SQLite writer takes both into its batches) end up
// at the highest seq each side reported, and are durable: the store
// opened again has them.
func TestReadMarksAmongAppends(t *testing.T) { forEachDriver(t, testReadMarksAmongAppends) }

func testReadMarksAmongAppends(t *testing.T, drv string) {
	ctx := context.Background()
	loc := newLocation(t, drv)
	s := loc.open(t)
	const convs, perConv = 6, 25
	for c := range convs {
		newConv(t, s, fmt.Sprint("c", c))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*convs)
	for c := range convs {
		id := fmt.Sprint("c", c)
		wg.Add(2)
		// The customer writes and marks what it wrote as read by the
		// agent, as the agent's console does for the conversation in view.
		go func() {
			defer wg.Done()
			for i := range perConv {
				m, _, err := s.AppendMessage(ctx, &Message{ConversationID: id, ID: fmt.Sprint("m", i), Role: RoleCustomer, Kind: KindText, Text: "hi"})
				if err == nil {
					err = s.MarkRead(ctx, id, RoleAgent, m.Seq)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		// The customer's own marks arrive out of order: only the highest
		// counts.
		go func() {
			defer wg.Done()
			for _, seq := range []int64{3, 9, 1, 7} {
				if err := s.MarkRead(ctx, id, RoleCustomer, seq); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = loc.open(t)
	defer s.Close()
	for c := range convs {
		id := fmt.Sprint("c", c)
		cv, err := s.Conversation(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if cv.LastSeq != perConv || cv.ReadByAgt != perConv || cv.ReadByCust != 9 {
			t.Errorf("%s: last seq %d, read by agent %d, by customer %d; want %d, %d, 9", id, cv.LastSeq, cv.ReadByAgt, cv.ReadByCust, perConv, perConv)
		}
	}
}

// TestMarkReadAfterCloseIsRefused: the writer is gone, so is the mark.
func TestMarkReadAfterCloseIsRefused(t *testing.T) {
	s := newLocation(t, "sqlite").open(t)
	newConv(t, s, "c1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRead(context.Background(), "c1", RoleAgent, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("mark read after close: %v, want ErrClosed", err)
	}
}
