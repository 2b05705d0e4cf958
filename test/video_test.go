// No build tag: this runs in plain `go test ./...` with pion peer
// connections standing in for the customer's browser and the console.

package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/rtp"
	pwebrtc "github.com/pion/webrtc/v4"

	"github.com/segue-rtc/segue/transcode/audiotest"
)

// startVideoGateway runs a gateway with WebRTC and no SIP: video straight
// from the chat.
func startVideoGateway(t *testing.T) *httptest.Server {
	t.Helper()
	return startInProcess(t, `
http: {public_url: "http://gateway.test"}
queues: [{name: support}]
agents:
  - {id: alice, name: Alice, password_hash: "`+pionTestHash+`", queues: [support]}
  - {id: bob, name: Bob, password_hash: "`+pionTestHash+`", queues: [support]}
`, nil)
}

func dialSocket(t *testing.T, ctx context.Context, ts *httptest.Server, hc *http.Client) ws {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/api/v1/ws", &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(1 << 22)
	t.Cleanup(func() { conn.CloseNow() })
	return ws{t, conn}
}

// signal runs a browser's side of the negotiation (rtc.answer, rtc.offer,
// rtc.candidate) until until returns true. It runs on its own goroutine, so
// it returns errors instead of failing the test.
func signal(ctx context.Context, w ws, frames <-chan []byte, b *pionBrowser, convID string, until func(map[string]json.RawMessage) bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var raw []byte
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if until(nil) {
				return nil
			}
			continue
		case r, ok := <-frames:
			if !ok {
				return errors.New("websocket closed")
			}
			raw = r
		}
		var f map[string]json.RawMessage
		_ = json.Unmarshal(raw, &f)
		switch str(f["type"]) {
		case "rtc.answer":
			if err := b.answered(str(f["sdp"])); err != nil {
				return err
			}
		case "rtc.offer": // the gateway added a track toward us
			if err := b.pc.SetRemoteDescription(pwebrtc.SessionDescription{Type: pwebrtc.SDPTypeOffer, SDP: str(f["sdp"])}); err != nil {
				return err
			}
			ans, err := b.pc.CreateAnswer(nil)
			if err != nil {
				return err
			}
			gathered := pwebrtc.GatheringCompletePromise(b.pc)
			if err := b.pc.SetLocalDescription(ans); err != nil {
				return err
			}
			<-gathered
			out, _ := json.Marshal(map[string]any{"type": "rtc.answer", "conversation_id": convID, "sdp": b.pc.LocalDescription().SDP})
			if err := w.c.Write(ctx, websocket.MessageText, out); err != nil {
				return err
			}
		case "rtc.candidate":
			b.candidate(f["candidate"])
		case "error":
			return fmt.Errorf("error frame: %s", raw)
		}
		if f != nil && until(f) {
			return nil
		}
	}
}

// reader delivers a socket's frames on a channel, so that a signalling
// loop can also notice things that happen between frames.
func reader(ctx context.Context, w ws) <-chan []byte {
	ch := make(chan []byte, 64)
	go func() {
		defer close(ch)
		for {
			_, raw, err := w.c.Read(ctx)
			if err != nil {
				return
			}
			select {
			case ch <- raw:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// await waits for a signalling goroutine's result.
func await(t *testing.T, what string, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out: %s", what)
	}
}

// sendVideo writes RTP packets with recognisable payloads on a VP8 track.
func sendVideo(ctx context.Context, track *pwebrtc.TrackLocalStaticRTP, tag string) {
	tk := time.NewTicker(33 * time.Millisecond)
	defer tk.Stop()
	for seq := uint16(0); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
			// A VP8 payload descriptor (start of a key frame) then the tag.
			payload := append([]byte{0x10, 0x00, 0x9d, 0x01, 0x2a}, []byte(fmt.Sprintf("%s-%06d", tag, seq))...)
			_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, Marker: true}, Payload: payload})
		}
	}
}

func hasTag(payloads [][]byte, tag string) bool {
	for _, p := range payloads {
		if bytes.Contains(p, []byte(tag)) {
			return true
		}
	}
	return false
}

