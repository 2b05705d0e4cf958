// Package webrtc runs the browser-facing peer connections over pion/webrtc:
// audio as PCM in and out, video forwarded as RTP untouched. It knows
// nothing of SIP or chat.
//
// # Engine and peers
//
// One Engine, made by New from the "webrtc" section of the configuration,
// holds the codecs (Opus; PCMU and PCMA when transcode is "auto";
// telephone-event; VP8, VP9 and H.264 for forwarding), the
// interceptors (NACK, RTCP reports, TWCC) and the network settings (UDP
// port range, NAT 1:1 addresses, mDNS off). Each browser gets a Peer from
// Engine.NewPeer.
//
// # Signalling
//
// The gateway carries the SDP and the candidates over its WebSocket; this
// package only produces and consumes them:
//
//   - browser offer: Peer.Answer returns the answer to send back. The same
//     call handles later offers: tracks added (camera, screen share) and
//     ICE restarts (the browser changed networks).
//   - gateway offer (a forwarded track to show, or an ICE restart from our
//     side): Peer.Offer, then Peer.SetAnswer with the browser's answer.
//     PeerOptions.OnNegotiationNeeded tells when one is due. If the offers
//     cross, Answer returns ErrGlare: the browser is the polite peer and
//     rolls its own offer back.
//   - trickle ICE: the browser's candidates go to Peer.AddICECandidate as
//     the RTCIceCandidateInit JSON it produced (ICECandidateInit); ours
//     arrive through PeerOptions.OnICECandidate, only after the answer or
//     offer they belong to was returned, and end with an empty candidate.
//     Clients that cannot trickle set PeerOptions.WaitForCandidates.
//   - what a browser sends is screened before pion applies it
//     (limits.go): descriptions within structural limits, candidates
//     (trickled, in descriptions, peer-reflexive) only toward public
//     addresses or Config.AllowedRemoteNetworks, de-duplicated and capped
//     per ICE generation. Engine.CandidateRefusals and
//     Engine.DescriptionRefusals count what was refused.
//
// # Audio
//
// A Peer is an audio leg: AudioIn takes 8 kHz PCM to play to the browser,
// sent on the process's shared 20 ms media clock (mediaclock) whatever the
// pace of the writes; SwapAudioOut sets where the browser's audio goes, as
// 8 kHz PCM after the jitter buffer and the decoder (Opus with loss
// concealment and in-band FEC, or G.711 when negotiated). Browser key presses (RFC 4733) arrive
// through PeerOptions.OnDTMF; SendDTMF plays feedback tones to the
// browser. Stats and AudioFlowing feed call records and the console.
//
// The Opus encoder toward the browser adapts its effort to the loss the
// browser's RTCP receiver reports show (Config.OpusComplexity "auto", the
// default, opus_effort.go): complexity 1 without in-band FEC while there
// is none, complexity 5 with FEC tuned to the reported loss from a report
// of 1 % until 10 s without loss. Engine.OpusEffortStats counts the peers
// in FEC mode and the switches.
//
// The SDP a peer sends asks its browser for narrowband Opus
// (transcode.OpusNarrowbandFmtp), which is all the telephone leg carries.
// Between two browsers, the customer's and the agent console's, audio can
// be wideband instead: SetWideband leaves the hints out, and RelayAudioTo
// relays one browser's Opus packets to the other peer's audio track
// untouched, as an SFU does, with that track's sequence numbers and
// timestamps carried on across switches between relayed audio and the
// peer's own (AudioIn, SendDTMF), which comes first. Where relaying is not
// possible (G.711 on either side) the packets are decoded as usual, so
// the PCM path stays wired as the fallback.
//
// # Lifetime
//
// Done is closed when the peer ends (Close, ICE failure, a long
// disconnection, the browser closing, a failed decoder) and Err says why.
// Close must be called in every case; it waits for every goroutine the
// peer started. Callbacks in PeerOptions run on the peer's own goroutine,
// never pion's.
//
// # Video
//
// Each video track a browser sends arrives as a RemoteVideo
// (PeerOptions.OnVideoTrack, Peer.Videos). NewForwarder relays it to
// another Peer without transcoding and passes that browser's key frame
// requests back; NACKs are answered from a packet cache.
package webrtc
