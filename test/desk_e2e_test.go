//go:build e2e

package test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// jsNotificationSpy keeps, in window.__notes, the title of every
// notification the page shows through the browser's own Notification API
// (the permission is granted with grantNotifications): the real API runs,
// the spy only watches it.
const jsNotificationSpy = `window.__notes = [];
if (window.Notification) {
  const Real = window.Notification;
  window.Notification = class extends Real {
    constructor(title, opts) { super(title, opts); window.__notes.push(title); }
  };
}`

// grantNotifications grants the tab's browser context the permission to
// show notifications, as an agent's click on the browser's prompt does,
// and installs the spy.
func (tb *tab) grantNotifications() {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.CallBrowser(ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission:       &browser.PermissionDescriptor{Name: "notifications"},
		Setting:          browser.PermissionSettingGranted,
		BrowserContextID: chromedp.FromContext(tb.ctx).BrowserContextID,
	}); err != nil {
		tb.t.Fatalf("%s: grant notifications: %v", tb.name, err)
	}
	tb.initScript(jsNotificationSpy)
}

// TestAgentDesk follows Alice through a day's conversation: a desktop
// notification and the offer sound for a new offer, a queue's canned
// reply and one of her own inserted with "/" shortcuts, an internal note
// the customer never sees, a required wrap-up code at the end (stored
// and counted), then a search that finds the conversation again and
// opens it read-only, notes included.
func TestAgentDesk(t *testing.T) {
	g := startGateway(t, withYAML("", "", `    canned_replies:
      - shortcut: greet
        text: "Hello, thanks for waiting!"
      - shortcut: refund
        text: "Your refund is on its way."
    wrap_up_codes: [Resolved, "Call back"]
    wrap_up_required: true
`, ""))
	agent := newTab(t, "console alice")
	agent.grantNotifications()
	agent.countOscillators()
	agent.logIn(g, "alice", "/console")
	if on := call[bool](agent, fn("", `return q('offer-sound').checked || q('desktop-notify').checked;`)); on {
		t.Error("notifications or the offer sound are on by default")
	}
	agent.click("desktop-notify")
	agent.click("offer-sound")

	customer := newTab(t, "customer")
	customer.loadWidget(g)
	customer.fill("customer-name", "Ann Lee")
	const first = "My invoice 4711 is wrong"
	customer.send(first)
	customer.waitMessage(first)
	s := customer.widgetSession()

	// The offer: a desktop notification and the offer sound.
	waitJS[bool](agent, "the offer's notification and sound", fn("", `return window.__notes.includes('New conversation: Ann Lee')
&& Number(q('offer-sound').dataset.played) >= 1 && window.__osc.includes(660) && window.__osc.includes(880);`))
	agent.acceptConversation(s.ID)
	agent.waitMessage(first)

	// "/gr" lists the queue's greeting only; Enter inserts it.
	agent.fill("chat-input", "/gr")
	waitJS[bool](agent, "the canned list", fn("", `const l = q('canned-list'); const items = [...l.querySelectorAll('[data-testid="canned-item"]')];
return !l.hidden && items.length === 1 && items[0].dataset.shortcut === 'greet';`))
	agent.do(chromedp.KeyEvent("\r"))
	waitJS[bool](agent, "the inserted greeting", fn("", `return q('chat-input').value === 'Hello, thanks for waiting!' && q('canned-list').hidden;`))
	agent.click("chat-send")
	customer.waitMessage("Hello, thanks for waiting!")

	// A reply of her own, saved in the console and inserted with Tab.
	agent.fill("canned-shortcut", "thx")
	agent.fill("canned-text", "Thank you, Ann. Anything else?")
	agent.click("canned-save")
	waitJS[bool](agent, "the saved reply", fn("", `return !!document.querySelector('[data-testid="canned-own-item"][data-shortcut="thx"]');`))
	agent.fill("chat-input", "/th")
	waitJS[bool](agent, "the canned list", fn("", `return !q('canned-list').hidden;`))
	agent.do(chromedp.KeyEvent("\t"))
	waitJS[bool](agent, "the inserted reply", fn("", `return q('chat-input').value === 'Thank you, Ann. Anything else?';`))
	agent.click("chat-send")
	customer.waitMessage("Thank you, Ann. Anything else?")

	// An internal note: on the console, never on the customer's side.
	const secret = "VIP customer: refund approved by Bea"
	agent.fill("note-input", secret)
	agent.click("note-add")
	waitJS[bool](agent, "the note", fn("text", `return [...document.querySelectorAll('[data-testid="note"]')].some((n) => n.textContent.includes(text));`), secret)
	customer.send("No, thanks!")
	agent.waitMessage("No, thanks!")
	for _, m := range customer.messages() {
		if strings.Contains(m.Text, "VIP") {
			t.Errorf("the widget shows the note: %q", m.Text)
		}
	}
	c := g.client(t)
	c.token = s.Token
	if st, body := c.do(http.MethodGet, "/api/v1/conversations/"+s.ID+"/messages?after=0", nil, ""); st != 200 || strings.Contains(string(body), "VIP") {
		t.Errorf("the customer's transcript: %d %s", st, body)
	}

	// The queue requires a wrap-up code: End asks for one first.
	agent.click("end")
	agent.waitText("notice", "wrap-up code")
	agent.selectOption("wrap-up", "Call back")
	agent.click("end")
	agent.waitText("conversation-state", "ended")
	if v := metricsOf(t, g)[`segue_wrap_ups_total{code="Call back",queue="support"}`]; v != 1 {
		t.Errorf("segue_wrap_ups_total{support, Call back} = %v, want 1", v)
	}

	// Later: the conversation is off the list; a search finds it by the
	// invoice number and opens it read-only, with its note.
	agent.click("dismiss")
	agent.fill("search-input", "4711")
	agent.click("search-submit")
	waitJS[bool](agent, "the search result", fn("id", `const r = document.querySelector('[data-testid="search-result"][data-conversation="' + id + '"]');
if (!r) return false; r.querySelector('button').click(); return true;`), s.ID)
	agent.waitMessage(first)
	agent.waitText("conversation-state", "ended")
	waitJS[bool](agent, "read-only with its note", fn("text", `return q('chat-input').closest('form').hidden
&& [...document.querySelectorAll('[data-testid="note"]')].some((n) => n.textContent.includes(text));`), secret)
	agent.fill("search-input", "nobody-like-this")
	agent.click("search-submit")
	agent.waitText("search-status", "No conversation found")
}
