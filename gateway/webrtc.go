package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/segue-rtc/segue/webrtc"
)

// WithWebRTC lets the server open browser peer connections through eng.
func WithWebRTC(eng *webrtc.Engine) Option {
	return func(s *Server) {
		s.peers = pionPeers{eng: eng}
		s.metrics.reg.MustRegister(nackCollector{eng.NACKStats}, opusEffortCollector{eng.OpusEffortStats})
		s.metrics.reg.MustRegister(refusalCollector{eng})
		s.metrics.reg.MustRegister(videoRelayCollector{eng.VideoRelayStats}, videoSessionsGauge(s.hub))
	}
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

// A call's quality counts the frames the browser leg dropped too.
var _ browserStats = pionPeer{}

func (p pionPeer) rtcPeer() *webrtc.Peer { return p.Peer }

// Answer answers the browser's offer; what the peer's limits refuse comes
// back as the error frame the browser gets.
func (p pionPeer) Answer(ctx context.Context, offer string) (string, error) {
	answer, err := p.Peer.Answer(ctx, offer)
	return answer, refusal(err, "bad_offer")
}

// SetAnswer applies the browser's answer to our offer.
func (p pionPeer) SetAnswer(ctx context.Context, answer string) error {
	return refusal(p.Peer.SetAnswer(ctx, answer), "bad_answer")
}

// AddICECandidate parses a trickled RTCIceCandidateInit and adds it.
func (p pionPeer) AddICECandidate(raw json.RawMessage) error {
	c, err := parseCandidate(raw)
	if err != nil {
		return err
	}
	return refusal(p.Peer.AddICECandidate(c), "bad_frame")
}

// maxCandidateJSON bounds an rtc.candidate frame's candidate object.
const maxCandidateJSON = 2048

// parseCandidate reads the candidate of an rtc.candidate frame: an
// RTCIceCandidateInit object of bounded size.
func parseCandidate(raw json.RawMessage) (webrtc.ICECandidateInit, error) {
	var c webrtc.ICECandidateInit
	if len(raw) > maxCandidateJSON {
		return c, errf(http.StatusBadRequest, "bad_frame", "candidate over %d bytes", maxCandidateJSON)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, errf(http.StatusBadRequest, "bad_frame", "candidate must be an RTCIceCandidateInit object")
	}
	return c, nil
}

// refusal turns a peer's refusal of what the browser sent into the error
// frame it gets (docs/api.md): code for a description past the limits,
// rate_limited for too many offers, too_many_candidates past the cap.
// Other errors pass unchanged.
func refusal(err error, code string) error {
	var le *webrtc.LimitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &le):
		status := http.StatusBadRequest
		if le.Reason == webrtc.SDPTooLarge {
			status, code = http.StatusRequestEntityTooLarge, "too_large"
		}
		return &apiError{Status: status, Code: code, Message: le.Detail}
	case errors.Is(err, webrtc.ErrRenegotiationRate):
		return &apiError{Status: http.StatusTooManyRequests, Code: "rate_limited",
			Message: "too many offers on this connection; wait before renegotiating", RetryAfter: int(webrtc.OfferWindow / time.Second)}
	case errors.Is(err, webrtc.ErrTooManyCandidates):
		return errf(http.StatusBadRequest, "too_many_candidates", "at most %d ICE candidates per connection and ICE restart", webrtc.MaxRemoteCandidates)
	case errors.Is(err, webrtc.ErrBadCandidate):
		return errf(http.StatusBadRequest, "bad_frame", "ICE candidate refused")
	}
	return err
}

// refusalCollector exports the engine's counts of refused remote
// candidates and session descriptions when scraped.
type refusalCollector struct{ eng *webrtc.Engine }

var (
	candidatesRefusedDesc = prometheus.NewDesc("segue_webrtc_candidates_refused_total",
		"Remote ICE candidates refused (trickled, in descriptions, or peer-reflexive), by reason.", []string{"reason"}, nil)
	descriptionsRefusedDesc = prometheus.NewDesc("segue_webrtc_descriptions_refused_total",
		"Session descriptions from browsers refused before they were applied, by reason.", []string{"reason"}, nil)
)

func (c refusalCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- candidatesRefusedDesc
	ch <- descriptionsRefusedDesc
}

func (c refusalCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.eng.CandidateRefusals() {
		ch <- prometheus.MustNewConstMetric(candidatesRefusedDesc, prometheus.CounterValue, float64(r.Count), r.Reason)
	}
	for _, r := range c.eng.DescriptionRefusals() {
		ch <- prometheus.MustNewConstMetric(descriptionsRefusedDesc, prometheus.CounterValue, float64(r.Count), r.Reason)
	}
}
