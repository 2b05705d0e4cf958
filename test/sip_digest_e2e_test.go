//go:build e2e

package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/segue-rtc/segue/test/peers"
)

// inboundPassword is the trunk's inbound_password in the digest tests,
// given to the gateway through the environment.
const inboundPassword = "in-s3cret-pw"

// invite sends a new INVITE for ruri from the outsider (new Call-ID, tag
// and branch), with the Authorization header authz unless it is empty,
// and returns the final response, or nil when none came within wait. A
// final failure is acknowledged, as a real UAC would.
func (o *outsider) invite(gwAddr, ruri, authz string, wait time.Duration) *sipmsg.Response {
	o.t.Helper()
	local := o.Addr()
	id := fmt.Sprintf("%d", time.Now().UnixNano())
	via := fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=z9hG4bK-out-%s;rport\n", local, id)
	from := fmt.Sprintf("From: \"Contact center\" <sip:600@%s>;tag=out%s\n", local, id)
	msg := "INVITE " + ruri + " SIP/2.0\n" + via + from +
		"To: <" + ruri + ">\n" +
		"Call-ID: out-" + id + "@" + outsiderIP + "\n" +
		"CSeq: 1 INVITE\n" +
		"Contact: <sip:600@" + local + ">\n" +
		"Max-Forwards: 70\n"
	if authz != "" {
		msg += "Authorization: " + authz + "\n"
	}
	o.sendSIP(gwAddr, msg+"Content-Length: 0\n\n")
	deadline := time.Now().Add(wait)
	buf := make([]byte, 65536)
	for {
		_ = o.conn.SetReadDeadline(deadline)
		n, err := o.conn.Read(buf)
		if err != nil {
			return nil
		}
		m, err := sipmsg.ParseMessage(buf[:n])
		if err != nil {
			o.t.Fatalf("unparsable answer from the gateway: %v\n%s", err, buf[:n])
		}
		res, ok := m.(*sipmsg.Response)
		if !ok || res.StatusCode < 200 || res.CallID() == nil || res.CallID().Value() != "out-"+id+"@"+outsiderIP {
			continue // provisional, or a retransmission for an earlier INVITE
		}
		if res.StatusCode >= 300 {
			o.sendSIP(gwAddr, "ACK "+ruri+" SIP/2.0\n"+via+from+"To: "+res.To().Value()+"\n"+
				"Call-ID: out-"+id+"@"+outsiderIP+"\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n")
		}
		return res
	}
}