// videoChat is a conversation an agent has accepted, with both sockets.
type videoChat struct {
	convID           string
	aws, cws         ws
	aframes, cframes <-chan []byte
}

// openVideoChat opens a chat as customer name and has agentID accept it.
func openVideoChat(t *testing.T, ctx context.Context, ts *httptest.Server, name, agentID string) videoChat {
	t.Helper()
	resp, err := http.Post(ts.URL+"/api/v1/conversations", "application/json", strings.NewReader(`{"name":"`+name+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Token        string              `json:"token"`
		Conversation struct{ ID string } `json:"conversation"`
	}
	json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err = hc.Post(ts.URL+"/api/v1/agent/login", "application/json", strings.NewReader(`{"id":"`+agentID+`","password":"password1"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login %s: %v", agentID, err)
	}
	resp.Body.Close()
	c := videoChat{convID: created.Conversation.ID}
	c.aws = dialSocket(t, ctx, ts, hc)
	c.aws.send(map[string]any{"type": "hello"})
	c.aws.send(map[string]any{"type": "accept", "conversation_id": c.convID})
	for str(c.aws.read(ctx)["type"]) != "history" {
	}
	c.aframes = reader(ctx, c.aws)
	c.cws = dialSocket(t, ctx, ts, nil)
	c.cws.send(map[string]any{"type": "hello", "token": created.Token})
	c.cframes = reader(ctx, c.cws)
	return c
}

// cameraOn has the customer's browser b add a camera with track id and
// start video from the chat (video.start), and waits for the answer; it
// returns the camera for sendVideo.
func (c videoChat) cameraOn(t *testing.T, ctx context.Context, b *pionBrowser, id string) *pwebrtc.TrackLocalStaticRTP {
	t.Helper()
	camera := b.addCamera(t, id)
	c.cws.send(map[string]any{"type": "video.start", "sdp": b.offer(t)})
	if err := signal(ctx, c.cws, c.cframes, b, c.convID, func(f map[string]json.RawMessage) bool { return f != nil && str(f["type"]) == "rtc.answer" }); err != nil {
		t.Fatal(err)
	}
	return camera
}

func TestVideoFromChatReachesTheConsoleAndBack(t *testing.T) {
	ts := startVideoGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The customer opens a chat; Alice accepts it.
	chat := openVideoChat(t, ctx, ts, "Ann", "alice")
	convID, aws, aframes, cws, cframes := chat.convID, chat.aws, chat.aframes, chat.cws, chat.cframes

	// The camera button, straight from the chat: audio and video.
	customer := newBrowser(t, 1000)
	camera := chat.cameraOn(t, ctx, customer, "customer-camera")
	vctx, stopVideo := context.WithCancel(ctx)
	defer stopVideo()
	go sendVideo(vctx, camera, "from-customer")

	// The console joins with its own peer connection (its microphone).
	agent := newBrowser(t, 440)
	aws.send(map[string]any{"type": "media.join", "conversation_id": convID, "sdp": agent.offer(t)})
	agentDone := make(chan error, 1)
	go func() {
		agentDone <- signal(ctx, aws, aframes, agent, convID, func(map[string]json.RawMessage) bool { return hasTag(agent.receivedVideo(), "from-customer") })
	}()
	await(t, "the console receiving the customer's video", agentDone)
	// Untouched: the payload arrives byte for byte.
	got := agent.receivedVideo()
	if !hasTag(got, "from-customer-0") {
		t.Fatalf("relayed payloads do not carry the sent bytes: %q", got[len(got)-1])
	}

	// Audio goes browser <-> console when there is no phone call.
	time.Sleep(2 * time.Second)
	if f := audiotest.PeakFrequency(lastOf(agent.heard, time.Second), 8000); f < 980 || f > 1020 {
		t.Errorf("console heard %.0f Hz, want the customer's 1000 Hz", f)
	}
	if f := audiotest.PeakFrequency(lastOf(customer.heard, time.Second), 8000); f < 430 || f > 450 {
		t.Errorf("customer heard %.0f Hz, want the console's 440 Hz", f)
	}

	// The agent turns the console camera on: the gateway offers it to the customer.
	agentCam := agent.addCamera(t, "agent-camera")
	aws.send(map[string]any{"type": "rtc.offer", "conversation_id": convID, "sdp": agent.offer(t)})
	go sendVideo(vctx, agentCam, "from-agent")
	agentSig := make(chan error, 1)
	go func() {
		agentSig <- signal(ctx, aws, aframes, agent, convID, func(f map[string]json.RawMessage) bool {
			return f != nil && str(f["type"]) == "message" && strings.Contains(string(f["message"]), "I can see you")
		})
	}()
	custDone := make(chan error, 1)
	go func() {
		custDone <- signal(ctx, cws, cframes, customer, convID, func(map[string]json.RawMessage) bool { return hasTag(customer.receivedVideo(), "from-agent") })
	}()
	await(t, "the customer receiving the console's video", custDone)

	// The chat goes on beside the video, both ways.
	cws.send(map[string]any{"type": "message", "id": "during-video", "text": "I can see you"})
	await(t, "the agent receiving a chat message during video", agentSig)
}

// videoSetup is one conversation with the customer's camera on and the
// agent's console joined.
type videoSetup struct {
	convID          string
	customer, agent *pionBrowser
}

// startVideoConversation opens a chat as customer name, has agentID accept
// it, turns the customer's camera on (sending payloads tagged tag) and
// joins the console; it returns once the console receives the video.
func startVideoConversation(t *testing.T, ctx context.Context, ts *httptest.Server, name, agentID, tag string) videoSetup {
	t.Helper()
	chat := openVideoChat(t, ctx, ts, name, agentID)
	convID, aws, aframes, cws, cframes := chat.convID, chat.aws, chat.aframes, chat.cws, chat.cframes

	customer := newBrowser(t, 1000)
	camera := chat.cameraOn(t, ctx, customer, tag)
	go sendVideo(ctx, camera, tag)
	go func() {
		_ = signal(ctx, cws, cframes, customer, convID, func(map[string]json.RawMessage) bool { return false })
	}()

	agent := newBrowser(t, 440)
	aws.send(map[string]any{"type": "media.join", "conversation_id": convID, "sdp": agent.offer(t)})
	joined := make(chan error, 1)
	go func() {
		joined <- signal(ctx, aws, aframes, agent, convID, func(map[string]json.RawMessage) bool { return hasTag(agent.receivedVideo(), tag) })
	}()
	await(t, agentID+"'s console receiving "+name+"'s video", joined)
	go func() {
		_ = signal(ctx, aws, aframes, agent, convID, func(map[string]json.RawMessage) bool { return false })
	}()
	return videoSetup{convID: convID, customer: customer, agent: agent}
}

// TestVideoStaysInItsConversation: two conversations with video at once;
// each console gets its own customer's track and never the other's.
func TestVideoStaysInItsConversation(t *testing.T) {
	ts := startVideoGateway(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ann := startVideoConversation(t, ctx, ts, "Ann", "alice", "ann-camera")
	bea := startVideoConversation(t, ctx, ts, "Bea", "bob", "bea-camera")
	time.Sleep(2 * time.Second) // both relays running side by side
	if hasTag(ann.agent.receivedVideo(), "bea-camera") {
		t.Error("Alice's console received Bea's video from another conversation")
	}
	if hasTag(bea.agent.receivedVideo(), "ann-camera") {
		t.Error("Bob's console received Ann's video from another conversation")
	}
	if !hasTag(bea.agent.receivedVideo(), "bea-camera") || !hasTag(ann.agent.receivedVideo(), "ann-camera") {
		t.Error("a console lost its own customer's video")
	}
	for _, b := range []*pionBrowser{ann.customer, bea.customer} {
		if got := b.receivedVideo(); len(got) != 0 {
			t.Errorf("a customer received video nobody sent it: %d packets", len(got))
		}
	}
}
