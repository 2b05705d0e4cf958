// Package demophone is the demo desk phone: a small SIP user agent that
// answers calls on a loopback address, plays a short greeting (a chime of
// tones, or a WAV file) and then sends the caller's own audio back, as a
// PBX's echo test does. It lets a newcomer hear a real call, through the
// gateway's real SIP leg and transcoding, without a PBX.
//
// It is built on the sip package's Server (sipgo underneath), with a
// single "trunk" standing for the gateway: only requests from the
// loopback addresses it allows are answered; anything else is dropped
// unanswered. It knows nothing of chat, WebRTC or the gateway.
package demophone
