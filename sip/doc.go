// Package sip is the call-center-facing half of the voice bridge, built on
// sipgo: trunk registration and keepalives, outbound and inbound calls,
// dialogs, SDP offer/answer and RTP/RTCP with G.711 and telephone-event.
// It knows nothing of chat or WebRTC; a Call offers PCM in and out at 8 kHz.
//
// # Server
//
// New builds a Server from the "sip" section and the trunks, doing no I/O;
// Run listens (UDP, TCP, TLS; IPv4 and IPv6), registers the trunks that ask
// for it (digest MD5 or SHA-256, refreshed before expiry, retried with
// backoff, removed on shutdown), sends OPTIONS keepalives and serves calls
// until its context ends, hanging every call up on the way out.
// TrunkStatus reports registration and keepalive state for metrics and
// readiness.
//
// Requests are accepted only from a trunk's allow_inbound_from, or with
// digest credentials on an inbound_auth trunk; anything else is answered
// 403 (or nothing with scanner_silence) and leaves no state. Inbound
// digest authentication checks the digest-uri against the Request-URI,
// refuses a nonce used again without a higher nonce-count, and silences
// an address after five failures; its credentials may differ from the
// outbound ones (inbound_username, inbound_password). Past
// WithMaxCalls or a trunk's max_calls an INVITE gets 503 with Retry-After.
//
// # Calls
//
// Dial places a call through a trunk and returns once it is answered;
// failures are *StatusError values to test with errors.Is against ErrBusy,
// ErrNoAnswer, ErrUnavailable and ErrRejected. OnInvite sets the handler
// for inbound calls, which sees the Request-URI user (sip:conv-<id>@…) and
// the INVITE's headers and answers with InboundCall.Answer.
//
// A Call sends what is written to AudioIn on a steady 20 ms clock and
// delivers the far end's audio, through a jitter buffer and G.711 decoding
// with loss concealment, to the writer set with SwapAudioOut. SendDTMF
// sends RFC 4733 events; Events reports received digits (RFC 4733 or SIP
// INFO), hold and resume, media changes, transfers and the hangup with its
// cause; Stats returns RTP counters. Re-INVITE and UPDATE from the far end
// are answered (hold with the mirrored direction, codec and address
// changes, late offers) without a gap in sequence numbers; RFC 4028 session
// timers are kept; a REFER to a target on the same trunk moves the call to
// a new dialog on the same RTP session. Close hangs up and waits.
//
// RTP learns the far end's source from its first packets and then drops
// others (strict source); ports come from rtp_port_range and rest a few
// seconds after use. A trunk with srtp: true uses SDES-SRTP (RTP/SAVP).
//
// # Trunk doctor
//
// CheckTrunk and PlaceTestCall are the checks behind "segue trunk check"
// and "segue call".
package sip
