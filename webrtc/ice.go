package webrtc

import pwebrtc "github.com/pion/webrtc/v4"

// ICECandidateInit is a trickled ICE candidate as the browser's
// RTCIceCandidateInit dictionary spells it in JSON, so that the gateway
// can pass the signalling frames through unchanged.
type ICECandidateInit struct {
	// Candidate is the candidate-attribute ("candidate:..."); empty marks
	// the end of candidates.
	Candidate string `json:"candidate"`
	// SDPMid is the media section's mid, or nil.
	SDPMid *string `json:"sdpMid,omitempty"`
	// SDPMLineIndex is the media section's index, or nil.
	SDPMLineIndex *uint16 `json:"sdpMLineIndex,omitempty"`
	// UsernameFragment is the ICE ufrag of the generation the candidate
	// belongs to, or nil for the current one.
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

func (c ICECandidateInit) toPion() pwebrtc.ICECandidateInit {
	return pwebrtc.ICECandidateInit{
		Candidate:        c.Candidate,
		SDPMid:           c.SDPMid,
		SDPMLineIndex:    c.SDPMLineIndex,
		UsernameFragment: c.UsernameFragment,
	}
}

func candidateFromPion(c pwebrtc.ICECandidateInit) ICECandidateInit {
	return ICECandidateInit{
		Candidate:        c.Candidate,
		SDPMid:           c.SDPMid,
		SDPMLineIndex:    c.SDPMLineIndex,
		UsernameFragment: c.UsernameFragment,
	}
}
