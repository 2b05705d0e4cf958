package gateway

import "testing"

// TestTransferHandsTheVideoOver: the agent who transfers a conversation
// leaves its video (their console's peer connection closes), and the
// agent who takes it over can join the customer's running video.
func TestTransferHandsTheVideoOver(t *testing.T) {
	vc := startVideoChat(t, nil)
	bws, _ := vc.e.agentWS(vc.e.login("bob"))

	vc.aws.send(map[string]any{"type": "transfer", "conversation_id": vc.id, "agent": "bob"})
	bws.expect("history")
	waitUntil(t, "alice's console peer to close", vc.cons.closed)

	bws.send(map[string]any{"type": "media.join", "conversation_id": vc.id, "sdp": "v=0 console"})
	bws.expect("rtc.answer")
	if bobConsole := vc.peers.last(); bobConsole == vc.cons || bobConsole.closed() {
		t.Fatal("bob's console has no peer connection of its own")
	}
	if vc.customer.closed() {
		t.Fatal("the transfer closed the customer's video")
	}
}
