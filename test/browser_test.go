//go:build e2e

package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/segue-rtc/segue/test/chrome"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// lazyBrowser is one Chromium process started by the first test that
// needs it and reused by the others; each tab gets its own browser
// context, so cookies and localStorage never leak between tabs. setup,
// when set, prepares files in the profile's folder and returns extra
// flags (a fake microphone file, say).
type lazyBrowser struct {
	prefix string
	setup  func(t *testing.T, dir string) []chromedp.ExecAllocatorOption

	mu   sync.Mutex
	ctx  context.Context
	stop func()
}

// get returns the browser, starting it on first use.
func (b *lazyBrowser) get(t *testing.T) context.Context {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctx != nil {
		return b.ctx
	}
	dir, err := os.MkdirTemp("", b.prefix)
	if err != nil {
		t.Fatal(err)
	}
	var extra []chromedp.ExecAllocatorOption
	if b.setup != nil {
		extra = b.setup(t, dir)
	}
	b.ctx, b.stop = launchChromium(t, dir, extra...)
	return b.ctx
}

// close ends the browser, if one was started.
func (b *lazyBrowser) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stop != nil {
		b.stop()
		b.ctx, b.stop = nil, nil
	}
}

// chatBrowser serves the chat tests.
var chatBrowser = &lazyBrowser{prefix: "segue-chromium-"}

func sharedBrowser(t *testing.T) context.Context {
	t.Helper()
	return chatBrowser.get(t)
}

// launchChromium starts Debian's Chromium headless with the flags the
// tests need (TESTING.md: fake media devices, loopback ICE, no background
// networking), its profile under dir, which it removes when stopped; extra
// adds flags such as a fake microphone file. The first Run has no timeout:
// cancelling it would kill the browser.
func launchChromium(t *testing.T, dir string, extra ...chromedp.ExecAllocatorOption) (context.Context, func()) {
	t.Helper()
	opts := chrome.Options(t, filepath.Join(dir, "profile"), extra...)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		bcancel()
		acancel()
		os.RemoveAll(dir)
		t.Fatalf("start chromium: %v", err)
	}
	return bctx, func() {
		bcancel()
		acancel()
		os.RemoveAll(dir)
	}
}

// stopBrowser ends the shared browser, if one was started.
func stopBrowser() { chatBrowser.close() }

// fakeMic writes a 10 s tone of hz into dir and returns the flag that makes
// it Chromium's fake microphone (a process-wide switch). 10 s of whole
// cycles, so that Chromium's looping of the file is seamless.
func fakeMic(t *testing.T, dir string, hz, ampl float64) chromedp.ExecAllocatorOption {
	t.Helper()
	wav := filepath.Join(dir, fmt.Sprintf("mic%.0f.wav", hz))
	if err := audiotest.WriteWAVFile(wav, audiotest.Tone(48000, hz, ampl, 10*time.Second), 48000); err != nil {
		t.Fatal(err)
	}
	return chromedp.Flag("use-file-for-fake-audio-capture", wav)
}

// ownTab starts a Chromium process for this test alone, stopped when the
// test ends, and opens a tab in it. The video tests give the customer and
// the agent one each, as two people on two machines; extra adds flags (a
// fake microphone, say).
func ownTab(t *testing.T, name string, extra ...chromedp.ExecAllocatorOption) *tab {
	t.Helper()
	dir, err := os.MkdirTemp("", "segue-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]chromedp.ExecAllocatorOption{chromedp.WindowSize(1280, 900)}, extra...)
	ctx, stop := launchChromium(t, dir, opts...)
	t.Cleanup(stop)
	return openTab(t, ctx, name)
}

// tab is one page in its own browser context (its own cookies and storage).
type tab struct {
	t    *testing.T
	ctx  context.Context
	name string

	log chrome.Log // console messages and exceptions, printed if the test fails
}

func newTab(t *testing.T, name string) *tab {
	t.Helper()
	return openTab(t, sharedBrowser(t), name)
}

// openTab opens a tab of browser in its own browser context. Console
// errors are kept and printed if the test fails; an uncaught exception
// fails it.
func openTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	tb := &tab{t: t, name: name}
	ctx, cancel := chromedp.NewContext(browser,
		chromedp.WithNewBrowserContext(),
		chromedp.WithListener(tb.log.Listen))
	t.Cleanup(func() {
		cancel()
		tb.log.Check(t, name)
	})
	tb.ctx = ctx
	if err := chrome.Open(ctx); err != nil {
		t.Fatalf("%s: open tab: %v", name, err)
	}
	return tb
}

