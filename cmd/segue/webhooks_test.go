package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/segue-rtc/segue/configs"
)

// adminConfig writes the example configuration with http.admin_listen
// set to addr and returns its path.
func adminConfig(t *testing.T, addr string) string {
	t.Helper()
	doc := string(configs.Example)
	const line = `  admin_listen: "127.0.0.1:9090"`
	if !strings.Contains(doc, line) {
		t.Fatal("the example configuration has no admin_listen line to change")
	}
	doc = strings.Replace(doc, line, `  admin_listen: "`+addr+`"`, 1)
	path := filepath.Join(t.TempDir(), "segue.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The webhooks commands ask the admin listener the configuration names,
// print what it answers, and refuse bad flags and failures with a
// message that says what went wrong.
func TestWebhooksCommands(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.Method+" "+r.URL.RequestURI())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path + " " + r.URL.Query().Get("webhook") + " " + r.URL.Query().Get("seq") {
		case "/admin/webhooks/dead crm ", "/admin/webhooks/dead  ":
			io.WriteString(w, `{"events":[{"seq":7,"webhook":"crm","conversation":"c_1","type":"message.created",
				"created_at":"2026-03-01T10:04:11.5Z","attempts":12,"last_error":"gateway: webhook receiver refused the event: status 503\n\u001b[2Jx"},
				{"seq":9,"webhook":"crm","conversation":"c_2","type":"conversation.ended","created_at":"2026-03-01T10:05:00Z","attempts":12,"last_error":"timeout"}]}`)
		case "/admin/webhooks/dead bi ":
			io.WriteString(w, `{"events":[]}`)
		case "/admin/webhooks/replay crm ":
			io.WriteString(w, `{"replayed":2}`)
		case "/admin/webhooks/replay crm 9":
			io.WriteString(w, `{"replayed":1}`)
		case "/admin/webhooks/replay crm 8":
			io.WriteString(w, `{"replayed":0}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":{"code":"bad_request","message":"seq: not an event seq"}}`)
		}
	}))
	defer admin.Close()
	cfg := adminConfig(t, strings.TrimPrefix(admin.URL, "http://"))
	down := httptest.NewServer(http.NotFoundHandler())
	downCfg := adminConfig(t, strings.TrimPrefix(down.URL, "http://"))
	down.Close()
	offCfg := adminConfig(t, "off")

	tests := []struct {
		name string
		args []string
		ok   bool
		want []string // in the output, or the error
		ask  string   // the admin request, "" for none
	}{
		{"dead of every webhook", []string{"webhooks", "dead", "-c", cfg}, true, []string{
			"SEQ  WEBHOOK  CONVERSATION  TYPE                CREATED               ATTEMPTS  LAST ERROR",
			"7    crm      c_1           message.created     2026-03-01T10:04:11Z  12        gateway: webhook receiver refused the event: status 503 [2Jx",
			"9    crm      c_2           conversation.ended  2026-03-01T10:05:00Z  12        timeout"}, "GET /admin/webhooks/dead?"},
		{"dead of a webhook", []string{"webhooks", "dead", "--webhook", "crm", "-c", cfg}, true, []string{"7    crm"}, "GET /admin/webhooks/dead?webhook=crm"},
		{"dead, none", []string{"webhooks", "dead", "--webhook", "bi", "-c", cfg}, true, []string{"no dead events for webhook bi"}, "GET /admin/webhooks/dead?webhook=bi"},
		{"dead as json", []string{"webhooks", "dead", "--json", "-c", cfg}, true, []string{`[{"seq":7,"webhook":"crm","conversation":"c_1"`}, "GET /admin/webhooks/dead?"},
		{"replay a webhook", []string{"webhooks", "replay", "--webhook", "crm", "-c", cfg}, true, []string{"replayed 2 dead events for webhook crm"}, "POST /admin/webhooks/replay?webhook=crm"},
		{"replay one", []string{"webhooks", "replay", "--webhook", "crm", "--seq", "9", "-c", cfg}, true, []string{"replayed 1 dead event for webhook crm"}, "POST /admin/webhooks/replay?seq=9&webhook=crm"},
		{"replay one that is not dead", []string{"webhooks", "replay", "--webhook", "crm", "--seq", "8", "-c", cfg}, false, []string{"no dead event 8 for webhook crm"}, "POST /admin/webhooks/replay?seq=8&webhook=crm"},
		{"replay without a webhook", []string{"webhooks", "replay", "-c", cfg}, false, []string{`"webhook" not set`}, ""},
		{"replay an empty webhook", []string{"webhooks", "replay", "--webhook", " ", "-c", cfg}, false, []string{"--webhook: want the name of a webhook"}, ""},
		{"replay seq 0", []string{"webhooks", "replay", "--webhook", "crm", "--seq", "0", "-c", cfg}, false, []string{"--seq 0: want the positive seq"}, ""},
		{"replay seq not a number", []string{"webhooks", "replay", "--webhook", "crm", "--seq", "x", "-c", cfg}, false, []string{`invalid argument "x" for "--seq"`}, ""},
		{"refused by the gateway", []string{"webhooks", "replay", "--webhook", "other", "-c", cfg}, false, []string{"the gateway refused: 400 seq: not an event seq"}, "POST /admin/webhooks/replay?webhook=other"},
		{"gateway down", []string{"webhooks", "dead", "-c", downCfg}, false, []string{"webhooks dead: is the gateway running?"}, ""},
		{"admin listener off", []string{"webhooks", "replay", "--webhook", "crm", "-c", offCfg}, false, []string{"webhooks replay: http.admin_listen is off"}, ""},
		{"no configuration", []string{"webhooks", "dead", "-c", filepath.Join(t.TempDir(), "none.yaml")}, false, []string{"invalid configuration, not read"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			asked = nil
			mu.Unlock()
			root := newRoot()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tt.args)
			err := root.Execute()
			text := out.String()
			var ee exitError
			if err != nil && !errors.As(err, &ee) {
				text += err.Error()
			}
			if (err == nil) != tt.ok {
				t.Fatalf("err %v, want ok %v; output:\n%s", err, tt.ok, text)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			if strings.ContainsRune(text, '\x1b') {
				t.Errorf("output holds an escape character:\n%q", text)
			}
			var want []string
			if tt.ask != "" {
				want = []string{tt.ask}
			}
			mu.Lock()
			defer mu.Unlock()
			if strings.Join(asked, ",") != strings.Join(want, ",") {
				t.Errorf("asked %v, want %v", asked, want)
			}
		})
	}
}
