//go:build e2e

package test

import (
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestEarlierConversationsOfAVerifiedCustomer: when Alice opens a verified
// customer's conversation in the console, that customer's earlier
// conversations are listed beside it: the one with the same customer id
// (under another e-mail) and the one with the same e-mail (with no
// customer id), newest first. Another verified customer's conversation is
// not listed, nor a message left under the same name and e-mail without a
// signed identity (anyone can type those). An earlier conversation opens
// read-only with its transcript.
func TestEarlierConversationsOfAVerifiedCustomer(t *testing.T) {
	const secret = "northwind-identity-secret-0123456789"
	g := startGateway(t, func(o *gatewayOptions) { o.identitySecret = secret })
	exp := time.Now().Add(time.Hour).Unix()

	// Before any agent is logged in: a left message typed with Ann's name
	// and e-mail, but no signed identity.
	var left struct {
		Conversation conversation `json:"conversation"`
	}
	g.client(t).json(http.MethodPost, "/api/v1/left-messages", map[string]any{
		"name": "Ann Lee", "email": "ann@example.com", "text": "Call me back about parcel 88",
	}, http.StatusCreated, &left)

	// Earlier conversations, each answered and ended by Alice.
	alice := g.login(t, "alice")
	aws := agentWS(t, g, alice)
	earlier := func(claims map[string]any, first string) string {
		t.Helper()
		claims["exp"] = exp
		var out struct {
			Conversation conversation `json:"conversation"`
			Token        string       `json:"token"`
		}
		g.client(t).json(http.MethodPost, "/api/v1/conversations", map[string]any{
			"name": claims["name"], "identity": signIdentity(secret, claims),
		}, http.StatusCreated, &out)
		ws := customerWS(t, g, out.Token)
		ws.send(map[string]any{"type": "message", "id": "m1", "text": first})
		ws.expect("ack")
		aws.send(map[string]any{"type": "accept", "conversation_id": out.Conversation.ID})
		aws.expect("history")
		aws.send(map[string]any{"type": "end", "conversation_id": out.Conversation.ID})
		ws.expect("conversation")
		return out.Conversation.ID
	}
	byID := earlier(map[string]any{"name": "Ann Lee", "email": "ann.lee@old.example", "external_id": "cust-42"}, "Where is parcel 88?")
	time.Sleep(10 * time.Millisecond) // distinct creation times, for the order
	byEmail := earlier(map[string]any{"name": "Ann Lee", "email": "ann@example.com"}, "My address changed")
	other := earlier(map[string]any{"name": "Bob Stone", "email": "bob@example.com", "external_id": "cust-7"}, "Bob's question")

	// Now: Ann, verified, writes again from the website.
	customer := openWidget(t, g, "customer")
	call[bool](customer, `(tok) => { segueWidget.setIdentity(tok); return true; }`,
		signIdentity(secret, map[string]any{"name": "Ann Lee", "email": "ann@example.com", "external_id": "cust-42", "exp": exp}))
	customer.send("Parcel 88 again, sorry")
	customer.waitMessage("Parcel 88 again, sorry")
	current := customer.widgetConversation()

	agent := openConsole(t, g, "alice", "/console")
	agent.acceptConversation(current)
	agent.waitMessage("Parcel 88 again, sorry")
	listed := waitJS[[]string](agent, "the earlier conversations", fn("", `const box = q('earlier');
const items = [...(box?.querySelectorAll('[data-testid="earlier-item"]') ?? [])];
if (!items.length || box.closest('section').hidden) return false;
return items.map((i) => i.dataset.conversation);`))
	if want := []string{byEmail, byID}; !slices.Equal(listed, want) {
		t.Errorf("earlier conversations listed %v, want %v (by e-mail, then by customer id; not %s, another customer, nor %s, an unsigned left message)",
			listed, want, other, left.Conversation.ID)
	}

	// One of them opens read-only, with its transcript.
	waitJS[bool](agent, "open the earlier conversation", fn("id", `const i = document.querySelector('[data-testid="earlier-item"][data-conversation="' + id + '"]');
if (!i) return false; i.querySelector('button').click(); return true;`), byID)
	agent.waitMessage("Where is parcel 88?")
	agent.waitText("conversation-state", "ended")
	waitJS[bool](agent, "read-only", fn("", `return q('chat-input').closest('form').hidden;`))
}