// do runs browser steps with a generous deadline.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", tb.name, err)
	}
}

// call evaluates a JS function with JSON arguments and decodes its result;
// promises are awaited.
func call[T any](tb *tab, fn string, args ...any) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](chrome.Call(fn, args...), chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v", tb.name, chrome.FirstLine(fn), err)
	}
	return v
}

// waitJS polls a JS function (called with JSON arguments) until it returns
// a truthy value, and returns that value.
func waitJS[T any](tb *tab, what string, fn string, args ...any) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](chrome.Call(fn, args...),
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		tb.t.Fatalf("%s: waiting for %s: %v", tb.name, what, err)
	}
	return v
}

// cspViolations returns what the page's CSP blocked since it loaded.
func (tb *tab) cspViolations() []string {
	tb.t.Helper()
	return call[[]string](tb, `() => window.__csp || []`)
}

// allowDownloads saves this tab's downloads into dir under their names.
func (tb *tab) allowDownloads(dir string) {
	tb.t.Helper()
	id := chromedp.FromContext(tb.ctx).BrowserContextID
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior:         browser.SetDownloadBehaviorBehaviorAllow,
		BrowserContextID: id,
		DownloadPath:     dir,
	}); err != nil {
		tb.t.Fatalf("%s: allow downloads: %v", tb.name, err)
	}
}

// shownMessage is a message element of a chat-log, as the tests see it.
type shownMessage struct {
	ID   string `json:"id"`
	Seq  int64  `json:"seq"`
	Role string `json:"role"`
	Kind string `json:"kind"`
	Text string `json:"text"`
	File string `json:"file"`
	// Thumb is the natural width of an image file's thumbnail, once loaded.
	Thumb int `json:"thumb"`
}

// The page-side helpers. root() is the widget's open shadow root on the demo
// page, and the document itself in the console.
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

// fn wraps a JS function body with the page-side helpers in scope.
func fn(params, body string) string {
	return fmt.Sprintf("(%s) => { %s\n%s }", params, jsHelpers, body)
}

func asyncFn(params, body string) string {
	return fmt.Sprintf("async (%s) => { %s\n%s }", params, jsHelpers, body)
}

// click clicks the element with a test id once it exists, is enabled and
// is not hidden.
func (tb *tab) click(testID string) {
	tb.t.Helper()
	waitJS[bool](tb, testID, fn("id", `const el = q(id); if (!el || el.disabled || el.hidden) return false; el.click(); return true;`), testID)
}

// fill types text into an input (sets the value and fires input events).
func (tb *tab) fill(testID, text string) {
	tb.t.Helper()
	waitJS[bool](tb, testID, fn("id, text", `const el = q(id); if (!el) return false;
el.focus(); el.value = text; el.dispatchEvent(new Event('input', {bubbles: true})); return true;`), testID, text)
}

// send writes a chat message and presses the send button.
func (tb *tab) send(text string) {
	tb.t.Helper()
	tb.fill("chat-input", text)
	tb.click("chat-send")
}

// messages returns what the chat-log shows.
func (tb *tab) messages() []shownMessage {
	tb.t.Helper()
	return call[[]shownMessage](tb, fn("", `return msgs();`))
}

// waitMessage waits until a stored message (one with a seq) with this text
// is shown, and returns it.
func (tb *tab) waitMessage(text string) shownMessage {
	tb.t.Helper()
	return waitJS[shownMessage](tb, fmt.Sprintf("message %q", text),
		fn("text", `return msgs().find((m) => m.seq > 0 && m.text === text) ?? false;`), text)
}

