//go:build e2e

package test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// checkLog fails the test if a chat-log shows an id twice, or shows stored
// messages out of seq order.
func checkLog(t *testing.T, who string, msgs []shownMessage) {
	t.Helper()
	seen := map[string]bool{}
	var last int64
	for _, m := range msgs {
		if seen[m.ID] {
			t.Errorf("%s shows message %s twice: %+v", who, m.ID, msgs)
		}
		seen[m.ID] = true
		if m.Seq == 0 {
			continue
		}
		if m.Seq <= last {
			t.Errorf("%s shows seq %d after seq %d: %+v", who, m.Seq, last, msgs)
		}
		last = m.Seq
	}
}

// countText counts the messages showing exactly text.
func countText(msgs []shownMessage, text string) int {
	n := 0
	for _, m := range msgs {
		if m.Text == text {
			n++
		}
	}
	return n
}

func noCSPViolations(t *testing.T, tabs ...*tab) {
	t.Helper()
	for _, tb := range tabs {
		if v := tb.cspViolations(); len(v) > 0 {
			t.Errorf("%s: CSP violations: %v", tb.name, v)
		}
	}
}

// startChat has a customer send a first message and an agent accept it,
// in tabs of the shared browser.
func startChat(t *testing.T, g *gateway, first string) (customer, agent *tab, convID string) {
	t.Helper()
	customer, agent = newTab(t, "customer"), newTab(t, "console alice")
	return customer, agent, chatBetween(t, g, customer, agent, first).ID
}

// chatBetween opens the widget in the customer's tab, where Ann sends a
// first message, and has Alice accept it in the agent's tab; the widget
// then shows that Alice is helping. It returns the conversation the
// widget stored.
func chatBetween(t *testing.T, g *gateway, customer, agent *tab, first string) widgetSession {
	t.Helper()
	customer.loadWidget(g)
	customer.fill("customer-name", "Ann Lee")
	customer.send(first)
	customer.waitMessage(first)
	customer.waitText("agent-name", "Waiting for an agent")
	s := customer.widgetSession()

	agent.logIn(g, "alice", "/console")
	agent.acceptConversation(s.ID)
	agent.waitMessage(first)
	customer.waitText("agent-name", "helping")
	return s
}

// countContaining counts the stored messages (those with a seq) whose
// text contains text.
func countContaining(msgs []shownMessage, text string) int {
	n := 0
	for _, m := range msgs {
		if m.Seq > 0 && strings.Contains(m.Text, text) {
			n++
		}
	}
	return n
}

