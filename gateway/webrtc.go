package gateway

import (
	"context"
	"encoding/json"
	"time"

	"github.com/segue-rtc/segue/webrtc"
)

// WithWebRTC lets the server open browser peer connections through eng.
func WithWebRTC(eng *webrtc.Engine) Option {
	return func(s *Server) { s.peers = pionPeers{eng: eng} }
}

// iceServer is one entry of RTCConfiguration.iceServers, as browsers take it.
type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// iceUser is who ICE servers are made for: a customer gets TURN
// credentials named after the conversation, an agent after the agent.
type iceUser struct {
	agent bool
	name  string
}

func iceForCustomer(convID string) iceUser { return iceUser{name: convID} }
func iceForAgent(agentID string) iceUser   { return iceUser{agent: true, name: "agent." + agentID} }

// iceFeatures lists the ICE servers for u: STUN servers as they are; TURN
// servers with a secret get a credential of u's own that expires after
// the server's ttl (ice_expires_at, Unix seconds, says when the first one
// does); TURN servers with a static credential go to agents only, since
// anything given to customers is given to every visitor of the site.
func (s *Server) iceFeatures(u iceUser, now time.Time) map[string]any {
	servers := make([]iceServer, 0, len(s.cfg.WebRTC.ICEServers))
	var expires time.Time
	for _, is := range s.cfg.WebRTC.ICEServers {
		switch {
		case is.Secret != "":
			user, cred, exp := is.Ephemeral(u.name, now)
			servers = append(servers, iceServer{URLs: is.URLs, Username: user, Credential: cred})
			if expires.IsZero() || exp.Before(expires) {
				expires = exp
			}
		case !is.IsTURN():
			servers = append(servers, iceServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
		case u.agent:
			servers = append(servers, iceServer{URLs: is.URLs, Username: is.Username, Credential: is.Credential})
		}
	}
	out := map[string]any{"ice_servers": servers}
	if !expires.IsZero() {
		out["ice_expires_at"] = expires.Unix()
	}
	return out
}

// features tells the widget or the console what it may offer and how to
// reach us.
func (s *Server) features(u iceUser) map[string]any {
	f := s.iceFeatures(u, time.Now())
	f["voice"] = s.phones != nil && s.peers != nil
	f["video"] = s.peers != nil
	return f
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