// waitMessageContaining waits until a stored message whose text contains
// text is shown (an event such as "Alice: Video started"), and returns it.
func (tb *tab) waitMessageContaining(text string) shownMessage {
	tb.t.Helper()
	return waitJS[shownMessage](tb, fmt.Sprintf("a message with %q", text),
		fn("text", `return msgs().find((m) => m.seq > 0 && m.text.includes(text)) ?? false;`), text)
}

// waitText waits until the element with a test id contains text.
func (tb *tab) waitText(testID, text string) {
	tb.t.Helper()
	waitJS[bool](tb, fmt.Sprintf("%s to contain %q", testID, text),
		fn("id, text", `return (q(id)?.textContent ?? '').includes(text);`), testID, text)
}

// setFiles puts local files into the file-input (shadow root or page).
func (tb *tab) setFiles(paths ...string) {
	tb.t.Helper()
	sel := chromedp.JSPath(`(document.querySelector('segue-widget')?.shadowRoot ?? document).querySelector('[data-testid="file-input"]')`)
	tb.do(chromedp.SetUploadFiles(sel, paths))
}

// openWidget loads the demo page in a tab of the shared browser and opens
// the chat panel.
func openWidget(t *testing.T, g *gateway, name string) *tab {
	t.Helper()
	tb := newTab(t, name)
	tb.loadWidget(g)
	return tb
}

// loadWidget loads the demo page and opens the chat panel.
func (tb *tab) loadWidget(g *gateway) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(g.URL + "/"))
	tb.click("widget-open")
	waitJS[bool](tb, "the chat panel", fn("", `const p = q('chat-panel'); return !!p && !p.hidden;`))
}

// openConsole loads the console in a tab of the shared browser and logs in
// as agent.
func openConsole(t *testing.T, g *gateway, agent, path string) *tab {
	t.Helper()
	tb := newTab(t, "console "+agent)
	tb.logIn(g, agent, path)
	return tb
}

// logIn loads the console at path, logs in as agent and waits until the
// console is connected.
func (tb *tab) logIn(g *gateway, agent, path string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(g.URL + path))
	tb.fill("login-id", agent)
	tb.fill("login-password", agentPasswords[agent])
	tb.click("login-submit")
	tb.waitConnected()
}

// jsConnected is true while the page's socket has its welcome: the
// console's connection-status, or the widget's status line.
const jsConnected = `(q('connection-status') ?? q('call-status'))?.dataset.state === 'connected'`

// waitConnected waits until the page's socket has its welcome.
func (tb *tab) waitConnected() {
	tb.t.Helper()
	waitJS[bool](tb, "the connected socket", fn("", `return `+jsConnected+`;`))
}

// acceptConversation clicks accept on a waiting conversation.
func (tb *tab) acceptConversation(convID string) {
	tb.t.Helper()
	waitJS[bool](tb, "accept "+convID, fn("id", `const b = root().querySelector('[data-testid="accept"][data-conversation="' + id + '"]');
if (!b || b.disabled) return false; b.click(); return true;`), convID)
	waitJS[bool](tb, "conversation "+convID+" selected",
		fn("id", `return q('chat-log')?.dataset.conversation === id;`), convID)
}

// widgetSession is the conversation the widget stored, with its token.
type widgetSession struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// widgetSession waits until the widget has stored its conversation.
func (tb *tab) widgetSession() widgetSession {
	tb.t.Helper()
	return waitJS[widgetSession](tb, "the widget's conversation", `() => {
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (k.startsWith('segue:') && k.endsWith(':conversation')) return JSON.parse(localStorage.getItem(k));
  }
  return false;
}`)
}

// widgetConversation returns the conversation id the widget stored.
func (tb *tab) widgetConversation() string {
	tb.t.Helper()
	return tb.widgetSession().ID
}
