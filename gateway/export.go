package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/segue-rtc/segue/store"
)

// Export is what ExportConversation wrote.
type Export struct {
	Dir        string
	Messages   int
	Files      int
	Recordings int
}

// exportDoc is transcript.json.
type exportDoc struct {
	Conversation exportConversation `json:"conversation"`
	Messages     []exportMessage    `json:"messages"`
	Calls        []exportCall       `json:"calls"`
	Recordings   []exportRecording  `json:"recordings"`
	// Notes are the agents' internal notes: the export is for the
	// contact center, never the customer's copy.
	Notes      []exportNote `json:"notes"`
	ExportedAt time.Time    `json:"exported_at"`
}

type exportNote struct {
	AgentID   string    `json:"agent_id"`
	AgentName string    `json:"agent_name,omitempty"`
	Text      string    `json:"text"`
	CreatedAt time.Time `json:"created_at"`
}

type exportConversation struct {
	ID        string     `json:"id"`
	State     string     `json:"state"`
	Queue     string     `json:"queue"`
	AgentID   string     `json:"agent_id,omitempty"`
	Customer  wireCust   `json:"customer"`
	CreatedAt time.Time  `json:"created_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	WrapUp    string     `json:"wrap_up,omitempty"`
}

type wireCust struct {
	Name       string `json:"name,omitempty"`
	Email      string `json:"email,omitempty"`
	ExternalID string `json:"id,omitempty"`
	Verified   bool   `json:"verified"`
}

type exportMessage struct {
	Seq        int64           `json:"seq"`
	Role       string          `json:"role"`
	SenderName string          `json:"sender_name,omitempty"`
	Kind       string          `json:"kind"`
	Text       string          `json:"text,omitempty"`
	Event      string          `json:"event,omitempty"`
	EventData  json.RawMessage `json:"event_data,omitempty"`
	File       *exportFile     `json:"file,omitempty"`
	CreatedAt  time.Time       `json:"created_at"`
}

type exportFile struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Size int64  `json:"size"`
	// Path is where the file is in the export, relative to it.
	Path string `json:"path"`
}

type exportCall struct {
	wireCallRecord
}

type exportRecording struct {
	ID        string    `json:"id"`
	CallID    string    `json:"call_id"`
	Type      string    `json:"type"`
	DurationS float64   `json:"duration_s"`
	StartedAt time.Time `json:"started_at"`
	Path      string    `json:"path"`
}

// safeName keeps a file name to letters, digits and a few marks, so an
// uploaded name cannot reach outside the export directory.
func safeName(s string) string {
	s = filepath.Base(strings.ReplaceAll(s, "\\", "/"))
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	out := strings.TrimLeft(b.String(), ".")
	if out == "" {
		out = "file"
	}
	return out
}

// ExportConversation writes conversation id into dir/<id>: the
// transcript as transcript.json and transcript.html (every text
// escaped), its files under files/ and its recordings under recordings/.
// It reads the store only.
func ExportConversation(ctx context.Context, st store.Store, id, dir string) (Export, error) {
	c, err := st.Conversation(ctx, id)
	if err != nil {
		return Export{}, fmt.Errorf("gateway: export %s: %w", id, err)
	}
	out := filepath.Join(dir, safeName(c.ID))
	if err := os.MkdirAll(filepath.Join(out, "files"), 0o750); err != nil {
		return Export{}, fmt.Errorf("gateway: export: %w", err)
	}
	doc := exportDoc{ExportedAt: time.Now().UTC(), Conversation: exportConversation{ID: c.ID, State: c.State, Queue: c.Queue,
		AgentID: c.LastAgentID, CreatedAt: c.CreatedAt, EndedAt: optTime(c.EndedAt), WrapUp: c.WrapUp,
		Customer: wireCust{Name: c.Customer.Name, Email: c.Customer.Email, ExternalID: c.Customer.ExternalID, Verified: c.Customer.Verified}}}
	ex := Export{Dir: out}
	for after := int64(0); ; {
		ms, err := st.Messages(ctx, c.ID, after, 500)
		if err != nil {
			return ex, fmt.Errorf("gateway: export: %w", err)
		}
		for _, m := range ms {
			em := exportMessage{Seq: m.Seq, Role: m.Role, SenderName: m.SenderName, Kind: m.Kind, Text: m.Text, Event: m.Event,
				EventData: m.EventData, CreatedAt: m.CreatedAt}
			if m.File != nil {
				rel := filepath.Join("files", safeName(m.File.ID)+"-"+safeName(m.File.Name))
				if err := copyOut(st.OpenFile, m.File, filepath.Join(out, rel)); err != nil {
					return ex, err
				}
				em.File = &exportFile{Name: m.File.Name, Type: m.File.Type, Size: m.File.Size, Path: filepath.ToSlash(rel)}
				ex.Files++
			}
			doc.Messages = append(doc.Messages, em)
			after = m.Seq
		}
		if len(ms) < 500 {
			break
		}
	}
	ex.Messages = len(doc.Messages)
	calls, err := st.Calls(ctx, c.ID)
	if err != nil {
		return ex, fmt.Errorf("gateway: export: %w", err)
	}
	for _, r := range calls {
		doc.Calls = append(doc.Calls, exportCall{wireCallRecord{ID: r.ID, Kind: r.Kind, Direction: r.Direction, Target: displayTarget(r.Target),
			StartedAt: r.StartedAt, AnsweredAt: optTime(r.AnsweredAt), EndedAt: optTime(r.EndedAt), Cause: r.Cause, Codec: r.Codec, Quality: r.Stats}})
	}
	notes, err := st.Notes(ctx, c.ID)
	if err != nil {
		return ex, fmt.Errorf("gateway: export: %w", err)
	}
	for _, n := range notes {
		doc.Notes = append(doc.Notes, exportNote{AgentID: n.AgentID, AgentName: n.AgentName, Text: n.Text, CreatedAt: n.CreatedAt})
	}
	recs, err := st.Recordings(ctx, c.ID)
	if err != nil {
		return ex, fmt.Errorf("gateway: export: %w", err)
	}
	if len(recs) > 0 {
		if err := os.MkdirAll(filepath.Join(out, "recordings"), 0o750); err != nil {
			return ex, fmt.Errorf("gateway: export: %w", err)
		}
	}
	for _, r := range recs {
		rel := filepath.Join("recordings", safeName(r.ID)+"."+safeName(r.Format))
		if err := copyOut(st.OpenRecording, r, filepath.Join(out, rel)); err != nil {
			return ex, err
		}
		doc.Recordings = append(doc.Recordings, exportRecording{ID: r.ID, CallID: r.CallID, Type: r.Type, DurationS: r.Duration.Seconds(),
			StartedAt: r.StartedAt, Path: filepath.ToSlash(rel)})
		ex.Recordings++
	}
	js, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return ex, fmt.Errorf("gateway: export: %w", err)
	}
	if err := os.WriteFile(filepath.Join(out, "transcript.json"), append(js, '\n'), 0o640); err != nil {
		return ex, fmt.Errorf("gateway: export: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(out, "transcript.html"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return ex, fmt.Errorf("gateway: export: %w", err)
	}
	err = transcriptHTML.Execute(f, doc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ex, fmt.Errorf("gateway: export: %w", err)
	}
	return ex, nil
}

// copyOut copies a stored file or recording to path.
func copyOut[T any](open func(T) (io.ReadSeekCloser, error), item T, path string) error {
	src, err := open(item)
	if err != nil {
		return fmt.Errorf("gateway: export: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("gateway: export: %w", err)
	}
	_, err = io.Copy(dst, src)
	if err := errors.Join(err, dst.Close()); err != nil {
		return fmt.Errorf("gateway: export: %w", err)
	}
	return nil
}

// transcriptHTML is the readable transcript; html/template escapes every
// value, so a message cannot carry markup or script into it.
var transcriptHTML = template.Must(template.New("transcript").Funcs(template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; media-src 'self'">
<title>Conversation {{.Conversation.ID}}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem}
.m{margin:.4rem 0}.who{font-weight:600}.t{color:#667;font-size:12px}.event{color:#556;font-style:italic}</style></head>
<body><h1>Conversation {{.Conversation.ID}}</h1>
<p>Customer: {{.Conversation.Customer.Name}}{{with .Conversation.Customer.Email}} &lt;{{.}}&gt;{{end}}{{with .Conversation.Customer.ExternalID}} (id {{.}}){{end}}<br>
Queue: {{.Conversation.Queue}} · started {{when .Conversation.CreatedAt}}{{with .Conversation.EndedAt}} · ended {{when .}}{{end}}{{with .Conversation.WrapUp}} · wrap-up: {{.}}{{end}}</p>
{{range .Messages}}<div class="m{{if eq .Kind "event"}} event{{end}}"><span class="t">{{when .CreatedAt}}</span>
{{if ne .Kind "event"}}<span class="who">{{if .SenderName}}{{.SenderName}}{{else}}{{.Role}}{{end}}:</span>{{end}}
{{if .File}}<a href="{{.File.Path}}">{{.File.Name}}</a> ({{.File.Size}} bytes){{else}}{{.Text}}{{end}}</div>
{{end}}{{if .Notes}}<h2>Internal notes</h2>
{{range .Notes}}<div class="m"><span class="t">{{when .CreatedAt}}</span> <span class="who">{{if .AgentName}}{{.AgentName}}{{else}}{{.AgentID}}{{end}}:</span> {{.Text}}</div>
{{end}}{{end}}{{if .Recordings}}<h2>Recordings</h2>
{{range .Recordings}}<p>{{when .StartedAt}} · {{printf "%.0f" .DurationS}} s · <a href="{{.Path}}">{{.Path}}</a></p>
{{end}}{{end}}<p class="t">Exported {{when .ExportedAt}}</p></body></html>
`))
