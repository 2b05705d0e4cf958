package gateway

import (
	"errors"
	"testing"
	"time"
)

// waitUntil polls cond until it holds; the deadline only bounds a hung test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *fakeLeg) closed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closes > 0
}

// videoServer is a gateway with fake browser peers and no SIP: video
// straight from the chat.
func videoServer(t *testing.T, peers *fakePeers, mutate func(*Config)) *env2 {
	return newTestServerOpts(t, mutate, withPeers(peers))
}

// acceptedChat starts a conversation that alice accepts; it returns the
// customer's and alice's sockets and the conversation id.
func (e *env2) acceptedChat(name string) (cws, aws *wsc, id string) {
	e.t.Helper()
	aws, _ = e.agentWS(e.login("alice"))
	id, token := e.startChat(name)
	aws.send(map[string]any{"type": "accept", "conversation_id": id})
	aws.expect("history")
	return e.customerWS(token), aws, id
}

func TestMediaEndsWithTheConversation(t *testing.T) {
	peers := &fakePeers{}
	e := videoServer(t, peers, nil)
	cws, aws, id := e.acceptedChat("Ann")
	cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	cws.expect("rtc.answer")
	customer := peers.last()
	aws.send(map[string]any{"type": "media.join", "conversation_id": id, "sdp": "v=0 console"})
	aws.expect("rtc.answer")
	console := peers.last()

	aws.send(map[string]any{"type": "end", "conversation_id": id})
	waitUntil(t, "the customer's peer to close", customer.closed)
	waitUntil(t, "the console's peer to close", console.closed)
}

func TestCustomerPeerThatEndsOnItsOwnIsReleased(t *testing.T) {
	peers := &fakePeers{}
	e := videoServer(t, peers, func(c *Config) { c.Limits.MaxVideoSessions = 1 })
	cws, _, _ := e.acceptedChat("Ann")
	cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	cws.expect("rtc.answer")
	leg := peers.last()

	// ICE fails: nothing closed the peer, yet it must be released, and
	// its video slot freed for another conversation.
	leg.hangup(errors.New("ice failed"))
	waitUntil(t, "the ended peer to be closed", leg.closed)
	_, token := e.startChat("Bob")
	other := e.customerWS(token)
	waitUntil(t, "the video slot to be free", func() bool {
		e.srv.hub.mu.Lock()
		defer e.srv.hub.mu.Unlock()
		return e.srv.hub.videoSessionsLocked() == 0
	})
	other.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	other.expect("rtc.answer")
}