// digestFor answers the first challenge of a 401 for an INVITE to ruri.
func digestFor(t *testing.T, res *sipmsg.Response, ruri, user, pass string) string {
	t.Helper()
	if res == nil || res.StatusCode != 401 || res.GetHeader("WWW-Authenticate") == nil {
		t.Fatalf("want a 401 digest challenge, got %v", res)
	}
	chal, err := digest.ParseChallenge(res.GetHeader("WWW-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: ruri, Username: user, Password: pass, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	return creds.String()
}

func status(res *sipmsg.Response) string {
	if res == nil {
		return "no answer"
	}
	return fmt.Sprintf("%d %s", res.StatusCode, res.Reason)
}

// TestSIPInboundDigestAuth: a PBX outside the trunk's allow_inbound_from
// (127.0.0.2) calls a conversation on an inbound_auth trunk with separate
// inbound credentials (the password from the environment). SIPp's answer
// to the digest challenge is refused while its digest-uri is not the
// Request-URI; with the right one the call connects to the customer. Then, from
// the same address: the Authorization header SIPp sent, replayed in a new
// INVITE, is refused; a password guesser gets 401s up to the limit and
// silence after it, even for the right password.
func TestSIPInboundDigestAuth(t *testing.T) {
	t.Setenv("SEGUE_TEST_INBOUND_PW", inboundPassword)
	g := startVoiceGateway(t, voiceConfig{
		trunks: []voiceTrunk{{name: "pbx", addr: "127.0.0.1:5999"}},
		queues: []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@127.0.0.1:5999"}},
	}, withYAML("", "    inbound_auth: true\n    inbound_username: pbx-in\n    inbound_password: \"${SEGUE_TEST_INBOUND_PW}\"\n", "", ""))
	c, conv := g.newConversation(t, "Ann Lee")
	w := customerWS(t, g, c.token)
	f := pumpFrames(t, w)
	b := newBrowser(t, 1000)

	// SIPp's digest-uri is the gateway's address (sip:host:port) unless
	// told: credentials for another URI than the Request-URI are refused.
	ruri := "sip:conv-" + conv.ID + "@" + g.SIPAddr
	wrongURI := peers.StartSIPp(t, "sipp/uac_conv_auth.xml", outsiderIP, "-set", "conv", conv.ID, "-m", "1",
		"-au", "pbx-in", "-ap", inboundPassword, g.SIPAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var exit *exec.ExitError
	if err := wrongURI.Wait(ctx); !errors.As(err, &exit) || exit.ExitCode() != 97 {
		t.Errorf("credentials computed for sip:%s, used for %s: SIPp ended with %v, want exit status 97 (refused)", g.SIPAddr, ruri, err)
	}
	if !f.quiet("call.incoming", time.Second) {
		t.Error("credentials for another URI rang the customer")
	}

	// With -auth_uri the digest-uri is the Request-URI, as RFC 3261 §22.4
	// wants: the call goes through.
	pbx := peers.StartSIPp(t, "sipp/uac_conv_auth.xml", outsiderIP, "-set", "conv", conv.ID, "-m", "1",
		"-au", "pbx-in", "-ap", inboundPassword, "-auth_uri", strings.TrimPrefix(ruri, "sip:"), g.SIPAddr)
	f.expect("call.incoming")
	startPionVoice(t, w, f, b)
	f.awaitCallState("ended")
	waitSIPp(t, pbx)

	logs, _ := filepath.Glob(filepath.Join(pbx.Dir, "*_messages.log"))
	if len(logs) == 0 {
		t.Fatal("no SIPp message trace")
	}
	trace, err := os.ReadFile(logs[0])
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Authorization: (Digest .*?)\r?$`).FindSubmatch(trace)
	if m == nil {
		t.Fatalf("SIPp sent no Authorization header:\n%s", trace)
	}
	captured := string(m[1])
	t.Logf("captured: %s", captured)

	o := newOutsider(t)
	if res := o.invite(g.SIPAddr, ruri, captured, 2*time.Second); res == nil || res.StatusCode != 401 {
		t.Errorf("the replayed Authorization header got %s, want 401", status(res))
	}
	if !f.quiet("call.incoming", time.Second) {
		t.Error("the replayed Authorization header rang the customer")
	}

	// The replay was the first failure from 127.0.0.2 since SIPp's good
	// call: four more wrong passwords get 401 (five in all), the sixth
	// gets nothing.
	// Each guess costs two answers (the challenge and the 401); the
	// guesses are paced within the gateway's budget of answers to an
	// outsider (2 a second once its burst is spent, which SIPp's calls
	// used), so that what stops them below is the failure limit alone.
	for i := 2; i <= 5; i++ {
		time.Sleep(1100 * time.Millisecond)
		chal := o.invite(g.SIPAddr, ruri, "", 2*time.Second)
		res := o.invite(g.SIPAddr, ruri, digestFor(t, chal, ruri, "pbx-in", fmt.Sprintf("guess-%d", i)), 2*time.Second)
		if res == nil || res.StatusCode != 401 {
			t.Fatalf("wrong password %d got %s, want 401", i, status(res))
		}
	}
	time.Sleep(1100 * time.Millisecond)
	chal := o.invite(g.SIPAddr, ruri, "", 2*time.Second)
	if res := o.invite(g.SIPAddr, ruri, digestFor(t, chal, ruri, "pbx-in", "guess-6"), 2*time.Second); res != nil {
		t.Errorf("the sixth failure got %s, want silence", status(res))
	}
	if res := o.invite(g.SIPAddr, ruri, "", 2*time.Second); res != nil {
		t.Errorf("an INVITE from the silenced address got %s, want silence", status(res))
	}
	if res := o.invite(g.SIPAddr, ruri, digestFor(t, chal, ruri, "pbx-in", inboundPassword), 2*time.Second); res != nil {
		t.Errorf("the right password from the silenced address got %s, want silence", status(res))
	}
	if !f.quiet("call.incoming", time.Second) {
		t.Error("the password guesser rang the customer")
	}
	if !strings.Contains(g.Log(), "source silenced after repeated failures") {
		t.Error("the gateway did not log the silenced address")
	}
}
