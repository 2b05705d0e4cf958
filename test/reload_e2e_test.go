//go:build e2e

package test

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
	"github.com/segue-rtc/segue/transcode/audiotest"
)

// TestReloadDuringCallAndChat edits the configuration of a running
// gateway that carries a call (a customer at 1 kHz to a SIPp PBX echoing
// its RTP) and a chat. An invalid edit is refused, by SIGHUP (logged) and
// by POST /admin/reload (422 with the errors config validate gives), and
// changes nothing. A valid one (agent bob replaced by carol), sent with
// SIGHUP, lets carol sign in and bob not, and changes the trunk that
// carries the call; the call goes on (the customer
// still hears its echo) and so does the chat, and the PBX gets its BYE
// only when the customer hangs up.
func TestReloadDuringCallAndChat(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_wait_bye.xml", "127.0.0.1", "-m", "1", "-rtp_echo")
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
	})
	customer := startPionVoiceCall(t, g)
	echo := func(when string) {
		t.Helper()
		time.Sleep(1200 * time.Millisecond)
		pcm := lastOf(customer.b.heard, time.Second)
		f, db := audiotest.PeakFrequency(pcm, 8000), audiotest.Level(pcm)
		t.Logf("%s the customer heard %.0f Hz at %.1f dBFS", when, f, db)
		if f < 990 || f > 1010 || db < -20 || db > -1 {
			t.Fatalf("%s the customer heard %.0f Hz at %.1f dBFS, want its 1000 Hz echo", when, f, db)
		}
	}
	echo("before the reload")
	chat := func(id, text string) {
		t.Helper()
		customer.send(t, map[string]any{"type": "message", "id": id, "text": text})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			if f := customer.next(t, ctx); str(f["type"]) == "ack" {
				return
			}
		}
	}
	chat("m1", "before the reload")

	orig, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	const bobEntry = "  - id: bob\n    name: \"Bob\"\n"
	if !strings.Contains(string(orig), bobEntry) {
		t.Fatalf("no bob in the config:\n%s", orig)
	}
	// Invalid: refused by SIGHUP and by the admin endpoint.
	bad := strings.Replace(string(orig), "queues: [support]\n    max_chats", "queues: [nowhere]\n    max_chats", 1)
	if err := os.WriteFile(g.config, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(g.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal in the log", func() error {
		if !strings.Contains(g.Log(), "config reload refused") {
			return errorString("no refusal logged yet")
		}
		return nil
	})
	res, err := http.Post(g.AdminURL+"/admin/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(body), `agents[0].queues[0]: unknown queue "nowhere"`) {
		t.Errorf("POST /admin/reload with an invalid file: %d %s", res.StatusCode, body)
	}
	if code, _ := g.client(t).do(http.MethodPost, "/api/v1/agent/login", strings.NewReader(`{"id":"bob","password":"`+agentPasswords["bob"]+`"}`), "application/json"); code != http.StatusOK {
		t.Errorf("bob after refused reloads: %d", code)
	}

	// Valid: bob's entry becomes carol's (with bob's password).
	// The trunk carrying the call changes too (its codec preference).
	good := strings.Replace(string(orig), bobEntry, "  - id: carol\n    name: \"Carol\"\n", 1)
	good = strings.Replace(good, "codecs: [PCMU, PCMA]", "codecs: [PCMA, PCMU]", 1)
	if err := os.WriteFile(g.config, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(g.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload in the log", func() error {
		if !strings.Contains(g.Log(), "config reloaded") {
			return errorString("not reloaded yet")
		}
		return nil
	})
	login := func(id string) int {
		code, _ := g.client(t).do(http.MethodPost, "/api/v1/agent/login", strings.NewReader(`{"id":"`+id+`","password":"`+agentPasswords["bob"]+`"}`), "application/json")
		return code
	}
	if !strings.Contains(g.Log(), "trunks_changed=[pbx]") {
		t.Error("the reload did not change the trunk")
	}
	if code := login("carol"); code != http.StatusOK {
		t.Errorf("carol after the reload: %d", code)
	}
	if code := login("bob"); code != http.StatusUnauthorized {
		t.Errorf("bob after the reload: %d", code)
	}
	echo("after the reload")
	chat("m2", "after the reload")
	for _, line := range strings.Split(g.Log(), "\n") {
		if strings.Contains(line, "voice: ended") {
			t.Fatalf("the call ended during the reload: %s", line)
		}
	}
	customer.hangup(t)
	waitSIPp(t, pbx)
}
