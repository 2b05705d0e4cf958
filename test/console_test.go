//go:build e2e

package test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// selectOption picks a value of a <select> by test id and fires change.
func (tb *tab) selectOption(testID, value string) {
	tb.t.Helper()
	waitJS[bool](tb, testID+"="+value, fn("id, value", `const el = q(id);
if (!el || ![...el.options].some((o) => o.value === value)) return false;
el.value = value; el.dispatchEvent(new Event('change', {bubbles: true})); return true;`), testID, value)
}

// hasConversation reports whether the console lists one of my conversations.
const hasConversation = `(id) => !!document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"]')`

func TestTransferThenEnd(t *testing.T) {
	g := startGateway(t)
	customer, alice, convID := startChat(t, g, "Can someone from billing help?")
	bob := openConsole(t, g, "bob", "/console")

	alice.selectOption("transfer-target", "agent:bob")
	alice.click("transfer")

	// Bob gets it with the whole history; Alice no longer holds it.
	waitJS[bool](bob, "the transferred conversation", hasConversation, convID)
	waitJS[bool](bob, "the conversation selected", fn("id", `return q('chat-log')?.dataset.conversation === id;`), convID)
	bob.waitMessage("Can someone from billing help?")
	waitJS[bool](alice, "the conversation to leave alice", `(id) => !document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"]')`, convID)
	waitJS[bool](customer, "bob's name", fn("", `return root().querySelector('.title')?.textContent === 'Bob';`))

	bob.send("Bob from billing here.")
	customer.waitMessage("Bob from billing here.")
	customer.send("Great, thanks")
	bob.waitMessage("Great, thanks")

	// Ending shows the ended state to both and lets the customer start over.
	bob.click("end")
	bob.waitText("conversation-state", "ended")
	waitJS[bool](customer, "the ended state", fn("", `const e = q('ended'); return !!e && !e.hidden && q('chat-input').closest('form').hidden;`))
	customer.waitText("agent-name", "Conversation ended")
	waitJS[bool](customer, "the last agent's name", fn("", `return root().querySelector('.title')?.textContent === 'Bob';`))
	customer.waitMessage("Great, thanks")
	bob.send("this must not be sent")
	if n := countText(bob.messages(), "this must not be sent"); n != 0 {
		t.Errorf("the ended conversation still takes messages in the console")
	}
	if notice := call[string](bob, fn("", `return q('notice').hidden ? '' : q('notice').textContent;`)); notice != "" {
		t.Errorf("bob's console shows an error after ending: %q", notice)
	}
	bob.click("dismiss")
	waitJS[bool](bob, "the ended conversation off the list", `(id) => !document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"]')`, convID)
	customer.click("new-conversation")
	waitJS[bool](customer, "an empty chat", fn("", `return msgs().length === 0 && !q('customer-name').hidden;`))
	customer.send("A new question")
	customer.waitMessage("A new question")
	if next := customer.widgetConversation(); next == convID {
		t.Fatalf("the new message went to the ended conversation %s", convID)
	}
	if n := len(customer.messages()); n != 1 {
		t.Errorf("the new conversation shows %d messages, want 1: %+v", n, customer.messages())
	}
	noCSPViolations(t, customer, alice, bob)
}

func TestAgentWithTwoConversations(t *testing.T) {
	g := startGateway(t)
	ann, alice, annConv := startChat(t, g, "Ann here")
	ben := openWidget(t, g, "ben")
	ben.fill("customer-name", "Ben")
	ben.send("Ben here")
	ben.waitMessage("Ben here")
	benConv := ben.widgetConversation()

	// Accepting Ben's conversation switches to it; Ann's stays in the list.
	alice.acceptConversation(benConv)
	alice.waitMessage("Ben here")
	waitJS[bool](alice, "both conversations listed", `(a, b) => [a, b].every((id) => document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"]'))`, annConv, benConv)

	// A message in the conversation not on screen counts as unread.
	ann.send("Are you still there?")
	got := waitJS[string](alice, "the unread counter", `(id) => document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"] [data-testid="unread"]')?.textContent || false`, annConv)
	if got != "1" {
		t.Errorf("unread counter shows %q, want 1", got)
	}
	if title := call[string](alice, `() => document.title`); !strings.HasPrefix(title, "(1) ") {
		t.Errorf("the tab title %q does not count the unread message", title)
	}

	// Typing from the customer shows in the selected conversation.
	ben.fill("chat-input", "hm")
	alice.waitText("typing", "Ben is typing")

	// Switching clears the counter and shows Ann's messages only.
	waitJS[bool](alice, "switch to ann", `(id) => { const b = document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"] button'); if (!b) return false; b.click(); return true; }`, annConv)
	alice.waitMessage("Are you still there?")
	waitJS[bool](alice, "the counter cleared", `(id) => !document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"] [data-testid="unread"]')`, annConv)
	if countText(alice.messages(), "Ben here") != 0 {
		t.Errorf("ann's chat-log shows ben's message")
	}
	alice.send("Yes, Ann")
	ann.waitMessage("Yes, Ann")
	if countText(ben.messages(), "Yes, Ann") != 0 {
		t.Errorf("ben sees the reply meant for ann")
	}
}

