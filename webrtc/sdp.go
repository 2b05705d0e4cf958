package webrtc

import (
	"strings"

	"github.com/segue-rtc/segue/transcode"
)

// withOpusHints returns sdp with the narrowband hints of
// transcode.OpusNarrowbandFmtp added to the fmtp of every Opus payload
// type. pion answers with the browser's Opus parameters rather than ours,
// so the hints are put back into the SDP that goes to the browser (RFC 7587
// §7: the parameters are declarative, each side states what it prefers
// to receive and what it sends). pion's own description is unchanged.
func withOpusHints(sdp string) string {
	eol := "\r\n"
	if !strings.Contains(sdp, eol) {
		eol = "\n"
	}
	lines := strings.Split(sdp, eol)
	opus := map[string]bool{}
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, "a=rtpmap:"); ok {
			pt, codec, _ := strings.Cut(rest, " ")
			if strings.HasPrefix(strings.ToLower(codec), "opus/") {
				opus[pt] = true
			}
		}
	}
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
