//go:build e2e

package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segue-rtc/segue/sip"
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
	if st := customer.waitCall("ended"); st.Text != "Call ended: The service restarted" {
		t.Errorf("after the restart the widget says %q", st.Text)
	}
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

// TestGatewayDrainsOnSIGTERM: SIGTERM with a call up. At once new chats
// get 503 with Retry-After and the PBX's INVITE into a conversation 503;
// the desk phone gets its BYE (after the stop notice), the widget says
// the service is restarting, and the process exits within the drain
// timeout (http.drain_timeout, default 10s).
func TestGatewayDrainsOnSIGTERM(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_wait_bye.xml", "127.0.0.1", "-m", "1")
	hs := newHostSite(t)
	g := sippGateway(t, pbx, hs)
	customer, _, convID := shopChat(t, hs, g, "", "before the stop")
	customer.click("voice-start")
	customer.waitCall("connected")
	caller := startSIP(t, []sip.TrunkConfig{{Name: "gw", URI: "sip:" + g.SIPAddr, AllowInboundFrom: []string{"127.0.0.1/32"}}})

	g.mu.Lock()
	cmd, done := g.cmd, g.done
	g.cmd = nil
	g.mu.Unlock()
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New chats: 503 with Retry-After while the calls drain.
	var retryAfter string
	for retryAfter == "" && time.Since(start) < 5*time.Second {
		res, err := http.Post(g.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{"name":"late"}`))
		if err != nil {
			break
		}
		res.Body.Close()
		if res.StatusCode == http.StatusServiceUnavailable {
			retryAfter = res.Header.Get("Retry-After")
		}
	}
	if retryAfter == "" {
		t.Errorf("no 503 with Retry-After for a new chat while draining")
	}
	// A call into a conversation: 503 from the SIP side.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := caller.Dial(ctx, "gw", "sip:conv-"+convID+"@"+g.SIPAddr, sip.DialOptions{})
	var se *sip.StatusError
	if err == nil {
		c.Close()
		t.Errorf("the gateway answered a call while draining")
	} else if !errors.As(err, &se) || se.Code != 503 {
		t.Errorf("INVITE while draining: %v, want 503", err)
	}
	waitSIPp(t, pbx)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("segue did not exit within 15 s of SIGTERM")
	}
	took := time.Since(start)
	t.Logf("segue drained a call and exited %v after SIGTERM", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("exit took %v, past the 10s drain timeout", took)
	}
	if st := customer.callStatus(); st.State != "ended" || !strings.Contains(st.Text, "The service is restarting") {
		t.Errorf("the widget's call: %+v", st)
	}
	customer.waitText("call-status", "Server restarting")
}

// TestVoiceHangupToAPBXThatForgotTheCall: the PBX restarted mid-call and
// answers the customer's hang-up (BYE) with 481. The call still ends
// cleanly on both sides, in the customer's words, the chat goes on and
// the next call can start.
func TestVoiceHangupToAPBXThatForgotTheCall(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_bye_481.xml", "127.0.0.1", "-m", "1")
	hs := newHostSite(t)
	g := sippGateway(t, pbx, hs)
	customer, _ := openShopWidget(t, hs, "customer", "support", "", "Call me")
	customer.click("voice-start")
	customer.waitCall("connected")
	customer.click("hangup")
	if st := customer.waitCall("ended"); st.Text != "Call ended: You hung up" {
		t.Errorf("after the hang-up the widget says %q", st.Text)
	}
	waitSIPp(t, pbx)
	customer.send("still chatting")
	customer.waitMessage("still chatting")
	waitJS[bool](customer, "the mic button again", fn("", `const b = q('voice-start'); return !b.hidden && !b.disabled;`))
	if n := metricsOf(t, g)[`segue_calls_ended_total{cause="customer_hangup"}`]; n != 1 {
		t.Errorf(`segue_calls_ended_total{cause="customer_hangup"} = %v, want 1`, n)
	}
}

// TestVoicePBXAnswersAndSendsNoAudio: the PBX answers 200 and then sends
// no RTP at all. With sip.rtp_timeout at 3s the gateway ends the call a
// few seconds later: BYE to the PBX in its dialog, the customer and the
// console told that the phone line went silent, a warning in the log and
// the media_timeout cause counted.
func TestVoicePBXAnswersAndSendsNoAudio(t *testing.T) {
	pbx := peers.StartSIPp(t, "sipp/uas_wait_bye.xml", "127.0.0.1", "-m", "1")
	hs := newHostSite(t)
	g := hs.startGateway(t, voiceConfig{
		trunks:     []voiceTrunk{{name: "pbx", addr: pbx.Addr()}},
		queues:     []voiceQueue{{name: "support", trunk: "pbx", dial: "sip:600@" + pbx.Addr()}},
		alicePhone: "sip:1001@" + pbx.Addr(),
	}, withYAML("  rtp_timeout: 3s\n", "", "", ""))
	customer, agent, _ := shopChat(t, hs, g, "", "Hello?")
	customer.click("voice-start")
	customer.waitCall("connected")
	connected := time.Now()
	st := customer.waitCall("ended")
	t.Logf("a call with no RTP from the PBX ended %v after it connected (sip.rtp_timeout 3s)", time.Since(connected).Round(100*time.Millisecond))
	if st.Text != "Call ended: The phone line went silent" {
		t.Errorf("the widget says %q", st.Text)
	}
	agent.waitMessageContaining("Call ended: The phone line went silent")
	waitSIPp(t, pbx)
	if !strings.Contains(g.Log(), "voice: no RTP from the phone side") {
		t.Errorf("no warning about the silent phone side in the log")
	}
	if n := metricsOf(t, g)[`segue_calls_ended_total{cause="media_timeout"}`]; n != 1 {
		t.Errorf(`segue_calls_ended_total{cause="media_timeout"} = %v, want 1`, n)
	}
}

// TestGatewayKilledDuringVideo: the gateway is killed (SIGKILL) while the
// customer's camera (a pion customer) reaches the agent's console (a pion
// console). After it starts again, the video's call record is closed
// with the restart as its cause, the transcript says the video ended
// because the gateway restarted, and the chat goes on both ways.
func TestGatewayKilledDuringVideo(t *testing.T) {
	g := startGateway(t)
	alice := g.login(t, "alice")
	v := g.visitor(t, "127.0.0.1")
	conv, token := v.newConversation("Ann")
	agentWS(t, g, alice).accept(conv, "alice")
	ann := newRTCPeer(t, v.socket(token), "", rtcOptions{})
	ann.camera("ann-camera", 30, 1000)
	if code := ann.offer("video.start"); code != "" {
		t.Fatalf("video.start: %s", code)
	}
	console := newRTCPeer(t, agentWS(t, g, alice), conv, rtcOptions{})
	console.camera("alice-camera", 10, 100)
	if code := console.offer("media.join"); code != "" {
		t.Fatalf("media.join: %s", code)
	}
	waitFor(t, "the camera at the console", func() error {
		if n := console.videoPackets(); n < 30 {
			return fmt.Errorf("%d packets", n)
		}
		return nil
	})

	g.Kill()
	g.Start()

	alice = g.login(t, "alice")
	var ended []string
	waitFor(t, "the video's end in the transcript", func() error {
		ended = ended[:0]
		for _, m := range alice.messages(conv) {
			if strings.HasPrefix(m.Text, "Video ended") {
				ended = append(ended, m.Text)
			}
		}
		if len(ended) == 0 {
			return errors.New("no video end")
		}
		return nil
	})
	if len(ended) != 1 || !strings.HasPrefix(ended[0], "Video ended: The gateway restarted (0:0") {
		t.Errorf("transcript's video endings: %q, want one for the restart", ended)
	}
	var out struct {
		Calls []struct {
			Kind    string  `json:"kind"`
			Cause   string  `json:"cause"`
			Codec   string  `json:"codec"`
			EndedAt *string `json:"ended_at"`
		} `json:"calls"`
	}
	alice.json(http.MethodGet, "/api/v1/conversations/"+conv+"/calls", nil, http.StatusOK, &out)
	if len(out.Calls) != 1 || out.Calls[0].Kind != "video" || out.Calls[0].Cause != "The gateway restarted" ||
		out.Calls[0].EndedAt == nil || !strings.Contains(strings.ToLower(out.Calls[0].Codec), "vp8") {
		t.Errorf("call records after the restart: %+v", out.Calls)
	}

	// The chat goes on, both ways, on new sockets.
	annWS := v.socket(token)
	aliceWS := agentWS(t, g, alice)
	annWS.send(map[string]any{"type": "message", "id": "ann-after", "text": "still there?"})
	expectMessageText(t, aliceWS, "still there?")
	aliceWS.send(map[string]any{"type": "message", "id": "alice-after", "conversation_id": conv, "text": "yes, after the restart"})
	expectMessageText(t, annWS, "yes, after the restart")
}

// expectMessageText reads message frames on w until one carries text.
func expectMessageText(t *testing.T, w *wsConn, text string) {
	t.Helper()
	for range 10 {
		var m struct {
			Message struct{ Text string } `json:"message"`
		}
		raw, _ := json.Marshal(w.expect("message"))
		if json.Unmarshal(raw, &m) == nil && m.Message.Text == text {
			return
		}
	}
	t.Errorf("no message %q", text)
}
