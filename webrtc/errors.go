package webrtc

import "errors"

// ErrClosed is the cause reported by Err after Close, and returned by
// methods called on a Peer that has ended or by NewPeer on a closed
// Engine.
var ErrClosed = errors.New("webrtc: peer closed")

// ErrICEFailed is the cause reported by Err when ICE failed: no candidate
// pair has answered for the failed timeout, and no ICE restart arrived.
var ErrICEFailed = errors.New("webrtc: ice failed")

// ErrDisconnected is the cause reported by Err when the connection stayed
// disconnected for longer than the disconnected and failed ICE timeouts of
// the Engine together (plus a second), without pion declaring ICE failed.
var ErrDisconnected = errors.New("webrtc: disconnected for too long")

// ErrRemoteClosed is the cause reported by Err when the browser closed the
// peer connection (DTLS close_notify).
var ErrRemoteClosed = errors.New("webrtc: closed by remote")

// ErrMediaFailed is the cause reported by Err when the audio path failed
// for good, for instance a codec that panicked on a packet from the
// browser. It ends that peer only.
var ErrMediaFailed = errors.New("webrtc: media failed")

// ErrNoAudio is returned by SendDTMF when no audio is being sent to the
// browser: the session has no audio section, or it was not negotiated yet.
var ErrNoAudio = errors.New("webrtc: no audio track toward the browser")

// ErrBadSDP is returned by Answer and SetAnswer for a description that
// cannot be parsed or applied, and by Offer when one cannot be made.
var ErrBadSDP = errors.New("webrtc: bad session description")

// ErrBadCandidate is returned by AddICECandidate for a candidate that
// cannot be parsed or applied.
var ErrBadCandidate = errors.New("webrtc: bad ice candidate")

// ErrNoCommonCodec is returned when the browser offers no codec the
// Engine can use for a media section it must receive or send.
var ErrNoCommonCodec = errors.New("webrtc: no common codec")

// ErrBadOption is returned by New for an option out of range.
var ErrBadOption = errors.New("webrtc: invalid option")

// ErrCloseTimeout is returned by Close when the peer connection did not
// finish closing within the teardown timeout.
var ErrCloseTimeout = errors.New("webrtc: close timed out")

// ErrKindMismatch is returned by NewForwarder for a track that is not
// video.
var ErrKindMismatch = errors.New("webrtc: not a video track")

// ErrGlare is returned by Answer when the browser's offer crosses an
// offer of the gateway still waiting for its answer. The browser, the
// polite peer of perfect negotiation, rolls back its offer and answers the
// gateway's; it may offer again afterwards.
var ErrGlare = errors.New("webrtc: offer collision")

// ErrConnectTimeout is the cause reported by Err when a peer did not
// connect within the connect timeout of the Engine after it was created.
var ErrConnectTimeout = errors.New("webrtc: not connected in time")

// ErrRelayToSelf is returned by RelayAudioTo when a peer is asked to
// relay its browser's audio back to the same browser.
var ErrRelayToSelf = errors.New("webrtc: audio relayed to its own peer")

// ErrSDPRefused is matched (errors.Is) by the LimitError that Answer and
// SetAnswer return for a description past the limits of a browser peer.
var ErrSDPRefused = errors.New("webrtc: session description refused")

// ErrRenegotiationRate is returned by Answer for a browser offer past
// MaxOffers within OfferWindow on one peer. Nothing is changed; the
// browser may offer again later.
var ErrRenegotiationRate = errors.New("webrtc: too many offers; wait before renegotiating")

// ErrTooManyCandidates is returned by AddICECandidate for a candidate
// past MaxRemoteCandidates distinct addresses in one ICE generation.
var ErrTooManyCandidates = errors.New("webrtc: too many ice candidates")

// LimitError is a browser's session description refused before it was
// applied: too large, malformed, or past a structural limit (see
// limits.go). Reason is one of the SDP* constants; Detail says what was
// found and what is allowed, in words a developer can act on.
type LimitError struct {
	Reason string
	Detail string
}

func (e *LimitError) Error() string { return "webrtc: session description refused: " + e.Detail }

// Is makes a LimitError match ErrSDPRefused, and ErrBadSDP like every
// description that cannot be used.
func (e *LimitError) Is(target error) bool { return target == ErrSDPRefused || target == ErrBadSDP }
