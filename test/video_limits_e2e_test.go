//go:build e2e

package test

import (
	"sync"
	"testing"
)

// A visitor that needs no agent could fill limits.max_video_sessions for
// everyone, and concurrent starts all passed its check before any of them
// counted. These tests start video from many pion peers at once against
// the real gateway.

// startAll has every peer send video.start at the same moment and returns
// each one's outcome: "" for an answer, else the error code.
func startAll(peers []*rtcPeer) []string {
	codes := make([]string, len(peers))
	var ready, wg sync.WaitGroup
	ready.Add(1)
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready.Wait()
			codes[i] = p.offer("video.start")
		}()
	}
	ready.Done()
	wg.Wait()
	return codes
}

// tally counts answers and refusals with code, and fails on anything else.
func tally(t *testing.T, codes []string, code string) (answered, refused int) {
	t.Helper()
	for _, c := range codes {
		switch c {
		case "":
			answered++
		case code:
			refused++
		default:
			t.Errorf("unexpected outcome %q", c)
		}
	}
	return answered, refused
}

// cameras opens n conversations from v, each with a pion camera ready to
// start video.
func cameras(t *testing.T, v *visitor, n int) []*rtcPeer {
	t.Helper()
	peers := make([]*rtcPeer, n)
	for i := range peers {
		_, token := v.newConversation("Visitor")
		peers[i] = newRTCPeer(t, v.socket(token), "", rtcOptions{toneHz: 1000})
		peers[i].camera("camera", 30, 300)
	}
	return peers
}

// TestVideoStartFloodKeepsTheLimit: with limits.max_video_sessions: 3,
// twelve concurrent video.start (twelve conversations) get exactly three
// answers and nine busy; a slot freed by a visitor who leaves goes to the
// next start.
func TestVideoStartFloodKeepsTheLimit(t *testing.T) {
	g := startGateway(t, withYAML("", "", "", "  max_video_sessions: 3\n  max_peers_per_ip: 20\n"))
	peers := cameras(t, g.visitor(t, "127.0.0.6"), 12)
	codes := startAll(peers)
	if answered, busy := tally(t, codes, "busy"); answered != 3 || busy != 9 {
		t.Fatalf("%d answered and %d busy of 12 concurrent starts, want 3 and 9", answered, busy)
	}
	m := metricsOf(t, g)
	if n := m[`segue_media_refused_total{reason="video_limit"}`]; n != 9 {
		t.Errorf("segue_media_refused_total{reason=\"video_limit\"} = %v, want 9", n)
	}
	var gone, waiting *rtcPeer
	for i, c := range codes {
		switch {
		case c == "" && gone == nil:
			gone = peers[i]
		case c != "" && waiting == nil:
			waiting = peers[i]
		}
	}
	gone.connected(t, "a started camera")
	gone.close() // the page goes away: its video slot is free again
	waitFor(t, "the freed slot to be taken", func() error {
		if c := waiting.offer("video.start"); c != "" {
			return errorString("video.start: " + c)
		}
		return nil
	})
}

// TestPeersPerAddress: limits.max_peers_per_ip (default 4) caps the peer
// connections of one address, not of the next; a peer that ends gives
// its slot back.
func TestPeersPerAddress(t *testing.T) {
	g := startGateway(t)
	greedy := cameras(t, g.visitor(t, "127.0.0.7"), 6)
	codes := startAll(greedy)
	if answered, busy := tally(t, codes, "busy"); answered != 4 || busy != 2 {
		t.Fatalf("%d answered and %d busy of 6 concurrent starts from one address, want 4 and 2", answered, busy)
	}
	neighbour := cameras(t, g.visitor(t, "127.0.0.8"), 1)[0]
	if c := neighbour.offer("video.start"); c != "" {
		t.Fatalf("another address was refused: %s", c)
	}
	if n := metricsOf(t, g)[`segue_media_refused_total{reason="peers_per_ip"}`]; n != 2 {
		t.Errorf("segue_media_refused_total{reason=\"peers_per_ip\"} = %v, want 2", n)
	}
	var gone, waiting *rtcPeer
	for i, c := range codes {
		switch {
		case c == "" && gone == nil:
			gone = greedy[i]
		case c != "" && waiting == nil:
			waiting = greedy[i]
		}
	}
	gone.close()
	waitFor(t, "the freed slot to be taken", func() error {
		if c := waiting.offer("video.start"); c != "" {
			return errorString("video.start: " + c)
		}
		return nil
	})
}

// TestVideoAfterAccept: with queues[].video: after_accept the
// conversation says video false until an agent accepts it, and video.start
// before that is refused with video_not_available; once Alice accepts,
// the conversation says video true and video starts.
func TestVideoAfterAccept(t *testing.T) {
	g := startGateway(t, withYAML("", "", "    video: after_accept\n", ""))
	c, conv := g.newConversation(t, "Ann Lee")
	if conv.Video {
		t.Fatal("a new conversation of an after_accept queue says video true")
	}
	w := customerWS(t, g, c.token)
	cust := newRTCPeer(t, w, "", rtcOptions{toneHz: 1000})
	cust.camera("camera", 30, 300)
	if code := cust.offer("video.start"); code != "video_not_available" {
		t.Fatalf("video before accept: %q, want video_not_available", code)
	}
	agentWS(t, g, g.login(t, "alice")).accept(conv.ID, "alice")
	var after conversation
	waitFor(t, "the conversation to say video", func() error {
		c.json("GET", "/api/v1/conversations/"+conv.ID, nil, 200, &struct {
			Conversation *conversation `json:"conversation"`
		}{&after})
		if !after.Video {
			return errorString("video false")
		}
		return nil
	})
	if code := cust.offer("video.start"); code != "" {
		t.Fatalf("video after accept: %q", code)
	}
	cust.connected(t, "the customer's camera")
}

// TestVideoButtonsFollowThePolicy: in Chromium, the widget of an
// after_accept queue shows neither the camera nor the screen button until
// Alice accepts the chat.
func TestVideoButtonsFollowThePolicy(t *testing.T) {
	g := startGateway(t, withYAML("", "", "    video: after_accept\n", ""))
	customer := openWidget(t, g, "customer")
	customer.fill("customer-name", "Ann Lee")
	customer.send("Can you see this?")
	customer.waitMessage("Can you see this?")
	shown := fn("id", `const b = q(id); return !!b && !b.hidden;`)
	if call[bool](customer, shown, "video-start") || call[bool](customer, shown, "screen-start") {
		t.Fatal("the camera or screen button shows before an agent accepted the chat")
	}
	agentWS(t, g, g.login(t, "alice")).accept(customer.widgetConversation(), "alice")
	customer.waitText("agent-name", "helping")
	waitJS[bool](customer, "the camera button after accept", shown, "video-start")
	if call[bool](customer, fn("", `return !!navigator.mediaDevices?.getDisplayMedia;`)) {
		waitJS[bool](customer, "the screen button after accept", shown, "screen-start")
	}
	noCSPViolations(t, customer)
}

// errorString is an error with a fixed text.
type errorString string

func (e errorString) Error() string { return string(e) }
