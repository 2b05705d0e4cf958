package gateway

import "testing"

// TestTransferHandsTheVideoOver: the agent who transfers a conversation
// leaves its video (their console's peer connection closes), and the
// agent who takes it over can join the customer's running video.
func TestTransferHandsTheVideoOver(t *testing.T) {
	peers := &fakePeers{}
	e := videoServer(t, peers, nil)
	bws, _ := e.agentWS(e.login("bob"))
	cws, aws, id := e.acceptedChat("Ann")
	cws.send(map[string]any{"type": "video.start", "sdp": "v=0 camera"})
	cws.expect("rtc.answer")
	customer := peers.last()
	aws.send(map[string]any{"type": "media.join", "conversation_id": id, "sdp": "v=0 console"})
	aws.expect("rtc.answer")
	aliceConsole := peers.last()

	aws.send(map[string]any{"type": "transfer", "conversation_id": id, "agent": "bob"})
	bws.expect("history")
	waitUntil(t, "alice's console peer to close", aliceConsole.closed)

	bws.send(map[string]any{"type": "media.join", "conversation_id": id, "sdp": "v=0 console"})
	bws.expect("rtc.answer")
	if bobConsole := peers.last(); bobConsole == aliceConsole || bobConsole.closed() {
		t.Fatal("bob's console has no peer connection of its own")
	}
	if customer.closed() {
		t.Fatal("the transfer closed the customer's video")
	}
}
