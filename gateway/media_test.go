package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// waitUntil polls cond until it holds; the deadline only bounds a hung test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(frameWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fakeLeg) closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closes > 0
}

// hubHolds returns cond as a condition to wait for, checked with the
// hub locked.
func (e *env2) hubHolds(cond func(h *hub) bool) func() bool {
	return func() bool {
		h := e.srv.hub
		h.mu.Lock()
		defer h.mu.Unlock()
		return cond(h)
	}
}

// setMediaGrace sets mediaGrace for one test. Call it before the test
// starts its server, so that the server is closed before the grace is
// set back.
func setMediaGrace(t *testing.T, d time.Duration) {
	old := mediaGrace
	mediaGrace = d
	t.Cleanup(func() { mediaGrace = old })
}

// videoServer is a gateway with fake browser peers and no SIP: video
// straight from the chat.
func videoServer(t *testing.T, peers *fakePeers, mutate func(*Config)) *env2 {
	return newTestServerOpts(t, mutate, withPeers(peers))
}

func TestMediaEndsWithTheConversation(t *testing.T) {
	vc := startVideoChat(t, nil)
	vc.aws.send(map[string]any{"type": "end", "conversation_id": vc.id})
	waitUntil(t, "the customer's peer to close", vc.customer.closed)
	waitUntil(t, "the console's peer to close", vc.cons.closed)
}

func TestCustomerPeerThatEndsOnItsOwnIsReleased(t *testing.T) {
	peers := &fakePeers{}
	e := videoServer(t, peers, func(c *Config) { c.Limits.MaxVideoSessions = 1 })
	c := e.acceptedChat("Ann")
	c.cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	c.cws.expect("rtc.answer")
	leg := peers.last()

	// ICE fails: nothing closed the peer, yet it must be released, and
	// its video slot freed for another conversation.
	leg.hangup(errors.New("ice failed"))
	waitUntil(t, "the ended peer to be closed", leg.closed)
	_, token := e.startChat("Bob")
	other := e.customerWS(token)
	waitUntil(t, "the video slot to be free", func() bool { return c.sessions() == 0 })
	other.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	other.expect("rtc.answer")
}

// pageWS opens a socket for a page: a customer's (token) or a console's
// (hc, with the agent's cookie), and returns it with its welcome.
func (e *env2) pageWS(token string, hc *http.Client, page string) (*wsc, map[string]json.RawMessage) {
	e.t.Helper()
	origin := ""
	if token != "" {
		origin = "https://shop.example.com"
	}
	w, _, err := e.dial(hc, origin)
	if err != nil {
		e.t.Fatal(err)
	}
	hello := map[string]any{"type": "hello", "page": page}
	if token != "" {
		hello["token"] = token
	}
	w.send(hello)
	return w, w.expect("welcome")
}

// blip drops a socket the way a network does: no close frame.
func (w *wsc) blip() { w.conn.CloseNow() }

// leave closes a socket the way a browser does when the page is left or
// reloaded.
func (w *wsc) leave() { _ = w.conn.Close(websocket.StatusGoingAway, "") }

// chat is a conversation that alice accepted, with the customer's socket
// from page "p1" and alice's from page "a1".
type chat struct {
	e         *env2
	id, token string
	alice     *http.Client
	cws, aws  *wsc
}

// acceptedChat starts a conversation as customer name that alice accepts.
func (e *env2) acceptedChat(name string) *chat {
	e.t.Helper()
	c := &chat{e: e, alice: e.login("alice")}
	c.aws, _ = e.pageWS("", c.alice, "a1")
	c.id, c.token = e.startChat(name)
	c.aws.send(map[string]any{"type": "accept", "conversation_id": c.id})
	c.aws.expect("history")
	c.cws, _ = e.pageWS(c.token, nil, "p1")
	return c
}

// sessions is how many conversations have video.
func (c *chat) sessions() int {
	h := c.e.srv.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.videoSessionsLocked()
}

