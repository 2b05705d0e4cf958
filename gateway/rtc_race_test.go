package gateway

import (
	"context"
	"testing"
)

// gatedPeers is fakePeers whose NewPeer waits for release, to end the
// conversation while a peer is being built.
type gatedPeers struct {
	fakePeers
	entered chan struct{}
	release chan struct{}
}

func (p *gatedPeers) NewPeer(ctx context.Context, conv string, hooks peerHooks) (browserPeer, error) {
	p.entered <- struct{}{}
	<-p.release
	return p.fakePeers.NewPeer(ctx, conv, hooks)
}

// TestPeerBuiltWhileTheConversationEndsIsClosed: the agent ends the
// conversation while the customer's peer is being built (after the
// video.start checks, before the peer is kept). The conversation's media
// were closed at its end, so the new peer must be closed too, and the
// customer told the conversation ended.
func TestPeerBuiltWhileTheConversationEndsIsClosed(t *testing.T) {
	peers := &gatedPeers{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := newTestServerOpts(t, nil, withPeers(peers))
	c := e.acceptedChat("Ann")
	c.cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	<-peers.entered
	c.aws.send(map[string]any{"type": "end", "conversation_id": c.id})
	waitUntil(t, "the conversation to end", e.hubHolds(func(h *hub) bool { _, live := h.convs[c.id]; return !live }))
	close(peers.release)
	if code := decode[string](t, c.cws.expect("error")["code"]); code != "ended" {
		t.Errorf("video.start answered with %q, want ended", code)
	}
	waitUntil(t, "the peer built meanwhile to close", peers.last().closed)
}