func TestChatWithAgent(t *testing.T) {
	g := startGateway(t)
	customer, agent, convID := startChat(t, g, "Hello, my meter shows 0 kWh")
	customer.waitText("call-status", "Connected")

	// The queue showed the conversation before accept; now the customer
	// sees who took it.
	customer.waitText("agent-name", "helping")
	waitJS[bool](customer, "the agent's name", fn("", `return root().querySelector('.title')?.textContent === 'Alice';`))
	agent.waitText("customer-name", "Ann Lee")

	// Typing goes to the customer.
	agent.fill("chat-input", "Let me")
	customer.waitText("typing", "Alice is typing")

	agent.send("Hi Ann, I am looking at it now.")
	customer.waitMessage("Hi Ann, I am looking at it now.")
	// The customer has the panel open, so the agent's reply shows as read.
	waitJS[bool](agent, "the agent's read receipt", fn("", `const m = [...q('chat-log').querySelectorAll('[data-testid="message"][data-role="agent"]')];
return m.length > 0 && m.every((e) => e.dataset.read === 'true');`))

	// The agent has the conversation open, so the customer's message is read.
	waitJS[bool](customer, "the read receipt", fn("", `const m = [...q('chat-log').querySelectorAll('[data-testid="message"][data-role="customer"]')];
return m.length > 0 && m.every((e) => e.dataset.read === 'true' && e.querySelector('[data-testid="message-status"]').textContent === 'Read');`))

	customer.send("Thanks!")
	agent.waitMessage("Thanks!")

	before := customer.messages()
	checkLog(t, "customer", before)
	checkLog(t, "agent", agent.messages())

	// With the panel closed, new replies show as a count on the launcher.
	customer.click("widget-close")
	agent.send("Found it: the meter was replaced.")
	got := waitJS[string](customer, "the unread badge", fn("", `const b = q('unread'); return b && !b.hidden ? b.textContent : false;`))
	if got != "1" {
		t.Errorf("unread badge shows %q, want 1", got)
	}
	customer.click("widget-open")
	waitJS[bool](customer, "the badge cleared", fn("", `return q('unread').hidden;`))
	customer.waitMessage("Found it: the meter was replaced.")

	// A reload shows the same conversation, its whole history and the agent.
	customer.do(chromedp.Reload())
	customer.click("widget-open")
	customer.waitMessage("Thanks!")
	waitJS[bool](customer, "the agent's name after reload", fn("", `return root().querySelector('.title')?.textContent === 'Alice';`))
	if got := customer.widgetConversation(); got != convID {
		t.Errorf("after reload the widget has conversation %s, want %s", got, convID)
	}
	after := customer.messages()
	checkLog(t, "customer after reload", after)
	for _, m := range before {
		if m.Seq > 0 && !slices.ContainsFunc(after, func(a shownMessage) bool { return a.ID == m.ID && a.Seq == m.Seq }) {
			t.Errorf("message %+v missing after reload: %+v", m, after)
		}
	}

	// A deep link opens the conversation in another console.
	second := openConsole(t, g, "alice", "/console/c/"+convID)
	waitJS[bool](second, "the deep-linked conversation", fn("id", `return q('chat-log')?.dataset.conversation === id;`), convID)
	second.waitMessage("Thanks!")

	noCSPViolations(t, customer, agent, second)
}

