package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/configs"
	"github.com/segue-rtc/segue/store"
)

// dataConfig writes the example configuration with its store in a temp
// dir and fills the store: Ann (id crm-1) has a closed conversation with a
// message, a file and a recording, and an open one; Bob has one closed.
func dataConfig(t *testing.T) (path, dir string) {
	t.Helper()
	dir = t.TempDir()
	doc := strings.Replace(string(configs.Example), `dsn: "data/segue.db"`, `dsn: "`+filepath.Join(dir, "segue.db")+`"`, 1)
	doc = strings.Replace(doc, `files_dir: "data/files"`, `files_dir: "`+filepath.Join(dir, "files")+`"`, 1)
	path = filepath.Join(dir, "segue.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "segue.db"), filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mk := func(id, ext, email, state string) {
		c := &store.Conversation{ID: id, State: state, Queue: "support", TokenHash: []byte(id), CreatedAt: time.Now(), UpdatedAt: time.Now(),
			Customer: store.Customer{Name: "Ann <script>alert(1)</script>", ExternalID: ext, Email: email}}
		if err := st.CreateConversation(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.AppendMessage(ctx, &store.Message{ConversationID: id, ID: "m" + id, Role: store.RoleCustomer, SenderName: "Ann",
			Kind: store.KindText, Text: `<img src=x onerror="alert(1)"> my order`}); err != nil {
			t.Fatal(err)
		}
		f := &store.File{ID: "f" + id, ConversationID: id, Name: "../../etc/passwd", Type: "text/plain"}
		if err := st.SaveFile(ctx, f, strings.NewReader("invoice of "+id), 1024); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.AppendMessage(ctx, &store.Message{ConversationID: id, ID: "mf" + id, Role: store.RoleCustomer, Kind: store.KindFile, File: f}); err != nil {
			t.Fatal(err)
		}
		if err := st.SaveCall(ctx, &store.CallRecord{ID: "k" + id, ConversationID: id, Kind: "voice", Direction: "outbound", Target: "sip:1001@pbx", StartedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		rf, err := st.CreateRecording(ctx, &store.Recording{ID: "r" + id, ConversationID: id, CallID: "k" + id, Format: "ogg", Type: "audio/ogg"})
		if err != nil {
			t.Fatal(err)
		}
		rf.Write([]byte("OggS recording of " + id))
		rf.Close()
		if err := st.FinishRecording(ctx, &store.Recording{ID: "r" + id, ConversationID: id, Format: "ogg", Duration: 3 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	mk("ann1", "crm-1", "", store.StateEnded)
	mk("ann2", "crm-1", "", store.StateActive)
	mk("bob1", "crm-2", "bob@example.com", store.StateEnded)
	return path, dir
}

func runSegue(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestDataErase(t *testing.T) {
	path, dir := dataConfig(t)
	if _, err := runSegue(t, "data", "erase", "--config", path); err == nil {
		t.Error("erase without a customer ran")
	}
	out, err := runSegue(t, "data", "erase", "--config", path, "--customer-id", "crm-1")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"erased 1 conversations, 2 messages, 1 files, 1 recordings, 1 call records", "  erased ann1",
		"kept 1 open conversations (end them, then erase again): ann2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	ctx := context.Background()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "segue.db"), filepath.Join(dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Conversation(ctx, "ann1"); err == nil {
		t.Error("ann1 is still stored")
	}
	for _, id := range []string{"ann2", "bob1"} {
		if _, err := st.Conversation(ctx, id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "files", "recordings", "rann1.ogg")); !os.IsNotExist(err) {
		t.Errorf("ann1's recording on disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "files", "recordings", "rbob1.ogg")); err != nil {
		t.Errorf("bob's recording: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "files"))
	var blobs int
	for _, e := range entries {
		if !e.IsDir() {
			blobs++
		}
	}
	if blobs != 2 {
		t.Errorf("%d uploads on disk, want ann2's and bob1's", blobs)
	}
	out, err = runSegue(t, "data", "erase", "--config", path, "--email", "BOB@example.com")
	if err != nil || !strings.Contains(out, "erased 1 conversations") || !strings.Contains(out, "erased bob1") {
		t.Errorf("erase by e-mail: %v\n%s", err, out)
	}
}

func TestDataExport(t *testing.T) {
	path, _ := dataConfig(t)
	outDir := t.TempDir()
	out, err := runSegue(t, "data", "export", "--config", path, "--conversation", "ann1", "--out", outDir)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "2 messages, 1 files, 1 recordings") {
		t.Errorf("output: %s", out)
	}
	base := filepath.Join(outDir, "ann1")
	var doc struct {
		Conversation struct{ ID string } `json:"conversation"`
		Messages     []struct {
			Text string
			File *struct{ Path string }
		} `json:"messages"`
		Recordings []struct{ Path string } `json:"recordings"`
	}
	b, err := os.ReadFile(filepath.Join(base, "transcript.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Conversation.ID != "ann1" || len(doc.Messages) != 2 || doc.Messages[1].File == nil || len(doc.Recordings) != 1 {
		t.Fatalf("transcript.json: %s", b)
	}
	// The uploaded name cannot lead out of the export.
	if p := doc.Messages[1].File.Path; p != "files/fann1-passwd" {
		t.Errorf("file exported as %q", p)
	}
	if got, _ := os.ReadFile(filepath.Join(base, doc.Messages[1].File.Path)); string(got) != "invoice of ann1" {
		t.Errorf("exported file holds %q", got)
	}
	if got, _ := os.ReadFile(filepath.Join(base, doc.Recordings[0].Path)); string(got) != "OggS recording of ann1" {
		t.Errorf("exported recording holds %q", got)
	}
	page, err := os.ReadFile(filepath.Join(base, "transcript.html"))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	if strings.Contains(html, "<script>alert") || strings.Contains(html, "<img src=x") {
		t.Errorf("markup from the conversation reached the page unescaped:\n%s", html)
	}
	if !strings.Contains(html, "&lt;img src=x onerror=&#34;alert(1)&#34;&gt; my order") || !strings.Contains(html, "Ann &lt;script&gt;") {
		t.Errorf("the page lacks the escaped texts:\n%s", html)
	}
	if _, err := runSegue(t, "data", "export", "--config", path, "--conversation", "nope", "--out", outDir); err == nil {
		t.Error("exporting an unknown conversation succeeded")
	}
}
