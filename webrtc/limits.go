package webrtc

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
)

// Limits on what a browser may ask of a peer. A browser that keeps to
// them never notices them: they are several times what Chrome, Firefox
// and Safari send for one audio track, a camera and a screen share.
const (
	// MaxSDPBytes bounds a session description from a browser.
	MaxSDPBytes = 64 << 10
	// MaxRemoteCandidates bounds the distinct remote addresses (ip:port)
	// in one ICE generation, trickled and in descriptions together; a new
	// ufrag (an ICE restart) starts a new generation.
	MaxRemoteCandidates = 32
	// MaxOffers is how many offers a browser may make on one peer within
	// OfferWindow; past it, Answer refuses with ErrRenegotiationRate.
	MaxOffers   = 10
	OfferWindow = 10 * time.Second

	// maxMediaSections bounds the m-lines of a description, rejected
	// (port 0) and inactive ones included: each camera or screen share
	// the browser stops and starts again leaves one behind (a
	// transceiver that has sent is not reused, W3C webrtc-pc §5.1
	// addTrack).
	maxMediaSections = 64
	// maxAudioSections bounds the audio m-lines in use (not rejected, not
	// inactive): the peer has one audio track each way.
	maxAudioSections = 1
	// maxSentVideos bounds the video m-lines on which the browser sends
	// (sendrecv or sendonly, not rejected): a camera and a screen.
	maxSentVideos = 2
	// Per media section and at session level.
	maxFormats          = 64
	maxAttributes       = 512
	maxSessionAttrs     = 64
	maxRtpmapLines      = 64
	maxFmtpLines        = 64
	maxRtcpFbLines      = 256
	maxExtmapLines      = 32
	maxSSRCLines        = 32
	maxSSRCGroupLines   = 8
	maxCandidateLines   = 64
	maxCandidateLineLen = 512
)

// Reasons a session description is refused: the values of the reason
// label of segue_webrtc_descriptions_refused_total (see
// Engine.DescriptionRefusals).
const (
	SDPTooLarge       = "too_large"
	SDPMalformed      = "malformed"
	SDPMediaSections  = "media_sections"
	SDPAudio          = "audio"
	SDPVideo          = "video"
	SDPApplication    = "application"
	SDPMediaKind      = "media_kind"
	SDPSimulcast      = "simulcast"
	SDPICECredentials = "ice_credentials"
	SDPLines          = "lines"
	SDPRate           = "rate"
)

// remoteGen is the remote ICE generation the peer knows, and the
// addresses it has taken in it, each with the one candidate taken for it.
// Guarded by Peer.sigMu.
type remoteGen struct {
	ufrag string
	seen  map[netip.AddrPort]string
}

// clone returns a copy to change before it is committed.
func (g remoteGen) clone() remoteGen {
	c := remoteGen{ufrag: g.ufrag, seen: make(map[netip.AddrPort]string, len(g.seen))}
	for k, v := range g.seen {
		c.seen[k] = v
	}
	return c
}

// admit takes the candidate cand for ap into the generation, or tells why
// not: ReasonDuplicate for an address already taken (with this or
// another candidate: pion would pair each, and check the one address
// again for each related address), or ReasonLimit.
func (g *remoteGen) admit(ap netip.AddrPort, cand string) string {
	if g.seen == nil {
		g.seen = map[netip.AddrPort]string{}
	}
	if _, dup := g.seen[ap]; dup {
		return ReasonDuplicate
	}
	if len(g.seen) >= MaxRemoteCandidates {
		return ReasonLimit
	}
	g.seen[ap] = normalCandidate(cand)
	return ""
}

// normalCandidate is a candidate-attribute without its "candidate:"
// prefix, for comparing the same candidate from SDP and from trickle.
func normalCandidate(c string) string { return strings.TrimPrefix(c, "candidate:") }

// parseRemoteCandidate reads a candidate-attribute (with or without the
// "candidate:" prefix) and applies the address policy. It returns the
// candidate's transport address, or the reason it is refused.
func (p remotePolicy) parseRemoteCandidate(raw string) (netip.AddrPort, string) {
	if len(raw) > maxCandidateLineLen {
		return netip.AddrPort{}, ReasonMalformed
	}
	c, err := ice.UnmarshalCandidate(raw)
	if err != nil {
		return netip.AddrPort{}, ReasonMalformed
	}
	if !c.NetworkType().IsUDP() {
		return netip.AddrPort{}, ReasonProtocol
	}
	a, err := netip.ParseAddr(c.Address())
	if err != nil {
		return netip.AddrPort{}, ReasonHostname
	}
	if c.Port() <= 0 || c.Port() > 65535 {
		return netip.AddrPort{}, ReasonMalformed
	}
	if reason := p.check(a); reason != "" {
		return netip.AddrPort{}, reason
	}
	return netip.AddrPortFrom(a.WithZone(""), uint16(c.Port())), ""
}