// videoChat is a chat with the customer's video on and alice's console
// joined.
type videoChat struct {
	*chat
	peers          *fakePeers
	customer, cons *fakeLeg
}

// startVideoChat runs a video server (mutate changes its config) and
// starts a videoChat in it.
func startVideoChat(t *testing.T, mutate func(*Config)) *videoChat {
	t.Helper()
	vc := &videoChat{peers: &fakePeers{}}
	vc.chat = videoServer(t, vc.peers, mutate).acceptedChat("Ann")
	vc.cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	vc.cws.expect("rtc.answer")
	vc.customer = vc.peers.last()
	vc.aws.send(map[string]any{"type": "media.join", "conversation_id": vc.id, "sdp": "v=0 console"})
	vc.aws.expect("rtc.answer")
	vc.cons = vc.peers.last()
	return vc
}

func TestMediaOutlivesASocketBlip(t *testing.T) {
	setMediaGrace(t, time.Hour) // nothing here waits for it
	vc := startVideoChat(t, nil)
	e := vc.e

	// The customer's socket drops; the page comes back with its page id.
	vc.cws.blip()
	cws, welcome := e.pageWS(vc.token, nil, "p1")
	if m := decode[map[string]bool](t, welcome["media"]); !m["video"] || m["voice"] {
		t.Fatalf("welcome media of the page that holds the video = %v, want video only", m)
	}
	// Signalling goes on on the new socket.
	cws.send(map[string]any{"type": "rtc.candidate", "candidate": map[string]any{"candidate": "candidate:9 1 udp 9 127.0.0.1 9 typ host", "sdpMid": "0"}})
	waitUntil(t, "the candidate to reach the peer", func() bool {
		vc.customer.mu.Lock()
		defer vc.customer.mu.Unlock()
		return len(vc.customer.cands) == 1
	})

	// The console's socket drops too, and comes back.
	vc.aws.blip()
	_, awelcome := e.pageWS("", vc.alice, "a1")
	media := decode[map[string]map[string]bool](t, awelcome["media"])
	if !media[vc.id]["joined"] {
		t.Fatalf("console welcome media = %v, want %s joined", media, vc.id)
	}
	if vc.customer.closed() || vc.cons.closed() || vc.sessions() != 1 {
		t.Fatalf("a socket blip closed media: customer %v, console %v, sessions %d", vc.customer.closed(), vc.cons.closed(), vc.sessions())
	}
	// A second console tab learns that the video is held elsewhere, and
	// cannot take it.
	second, swelcome := e.pageWS("", vc.alice, "a2")
	if m := decode[map[string]map[string]bool](t, swelcome["media"])[vc.id]; !m["elsewhere"] || m["joined"] {
		t.Fatalf("second console's media for %s = %v, want elsewhere", vc.id, m)
	}
	second.send(map[string]any{"type": "media.join", "id": "j1", "conversation_id": vc.id, "sdp": "v=0 second console"})
	if f := second.expect("error"); decode[string](t, f["code"]) != "in_use" {
		t.Fatalf("media.join from a second console tab: %v", f)
	}
	// Another page of the same customer cannot signal for that media.
	other, welcome := e.pageWS(vc.token, nil, "p2")
	if welcome["media"] != nil {
		t.Fatalf("another page is told of media it does not hold: %s", welcome["media"])
	}
	other.send(map[string]any{"type": "video.start", "id": "v1", "sdp": "v=0 other camera"})
	if f := other.expect("error"); decode[string](t, f["code"]) != "in_use" {
		t.Fatalf("video.start from another page while the owner is connected: %v", f)
	}
}

