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
// Every request, in a dialog or not, is admitted by its source first: a
// trunk's allow_inbound_from or the addresses its host resolved to when
// Run started, or digest credentials on an inbound_auth trunk. Inside a
// dialog it must come from the call's own trunk (or, for an inbound_auth
// call, from where its INVITE came) and match the dialog's tags and CSeq
// (RFC 3261 §12.2.2). Outsiders are dropped before parsing by a read
// filter (scanner_silence, the default) or, with scanner_silence false
// or an inbound_auth trunk, answered once statelessly (403 or 401) within
// a per-address budget; their in-dialog requests and CANCELs get nothing,
// and no state is kept. Past WithMaxCalls or a trunk's max_calls an
// INVITE gets 503 with Retry-After.
//
// Inbound digest authentication checks the digest-uri against the
// Request-URI, refuses a nonce used again without a higher nonce-count,
// and silences an address after five failures; its credentials may
// differ from the outbound ones (inbound_username, inbound_password).
//
// # Calls
//
// Dial places a call through a trunk and returns once it is answered;
// failures are *StatusError values to test with errors.Is against ErrBusy,
// ErrNoAnswer, ErrUnavailable and ErrRejected. OnInvite sets the handler
// for inbound calls, which sees the Request-URI user (sip:conv-<id>@…) and
// the INVITE's headers and answers with InboundCall.Answer.
//
// A Call sends what is written to AudioIn on the process's shared 20 ms
// media clock (mediaclock: after a stall it catches up on at most 100 ms,
// skipping and counting older frames, with RTP timestamps kept in step
// with media time) and delivers the far end's audio, through a jitter
// buffer and G.711 decoding with loss concealment, to the writer set with
// SwapAudioOut. SendDTMF
// sends RFC 4733 events; Events reports received digits (RFC 4733 or SIP
// INFO), hold and resume, media changes, transfers and the hangup with its
// cause; Stats returns RTP counters. Re-INVITE and UPDATE from the far end
// are answered (hold with the mirrored direction, codec and address
// changes, late offers) without a gap in sequence numbers; RFC 4028 session
// timers are kept; a REFER to a target the trunk's transfer rules allow
// (transfer_targets, or by default extensions on its host that do not
// look like public numbers) moves the call to a new dialog on the same
// RTP session. Close hangs up and waits.
//
// RTP ports are picked at random within rtp_port_range (even for RTP, the
// next odd one for RTCP) and rest a few seconds after use. A trunk with
// srtp: true uses SDES-SRTP (RTP/SAVP).
//
// # Media sources
//
// A call takes RTP only from the address and port the far end's SDP gave
// (c= and m=) and sends only there; RTCP only from the IP of its RTCP
// address (RFC 3605 a=rtcp, else RTP's port + 1). Nothing is learned from
// whoever sends first, so an outsider who aims packets at the call's port
// neither hears the call nor replaces the far end (RTP bleed,
// AST-2017-005). A re-INVITE or UPDATE that moves the far end's address
// makes the new SDP address the only source, by the same rule.
//
// A trunk with symmetric_rtp: true, for a PBX or phones behind NAT, may
// move a call's media to another source, but only one whose IP is in the
// trunk's allow_inbound_from (or is the SDP's IP), and only after five
// consecutive in-sequence packets of one SSRC from it; until then media
// goes to the SDP address. RTCP is then also taken from the latched IP.
//
// Dropped packets are counted per call (MediaStats.PacketsForeign and
// RTCPForeign) and for the server (ForeignPackets, for metrics), and
// logged at Warn with their source: the first at once, then at most once
// per ten seconds per call with the number dropped since.
//
// # Trunk doctor
//
// CheckTrunk and PlaceTestCall are the checks behind "segue trunk check"
// and "segue call".
package sip
