package webrtc

import "sync/atomic"

// VideoRelayStats is what an Engine's forwarders relayed since the Engine
// was made, for metrics.
type VideoRelayStats struct {
	// Packets and Bytes count the RTP packets (and their bytes, headers
	// included) written to destination browsers; a packet relayed to two
	// viewers counts twice.
	Packets, Bytes uint64
	// KeyFrameRequests counts the RTCP PLIs sent to browsers that send
	// video (RFC 4585 §6.3.1): a viewer's PLI or FIR passed on, or the
	// gateway's own request for a new viewer; requests absorbed by the
	// 500 ms spacing are not counted.
	KeyFrameRequests uint64
}

// relayCounters are an Engine's VideoRelayStats, updated by its peers.
type relayCounters struct {
	packets, bytes, keyFrames atomic.Uint64
}

// VideoRelayStats returns what the Engine relayed so far.
func (e *Engine) VideoRelayStats() VideoRelayStats {
	return VideoRelayStats{Packets: e.relay.packets.Load(), Bytes: e.relay.bytes.Load(), KeyFrameRequests: e.relay.keyFrames.Load()}
}