func TestOfferOwedOrLostGoesToTheReconnectedPage(t *testing.T) {
	setMediaGrace(t, time.Hour)
	vc := startVideoChat(t, nil)
	e := vc.e

	// An offer made while the page has no socket waits for the page.
	vc.cws.blip()
	waitUntil(t, "the customer's socket to be gone", e.hubHolds(func(h *hub) bool { return len(h.convs[vc.id].customers) == 0 }))
	vc.aws.send(map[string]any{"type": "media.leave", "conversation_id": vc.id}) // renegotiates the customer
	waitUntil(t, "the console to leave", vc.cons.closed)
	cws, _ := e.pageWS(vc.token, nil, "p1")
	first := decode[string](t, cws.expect("rtc.offer")["sdp"])

	// That offer's answer is lost with the socket: the same offer goes to
	// the next socket, and its answer frees the way for the next offer.
	cws.blip()
	cws, _ = e.pageWS(vc.token, nil, "p1")
	if again := decode[string](t, cws.expect("rtc.offer")["sdp"]); again != first {
		t.Fatalf("offer sent again = %q, want the unanswered %q", again, first)
	}
	cws.send(map[string]any{"type": "rtc.answer", "sdp": "v=0 customer answer"})
	vc.aws.send(map[string]any{"type": "media.join", "conversation_id": vc.id, "sdp": "v=0 console again"})
	vc.aws.expect("rtc.answer")
	vc.aws.send(map[string]any{"type": "media.leave", "conversation_id": vc.id})
	if next := decode[string](t, cws.expect("rtc.offer")["sdp"]); next == first {
		t.Fatalf("the next change sent the old offer again")
	}
}

// TestNoOfferOvertakesTheAnswer: an offer of the gateway's that comes up
// while it answers the browser's offer (here the console leaving while
// the customer renegotiates) goes out after that answer, never before:
// the browser, still waiting for its answer, would take it for glare.
func TestNoOfferOvertakesTheAnswer(t *testing.T) {
	vc := startVideoChat(t, nil)
	entered, release := vc.customer.holdAnswers()
	vc.cws.send(map[string]any{"type": "rtc.offer", "sdp": "v=0 camera and screen"})
	<-entered

	// The console leaves meanwhile, which needs an offer to the customer
	// (its tracks go). Alice's socket is read in order: the ack of her
	// next frame says that media.leave has been handled.
	vc.aws.send(map[string]any{"type": "media.leave", "conversation_id": vc.id})
	vc.aws.send(map[string]any{"type": "message", "conversation_id": vc.id, "id": "m1", "text": "bye for now"})
	vc.aws.expect("ack")
	waitUntil(t, "the console to leave", vc.cons.closed)
	close(release)

	if f := vc.cws.expect2("rtc.offer", "rtc.answer"); decode[string](t, f["type"]) != "rtc.answer" {
		t.Fatalf("the customer got the gateway's offer %s before the answer to its own offer", f["sdp"])
	}
	// The change is not lost: its offer follows the answer.
	if offer := decode[string](t, vc.cws.expect("rtc.offer")["sdp"]); offer != vc.customer.LocalOffer() {
		t.Fatalf("offer %q, want the peer's pending %q", offer, vc.customer.LocalOffer())
	}
	vc.cws.send(map[string]any{"type": "rtc.answer", "sdp": "v=0 customer answer"})
	waitUntil(t, "the offer to be answered", func() bool { return vc.customer.LocalOffer() == "" })
}

func TestLeavingThePageEndsItsMediaAtOnce(t *testing.T) {
	setMediaGrace(t, time.Hour) // leaving does not wait for the grace
	vc := startVideoChat(t, func(c *Config) { c.Limits.MaxVideoSessions = 1 })
	e := vc.e

	// The customer reloads: the page's connection closes, the console's stays.
	vc.cws.leave()
	waitUntil(t, "the customer's peer to close", vc.customer.closed)
	cws, welcome := e.pageWS(vc.token, nil, "p2")
	if welcome["media"] != nil {
		t.Fatalf("the reloaded page is told of media: %s", welcome["media"])
	}
	if vc.cons.closed() {
		t.Fatal("the customer's reload closed the console's peer")
	}
	// The slot is the same conversation's: video starts again.
	cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera again"})
	cws.expect("rtc.answer")
	if vc.sessions() != 1 {
		t.Fatalf("%d video sessions, want 1", vc.sessions())
	}

	// The agent reloads the console: its video session closes, the
	// customer's connection stays, and the reloaded console may join again.
	vc.aws.leave()
	waitUntil(t, "the console's peer to close", vc.cons.closed)
	aws, _ := e.pageWS("", vc.alice, "a2")
	aws.send(map[string]any{"type": "media.join", "conversation_id": vc.id, "sdp": "v=0 console again"})
	aws.expect("rtc.answer")
	if vc.peers.last().closed() || vc.sessions() != 1 {
		t.Fatalf("after the console's reload: sessions %d", vc.sessions())
	}
}