// testPNG makes a small PNG with random pixels, so that each test file is unique.
func testPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 48, 32))
	for i := range img.Pix {
		img.Pix[i] = byte(rand.IntN(256))
	}
	img.Set(0, 0, color.RGBA{255, 0, 0, 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fetchSHA downloads a file in the page with the page's own credentials
// (the customer's bearer token, or the agent's cookie) and returns the
// SHA-256 of the bytes.
func fetchSHA(tb *tab, fileID string) string {
	tb.t.Helper()
	return call[string](tb, `async (id) => {
  const headers = {};
  for (let i = 0; i < localStorage.length; i++) {
    const k = localStorage.key(i);
    if (k.startsWith('segue:') && k.endsWith(':conversation')) headers.Authorization = 'Bearer ' + JSON.parse(localStorage.getItem(k)).token;
  }
  const res = await fetch('/api/v1/files/' + encodeURIComponent(id), { headers });
  if (!res.ok) throw new Error('status ' + res.status);
  const digest = await crypto.subtle.digest('SHA-256', await res.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}`, fileID)
}

func TestFilesBothWays(t *testing.T) {
	g := startGateway(t)
	customer, agent, convID := startChat(t, g, "I have a photo of the meter")
	dir := t.TempDir()

	// A file type outside the allow-list is refused, and the widget says so.
	exe := append([]byte("MZ\x90\x00\x03"), bytes.Repeat([]byte{0, 0xff, 0x13}, 200)...)
	exePath := filepath.Join(dir, "setup.exe")
	if err := os.WriteFile(exePath, exe, 0o600); err != nil {
		t.Fatal(err)
	}
	customer.setFiles(exePath)
	customer.waitText("notice", "Could not send setup.exe")
	waitJS[bool](customer, "the failed upload", fn("", `return msgs().some((m) => m.text === 'setup.exe' && m.seq === 0);`))
	if n := countText(agent.messages(), "setup.exe"); n != 0 {
		t.Errorf("the agent sees the refused file")
	}

	// Customer to agent: an image, shown as a thumbnail on both sides.
	pic := testPNG(t)
	picPath := filepath.Join(dir, "meter.png")
	if err := os.WriteFile(picPath, pic, 0o600); err != nil {
		t.Fatal(err)
	}
	customer.setFiles(picPath)
	got := agent.waitMessage("meter.png")
	if got.Kind != "file" || got.File == "" {
		t.Fatalf("agent sees %+v, want a file message", got)
	}
	if h := fetchSHA(agent, got.File); h != sha(pic) {
		t.Errorf("agent downloaded sha256 %s, want %s", h, sha(pic))
	}
	for _, tb := range []*tab{agent, customer} {
		waitJS[bool](tb, "the thumbnail", fn("id", `const img = q('chat-log').querySelector('[data-file-id="' + id + '"] img');
return !!img && img.src.startsWith('blob:') && img.complete && img.naturalWidth === 48;`), got.File)
	}

	// Agent to customer: a text document, downloaded through the widget's button.
	doc := []byte(fmt.Sprintf("Tariff sheet for %s\nrate: 0.24 EUR/kWh\n", convID))
	docPath := filepath.Join(dir, "tariff.txt")
	if err := os.WriteFile(docPath, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	agent.setFiles(docPath)
	shown := customer.waitMessage("tariff.txt")
	if h := fetchSHA(customer, shown.File); h != sha(doc) {
		t.Errorf("customer downloaded sha256 %s, want %s", h, sha(doc))
	}
	downloads := t.TempDir()
	customer.allowDownloads(downloads)
	waitJS[bool](customer, "the download button", fn("id", `const b = q('chat-log').querySelector('[data-testid="file-download"][data-file-id="' + id + '"]');
if (!b) return false; b.click(); return true;`), shown.File)
	waitFor(t, "the downloaded file", func() error {
		b, err := os.ReadFile(filepath.Join(downloads, "tariff.txt"))
		if err != nil {
			return err
		}
		if sha(b) != sha(doc) {
			return fmt.Errorf("downloaded %d bytes that differ from the %d sent", len(b), len(doc))
		}
		return nil
	})

	// The token travels in headers only, never in a URL the page loaded.
	leaks := call[[]string](customer, `() => {
  const key = Object.keys(localStorage).find((k) => k.endsWith(':conversation'));
  const token = JSON.parse(localStorage.getItem(key)).token;
  const secret = token.slice(token.indexOf('.') + 1);
  return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)].filter((u) => u.includes(secret));
}`)
	if len(leaks) > 0 {
		t.Errorf("the customer token appears in URLs: %v", leaks)
	}

	// Both files are in the transcript the API returns, once each.
	alice := g.login(t, "alice")
	var files int
	for _, m := range alice.messages(convID) {
		if m.Kind == "file" {
			files++
		}
	}
	if files != 2 {
		t.Errorf("transcript has %d file messages, want 2", files)
	}
	checkLog(t, "customer", customer.messages())
	checkLog(t, "agent", agent.messages())
	noCSPViolations(t, customer, agent)
}

func TestGatewayRestartLosesNothing(t *testing.T) {
	g := startGateway(t)
	customer, agent, convID := startChat(t, g, "before the restart")
	agent.send("reply before the restart")
	customer.waitMessage("reply before the restart")

	g.Stop()
	// The gateway closed the sockets with 1001 and a reason the UI shows.
	// The widget shows its connection in call-status (no call is up); the
	// console has a connection-status of its own.
	for tb, id := range map[*tab]string{customer: "call-status", agent: "connection-status"} {
		waitJS[bool](tb, "the restart notice", fn("id", `const s = q(id);
return s.dataset.state === 'restarting' && s.dataset.reason === 'server restarting' && /restarting/i.test(s.textContent);`), id)
	}
	// Sent while the gateway is down: kept in the outbox, sent after reconnect.
	customer.send("sent while the server was down")
	agent.send("agent wrote while down")
	g.Start()

	customer.waitText("call-status", "Connected")
	agent.waitText("connection-status", "Connected")
	customer.send("after the restart")
	agent.send("reply after the restart")
	for _, text := range []string{"before the restart", "reply before the restart", "sent while the server was down", "agent wrote while down", "after the restart", "reply after the restart"} {
		customer.waitMessage(text)
		agent.waitMessage(text)
	}

	for who, tb := range map[string]*tab{"customer": customer, "agent": agent} {
		msgs := tb.messages()
		checkLog(t, who, msgs)
		for _, text := range []string{"before the restart", "sent while the server was down", "agent wrote while down", "after the restart"} {
			if n := countText(msgs, text); n != 1 {
				t.Errorf("%s shows %q %d times, want once: %+v", who, text, n, msgs)
			}
		}
	}
	stored := g.login(t, "alice").messages(convID)
	for _, text := range []string{"before the restart", "sent while the server was down", "agent wrote while down", "after the restart"} {
		n := 0
		for _, m := range stored {
			if m.Text == text {
				n++
			}
		}
		if n != 1 {
			t.Errorf("transcript holds %q %d times, want once", text, n)
		}
	}
	for _, tb := range []*tab{customer, agent} {
		if left := call[int](tb, `() => Object.keys(localStorage).filter((k) => k.endsWith(':outbox')).length`); left != 0 {
			t.Errorf("%s: the outbox still holds messages after all were acknowledged", tb.name)
		}
	}
}

func TestMessageHTMLIsText(t *testing.T) {
	g := startGateway(t)
	const evil = `<img src=x onerror=window.__pwned=1><script>window.__pwned=2</script><b>bold</b>`
	customer, agent, _ := startChat(t, g, evil)
	agent.send(evil + " back")
	customer.waitMessage(evil + " back")
	// A later round trip gives any injected handler time to run.
	customer.send("done")
	agent.waitMessage("done")
	for _, tb := range []*tab{customer, agent} {
		res := call[map[string]any](tb, fn("", `const log = q('chat-log');
return { pwned: window.__pwned ?? null, imgs: log.querySelectorAll('img,script,b').length };`))
		if res["pwned"] != nil {
			t.Errorf("%s: injected script ran: __pwned = %v", tb.name, res["pwned"])
		}
		if n, _ := res["imgs"].(float64); n != 0 {
			t.Errorf("%s: chat-log holds %v elements parsed from message text", tb.name, n)
		}
		if countText(tb.messages(), evil) != 1 {
			t.Errorf("%s does not show the message text verbatim: %+v", tb.name, tb.messages())
		}
	}
	noCSPViolations(t, customer, agent)
}

func TestWidgetOnPhone(t *testing.T) {
	g := startGateway(t)
	tb := newTab(t, "phone")
	tb.do(chromedp.EmulateViewport(375, 667, chromedp.EmulateMobile), chromedp.Navigate(g.URL+"/"))
	tb.click("widget-open")
	type rect struct{ X, Y, W, H, VW, VH float64 }
	waitJS[bool](tb, "the chat panel", fn("", `const p = q('chat-panel'); return !!p && !p.hidden;`))
	// Measure once the opening animation has finished.
	r := call[rect](tb, asyncFn("", `const p = q('chat-panel');
await Promise.all(p.getAnimations().map((a) => a.finished));
const b = p.getBoundingClientRect();
return { X: b.left, Y: b.top, W: b.width, H: b.height, VW: innerWidth, VH: innerHeight };`))
	if r.VW != 375 || r.VH != 667 {
		t.Fatalf("viewport is %vx%v, want 375x667", r.VW, r.VH)
	}
	if r.X < 0 || r.Y < 0 || r.X+r.W > r.VW+0.5 || r.Y+r.H > r.VH+0.5 {
		t.Errorf("panel %+v is not within the viewport", r)
	}
	if r.W < r.VW-1 || r.H < r.VH-1 {
		t.Errorf("panel %+v does not fill the phone screen", r)
	}
	// The input and the send button are on screen and usable.
	onScreen := func(ids ...string) {
		t.Helper()
		for _, id := range ids {
			ok := call[bool](tb, fn("id", `const b = q(id).getBoundingClientRect();
return b.width > 0 && b.height > 0 && b.left >= 0 && b.top >= 0 && b.right <= innerWidth + 0.5 && b.bottom <= innerHeight + 0.5;`), id)
			if !ok {
				t.Errorf("%s is not fully visible at 375x667", id)
			}
		}
	}
	onScreen("chat-input", "chat-send", "customer-name", "call-status")
	tb.send("typed on a phone")
	tb.waitMessage("typed on a phone")
	onScreen("chat-log", "chat-input", "chat-send", "message")
	noCSPViolations(t, tb)
}

// TestPagesServedWithCSP checks the security headers the browser relies on.
func TestPagesServedWithCSP(t *testing.T) {
	g := startGateway(t)
	for _, path := range []string{"/", "/console", "/console/c/c_unknown"} {
		res, err := http.Get(g.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", path, res.StatusCode)
		}
		csp := res.Header.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"} {
			if !bytes.Contains([]byte(csp), []byte(want)) {
				t.Errorf("GET %s: CSP %q lacks %q", path, csp, want)
			}
		}
	}
}

// TestWidgetOnAnotherSite embeds the widget with its one tag in a page of
// another origin whose CSS tries to restyle everything.
func TestWidgetOnAnotherSite(t *testing.T) {
	var gatewayURL string
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><head><title>Shop</title>
<style>button, input, textarea, div, p, section { display: none !important; } * { font-size: 40px; color: red; }</style>
</head><body><h1>A shop</h1>
<script src="%s/widget.js" type="module" data-queue="support" data-name="Dana"></script>
</body></html>`, gatewayURL)
	}))
	defer site.Close()
	g := startGateway(t, func(o *gatewayOptions) { o.extraOrigins = []string{site.URL} })
	gatewayURL = g.URL

	customer := newTab(t, "customer on the shop")
	customer.do(chromedp.Navigate(site.URL + "/"))
	customer.click("widget-open")
	visible := fn("id", `const el = q(id); if (!el) return false; const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0;`)
	for _, id := range []string{"chat-panel", "chat-input", "chat-send"} {
		waitJS[bool](customer, id+" to be visible", visible, id)
	}
	customer.send("Hello from the shop")
	customer.waitMessage("Hello from the shop")
	convID := customer.widgetConversation()

	agent := openConsole(t, g, "alice", "/console")
	agent.acceptConversation(convID)
	agent.waitMessage("Hello from the shop")
	agent.waitText("customer-name", "Dana")
	agent.send("Hello Dana")
	customer.waitMessage("Hello Dana")
	checkLog(t, "customer", customer.messages())
}

// signIdentity signs a customer identity the way a website's backend does
// (docs/api.md): base64url(JSON) "." base64url(HMAC-SHA256(secret, that)).
func signIdentity(secret string, claims map[string]any) string {
	b, err := json.Marshal(claims)
	if err != nil {
		panic(err)
	}
	payload := base64.RawURLEncoding.EncodeToString(b)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerifiedIdentity(t *testing.T) {
	const secret = "northwind-identity-secret-0123456789"
	g := startGateway(t, func(o *gatewayOptions) { o.identitySecret = secret })
	claims := map[string]any{"name": "Ann Lee", "email": "ann@example.com", "external_id": "cust-42", "exp": time.Now().Add(time.Hour).Unix()}

	customer := openWidget(t, g, "customer")
	// A token signed with another secret is refused, and the widget says so.
	call[bool](customer, `(tok) => { segueWidget.setIdentity(tok); return true; }`, signIdentity("not-the-right-secret-at-all", claims))
	customer.send("first try")
	customer.waitText("notice", "Could not start the chat")
	if id := call[string](customer, `() => Object.keys(localStorage).find((k) => k.endsWith(':conversation')) ?? ''`); id != "" {
		t.Errorf("a refused identity left a conversation in storage: %s", id)
	}

	call[bool](customer, `(tok) => { segueWidget.setIdentity(tok); return true; }`, signIdentity(secret, claims))
	// Retry sends the refused message again, now with a good identity.
	customer.click("retry")
	customer.waitMessage("first try")
	customer.send("second try")
	customer.waitMessage("second try")
	if n := countText(customer.messages(), "first try"); n != 1 {
		t.Errorf("the retried message shows %d times, want once", n)
	}
	convID := customer.widgetConversation()

	agent := openConsole(t, g, "alice", "/console")
	agent.acceptConversation(convID)
	agent.waitMessage("first try")
	agent.waitMessage("second try")
	agent.waitText("customer-name", "Ann Lee")
	agent.waitText("customer-email", "ann@example.com")
	agent.waitText("customer-external-id", "cust-42")
	waitJS[bool](agent, "the verified badge", fn("", `return !q('verified').hidden;`))
}

// TestWidgetDropsStaleConversation: a stored token the gateway no longer
// knows (a wiped database, say) must not leave the widget retrying forever.
func TestWidgetDropsStaleConversation(t *testing.T) {
	g := startGateway(t)
	customer := openWidget(t, g, "customer")
	call[bool](customer, `(origin) => {
  localStorage.setItem('segue:' + origin + ':conversation', JSON.stringify({ id: 'c_gone', token: 'c_gone.not-a-token' }));
  return true;
}`, g.Origin())
	customer.do(chromedp.Reload())
	customer.click("widget-open")
	customer.waitText("notice", "no longer available")
	customer.send("Starting over")
	customer.waitMessage("Starting over")
	if id := customer.widgetConversation(); id == "c_gone" {
		t.Errorf("the widget kept the stale conversation")
	}
}

// TestWidgetOffline takes the browser offline and back: the widget says so,
// keeps what is typed meanwhile, and delivers it once back online.
func TestWidgetOffline(t *testing.T) {
	g := startGateway(t)
	customer, agent, _ := startChat(t, g, "online at first")
	setOffline := func(offline bool) {
		t.Helper()
		customer.do(chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
			_, err := cdp.Call(ctx, tgt, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1})
			return err
		}))
	}
	setOffline(true)
	waitJS[bool](customer, "the offline state", fn("", `return q('call-status').dataset.state === 'offline';`))
	customer.send("typed while offline")
	setOffline(false)
	waitJS[bool](customer, "the connected state", fn("", `return q('call-status').dataset.state === 'connected';`))
	agent.waitMessage("typed while offline")
	customer.waitMessage("typed while offline")
	if n := countText(agent.messages(), "typed while offline"); n != 1 {
		t.Errorf("agent shows the offline message %d times, want once", n)
	}
}

// TestWidgetKeyboard drives the widget with real mouse and key events:
// a click on the launcher, typing, and Enter to send.
func TestWidgetKeyboard(t *testing.T) {
	g := startGateway(t)
	tb := newTab(t, "customer")
	in := func(id string) chromedp.JSPath {
		return chromedp.JSPath(`document.querySelector('segue-widget').shadowRoot.querySelector('[data-testid="` + id + `"]')`)
	}
	tb.do(chromedp.Navigate(g.URL+"/"),
		chromedp.Click(in("widget-open")),
		chromedp.SendKeys(in("customer-name"), "Kim"),
		chromedp.SendKeys(in("chat-input"), "Typed with a keyboard\r"))
	got := tb.waitMessage("Typed with a keyboard")
	if got.Role != "customer" {
		t.Errorf("message %+v, want one from the customer", got)
	}
	if v := call[string](tb, fn("", `return q('chat-input').value;`)); v != "" {
		t.Errorf("the input still holds %q after sending", v)
	}
	// Escape closes the panel and gives the focus back to the launcher.
	tb.do(chromedp.SendKeys(in("chat-input"), "\x1b"))
	waitJS[bool](tb, "the closed panel", fn("", `return q('chat-panel').hidden && root().activeElement === q('widget-open');`))
}

// TestWidgetRateLimited: past limits.new_chats_per_ip_per_minute the
// widget tells the customer when to try again, and sends nothing.
func TestWidgetRateLimited(t *testing.T) {
	g := startGateway(t, func(o *gatewayOptions) { o.newChatsPerMin = 1 })
	first := openWidget(t, g, "first")
	first.send("I was first")
	first.waitMessage("I was first")

	second := openWidget(t, g, "second")
	second.send("Me too")
	second.waitText("notice", "Try again in")
	waitJS[bool](second, "the unsent message", fn("", `return msgs().some((m) => m.text === 'Me too' && m.seq === 0);`))
	if key := call[string](second, `() => Object.keys(localStorage).find((k) => k.endsWith(':conversation')) ?? ''`); key != "" {
		t.Errorf("a refused start left a conversation in storage")
	}
}
