//go:build e2e

package test

import (
	"strings"
	"testing"

	"github.com/segue-rtc/segue/test/peers"
)

// TestGatewayKilledDuringCall: the gateway is killed (SIGKILL, as in a
// crash) while a chat goes on and a call to the desk phone is up. After
// it starts again, the desk phone gets a BYE in the call's own dialog
// (SIPp would fail the scenario otherwise), the transcript says the call
// ended because the gateway restarted, every message acknowledged before
// the kill is still there once, and the widget and the console reconnect
// by themselves and go on.
func TestGatewayKilledDuringCall(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_wait_bye.xml", "127.0.0.1", "-m", "1")
	hs := newHostSite(t)
	g := sippGateway(t, pbx, hs)
	customer, agent, convID := shopChat(t, hs, g, "", "before the crash")
	agent.send("reply before the crash")
	customer.waitMessage("reply before the crash")
	customer.click("voice-start")
	customer.waitCall("connected")

	g.Kill()
	g.Start()

	waitSIPp(t, pbx)
	customer.waitMessageContaining("Call ended: The gateway restarted")
	agent.waitMessageContaining("Call ended: The gateway restarted")
	customer.waitText("call-status", "Connected")
	agent.waitText("connection-status", "Connected")
	customer.send("after the crash")
	agent.waitMessage("after the crash")
	agent.send("reply after the crash")
	customer.waitMessage("reply after the crash")
	waitJS[bool](customer, "the mic button again", fn("", `const b = q('voice-start'); return !b.hidden && !b.disabled;`))

	stored := g.login(t, "alice").messages(convID)
	for _, text := range []string{"before the crash", "reply before the crash", "after the crash", "reply after the crash"} {
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
	var restart int
	for _, m := range stored {
		if strings.HasPrefix(m.Text, "Call ended: The gateway restarted") {
			restart++
		}
	}
	if restart != 1 {
		t.Errorf("transcript holds %d restart endings, want 1", restart)
	}
	if out := g.Log(); !strings.Contains(out, "BYE sent for a call left up by the last run") {
		t.Errorf("the restarted gateway logged no BYE for the call")
	}
	if n := metricsOf(t, g)[`segue_calls_recovered_total{result="bye"}`]; n != 1 {
		t.Errorf("segue_calls_recovered_total{result=\"bye\"} = %v, want 1", n)
	}
}