func TestLeavingThePageEndsItsCall(t *testing.T) {
	phone := newFakeLeg()
	peers := &fakePeers{}
	e := voiceServer(t, &fakePhones{result: func() (*fakeLeg, error) { return phone, nil }}, peers, nil)
	c := e.acceptedChat("Ann")
	c.cws.send(map[string]any{"type": "voice.start", "sdp": "v=0 offer"})
	waitCall(t, c.aws, callConnected)

	// A call alone has no grace timer: a blip leaves it to its media.
	c.cws.blip()
	waitUntil(t, "the socket to be gone", e.hubHolds(func(h *hub) bool {
		cv := h.convs[c.id]
		return len(cv.customers) == 0 && cv.rtc != nil && cv.rtc.grace.t == nil
	}))
	cws, welcome := e.pageWS(c.token, nil, "p1")
	if m := decode[map[string]bool](t, welcome["media"]); !m["voice"] || m["video"] {
		t.Fatalf("welcome media = %v, want voice only", m)
	}

	// The page is reloaded: the desk phone is hung up at once.
	cws.leave()
	if call := waitCall(t, c.aws, callEnded); call.Cause != "browser_lost" {
		t.Fatalf("call after the reload: %+v", call)
	}
	waitUntil(t, "the desk phone to be hung up", phone.closed)
	waitUntil(t, "the browser's peer to close", peers.last().closed)
}

func TestPageThatStaysAwayLosesItsVideo(t *testing.T) {
	setMediaGrace(t, time.Millisecond)
	vc := startVideoChat(t, nil)
	e := vc.e
	vc.cws.blip()
	waitUntil(t, "the customer's peer to close after the grace", vc.customer.closed)
	vc.aws.blip()
	waitUntil(t, "the console's peer to close after the grace", vc.cons.closed)
	waitUntil(t, "the video slot to be free", func() bool { return vc.sessions() == 0 })
	_, welcome := e.pageWS(vc.token, nil, "p1")
	if welcome["media"] != nil {
		t.Fatalf("the page that came back too late is told of media: %s", welcome["media"])
	}
}

func TestANewPageReplacesMediaOfAPageThatVanished(t *testing.T) {
	setMediaGrace(t, time.Hour)
	vc := startVideoChat(t, nil)
	e := vc.e

	// The tab vanished without closing its socket (a crash): the new page
	// starts video afresh on a new connection.
	vc.cws.blip()
	cws, _ := e.pageWS(vc.token, nil, "p2")
	waitUntil(t, "the old page's socket to be gone", e.hubHolds(func(h *hub) bool { return len(h.convs[vc.id].customers) == 1 }))
	cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	cws.expect("rtc.answer")
	waitUntil(t, "the vanished page's peer to close", vc.customer.closed)
	if vc.peers.last() == vc.customer || vc.peers.last() == vc.cons {
		t.Fatal("no new peer for the new page")
	}

	// The same for the console.
	vc.aws.blip()
	aws, _ := e.pageWS("", vc.alice, "a2")
	waitUntil(t, "the old console socket to be gone", e.hubHolds(func(h *hub) bool { return len(h.agents["alice"].clients) == 1 }))
	aws.send(map[string]any{"type": "media.join", "conversation_id": vc.id, "sdp": "v=0 console"})
	aws.expect("rtc.answer")
	waitUntil(t, "the vanished console's peer to close", vc.cons.closed)
}
