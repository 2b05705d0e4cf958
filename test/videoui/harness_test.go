//go:build e2e

package videoui

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/test/chrome"
	"github.com/segue-rtc/segue/test/peers"
	"golang.org/x/crypto/bcrypt"
)

var segueBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if bin := os.Getenv("SEGUE_E2E_BIN"); bin != "" {
		segueBin = bin
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "segue-videoui-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	segueBin = filepath.Join(dir, "segue")
	build := exec.Command("go", "build", "-o", segueBin, "./cmd/segue")
	build.Dir = filepath.Join("..", "..") // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build segue: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

const agentPassword = "alice-video-pw"

// gateway is one segue process with WebRTC on loopback and no SIP trunk.
type gateway struct {
	t    testing.TB
	dir  string
	URL  string
	mu   sync.Mutex
	log  bytes.Buffer
	cmd  *exec.Cmd
	done chan struct{}
}

type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// gatewayOptions changes the test config.
type gatewayOptions struct {
	// phone is Alice's desk phone (a SIP URI on loopback); the trunk then
	// points at it. Empty: a trunk that is never dialled.
	phone string
}

// startGateway runs segue serve with WebRTC on loopback candidates.
func startGateway(t testing.TB, o gatewayOptions) *gateway {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(agentPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	trunkURI := fmt.Sprintf("sip:127.0.0.1:%d", peers.FreeUDPPort(t, "127.0.0.1")) // never dialled
	phone := ""
	if o.phone != "" {
		trunkURI = "sip:" + o.phone[strings.LastIndexByte(o.phone, '@')+1:]
		phone = fmt.Sprintf("    phone: %q\n", o.phone)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", peers.FreeTCPPort(t, "127.0.0.1"))
	g := &gateway{t: t, dir: dir, URL: "http://" + addr}
	udp := 30000 + rand.IntN(90)*100 // a range of its own, away from other tests
	cfg := fmt.Sprintf(`http:
  listen: %q
  public_url: %q
  allowed_origins: [%q]
store:
  driver: sqlite
  dsn: %q
  files_dir: %q
  max_upload_bytes: 8388608
webrtc:
  loopback_candidates: true
  udp_port_range: [%d, %d]
sip:
  listen: ["udp:127.0.0.1:%d"]
# segue serve starts WebRTC only when a trunk is configured, even for
# video straight from the chat.
trunks:
  - name: pbx
    uri: %q
    transport: udp
    register: false
    codecs: [PCMU, PCMA]
queues:
  - name: support
    trunk: pbx
agents:
  - id: alice
    name: "Alice"
    password_hash: %q
    queues: [support]
    max_chats: 50
%slimits:
  new_chats_per_ip_per_minute: 1000
log:
  level: debug
`, addr, g.URL, g.URL, filepath.Join(dir, "segue.db"), filepath.Join(dir, "files"), udp, udp+99,
		peers.FreeUDPPort(t, "127.0.0.1"), trunkURI, string(hash), phone)
	path := filepath.Join(dir, "segue.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(segueBin, "serve", "--config", path)
	cmd.Dir = dir
	w := lockedWriter{&g.mu, &g.log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start segue: %v", err)
	}
	g.cmd, g.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-g.done
		}
		if t.Failed() {
			t.Logf("segue log:\n%s", g.logText())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			t.Fatalf("segue exited before it was ready:\n%s", g.logText())
		default:
		}
		if res, err := http.Get(g.URL + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return g
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("segue was not ready within 30 s")
	return nil
}

func (g *gateway) logText() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.log.String()
}

// browser is one headless Chromium process with one tab.
type browser struct {
	t    *testing.T
	name string
	ctx  context.Context
	log  chrome.Log
}

// startBrowser starts a Chromium of its own, with the fake camera and
// microphone and the loopback ICE flags; extra flags are added.
func startBrowser(t *testing.T, name string, extra map[string]any) *browser {
	t.Helper()
	opts := chrome.Options(t, t.TempDir(), chromedp.WindowSize(1280, 900))
	for k, v := range extra {
		opts = append(opts, chromedp.Flag(k, v))
	}
	b := &browser{t: t, name: name}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.log.Listen))
	t.Cleanup(func() {
		cancel()
		acancel()
		b.log.Check(t, name)
	})
	// The first Run starts the browser; it must not have a timeout.
	if err := chrome.Open(ctx); err != nil {
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	b.ctx = ctx
	return b
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("%s: navigate: %v", b.name, err)
	}
}

// The page-side helpers: root() is the widget's open shadow root on the
// demo page, and the document itself in the console.
const jsHelpers = `
const root = () => document.querySelector('segue-widget')?.shadowRoot ?? document;
const q = (id) => root().querySelector('[data-testid="' + id + '"]');
const msgs = () => [...(q('chat-log')?.querySelectorAll('[data-testid="message"]') ?? [])].map((m) => ({
  id: m.dataset.id, seq: Number(m.dataset.seq || 0), role: m.dataset.role, kind: m.dataset.kind,
  text: (m.querySelector('[data-testid="message-text"]') ?? m.querySelector('.event-text') ?? m.querySelector('.file-name'))?.textContent ?? '',
  file: m.querySelector('[data-file-id]')?.dataset.fileId ?? '',
  thumb: m.querySelector('img[data-testid="file-thumb"]')?.naturalWidth ?? 0,
}));
`

func jsFn(params, body string) string {
	return fmt.Sprintf("async (%s) => { %s\n%s }", params, jsHelpers, body)
}

// eval runs a JS function (its body with the helpers in scope) and decodes
// the result; promises are awaited.
func eval[T any](b *browser, params, body string, args ...any) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](chrome.Call(jsFn(params, body), args...), chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: evaluate %q: %v", b.name, chrome.FirstLine(body), err)
	}
	return v
}

