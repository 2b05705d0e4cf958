package gateway

import (
	"errors"

	"github.com/segue-rtc/segue/webrtc"
)

// Wideband audio between the customer's browser and the agent's console.
//
// The telephone leg carries 8 kHz audio, so a peer that a call uses asks
// its browser for narrowband Opus and its audio is transcoded to 8 kHz
// PCM. Between the two browsers (video straight from the chat, or a
// call's audio moved to the console) there is no such limit: each peer's
// Opus packets are relayed to the other untouched, as an SFU does, and
// the SDP leaves the narrowband hints out, so that the browsers send
// full band. routeAudio decides both; the 8 kHz PCM path stays wired
// under the relay as the fallback for a browser that negotiated G.711.

// setWideband sets whether p's SDP leaves the narrowband Opus hints out
// and reports whether that changed, in which case its browser is to be
// told by a new offer. Peers other than pion's (test fakes) report false.
func setWideband(p browserPeer, on bool) bool {
	fp, ok := p.(forwardingPeer)
	return ok && fp.rtcPeer().SetWideband(on)
}

// relayAudio relays src's browser audio to dst's browser untouched, or
// stops relaying it with a nil dst. Peers other than pion's are left as
// they are: their audio goes by the PCM path.
func (s *Server) relayAudio(cv *conv, src, dst browserPeer) {
	sp, ok := src.(forwardingPeer)
	if !ok {
		return
	}
	var to *webrtc.Peer
	if dp, ok := dst.(forwardingPeer); ok {
		to = dp.rtcPeer()
	}
	if err := sp.rtcPeer().RelayAudioTo(to); err != nil && !errors.Is(err, webrtc.ErrClosed) {
		s.log.Warn("audio: relay not set", "conv", cv.c.ID, "err", err)
	}
}

// callOnPeer is called before the customer's offer for a call is answered
// on a peer connection that exists already (opened for video): the
// answer asks for narrowband Opus again. It holds the conversation's
// audio routing until the returned function is called, once the call's
// use of the peer is recorded, so that a routeAudio meanwhile does not
// take the peer for a browser-only one and make it wideband again.
func (s *Server) callOnPeer(cv *conv, rtc *customerRTC) (done func()) {
	m := cv.media()
	m.routeMu.Lock()
	setWideband(rtc.peer, false)
	return m.routeMu.Unlock
}
