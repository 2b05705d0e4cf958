package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// reloadDoc is newTestServer's configuration with agents and queues
// replaced.
func reloadDoc(agents, queues string) string {
	return fmt.Sprintf(`
http:
  public_url: "http://gateway.test"
  allowed_origins: ["https://shop.example.com"]
queues:
%sagents:
%s`, queues, agents)
}

func tryLogin(e *env2, id string) int {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Post(e.ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(fmt.Sprintf(`{"id":%q,"password":"password1"}`, id)))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReloadAgentsAndQueues: a reload lets a new agent sign in, keeps a
// removed agent on its conversation until it ends and then signs it out,
// moves the waiting chats of a removed queue, and refuses an invalid
// file with the errors config validate gives, changing nothing.
func TestReloadAgentsAndQueues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "segue.yaml")
	e := newTestServer(t, nil)
	e.srv.configFile = path
	alice := e.login("alice")
	aws, _ := e.agentWS(alice)
	bobClient := e.login("bob")
	bws, _ := e.agentWS(bobClient)
	id, token := e.startChat("Ann")
	cws := e.customerWS(token)
	bws.send(map[string]any{"type": "accept", "conversation_id": id})
	bws.expect("history")
	if code := tryLogin(e, "carol"); code != http.StatusUnauthorized {
		t.Fatalf("carol before the reload: %d", code)
	}

	// An invalid file: refused, named by key, nothing changes.
	bad := reloadDoc(fmt.Sprintf("  - {id: alice, name: Alice, password_hash: %q, queues: [nowhere]}\n", testHash), "  - name: support\n    recording: sometimes\n")
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := e.srv.ReloadFile(context.Background())
	for _, want := range []string{`agents[0].queues[0]: unknown queue "nowhere"`, `queues[0].recording: "sometimes" is not one of off, always, on_demand`, "not reloaded"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("invalid reload: missing %q in %v", want, err)
		}
	}
	if code := tryLogin(e, "bob"); code != http.StatusOK {
		t.Errorf("bob after a refused reload: %d", code)
	}

	// Carol added, bob removed, billing removed, support records.
	good := reloadDoc(fmt.Sprintf("  - {id: alice, name: Alice A., password_hash: %q, queues: [support]}\n  - {id: carol, name: Carol, password_hash: %q, queues: [support]}\n", testHash, testHash),
		"  - name: support\n    recording: on_demand\n")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := e.srv.ReloadFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(res.AgentsAdded, ",") != "carol" || strings.Join(res.AgentsRemoved, ",") != "bob" || strings.Join(res.AgentsChanged, ",") != "alice" ||
		strings.Join(res.QueuesRemoved, ",") != "billing" || strings.Join(res.QueuesChanged, ",") != "support" || len(res.Restart) != 0 {
		t.Errorf("reload result: %+v", res)
	}
	if code := tryLogin(e, "carol"); code != http.StatusOK {
		t.Errorf("carol after the reload: %d", code)
	}
	if code := tryLogin(e, "bob"); code != http.StatusUnauthorized {
		t.Errorf("removed bob signed in again: %d", code)
	}
	// Bob's conversation goes on until he ends it.
	cws.send(map[string]any{"type": "message", "id": "m1", "text": "still there?"})
	bws.expect("message")
	bws.send(map[string]any{"type": "message", "conversation_id": id, "id": "m2", "text": "yes"})
	cws.expect("message")
	bws.send(map[string]any{"type": "end", "conversation_id": id})
	// Then his console is closed with the reason, and his session is gone.
	for {
		_, _, err := bws.conn.Read(context.Background())
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusPolicyViolation || !strings.Contains(err.Error(), "removed from the configuration") {
				t.Errorf("bob's console closed with %v", err)
			}
			break
		}
	}
	waitUntil(t, "bob's session to be deleted", func() bool {
		resp, err := bobClient.Get(e.ts.URL + "/api/v1/agent/me")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized
	})
	_ = aws
}
