package webrtc

import (
	"strings"

	"github.com/segue-rtc/segue/transcode"
)

// SetWideband chooses the Opus parameters of the SDP this peer sends to
// its browser from now on. By default (on false) they carry the narrowband
// hints of transcode.OpusNarrowbandFmtp, so that the browser encodes only
// what survives the 8 kHz telephone leg. With on, they carry no limit, so
// that the browser sends full band Opus: for a peer whose audio only goes
// to another browser (RelayAudioTo). It reports whether the setting
// changed; the browser learns of the change with the next description the
// peer sends, the answer to its next offer or an Offer the owner makes.
// The parameters are declarative (RFC 7587 §7): nothing else changes, and
// a peer decodes whatever bandwidth arrives.
func (p *Peer) SetWideband(on bool) (changed bool) {
	return p.wideband.Swap(on) != on
}

// Wideband reports the setting of SetWideband.
func (p *Peer) Wideband() bool { return p.wideband.Load() }

// localSDP returns a local description as it goes to the browser: with the
// narrowband hints, or without them for a wideband peer.
func (p *Peer) localSDP(sdp string) string {
	if p.wideband.Load() {
		return withoutOpusHints(sdp)
	}
	return withOpusHints(sdp)
}

// withOpusHints returns sdp with the narrowband hints of
// transcode.OpusNarrowbandFmtp added to the fmtp of every Opus payload
// type. pion answers with the browser's Opus parameters rather than ours,
// so the hints are put back into the SDP that goes to the browser (RFC 7587
// §7: the parameters are declarative, each side states what it prefers
// to receive and what it sends). pion's own description is unchanged.
func withOpusHints(sdp string) string {
	lines, eol, opus := opusLines(sdp)
	if len(opus) == 0 {
		return sdp
	}
	hints := strings.Split(transcode.OpusNarrowbandFmtp, ";")
	hasFmtp := map[string]bool{}
	for i, l := range lines {
		rest, ok := strings.CutPrefix(l, "a=fmtp:")
		if !ok {
			continue
		}
		pt, params, _ := strings.Cut(rest, " ")
		if !opus[pt] {
			continue
		}
		hasFmtp[pt] = true
		lines[i] = "a=fmtp:" + pt + " " + addParams(params, hints)
	}
	out := make([]string, 0, len(lines)+len(opus))
	for _, l := range lines {
		out = append(out, l)
		if rest, ok := strings.CutPrefix(l, "a=rtpmap:"); ok {
			pt, _, _ := strings.Cut(rest, " ")
			if opus[pt] && !hasFmtp[pt] {
				out = append(out, "a=fmtp:"+pt+" "+strings.Join(hints, ";"))
			}
		}
	}
	return strings.Join(out, eol)
}

// addParams appends to an fmtp parameter list the key=value pairs of add
// whose keys it lacks.
func addParams(params string, add []string) string {
	have := map[string]bool{}
	for _, kv := range strings.Split(params, ";") {
		k, _, _ := strings.Cut(strings.TrimSpace(kv), "=")
		have[strings.ToLower(k)] = true
	}
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		if have[strings.ToLower(k)] {
			continue
		}
		if params != "" {
			params += ";"
		}
		params += kv
	}
	return params
}

// withoutOpusHints returns sdp without the parameters of
// transcode.OpusNarrowbandFmtp in the fmtp of its Opus payload types
// (pion's own offers carry them, from the codec the Engine registers), so
// that the browser may send and expect the full band. An fmtp line left
// empty is dropped.
func withoutOpusHints(sdp string) string {
	lines, eol, opus := opusLines(sdp)
	if len(opus) == 0 {
		return sdp
	}
	drop := map[string]bool{}
	for _, kv := range strings.Split(transcode.OpusNarrowbandFmtp, ";") {
		k, _, _ := strings.Cut(kv, "=")
		drop[strings.ToLower(k)] = true
	}
	out := lines[:0]
	for _, l := range lines {
		rest, ok := strings.CutPrefix(l, "a=fmtp:")
		pt, params, _ := strings.Cut(rest, " ")
		if !ok || !opus[pt] {
			out = append(out, l)
			continue
		}
		var keep []string
		for _, kv := range strings.Split(params, ";") {
			k, _, _ := strings.Cut(strings.TrimSpace(kv), "=")
			if kv != "" && !drop[strings.ToLower(k)] {
				keep = append(keep, kv)
			}
		}
		if len(keep) > 0 {
			out = append(out, "a=fmtp:"+pt+" "+strings.Join(keep, ";"))
		}
	}
	return strings.Join(out, eol)
}

// opusLines splits sdp into lines (at CRLF, or LF when the SDP has no
// CRLF) and finds the payload types its rtpmap lines give to Opus.
func opusLines(sdp string) (lines []string, eol string, opus map[string]bool) {
	eol = "\r\n"
	if !strings.Contains(sdp, eol) {
		eol = "\n"
	}
	lines = strings.Split(sdp, eol)
	opus = map[string]bool{}
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "a=rtpmap:"); ok {
			pt, codec, _ := strings.Cut(rest, " ")
			if strings.HasPrefix(strings.ToLower(codec), "opus/") {
				opus[pt] = true
			}
		}
	}
	return lines, eol, opus
}
