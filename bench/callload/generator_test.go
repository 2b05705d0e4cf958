package main

import "testing"

func TestOpusMaxPlayback(t *testing.T) {
	for _, tc := range []struct {
		name, sdp string
		want      int
	}{
		{"none", "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n", 48000},
		{"narrow", "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=rtpmap:0 PCMU/8000\r\n", 8000},
		{"wideband, case", "a=rtpmap:109 OPUS/48000/2\na=fmtp:109 MaxPlaybackRate=16000\n", 16000},
		{"another codec's", "a=rtpmap:0 PCMU/8000\r\na=fmtp:96 maxplaybackrate=8000\r\n", 48000},
		{"garbage", "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 maxplaybackrate=x;maxplaybackrate=-3\r\n", 48000},
	} {
		if got := opusMaxPlayback(tc.sdp); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestMicOpusNarrowIsNarrowband(t *testing.T) {
	p, err := micOpusNarrow()
	if err != nil {
		t.Fatal(err)
	}
	for i, pkt := range p {
		// RFC 6716 §3.1: configurations 0-3 are SILK narrowband.
		if cfg := pkt[0] >> 3; cfg > 3 {
			t.Fatalf("packet %d: TOC configuration %d, want narrowband SILK (0-3)", i, cfg)
		}
	}
}