// isICEChar reports whether b is an ice-char (RFC 8839 §5.4: ALPHA /
// DIGIT / "+" / "/").
func isICEChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '+' || b == '/'
}

func iceChars(s string, minLen, maxLen int) bool {
	if len(s) < minLen || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isICEChar(s[i]) {
			return false
		}
	}
	return true
}

// ValidUfrag reports whether s is a valid ice-ufrag: 4 to 256 ice-chars
// (RFC 8839 §5.4).
func ValidUfrag(s string) bool { return iceChars(s, 4, 256) }

// ValidPwd reports whether s is a valid ice-pwd: 22 to 256 ice-chars
// (RFC 8839 §5.4).
func ValidPwd(s string) bool { return iceChars(s, 22, 256) }

// screened is a browser's description after screenDescription: the SDP
// to apply and the ICE generation it leads to.
type screened struct {
	sdp string
	gen remoteGen
	// refused lists the reasons of the candidates left out.
	refused []string
}

// screenDescription checks a session description from the browser
// against the limits above, then filters its candidates through the
// address policy and the generation's cap: those refused are left out of
// the SDP returned, which pion then applies (RFC 8839 §5.1 candidates
// are optional in a description; trickle ICE sends the rest). gen is the
// peer's current generation; it is not changed.
func screenDescription(raw string, policy remotePolicy, gen remoteGen) (screened, error) {
	if len(raw) > MaxSDPBytes {
		return screened{}, &LimitError{Reason: SDPTooLarge, Detail: fmt.Sprintf("the description has %d bytes; at most %d", len(raw), MaxSDPBytes)}
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return screened{}, &LimitError{Reason: SDPMalformed, Detail: "the description cannot be parsed"}
	}
	if len(sd.Attributes) > maxSessionAttrs {
		return screened{}, &LimitError{Reason: SDPLines, Detail: fmt.Sprintf("%d session attributes; at most %d", len(sd.Attributes), maxSessionAttrs)}
	}
	if n := len(sd.MediaDescriptions); n > maxMediaSections {
		return screened{}, &LimitError{Reason: SDPMediaSections, Detail: fmt.Sprintf("%d media sections; at most %d", n, maxMediaSections)}
	}
	ufrag := ""
	for _, a := range sd.Attributes {
		if err := checkICEAttr(a); err != nil {
			return screened{}, err
		}
		if a.Key == "ice-ufrag" {
			ufrag = a.Value
		}
	}
	audio, video := 0, 0
	for i, md := range sd.MediaDescriptions {
		rejected := md.MediaName.Port.Value == 0
		switch md.MediaName.Media {
		case "audio", "video":
		case "application":
			return screened{}, &LimitError{Reason: SDPApplication, Detail: "data channels (m=application) are not supported"}
		default:
			return screened{}, &LimitError{Reason: SDPMediaKind, Detail: fmt.Sprintf("media section %d is %q; only audio and video are supported", i, md.MediaName.Media)}
		}
		if err := checkSection(i, md); err != nil {
			return screened{}, err
		}
		if rejected {
			continue
		}
		dir := direction(md)
		switch {
		case md.MediaName.Media == "audio" && dir != "inactive":
			audio++
			if audio > maxAudioSections {
				return screened{}, &LimitError{Reason: SDPAudio, Detail: fmt.Sprintf("%d audio sections in use; at most %d", audio, maxAudioSections)}
			}
		case md.MediaName.Media == "video" && (dir == "sendrecv" || dir == "sendonly"):
			video++
			if video > maxSentVideos {
				return screened{}, &LimitError{Reason: SDPVideo, Detail: fmt.Sprintf("%d video tracks sent; at most %d (a camera and a screen)", video, maxSentVideos)}
			}
		}
		if u, ok := md.Attribute("ice-ufrag"); ok && ufrag == "" {
			ufrag = u
		}
	}

	var next remoteGen
	if ufrag != gen.ufrag || gen.seen == nil {
		next = remoteGen{ufrag: ufrag, seen: map[netip.AddrPort]string{}}
	} else {
		next = gen.clone()
	}
	out := screened{gen: next}
	// A re-offer in the same generation repeats the candidates taken
	// before: those stay, once per section, as pion expects. Any other
	// candidate for a taken address is a duplicate.
	changed := false
	for _, md := range sd.MediaDescriptions {
		inSection := map[netip.AddrPort]bool{}
		kept := md.Attributes[:0]
		for _, a := range md.Attributes {
			if a.Key != "candidate" {
				kept = append(kept, a)
				continue
			}
			ap, reason := policy.parseRemoteCandidate(a.Value)
			if reason == "" {
				switch known, ok := out.gen.seen[ap]; {
				case inSection[ap] || (ok && known != normalCandidate(a.Value)):
					reason = ReasonDuplicate
				case !ok:
					reason = out.gen.admit(ap, a.Value)
				}
			}
			if reason != "" {
				out.refused = append(out.refused, reason)
				changed = true
				continue
			}
			inSection[ap] = true
			kept = append(kept, a)
		}
		md.Attributes = kept
	}
	if !changed {
		out.sdp = raw
		return out, nil
	}
	b, err := sd.Marshal()
	if err != nil {
		return screened{}, &LimitError{Reason: SDPMalformed, Detail: "the description cannot be rewritten"}
	}
	out.sdp = string(b)
	return out, nil
}

