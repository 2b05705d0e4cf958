package webrtc

import "testing"

func TestWithOpusHints(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "browser fmtp gets the hints",
			in:   "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n",
			want: "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1;maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=rtpmap:0 PCMU/8000\r\n",
		},
		{
			name: "existing values are kept",
			in:   "a=rtpmap:109 OPUS/48000/2\na=fmtp:109 maxplaybackrate=16000\n",
			want: "a=rtpmap:109 OPUS/48000/2\na=fmtp:109 maxplaybackrate=16000;sprop-maxcapturerate=8000\n",
		},
		{
			name: "missing fmtp line is added",
			in:   "a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n",
			want: "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=rtpmap:0 PCMU/8000\r\n",
		},
		{
			name: "no opus, no change",
			in:   "a=rtpmap:0 PCMU/8000\r\na=fmtp:96 x=1\r\n",
			want: "a=rtpmap:0 PCMU/8000\r\na=fmtp:96 x=1\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := withOpusHints(tc.in); got != tc.want {
				t.Errorf("withOpusHints:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
