// Package sip is the call-center-facing half of the voice bridge, built on
// sipgo: trunk registration and keepalives, outbound and inbound calls,
// dialogs, SDP offer/answer and RTP/RTCP with G.711 and telephone-event.
// It knows nothing of chat or WebRTC; a Call offers PCM in and out at 8 kHz.
package sip