// checkSection applies the per-section line limits.
func checkSection(i int, md *sdp.MediaDescription) error {
	if n := len(md.MediaName.Formats); n > maxFormats {
		return &LimitError{Reason: SDPLines, Detail: fmt.Sprintf("media section %d lists %d formats; at most %d", i, n, maxFormats)}
	}
	if n := len(md.Attributes); n > maxAttributes {
		return &LimitError{Reason: SDPLines, Detail: fmt.Sprintf("media section %d has %d attributes; at most %d", i, n, maxAttributes)}
	}
	counts := map[string]int{}
	for _, a := range md.Attributes {
		switch a.Key {
		case "simulcast", "rid":
			return &LimitError{Reason: SDPSimulcast, Detail: "simulcast (a=simulcast, a=rid) is not supported"}
		case "ssrc-group":
			if sem, _, _ := strings.Cut(a.Value, " "); strings.EqualFold(sem, "SIM") {
				return &LimitError{Reason: SDPSimulcast, Detail: "simulcast (a=ssrc-group:SIM) is not supported"}
			}
		}
		if err := checkICEAttr(a); err != nil {
			return err
		}
		counts[a.Key]++
	}
	for key, lim := range map[string]int{
		"rtpmap": maxRtpmapLines, "fmtp": maxFmtpLines, "rtcp-fb": maxRtcpFbLines, "extmap": maxExtmapLines,
		"ssrc": maxSSRCLines, "ssrc-group": maxSSRCGroupLines, "candidate": maxCandidateLines,
	} {
		if counts[key] > lim {
			return &LimitError{Reason: SDPLines, Detail: fmt.Sprintf("media section %d has %d a=%s lines; at most %d", i, counts[key], key, lim)}
		}
	}
	return nil
}

// checkICEAttr checks ice-ufrag and ice-pwd (RFC 8839 §5.4).
func checkICEAttr(a sdp.Attribute) error {
	switch {
	case a.Key == "ice-ufrag" && !ValidUfrag(a.Value):
		return &LimitError{Reason: SDPICECredentials, Detail: "ice-ufrag must be 4 to 256 characters of A-Z, a-z, 0-9, + and /"}
	case a.Key == "ice-pwd" && !ValidPwd(a.Value):
		return &LimitError{Reason: SDPICECredentials, Detail: "ice-pwd must be 22 to 256 characters of A-Z, a-z, 0-9, + and /"}
	}
	return nil
}

// direction returns a media section's direction attribute; sendrecv
// when it has none (RFC 8866 §6.7).
func direction(md *sdp.MediaDescription) string {
	for _, a := range md.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return "sendrecv"
}

// offerGate counts a peer's recent browser offers. Guarded by
// Peer.sigMu.
type offerGate struct {
	times []time.Time
}

// allow records an offer at now, or reports how long until one is
// allowed.
func (g *offerGate) allow(now time.Time) (wait time.Duration, ok bool) {
	cut := now.Add(-OfferWindow)
	keep := g.times[:0]
	for _, t := range g.times {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	g.times = keep
	if len(g.times) >= MaxOffers {
		return g.times[0].Add(OfferWindow).Sub(now), false
	}
	g.times = append(g.times, now)
	return 0, true
}
