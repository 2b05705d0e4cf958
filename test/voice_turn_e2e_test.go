//go:build e2e

package test

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	pturn "github.com/pion/turn/v5"

	"github.com/segue-rtc/segue/test/peers"
)

// turnServer is a coturn process on 127.0.0.1 with use-auth-secret: it
// accepts a username "<expiry>:<name>" whose password is
// base64(HMAC-SHA1(secret, username)), until expiry (the TURN REST API).
type turnServer struct {
	port   int
	secret string
	out    peers.SyncBuffer
}

func (s *turnServer) output() string { return s.out.String() }

// addr is the server's host:port.
func (s *turnServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// iceServerYAML is the webrtc.ice_servers entry that gives the gateway
// this server's secret.
func (s *turnServer) iceServerYAML() string {
	return fmt.Sprintf("    - urls: [\"turn:%s?transport=udp\"]\n      secret: %q\n", s.addr(), s.secret)
}

// startTURN runs Debian's coturn (turnserver) with secret on a free
// loopback port, relaying to loopback peers (the gateway), until the test
// ends.
func startTURN(t *testing.T, secret string) *turnServer {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Fatalf("turnserver (coturn) is required for the e2e tests: %v", err)
	}
	dir := t.TempDir()
	s := &turnServer{port: peers.FreeUDPPort(t, "127.0.0.1"), secret: secret}
	lo := 49200 + 2*int(time.Now().UnixNano()%400)
	cmd := exec.Command(bin, "-n",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port="+strconv.Itoa(s.port),
		"--min-port="+strconv.Itoa(lo), "--max-port="+strconv.Itoa(lo+99),
		"--realm=segue.test",
		"--userdb="+filepath.Join(dir, "turndb"), "--pidfile="+filepath.Join(dir, "turn.pid"),
		"--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
		"--log-file=stdout", "--simple-log", "--verbose",
		"--use-auth-secret", "--static-auth-secret="+s.secret)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &s.out, &s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start turnserver: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("---- turnserver output ----\n%s", s.output())
		}
	})
	// Ready once its UDP port is taken.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
		if err != nil {
			return s
		}
		c.Close()
		select {
		case <-done:
			t.Fatalf("turnserver exited: %s", s.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("turnserver did not open its port: %s", s.output())
	return nil
}

// TestVoiceThroughTURN forces the widget's ICE through a TURN relay
// (iceTransportPolicy "relay" from data-ice-transport-policy) with the
// TURN server the gateway announces in features.ice_servers: coturn with
// use-auth-secret, and a credential the gateway made for this
// conversation alone. The call still carries the right tones both ways.
func TestVoiceThroughTURN(t *testing.T) {
	turn := startTURN(t, "turn-shared-secret-"+strconv.Itoa(rand.IntN(1e9)))
	phone := startBaresipPhone(t)
	hs := newHostSite(t)
	vc := withQueueNumber(toDeskPhone(phone))
	vc.iceServers = turn.iceServerYAML()
	g := hs.startGateway(t, vc)

	customer, _, convID := shopChat(t, hs, g, "relay", "Calling from a locked-down network")
	// The widget holds a credential of this conversation's own, never the
	// secret.
	ice := call[[]map[string]any](customer, `() => document.querySelector('segue-widget').ice.servers`)
	if len(ice) != 1 || !strings.HasSuffix(fmt.Sprint(ice[0]["username"]), ":"+convID) || strings.Contains(fmt.Sprint(ice), turn.secret) {
		t.Fatalf("the widget's ICE servers: %v", ice)
	}
	customer.click("voice-start")
	customer.waitCall("connected")

	// The page's selected candidate pair must be a relayed one.
	local := waitJS[string](customer, "a relayed candidate pair", asyncFn("", `const pc = document.querySelector('segue-widget')?.voice?.pc;
if (!pc) return false;
const stats = await pc.getStats();
for (const s of stats.values()) {
  if (s.type === 'candidate-pair' && s.state === 'succeeded' && s.nominated) {
    const l = stats.get(s.localCandidateId);
    return l ? l.candidateType + ' ' + (l.relayProtocol || '') : false;
  }
}
return false;`))
	if !strings.HasPrefix(local, "relay") {
		t.Errorf("the page's ICE pair uses a %q local candidate, want relay", local)
	}
	time.Sleep(500 * time.Millisecond)
	expectHeard(t, "the customer through TURN", customer.measureHeard(1500), deskToneHz, -16, -1)
	customer.click("hangup")
	customer.waitCall("ended")
	pcm, rate := baresipHeard(t, phone.Recordings, time.Second, time.Second)
	expectHeard(t, "the desk phone through TURN", heard{Freq: peakOf(pcm, rate), DB: levelOf(pcm), Rate: float64(rate)}, voiceMicHz, -14, -2)
	// coturn allocated for the conversation's user.
	if !strings.Contains(turn.output(), ":"+convID) {
		t.Errorf("turnserver logged no allocation for %s", convID)
	}
}

// turnAllocate asks the TURN server for a relay with username and
// password, as a browser would; it returns the server's refusal, if any.
func turnAllocate(t *testing.T, turn *turnServer, username, password string) error {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: turn.addr(), TURNServerAddr: turn.addr(),
		Username: username, Password: password, Conn: conn, RTO: 200 * time.Millisecond,
		LoggerFactory: logging.NewDefaultLoggerFactory(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		return err
	}
	return relay.Close()
}

// TestTURNCredentialsPerConversation: a visitor holding only a waiting
// conversation's token gets a TURN credential that coturn accepts for
// that conversation's username only and only until it expires; a static
// TURN credential goes to agents, never to visitors.
func TestTURNCredentialsPerConversation(t *testing.T) {
	secret := "turn-shared-secret-" + strconv.Itoa(rand.IntN(1e9))
	turn := startTURN(t, secret)
	g := startGateway(t, withVoice(voiceConfig{iceServers: turn.iceServerYAML() +
		"    - urls: [\"turn:127.0.0.1:3479\"]\n      username: \"staff\"\n      credential: \"static-staff-pw\"\n"}))
	visitor, conv := g.newConversation(t, "Mallory")
	other, otherConv := g.newConversation(t, "Ann")
	_ = other
	var ice struct {
		ICEServers []struct {
			URLs       []string `json:"urls"`
			Username   string   `json:"username"`
			Credential string   `json:"credential"`
		} `json:"ice_servers"`
		Expires int64 `json:"ice_expires_at"`
	}
	visitor.json(http.MethodGet, "/api/v1/ice-servers", nil, http.StatusOK, &ice)
	if len(ice.ICEServers) != 1 || strings.Contains(fmt.Sprint(ice), "static-staff-pw") {
		t.Fatalf("a visitor got %+v, want the REST server only", ice.ICEServers)
	}
	user, cred := ice.ICEServers[0].Username, ice.ICEServers[0].Credential
	exp, name, _ := strings.Cut(user, ":")
	if name != conv.ID || exp != strconv.FormatInt(ice.Expires, 10) || ice.Expires < time.Now().Add(time.Hour).Unix() {
		t.Fatalf("credential username %q (expires %d), want <expiry>:%s", user, ice.Expires, conv.ID)
	}
	// The visitor's own credential: coturn relays.
	if err := turnAllocate(t, turn, user, cred); err != nil {
		t.Fatalf("coturn refused the conversation's own credential: %v", err)
	}
	// The same password under another conversation's name: refused.
	if err := turnAllocate(t, turn, exp+":"+otherConv.ID, cred); err == nil {
		t.Fatal("coturn accepted the credential for another conversation")
	}
	// A credential that was valid but has expired: refused.
	past := strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10) + ":" + conv.ID
	if err := turnAllocate(t, turn, past, turnPassword(secret, past)); err == nil {
		t.Fatal("coturn accepted an expired credential")
	}
	// The agent's console gets the static server too.
	alice := g.login(t, "alice")
	var staff struct {
		ICEServers []struct {
			Username   string `json:"username"`
			Credential string `json:"credential"`
		} `json:"ice_servers"`
	}
	alice.json(http.MethodGet, "/api/v1/ice-servers", nil, http.StatusOK, &staff)
	if len(staff.ICEServers) != 2 || staff.ICEServers[1].Credential != "static-staff-pw" || !strings.HasSuffix(staff.ICEServers[0].Username, ":agent.alice") {
		t.Fatalf("the agent got %+v", staff.ICEServers)
	}
	g.waitLog(t, "static credential: it is given to agents' consoles only")
}

// turnPassword is base64(HMAC-SHA1(secret, username)), made here apart
// from the gateway's code.
func turnPassword(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