// wait polls a JS function body until it returns a truthy value.
func wait[T any](b *browser, what string, timeout time.Duration, params, body string, args ...any) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](chrome.Call(jsFn(params, body), args...),
		chromedp.WithPollingInterval(100*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		b.t.Fatalf("%s: waiting for %s: %v", b.name, what, err)
	}
	return v
}

func (b *browser) click(testID string) {
	b.t.Helper()
	wait[bool](b, "click "+testID, 15*time.Second, "id", `const el = q(id); if (!el || el.disabled || el.hidden) return false; el.click(); return true;`, testID)
}

func (b *browser) fill(testID, text string) {
	b.t.Helper()
	wait[bool](b, "fill "+testID, 15*time.Second, "id, text", `const el = q(id); if (!el) return false;
el.focus(); el.value = text; el.dispatchEvent(new Event('input', {bubbles: true})); return true;`, testID, text)
}

func (b *browser) send(text string) {
	b.t.Helper()
	b.fill("chat-input", text)
	b.click("chat-send")
}

type shownMessage struct {
	ID    string `json:"id"`
	Seq   int64  `json:"seq"`
	Role  string `json:"role"`
	Kind  string `json:"kind"`
	Text  string `json:"text"`
	File  string `json:"file"`
	Thumb int    `json:"thumb"`
}

// waitMessage waits for a stored message whose text contains text.
func (b *browser) waitMessage(text string) shownMessage {
	b.t.Helper()
	return wait[shownMessage](b, fmt.Sprintf("message %q", text), 20*time.Second, "text",
		`return msgs().find((m) => m.seq > 0 && m.text.includes(text)) ?? false;`, text)
}

func (b *browser) cspViolations() []string {
	b.t.Helper()
	return eval[[]string](b, "", `return window.__csp || [];`)
}

// videoState is what a <video> element shows.
type videoState struct {
	Width   int     `json:"w"`
	Height  int     `json:"h"`
	Time    float64 `json:"t"`
	Hidden  bool    `json:"hidden"`
	Present bool    `json:"present"`
}

func (b *browser) video(testID string) videoState {
	b.t.Helper()
	return eval[videoState](b, "id", `const v = q(id);
if (!v) return {present: false};
return {present: true, w: v.videoWidth, h: v.videoHeight, t: v.currentTime, hidden: v.hidden || !!v.closest('[hidden]')};`, testID)
}

// waitPlaying waits until a <video> shows frames of w x h (any size if
// 0), then checks that its clock moves on; it returns what it saw.
func (b *browser) waitPlaying(testID string, w, h int) videoState {
	b.t.Helper()
	wait[bool](b, fmt.Sprintf("%s showing %dx%d frames", testID, w, h), 25*time.Second, "id, w, h", `const v = q(id);
if (!v || v.hidden || v.closest('[hidden]') || !v.videoWidth) return false;
return !w || (v.videoWidth === w && v.videoHeight === h);`, testID, w, h)
	a := b.video(testID)
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		v := b.video(testID)
		if v.Time > a.Time+0.3 {
			return v
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: %s is stuck at %.2f s (%dx%d)", b.name, testID, v.Time, v.Width, v.Height)
		}
	}
}