func TestPresenceAwayGetsNoOffers(t *testing.T) {
	g := startGateway(t)
	alice := openConsole(t, g, "alice", "/console")
	bob := openConsole(t, g, "bob", "/console")
	alice.selectOption("presence", "away")
	// The server confirms with the agents list: alice shows as away to bob.
	waitJS[bool](bob, "alice away", fn("", `return q('transfer-target').querySelector('option[value="agent:alice"]')?.dataset.presence === 'away';`))

	customer := openWidget(t, g, "customer")
	customer.send("Anyone?")
	customer.waitMessage("Anyone?")
	convID := customer.widgetConversation()

	offered := `(id) => !!document.querySelector('[data-testid="queue-item"][data-conversation="' + id + '"][data-offered="true"]')`
	waitJS[bool](bob, "the offer to bob", offered, convID)
	waitJS[bool](alice, "the waiting conversation", `(id) => !!document.querySelector('[data-testid="queue-item"][data-conversation="' + id + '"]')`, convID)
	if call[bool](alice, offered, convID) {
		t.Errorf("alice is away but was offered the conversation")
	}
	// Bob steps away and Alice comes back: the offer moves to Alice, and
	// Bob's console no longer shows it as his.
	bob.selectOption("presence", "away")
	alice.selectOption("presence", "available")
	waitJS[bool](alice, "the offer to alice", offered, convID)
	waitJS[bool](bob, "bob's offer withdrawn", `(id) => !document.querySelector('[data-testid="queue-item"][data-conversation="' + id + '"][data-offered="true"]')`, convID)
	alice.acceptConversation(convID)
	alice.waitMessage("Anyone?")
	waitJS[bool](bob, "the queue to empty", `(id) => !document.querySelector('[data-testid="queue-item"][data-conversation="' + id + '"]')`, convID)
}

func TestConsoleLoginSession(t *testing.T) {
	g := startGateway(t)
	tb := newTab(t, "console")
	tb.do(chromedp.Navigate(g.URL + "/console"))
	tb.fill("login-id", "alice")
	tb.fill("login-password", "wrong password")
	tb.click("login-submit")
	tb.waitText("login-error", "Wrong agent id or password")

	tb.fill("login-password", agentPasswords["alice"])
	tb.click("login-submit")
	waitJS[bool](tb, "the console", fn("", `return q('connection-status').dataset.state === 'connected';`))
	tb.waitText("agent-me", "Alice")

	// The session cookie is HTTP-only and survives a reload.
	if c := call[string](tb, `() => document.cookie`); c != "" {
		t.Errorf("the session is readable from JavaScript: %q", c)
	}
	tb.do(chromedp.Reload())
	waitJS[bool](tb, "the console after reload", fn("", `return q('connection-status').dataset.state === 'connected' && document.getElementById('login').hidden;`))

	tb.click("logout")
	tb.do(chromedp.WaitVisible(chromedp.CSS(`[data-testid="login-id"]`)))
	if status := call[int](tb, `async () => (await fetch('/api/v1/agent/me')).status`); status != 401 {
		t.Errorf("after logout /api/v1/agent/me answers %d, want 401", status)
	}
}

// TestConsoleDeepLinks opens /console/c/{id} for a waiting conversation,
// for another agent's, and for an ended one of one's own.
func TestConsoleDeepLinks(t *testing.T) {
	g := startGateway(t)
	customer := openWidget(t, g, "customer")
	customer.send("Please call me back")
	customer.waitMessage("Please call me back")
	convID := customer.widgetConversation()

	alice := openConsole(t, g, "alice", "/console/c/"+convID)
	waitJS[bool](alice, "the linked queue item", `(id) => !!document.querySelector('[data-testid="queue-item"][data-conversation="' + id + '"][data-linked="true"]')`, convID)
	alice.waitText("notice", "waiting")
	alice.acceptConversation(convID)
	alice.waitMessage("Please call me back")

	bob := openConsole(t, g, "bob", "/console/c/"+convID)
	bob.waitText("notice", "not yours")
	if n := len(bob.messages()); n != 0 {
		t.Errorf("bob sees %d messages of alice's conversation", n)
	}

	alice.click("end")
	alice.waitText("conversation-state", "ended")
	later := openConsole(t, g, "alice", "/console/c/"+convID)
	later.waitMessage("Please call me back")
	later.waitText("conversation-state", "ended")
	waitJS[bool](later, "the close button", fn("", `return !q('dismiss').hidden && q('chat-input').closest('form').hidden;`))
}

func TestTransferToQueue(t *testing.T) {
	g := startGateway(t)
	customer, alice, convID := startChat(t, g, "Wrong department, sorry")
	bob := openConsole(t, g, "bob", "/console")

	alice.selectOption("transfer-target", "queue:support")
	alice.click("transfer")
	waitJS[bool](alice, "the conversation to leave alice", `(id) => !document.querySelector('[data-testid="conversation-item"][data-conversation="' + id + '"]')`, convID)
	customer.waitText("agent-name", "Waiting for an agent")

	bob.acceptConversation(convID)
	bob.waitMessage("Wrong department, sorry")
	waitJS[bool](customer, "bob's name", fn("", `return root().querySelector('.title')?.textContent === 'Bob';`))
	bob.send("Bob here, I can help.")
	customer.waitMessage("Bob here, I can help.")
	checkLog(t, "customer", customer.messages())
	checkLog(t, "bob", bob.messages())
}
