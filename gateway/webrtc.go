package gateway

import (
	"context"
	"encoding/json"

	"github.com/segue-rtc/segue/webrtc"
)

// WithWebRTC lets the server open browser peer connections through eng.
func WithWebRTC(eng *webrtc.Engine) Option {
	return func(s *Server) {
		s.peers = pionPeers{eng: eng}
		s.metrics.reg.MustRegister(nackCollector{eng.NACKStats})
	}
}

// iceServer is one entry of RTCConfiguration.iceServers, as browsers take it.
type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// features tells the widget what it may offer and how to reach us.
func (s *Server) features() map[string]any {
	servers := make([]iceServer, 0, len(s.cfg.WebRTC.ICEServers))
	for _, is := range s.cfg.WebRTC.ICEServers {
		servers = append(servers, iceServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
	}
	return map[string]any{"voice": s.phones != nil && s.peers != nil, "video": s.peers != nil, "ice_servers": servers}
}

// pionPeers adapts *webrtc.Engine to peerFactory.
type pionPeers struct{ eng *webrtc.Engine }

func (p pionPeers) NewPeer(ctx context.Context, name string, hooks peerHooks) (browserPeer, error) {
	peer, err := p.eng.NewPeer(ctx, webrtc.PeerOptions{
		Name: name,
		OnICECandidate: func(c webrtc.ICECandidateInit) {
			if b, err := json.Marshal(c); err == nil {
				hooks.candidate(b)
			}
		},
		OnDTMF: hooks.dtmf,
		OnVideoTrack: func(rv *webrtc.RemoteVideo) {
			if hooks.video != nil {
				hooks.video(rv)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	peer.SetWideband(hooks.wideband)
	return pionPeer{peer}, nil
}

// pionPeer adapts *webrtc.Peer to browserPeer.
type pionPeer struct{ *webrtc.Peer }

func (p pionPeer) rtcPeer() *webrtc.Peer { return p.Peer }

func (p pionPeer) AddICECandidate(raw json.RawMessage) error {
	var c webrtc.ICECandidateInit
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	return p.Peer.AddICECandidate(c)
}
