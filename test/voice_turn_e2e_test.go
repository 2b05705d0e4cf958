//go:build e2e

package test

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segue-rtc/segue/test/peers"
)

// turnServer is a coturn process on 127.0.0.1 with one static user.
type turnServer struct {
	port           int
	user, password string
	out            peers.SyncBuffer
}

func (s *turnServer) output() string { return s.out.String() }

// startTURN runs Debian's coturn (turnserver) on a free loopback port,
// relaying to loopback peers (the gateway), until the test ends.
func startTURN(t *testing.T) *turnServer {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		t.Fatalf("turnserver (coturn) is required for the e2e tests: %v", err)
	}
	dir := t.TempDir()
	s := &turnServer{port: peers.FreeUDPPort(t, "127.0.0.1"), user: "segue", password: "turn-secret"}
	lo := 49200 + 2*int(time.Now().UnixNano()%400)
	cmd := exec.Command(bin, "-n",
		"--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--listening-port="+strconv.Itoa(s.port),
		"--min-port="+strconv.Itoa(lo), "--max-port="+strconv.Itoa(lo+99),
		"--lt-cred-mech", "--realm=segue.test", "--user="+s.user+":"+s.password,
		"--userdb="+filepath.Join(dir, "turndb"), "--pidfile="+filepath.Join(dir, "turn.pid"),
		"--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
		"--log-file=stdout", "--simple-log", "--verbose")
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
// TURN server the gateway announces in features.ice_servers. The call
// still carries the right tones both ways.
func TestVoiceThroughTURN(t *testing.T) {
	turn := startTURN(t)
	phone := startBaresipPhone(t)
	hs := newHostSite(t)
	vc := withQueueNumber(toDeskPhone(phone))
	vc.iceServers = fmt.Sprintf("    - urls: [\"turn:127.0.0.1:%d?transport=udp\"]\n      username: %q\n      credential: %q\n", turn.port, turn.user, turn.password)
	g := hs.startGateway(t, vc)

	customer, _, _ := shopChat(t, hs, g, "relay", "Calling from a locked-down network")
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
	if !strings.Contains(turn.output(), "ALLOCATE") && !strings.Contains(strings.ToLower(turn.output()), "allocation") {
		t.Errorf("turnserver logged no allocation")
	}
}
