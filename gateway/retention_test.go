package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/store"
)

// TestRetention: a run deletes the closed conversations older than
// store.retention days with their messages, files and recordings, counts
// them by kind and logs the run; recent and open conversations stay.
func TestRetention(t *testing.T) {
	e := newTestServer(t, func(c *Config) { c.Store.Retention = 30 })
	ctx := context.Background()
	now := time.Now()
	mk := func(id, state string, updated time.Time) {
		c := &store.Conversation{ID: id, State: state, Queue: "support", TokenHash: []byte(id), CreatedAt: updated, UpdatedAt: updated}
		if err := e.st.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.st.AppendMessage(ctx, &store.Message{ConversationID: id, ID: "m" + id, Role: store.RoleCustomer, Kind: store.KindText, Text: "hi"}); err != nil {
			t.Fatal(err)
		}
		if err := e.st.SaveFile(ctx, &store.File{ID: "f" + id, ConversationID: id, Name: "a.txt", Type: "text/plain"}, strings.NewReader("file of "+id), 1024); err != nil {
			t.Fatal(err)
		}
		c.UpdatedAt = updated // the message made it recent
		if err := e.st.UpdateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		f, err := e.st.CreateRecording(ctx, &store.Recording{ID: "r" + id, ConversationID: id, CallID: "k" + id, Format: "ogg", Type: "audio/ogg"})
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	mk("old", store.StateEnded, now.Add(-31*24*time.Hour))
	mk("recent", store.StateEnded, now.Add(-29*24*time.Hour))
	mk("openold", store.StateActive, now.Add(-90*24*time.Hour))
	d, err := e.srv.runRetention(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if d.Conversations != 1 || d.Files != 1 || d.Recordings != 1 || d.Messages != 1 {
		t.Errorf("deleted %+v", d)
	}
	for kind, want := range map[string]float64{"conversations": 1, "messages": 1, "files": 1, "recordings": 1, "calls": 0} {
		if got := counterValue(t, e.srv, "segue_retention_deleted_total", "kind", kind); got != want {
			t.Errorf("segue_retention_deleted_total{kind=%q} = %v, want %v", kind, got, want)
		}
	}
	for id, kept := range map[string]bool{"old": false, "recent": true, "openold": true} {
		if _, err := e.st.Conversation(ctx, id); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", id, err == nil, kept)
		}
	}
	if _, err := e.st.Recording(ctx, "rold"); err == nil {
		t.Error("the old recording's row is still there")
	}
	// Off: nothing happens.
	e.srv.cfg.Store.Retention = 0
	if d, err := e.srv.runRetention(ctx, now.Add(365*24*time.Hour)); err != nil || d.Conversations != 0 {
		t.Errorf("retention 0 deleted %+v (%v)", d, err)
	}
}

// counterValue reads one counter series from the server's registry.
func counterValue(t *testing.T, s *Server, name, label, value string) float64 {
	t.Helper()
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}
