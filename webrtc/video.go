package webrtc

import pwebrtc "github.com/pion/webrtc/v4"

// RemoteVideo is a video track received from a browser.
type RemoteVideo struct {
	p     *Peer
	track *pwebrtc.TrackRemote
	recv  *pwebrtc.RTPReceiver
}

func (p *Peer) startVideoReceive(track *pwebrtc.TrackRemote, recv *pwebrtc.RTPReceiver) {
	p.spawn(func() { drainRTCP(recv) })
	p.spawn(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := track.Read(buf); err != nil {
				return
			}
		}
	})
}
